"""Workspaces for the app tests, the browser tests and bench/ui.py, made quickly in code.

Crops point at a handful of stored images (content-addressed store: identical bytes share a
file), so 100,000 crops take seconds. Predictions of an active model are inserted directly.
"""
from __future__ import annotations

import datetime as dt
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import insert, select, text, update

from annotator.data import db, crop_queue
from annotator.service import auth
from annotator.service.workspace import Workspace

USERS = {"alice": ("alice-password", "annotator"), "bob": ("bob-password", "annotator"),
         "root": ("root-password", "admin")}


def _png(rng, size: int) -> bytes:
    import cv2

    img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    img[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = rng.integers(0, 255, 3)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def build(
    root: Path,
    n_crops: int,
    *,
    per_track: int = 4,
    model: bool = True,
    images: int = 16,
    emb_dim: int = 16,
    users: dict | None = None,
    seed: int = 0,
    config: str | None = None,
    footage: bool = False,
    db_url: str | None = None,
) -> Workspace:
    """A workspace with ``n_crops`` unlabeled crops in tracks of ``per_track``, users, and (if
    ``model``) an active model version with a prediction (probs, embedding) for every crop.

    ``footage``: the source is a real (synthetic) video on disk, so the label page can show the
    frame around each crop; crops cycle through its 200 frames."""
    t0 = time.perf_counter()
    ws = Workspace.init(root, db_url=db_url)
    if config is not None:
        (root / "config.toml").write_text(config)
        ws.dispose()
        ws = Workspace.open(root, db_url=db_url)
    rng = np.random.default_rng(seed)
    stored = [ws.store.put_bytes(_png(rng, 48), "png") for _ in range(images)]
    users = USERS if users is None else users
    with ws.session() as s:
        for name, (pw, role) in users.items():
            auth.add_user(s, name, pw, role=role)
        uri = str(write_footage(root / "footage.avi")) if footage else "/nonexistent.mp4"
        src = db.get_or_create_source(s, key="video:test", kind="video", uri=uri,
                                      name="cam1.mp4", fps=25.0, width=1920, height=1080)
        now = db.utcnow()
        rows = []
        for i in range(n_crops):
            f = stored[i % images]
            rows.append(dict(
                source_id=src.id, origin=f"f{i:07d}", frame_index=i % FOOTAGE_FRAMES if footage
                else i, timestamp_s=i / 25,
                x1=100.0, y1=100.0, x2=148.0, y2=148.0, width=48, height=48,
                track_id=i // per_track, sha256=f.sha256, path=f.relpath, status=db.CropStatus.UNLABELED,
                priority=0.0, votes_needed=1, created_at=now,
            ))
        for start in range(0, n_crops, 20_000):
            s.execute(insert(db.Crop), rows[start:start + 20_000])
    if model:
        add_model(ws, "v1", seed=seed, emb_dim=emb_dim)
    ws.build_seconds = time.perf_counter() - t0
    return ws


FOOTAGE_FRAMES = 200


def write_footage(path: Path, *, frames: int = FOOTAGE_FRAMES, size=(640, 360)) -> Path:
    """A small MJPG video with a bright square where every factory crop's box is."""
    import cv2

    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 40 + i % 150, np.uint8)
        frame[100:148, 100:148] = (200, 180, 160)
        out.write(frame)
    out.release()
    return path


def add_model(ws: Workspace, name: str, *, seed: int = 0, emb_dim: int = 16,
              metrics: dict | None = None, labels: int = 100) -> int:
    """An active model version with random predictions for every crop; priority = uncertainty."""
    from annotator.core.sample import uncertainty

    rng = np.random.default_rng(seed + 1)
    with ws.session() as s:
        s.execute(update(db.ModelVersion).values(active=False))
        mv = db.ModelVersion(name=name, path=f"models/{name}", classes=list(ws.config.labels),
                             metrics=metrics or {"balanced_accuracy": 0.8,
                                                 "n_train": labels * 85 // 100,
                                                 "n_val": labels - labels * 85 // 100},
                             active=True, promoted_at=db.utcnow())
        s.add(mv)
        s.flush()
        ids = np.array(s.scalars(select(db.Crop.id).order_by(db.Crop.id)).all())
        p0 = rng.beta(0.6, 0.6, len(ids))
        probs = np.stack([p0, 1 - p0], axis=1)
        u = uncertainty(probs)
        emb = rng.normal(size=(len(ids), emb_dim)).astype(np.float32)
        now = db.utcnow()
        preds = [dict(crop_id=int(c), model_version_id=mv.id, probs=[float(a), float(b)],
                      uncertainty=float(uu), embedding=e.tobytes(), created_at=now)
                 for c, (a, b), uu, e in zip(ids, probs, u, emb)]
        for start in range(0, len(preds), 20_000):
            s.execute(insert(db.Prediction), preds[start:start + 20_000])
        _set_priority(s, ids, u)
        return mv.id


def _set_priority(s, ids, u) -> None:
    # Named parameters: the driver's own placeholder style differs (SQLite ?, psycopg %s).
    s.execute(text("UPDATE crops SET priority = :p WHERE id = :i"),
              [{"p": float(uu), "i": int(c)} for c, uu in zip(ids, u)])


@contextmanager
def served(root: Path, monkeypatch, n_crops: int, **kw):
    """A built workspace that the pages run on (``ANNOTATOR_PROJECT``), disposed afterwards."""
    ws = build(root, n_crops, **kw)
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    try:
        yield ws
    finally:
        ws.dispose()


def user_id(ws: Workspace, name: str) -> int:
    with ws.read_session() as s:
        return db.get_annotator(s, name).id


def label_some(ws: Workspace, name: str, crop_ids, value: str) -> None:
    uid = user_id(ws, name)
    with ws.session() as s:
        for cid in crop_ids:
            crop_queue.submit_label(s, uid, int(cid), value, allowed=ws.config.label_values)


def hours_ago(h: float) -> dt.datetime:
    return db.utcnow() - dt.timedelta(hours=h)
