"""Model versions, the active one, and their predictions.

The active model and the queue's priorities change together (``activate_model``), in the
caller's single transaction: a crash leaves either the old model with its priorities or the
new one with its own.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from annotator.data.db import (
    Crop,
    CropStatus,
    Label,
    LabelKind,
    ModelVersion,
    Prediction,
    active_label,
    utcnow,
)


@dataclass(frozen=True)
class Version:
    """A model version's row, detached from the session (what jobs and pages pass around)."""

    id: int
    name: str
    path: str
    classes: tuple[str, ...]
    active: bool
    dataset_id: int | None
    metrics: dict

    @classmethod
    def of(cls, mv: ModelVersion) -> "Version":
        return cls(mv.id, mv.name, mv.path, tuple(mv.classes or ()), bool(mv.active),
                   mv.dataset_id, dict(mv.metrics or {}))


def get_model_version(session: Session, name: str) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.name == name))


def list_model_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))


def active_model(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.active.is_(True)))


def previous_model(session: Session) -> ModelVersion | None:
    """The version promoted last before the active one (the target of a rollback)."""
    cur = active_model(session)
    q = select(ModelVersion).where(ModelVersion.promoted_at.is_not(None))
    if cur is not None:
        q = q.where(ModelVersion.id != cur.id)
        if cur.promoted_at is not None:
            q = q.where(ModelVersion.promoted_at < cur.promoted_at)
    return session.scalar(q.order_by(ModelVersion.promoted_at.desc(), ModelVersion.id.desc()).limit(1))


def activate_model(session: Session, version_id: int, *, stamp: bool = True) -> int:
    """Make one version the active one and point the queue at its uncertainties, in the caller's
    (single) transaction: a crash leaves either the old model with its priorities or the new
    one with its own. Returns the number of unlabeled crops whose priority was set.

    ``stamp`` records the promotion time (rollback re-activates without stamping, so that a
    second rollback goes one step further back).
    """
    session.execute(update(ModelVersion).values(active=ModelVersion.id == version_id))
    if stamp:
        session.execute(
            update(ModelVersion).where(ModelVersion.id == version_id).values(promoted_at=utcnow())
        )
    return sync_priorities(session, version_id)


def sync_priorities(session: Session, version_id: int) -> int:
    """``Crop.priority`` of every unlabeled crop = this version's uncertainty (0 if unscored).

    One statement (portable SQL), so it is atomic with whatever else the transaction does.
    """
    uncertainty = (
        select(Prediction.uncertainty)
        .where(Prediction.crop_id == Crop.id, Prediction.model_version_id == version_id)
        .scalar_subquery()
    )
    res = session.execute(
        update(Crop).where(Crop.status == CropStatus.UNLABELED)
        .values(priority=func.coalesce(uncertainty, 0.0))
        .execution_options(synchronize_session=False)
    )
    return res.rowcount or 0


# --- predictions ------------------------------------------------------------------------------


def unscored_crops(
    session: Session, model_version_id: int, *, after_id: int = 0, limit: int = 2048,
    labeled: bool = False,
) -> list[tuple[int, str, str]]:
    """Crops (id > ``after_id``) with no prediction from this version: ``(id, sha256, path)``,
    by id. Unlabeled ones, and those whose label is a machine's (a new version scores them too,
    so that it can back or withdraw those labels); ``labeled``: every labeled crop too, so Review
    can check each label against the model."""
    from sqlalchemy import exists, or_

    machine = exists().where(Label.crop_id == Crop.id, Label.method.in_(LabelKind.MACHINE),
                             active_label())
    statuses = [CropStatus.UNLABELED, CropStatus.LABELED] if labeled else [CropStatus.UNLABELED]
    q = (
        select(Crop.id, Crop.sha256, Crop.path)
        .where(
            or_(Crop.status.in_(statuses), machine),
            Crop.id > after_id,
            ~exists().where(Prediction.crop_id == Crop.id,
                            Prediction.model_version_id == model_version_id),
        )
        .order_by(Crop.id)
        .limit(limit)
    )
    return [(int(i), h, p) for i, h, p in session.execute(q).all()]


def add_predictions(session: Session, rows: list[dict], *, set_priority: bool) -> int:
    """Insert prediction rows (crop_id, model_version_id, probs, uncertainty, embedding).

    ``set_priority``: also copy each uncertainty into ``Crop.priority``; done only when the
    version is still the active one inside this transaction (a promotion may have happened
    while the chunk was on the model). Returns the number of priorities set.
    """
    if not rows:
        return 0
    session.execute(insert(Prediction), rows)
    version = rows[0]["model_version_id"]
    if not (set_priority and session.scalar(
            select(ModelVersion.active).where(ModelVersion.id == version))):
        return 0
    session.execute(
        update(Crop).execution_options(synchronize_session=False),
        [{"id": r["crop_id"], "priority": float(r["uncertainty"])} for r in rows],
    )
    return len(rows)

