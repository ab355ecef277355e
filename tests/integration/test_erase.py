"""Erasure end to end (SQLite and PostgreSQL): a workspace that went through extract (one video
uploaded, one on the server), labeling, two retrains, score, detect --to-queue and an export
loses one crop, one track and one source; afterwards nothing in the database, in crops/,
cache/, datasets/, detections/, uploads/ or in the raw SQLite file and its WAL holds their
sha256, their cached pixels or their boxes, every other crop is untouched, and retrain works.
Also: --dry-run lists exactly what the real run removes, and kill -9 mid-erasure leaves all or
nothing visible and the next run completes it."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from annotator.data import db, trail
from annotator.media import images
from annotator.core.geometry import box_iou
from annotator.service.workspace import Workspace
from pipelines.cli import app
from tests.integration.toys import ok_json, write_toy_folder

pytestmark = pytest.mark.backends
REPO = Path(__file__).resolve().parents[2]
UPLOADED = "pedestrians_eyelevel_640x360.mp4"
SERVER = "cctv_oxford_street_690x388.mp4"
FAST = ["--fps", "2", "--max-seconds", "6"]
runner = CliRunner()


def cli_process(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def loop(shared_data, tmp_path_factory, module_db_env):
    """The whole loop once per backend, small: ~16 sampled frames, 1-epoch retrains."""
    import torch

    from annotator.service import accounts
    from pipelines.extract import uploads

    tmp = tmp_path_factory.mktemp("erase")
    root = tmp / "ws"
    ok_json("init", "-p", root)
    ws = Workspace.open(root)
    accounts.add_user(ws, "ann", "ann-password-1", role=db.Role.ANNOTATOR)
    with open(shared_data / "videos" / UPLOADED, "rb") as fh:
        uploaded = uploads.save_upload(ws, UPLOADED, fh)
    ok_json("import-folder", write_toy_folder(tmp / "toy", {"mask": 24, "no_mask": 24}), "--labeled", "-p", root)
    ok_json("extract", uploaded, shared_data / "videos" / SERVER, "--detector", "yunet", *FAST,
            "--workers", "1", "-p", root)
    with ws.read_session() as s:
        ann = db.get_annotator(s, "ann").id
        extracted = s.execute(select(db.Crop.source_id, db.Crop.id).where(
            db.Crop.added_by == db.AddedBy.EXTRACT).order_by(db.Crop.id)).all()
    assert len(extracted) >= 6, "the videos gave too few crops to test erasure"
    from annotator.service import labeling

    for sid in {sid for sid, _ in extracted}:  # two thirds of each video's crops
        mine = [cid for s_, cid in extracted if s_ == sid]
        for i, cid in enumerate(mine[: max(1, len(mine) * 2 // 3)]):
            labeling.submit(ws, ann, cid, ("mask", "no_mask")[i % 2])
    torch.manual_seed(0)
    for _ in range(2):
        ok_json("retrain", "--epochs", "1", "--force", "-p", root)
    ok_json("score", "-p", root)
    ok_json("detect", uploaded, shared_data / "videos" / SERVER, *FAST, "--detector", "yunet",
            "--to-queue", "--out", root / "detections" / "run1", "-p", root)
    ok_json("export", tmp / "export", "-p", root)
    yield ws
    ws.dispose()


# --- searching the workspace ---------------------------------------------------------------------


def snapshot(ws) -> dict:
    """Every crop: id -> (sha256, path, source key, frame, box, cached tensor bytes)."""
    with ws.read_session() as s:
        rows = s.execute(select(db.Crop, db.Source.key).join(db.Source)).all()
    out = {}
    for c, key in rows:
        bgr = images.read_bgr(ws.store.path(c.path))
        out[c.id] = dict(sha=c.sha256, path=c.path, key=key, frame=c.frame_index,
                         box=None if c.x1 is None else (c.x1, c.y1, c.x2, c.y2),
                         tensor=images.to_model_input(bgr).tobytes())
    return out


def workspace_files(root: Path):
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            yield Path(dirpath) / f


def search(ws, crops: dict) -> list[str]:
    """Every place in the workspace that still holds one of ``crops``: rows, file bytes
    (hex or raw sha256, a file with those bytes, the cached tensor), detect rows at their box."""
    hits = []
    shas = {c["sha"] for c in crops.values()}
    with ws.read_session() as s:
        for part in db.chunks(sorted(shas)):
            hits += [f"row crops sha {h[:8]}" for h in s.scalars(
                select(db.Crop.sha256).where(db.Crop.sha256.in_(part)))]
        ids = sorted(crops)
        for model in (db.Crop, db.Label, db.Prediction, db.Lease):
            col = model.id if model is db.Crop else model.crop_id
            n = db.count(s, model, col.in_(ids))
            hits += [f"{n} rows in {model.__tablename__}"] if n else []
        for c in crops.values():
            if c["box"] is not None:
                n = db.count(s, db.Crop, db.Crop.frame_index == c["frame"],
                             db.Crop.x1 == c["box"][0], db.Crop.y1 == c["box"][1],
                             db.Crop.x2 == c["box"][2], db.Crop.y2 == c["box"][3])
                hits += [f"box row at frame {c['frame']}"] if n else []
    needles = [h.encode() for h in shas] + [bytes.fromhex(h) for h in shas]
    tensors = [c["tensor"] for c in crops.values()]
    for path in workspace_files(ws.root):
        data = path.read_bytes()
        rel = path.relative_to(ws.root)
        if hashlib.sha256(data).hexdigest() in shas:
            hits.append(f"{rel}: the image")
        hits += [f"{rel}: sha256" for n in needles if n in data]
        if "cache" in rel.parts:
            hits += [f"{rel}: cached pixels" for t in tensors if t in data]
    for run in (ws.root / "detections").glob("*"):
        report = json.loads((run / "report.json").read_text())
        names = {x["key"]: x["name"] for x in report["per_source"]}
        with open(run / "detections.csv", newline="") as fh:
            dets = list(csv.DictReader(fh))
        for c in crops.values():
            if c["box"] is None or c["key"] not in names:
                continue
            for r in dets:
                if (r["source"] == names[c["key"]] and int(r["frame"]) == c["frame"]
                        and box_iou(c["box"], [float(r[k]) for k in ("x1", "y1", "x2", "y2")]) >= 0.5):
                    hits.append(f"{run.name}/detections.csv: box at frame {c['frame']}")
    return hits


def untouched(ws, before: dict, erased: set[int]) -> None:
    now = snapshot(ws)
    assert set(now) == set(before) - erased
    for cid, c in now.items():
        assert c["sha"] == before[cid]["sha"] and ws.store.path(c["path"]).is_file()


def pick_track(ws) -> tuple[int, int, list[int]]:
    """The extracted track with the most labeled crops."""
    with ws.read_session() as s:
        rows = s.execute(select(db.Crop.source_id, db.Crop.track_id, func.count())
                         .where(db.Crop.added_by == db.AddedBy.EXTRACT,
                                                db.Crop.status == db.CropStatus.LABELED)
                         .group_by(db.Crop.source_id, db.Crop.track_id)
                         .order_by(func.count().desc())).all()
        sid, tid, _ = rows[0]
        ids = list(s.scalars(select(db.Crop.id).where(db.Crop.source_id == sid,
                                                       db.Crop.track_id == tid)))
    return sid, tid, ids


# --- the tests (in order: each erases more of the module's workspace) -----------------------------


def test_dry_run_lists_exactly_what_erasing_one_crop_removes(loop):
    ws = loop
    before = snapshot(ws)
    with ws.session() as s:  # a labeled extracted crop: in both dataset versions
        cid = s.scalar(select(db.Crop.id).where(
            db.Crop.added_by == db.AddedBy.EXTRACT, db.Crop.status == db.CropStatus.LABELED)
            .order_by(db.Crop.id.desc()).limit(1))
        trail.record(s, "ann", trail.VIEW, page="label", crop_ids=[cid])
    gone = {cid: before[cid]}
    assert search(ws, gone), "the search finds nothing even before the erasure"
    dry = ok_json("erase", "--crop", cid, "--dry-run", "-p", ws.root)
    assert dry["dry_run"] and dry["crops"] == [cid] and dry["labels"] >= 1
    assert len(dry["datasets"]) == 2 and dry["models"]
    assert dry["store_files"] == [f"crops/{before[cid]['path']}"] and dry["cache_entries"] >= 1
    assert snapshot(ws).keys() == before.keys()  # the dry run changed nothing
    real = ok_json("erase", "--crop", cid, "-p", ws.root)
    for k in ("dry_run", "resumed"):
        dry.pop(k), real.pop(k)
    assert real == dry
    if ws.db_url.startswith("sqlite"):  # the WAL was folded in and emptied (secure_delete zeroed)
        wal = ws.root / "annotator.db-wal"
        assert not wal.exists() or wal.stat().st_size == 0
    assert search(ws, gone) == []
    untouched(ws, before, {cid})
    events = ok_json("audit", "--crop", cid, "-p", ws.root)
    assert events and all(e["what"] == f"crop {cid} (erased)" for e in events)
    assert ok_json("audit", "--action", "erase", "-p", ws.root)[0]["detail"]["target"] == f"crop {cid}"
    marked = {m["name"] for m in ok_json("models", "list", "-p", ws.root) if m["trained_on_erased"]}
    assert marked == set(real["models"])
    for name in real["datasets"]:
        assert (ws.root / "datasets" / name / "erasures.csv").read_text().count("\n") == 2


def test_erasing_a_track_removes_the_person_everywhere(loop):
    ws = loop
    before = snapshot(ws)
    sid, tid, ids = pick_track(ws)
    gone = {i: before[i] for i in ids}
    assert search(ws, gone)
    rep = ok_json("erase", "--track", f"{sid}:{tid}", "-p", ws.root)
    assert sorted(rep["crops"]) == sorted(ids)
    assert search(ws, gone) == []
    untouched(ws, before, set(ids))


def test_erasing_the_uploaded_source_removes_its_video_rows_and_detect_output(loop):
    ws = loop
    before = snapshot(ws)
    with ws.read_session() as s:
        src = s.scalar(select(db.Source).where(db.Source.name.like(f"%{UPLOADED}")))
        ids = set(s.scalars(select(db.Crop.id).where(db.Crop.source_id == src.id)))
    gone = {i: before[i] for i in ids}
    assert search(ws, gone)
    rep = ok_json("erase", "--source", src.id, "-p", ws.root)
    assert set(rep["crops"]) == ids and rep["sources"] == [src.id] and rep["predictions"] >= 1
    assert rep["detect_files"]
    assert len(rep["uploads"]) == 1 and not (ws.root / rep["uploads"][0]).exists()
    assert search(ws, gone) == []
    untouched(ws, before, ids)
    with ws.read_session() as s:
        assert s.get(db.Source, src.id) is None
    run = ws.root / "detections" / "run1"
    report = json.loads((run / "report.json").read_text())
    assert [x["name"] for x in report["per_source"]] == [SERVER]
    for f in run.glob("*.csv"):
        assert UPLOADED not in f.read_text()


def test_retrain_still_works_after_the_erasures(loop):
    rep = ok_json("retrain", "--epochs", "1", "--force", "-p", loop.root)
    assert rep["train"]["version"]


@pytest.mark.parametrize("point", ["erase_after_journal", "erase_after_commit", "erase_mid_files"])
def test_kill_9_mid_erasure_leaves_all_or_nothing_and_a_rerun_completes_it(loop, point):
    ws = loop
    before = snapshot(ws)
    with ws.read_session() as s:
        cid = s.scalar(select(db.Crop.id).where(db.Crop.added_by == db.AddedBy.IMPORT)
                       .order_by(db.Crop.id.desc()).limit(1))
    gone = {cid: before[cid]}
    proc = cli_process("erase", "--crop", cid, "-p", ws.root, env_extra={"ANNOTATOR_FAILPOINT": point})
    assert proc.returncode == -9, proc.stderr[-2000:]
    journals = list((ws.root / "erasures").glob("*.json"))
    assert len(journals) == 1
    with ws.read_session() as s:
        row = s.get(db.Crop, cid)
    if point == "erase_after_journal":  # before the switch: nothing is erased
        assert row is not None and ws.store.path(before[cid]["path"]).is_file()
    else:  # after it: the crop is gone from every row and page at once
        assert row is None
    rep = ok_json("erase", "--resume", "-p", ws.root)
    assert rep["resumed"] == [journals[0].stem]
    assert not list((ws.root / "erasures").glob("*.json"))
    assert search(ws, gone) == []
    untouched(ws, before, {cid})
    erase_events = [e for e in ok_json("audit", "--action", "erase", "-p", ws.root)
                    if e["detail"]["journal"] == journals[0].stem]
    assert len(erase_events) == 1  # the rows went once


def test_bad_targets_are_one_line_errors(loop):
    for args in (["--crop", "999999"], ["--track", "nonsense"], ["--source", "no-such.mp4"], []):
        r = runner.invoke(app, ["erase", *args, "-p", str(loop.root)])
        assert r.exit_code != 0 and r.output.strip().startswith("error:"), r.output
        assert "Traceback" not in r.output
