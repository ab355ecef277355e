"""Slice attributes in the database: computed from the stored crop files, read back as bands.

One place for the ``crop_attributes`` table: :func:`fill` writes rows (extraction, import and the
backfill call it with new crop ids), :func:`frame` reads raw attributes plus the source's name,
:func:`crop_ids_in` finds the crops of one band (the Browse filter). The attributes themselves
are pure (``annotator.core.slices``).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import pandas as pd
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from annotator.core import slices
from annotator.data.db import Crop, CropAttributes, Source, chunks

COLUMNS = ("face_px", "sharpness", "brightness", "pose", "colour", "hour")


def missing_ids(session: Session, *, limit: int | None = None) -> list[int]:
    """Crops without attributes, oldest first."""
    q = (select(Crop.id).outerjoin(CropAttributes, CropAttributes.crop_id == Crop.id)
         .where(CropAttributes.crop_id.is_(None)).order_by(Crop.id))
    return list(session.scalars(q if limit is None else q.limit(limit)))


def missing_count(session: Session) -> int:
    return session.scalar(
        select(func.count()).select_from(Crop)
        .outerjoin(CropAttributes, CropAttributes.crop_id == Crop.id)
        .where(CropAttributes.crop_id.is_(None))) or 0


def fill(ws, crop_ids: Sequence[int]) -> tuple[int, int]:
    """Compute and store the attributes of these crops (those that have none yet).

    Reads the files outside any transaction, then writes in one short one, so an extraction's
    write lock is not held while images decode. Idempotent: an interrupted run redoes its chunk.
    An unreadable file still gets a row (all unknown), so a backfill does not retry it forever.
    Returns ``(rows written, unreadable files)``.
    """
    ids = [int(i) for i in crop_ids]
    if not ids:
        return 0, 0
    with ws.read_session() as s:
        rows = []
        for part in chunks(ids):
            rows += s.execute(
                select(Crop.id, Crop.path, Crop.x1, Crop.y1, Crop.x2, Crop.y2, Crop.keypoints,
                       Crop.timestamp_s, Source.name)
                .join(Source, Source.id == Crop.source_id)
                .outerjoin(CropAttributes, CropAttributes.crop_id == Crop.id)
                .where(Crop.id.in_(part), CropAttributes.crop_id.is_(None))).all()
    out, bad, starts = [], 0, {}
    for cid, path, x1, y1, x2, y2, kps, ts, source in rows:
        # The store holds only pictures that passed the size checks when they were added: no
        # second probe (it cost a third of the time).
        img = cv2.imread(str(ws.store.path(path)), cv2.IMREAD_COLOR)
        if img is None:
            bad += 1
            out.append({"crop_id": cid, **{c: None for c in COLUMNS}})
            continue
        if source not in starts:
            starts[source] = slices.start_time(source)
        box = None if None in (x1, y1, x2, y2) else (x1, y1, x2, y2)
        out.append({"crop_id": cid, **slices.attributes(img, box=box, keypoints=kps,
                                                        start=starts[source], timestamp_s=ts)})
    if out:
        with ws.session() as s:
            done = set()  # a concurrent backfill may have written some meanwhile
            for part in chunks([r["crop_id"] for r in out]):
                done.update(s.scalars(select(CropAttributes.crop_id)
                                      .where(CropAttributes.crop_id.in_(part))))
            new = [r for r in out if r["crop_id"] not in done]
            for part in chunks(new):
                s.execute(insert(CropAttributes), list(part))
    return len(out), bad


def frame(session: Session, crop_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """``crop_id``, the raw attributes and ``source`` (the source's name) of these crops (all
    crops when None); crops without attributes have nulls (band ``unknown``)."""
    q = (select(Crop.id.label("crop_id"), *(getattr(CropAttributes, c) for c in COLUMNS),
                Source.name.label("source"))
         .join(Source, Source.id == Crop.source_id)
         .outerjoin(CropAttributes, CropAttributes.crop_id == Crop.id))
    cols = ["crop_id", *COLUMNS, "source"]
    if crop_ids is None:
        rows = session.execute(q).all()
    else:
        rows = []
        for part in chunks([int(i) for i in crop_ids]):
            rows += session.execute(q.where(Crop.id.in_(part))).all()
    df = pd.DataFrame([tuple(r) for r in rows], columns=cols)
    return df.astype(object).where(df.notna(), None)


def bands_of(session: Session, crop_ids: Sequence[int]) -> dict[str, np.ndarray]:
    """``slices.bands`` of these crops, in the order given."""
    df = frame(session, crop_ids)
    by_id = {int(r["crop_id"]): r for r in df.to_dict("records")}
    return slices.bands([by_id.get(int(i), {}) for i in crop_ids])


def crop_ids_in(ws, attribute: str, band: str, *, limit: int = 60) -> list[int]:
    """Ids of crops in one band of one attribute, newest first (the Browse filter)."""
    if attribute not in slices.ATTRIBUTES:
        return []
    with ws.read_session() as s:
        df = frame(s)
    if df.empty:
        return []
    b = slices.bands(df.to_dict("records"))[attribute]
    ids = df["crop_id"].to_numpy()[b == band]
    return sorted((int(i) for i in ids), reverse=True)[:limit]


def random_share(session: Session, model_version_id: int, classes: Sequence[str]):
    """Like ``reports.random_share_labels`` with the crop ids: ``(ids (n,), labels (n,),
    probs (n, K))`` of random-share labels on crops this version had scored."""
    from annotator.data.db import Label, Prediction, active_label

    q = (select(Label.crop_id, Label.value, Prediction.probs)
         .join(Prediction, (Prediction.crop_id == Label.crop_id)
               & (Prediction.model_version_id == model_version_id))
         .where(active_label(), Label.sampling == "random", Label.value.in_(list(classes)))
         .order_by(Label.crop_id))
    rows = session.execute(q).all()
    index = {c: i for i, c in enumerate(classes)}
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    y = np.array([index[r[1]] for r in rows], dtype=np.int64)
    probs = np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), len(classes))
    return ids, y, probs


def row_scores(session: Session, model_version_id: int, classes: Sequence[str],
               crop_ids: Sequence[int], probs, *, min_n: int = 20) -> np.ndarray:
    """How bad each candidate's worst slice is (``slices.row_scores``): measured on the queue's
    random-share labels where a band has ``min_n`` of them, else the model's mean uncertainty
    on the candidates of that band."""
    q_ids, q_y, q_probs = random_share(session, model_version_id, classes)
    measured = []
    if len(q_ids):
        measured = slices.slice_report(bands_of(session, q_ids), q_y, q_probs,
                                       n_classes=len(classes))
    cand = bands_of(session, crop_ids)
    scores = slices.band_scores(measured, slices.band_uncertainty(cand, probs), min_n=min_n)
    return slices.row_scores(cand, scores)


def overview(ws) -> dict:
    """For the Dashboard: the active model's per-slice report on the queue's random-share
    labels (``rows``, worst first; empty without them) and crop counts per band of every
    attribute (``counts``: {attribute: {band: n}})."""
    from annotator.data import model_versions

    with ws.read_session() as s:
        mv = model_versions.active_model(s)
        df = frame(s)
        rows, n, name = [], 0, None
        if mv is not None:
            name, classes = mv.name, list(mv.classes)
            ids, y, probs = random_share(s, mv.id, classes)
            n = int(len(ids))
            if n:
                rows = slices.slice_report(bands_of(s, ids), y, probs, n_classes=len(classes))
    b = slices.bands(df.to_dict("records"))
    counts = {a: {str(k): int(v) for k, v in zip(*np.unique(v.astype(str), return_counts=True))}
              if len(v) else {} for a, v in b.items()}
    return {"model": name, "n": n, "rows": rows, "counts": counts}
