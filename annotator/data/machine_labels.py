"""Labels a machine gives (auto-labels from the audited model, labels propagated along a track)
and their withdrawal when a person or a newer model disagrees.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.orm import Session

from annotator.data.crop_queue import _lock_crops, _refresh_status, crop_status
from annotator.data.db import Crop, CropStatus, Label, LabelKind, Lease, active_label, chunks, utcnow


@dataclass(frozen=True)
class MachineLabel:
    crop_id: int
    value: str
    probability: float
    audit: bool = False  # served to people as an ordinary crop; their label measures the error


def add_machine_labels(session: Session, annotator_id: int, labels: Sequence[MachineLabel], *,
                       kind: str, model_version_id: int | None) -> int:
    """Record ``auto``/``propagated`` labels on unlabeled crops (others are passed over).

    A label's crop leaves the queue, except an audit crop: it keeps one more vote to collect
    (``votes_needed = 2``), so it stays claimable like any other crop until a person labels it
    (``submit_label`` then records the person's label as ``audit``). Returns the labels added.
    """
    if kind not in LabelKind.MACHINE:
        raise ValueError(f"not a machine label kind: {kind}")
    if not labels:
        return 0
    _lock_crops(session, [m.crop_id for m in labels])
    open_ = set()
    for part in chunks([m.crop_id for m in labels]):
        open_.update(session.scalars(select(Crop.id).where(
            Crop.id.in_(part), Crop.status == CropStatus.UNLABELED,
            ~exists().where(Label.crop_id == Crop.id, active_label()))))
    todo = [m for m in labels if m.crop_id in open_]
    if not todo:
        return 0
    now = utcnow()
    session.execute(insert(Label), [
        dict(crop_id=m.crop_id, annotator_id=annotator_id, value=m.value, created_at=now,
             sampling=kind, method=kind, model_version_id=model_version_id,
             probability=float(m.probability)) for m in todo])
    audit = [m.crop_id for m in todo if m.audit]
    for part in chunks(audit):
        session.execute(update(Crop).where(Crop.id.in_(part)).values(votes_needed=2))
    by_status: dict[str, list[int]] = {}
    for m in todo:
        if not m.audit:
            by_status.setdefault(crop_status([m.value], 1), []).append(m.crop_id)
    for status, ids in by_status.items():
        for part in chunks(ids):
            session.execute(update(Crop).where(Crop.id.in_(part)).values(status=status))
    for part in chunks([m.crop_id for m in todo if not m.audit]):
        session.execute(delete(Lease).where(Lease.crop_id.in_(part)))
    return len(todo)


def withdraw_labels(session: Session, label_ids: Sequence[int], *,
                    now: dt.datetime | None = None) -> list[int]:
    """Make machine labels inactive (never deleted: ``undone_at`` is set) and put their crops
    back in the queue. Returns the crop ids."""
    now = now or utcnow()
    crop_ids = []
    for part in chunks(list(label_ids)):
        crop_ids += session.scalars(select(Label.crop_id).where(
            Label.id.in_(part), Label.method.in_(LabelKind.MACHINE), active_label()))
    _lock_crops(session, crop_ids)
    for part in chunks(list(label_ids)):
        session.execute(update(Label).where(
            Label.id.in_(part), Label.method.in_(LabelKind.MACHINE), active_label())
            .values(undone_at=now))
    for part in chunks(crop_ids):
        session.execute(update(Crop).where(Crop.id.in_(part)).values(votes_needed=1))
    for cid in crop_ids:
        _refresh_status(session, session.get(Crop, cid, populate_existing=True))
    return crop_ids


