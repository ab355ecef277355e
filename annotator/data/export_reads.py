"""Reads for exports and imports: frames with their boxes, crop files, sources, labels by crop
and crops by content hash.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from annotator.data.frames import frame
from annotator.data.db import Crop, Label, Source, active_label, chunks


def frame_boxes(session: Session, frames: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """Every head box in these ``(source_id, frame_index)`` frames, whatever its crop's status:
    crop_id, source_id, frame_index, timestamp_s, x1, y1, x2, y2, status, source kind/uri/name."""
    cols = [Crop.id.label("crop_id"), Crop.source_id, Crop.frame_index, Crop.timestamp_s, Crop.x1,
            Crop.y1, Crop.x2, Crop.y2, Crop.status, Source.kind.label("source_kind"),
            Source.uri.label("source_uri"), Source.name.label("source_name")]
    by_source: dict[int, list[int]] = {}
    for sid, idx in frames:
        by_source.setdefault(int(sid), []).append(int(idx))
    rows = []
    for sid, idxs in by_source.items():
        for part in chunks(sorted(set(idxs))):
            rows += session.execute(
                select(*cols).join(Source, Source.id == Crop.source_id)
                .where(Crop.source_id == sid, Crop.frame_index.in_(part), Crop.x1.is_not(None))
                .order_by(Crop.id)).all()
    return frame(rows, [c.key for c in cols])


def crop_ids_with_status(session: Session, statuses: Sequence[str]) -> list[int]:
    return list(session.scalars(select(Crop.id).where(Crop.status.in_(list(statuses)))
                                .order_by(Crop.id)))


def crop_files(session: Session, crop_ids: Sequence[int]) -> pd.DataFrame:
    """crop_id, sha256, path of the given crops."""
    rows = []
    for part in chunks(list(crop_ids)):
        rows += session.execute(select(Crop.id, Crop.sha256, Crop.path)
                                .where(Crop.id.in_(part))).all()
    return frame(rows, ["crop_id", "sha256", "path"])


def source_summary(session: Session) -> pd.DataFrame:
    """id, kind, name, fps, frame_count, width, height, status, created_at, settings (the
    extraction settings of its last run) of every source: for the export's datasheet."""
    rows = session.execute(select(Source.id, Source.kind, Source.name, Source.fps,
                                  Source.frame_count, Source.width, Source.height, Source.status,
                                  Source.created_at, Source.stats).order_by(Source.id)).all()
    return frame([(*r[:-1], (r[-1] or {}).get("settings")) for r in rows],
                  ["id", "kind", "name", "fps", "frame_count", "width", "height", "status",
                   "created_at", "settings"])


def active_value(session: Session, annotator_id: int, crop_id: int) -> str | None:
    """This annotator's active label on this crop, if any."""
    return session.scalar(select(Label.value).where(
        Label.crop_id == crop_id, Label.annotator_id == annotator_id, active_label()).limit(1))


def crops_by_sha256(session: Session, hashes: Sequence[str]) -> dict[str, list[int]]:
    """sha256 -> ids of the crops with those bytes."""
    out: dict[str, list[int]] = {}
    for part in chunks(sorted(set(hashes))):
        for cid, h in session.execute(select(Crop.id, Crop.sha256).where(Crop.sha256.in_(part))):
            out.setdefault(h, []).append(int(cid))
    return out
