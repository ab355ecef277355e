"""The labeling queue's writes: add crops, claim batches under expiring leases, label, undo, relabel.

Every function takes a ``Session`` first and never commits; run it inside
``with ws.session() as s:`` (a ``BEGIN IMMEDIATE`` transaction on SQLite, so a claim is atomic
across processes). Reads for pages and reports are in :mod:`annotator.data.reports`.
"""
from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from sqlalchemy import and_, delete, exists, insert, select, update
from sqlalchemy.orm import Session, aliased

from annotator.core.config import NOT_A_FACE, SKIP
from annotator.data.db import (
    AddedBy,
    Crop,
    CropStatus,
    Label,
    LabelKind,
    Lease,
    active_label,
    chunks,
    utcnow,
)
from annotator.data.dialect import is_sqlite
from annotator.core.errors import InputError, QueueError


@dataclass(frozen=True, kw_only=True)
class NewCrop:
    """A crop to add: its stored file plus where it came from and how good it is."""

    origin: str
    sha256: str
    path: str
    width: int
    height: int
    frame_index: int | None = None
    timestamp_s: float | None = None
    box: tuple[float, float, float, float] | None = None
    detector: str | None = None
    det_score: float | None = None
    keypoints: list | None = None
    sharpness: float | None = None
    track_id: int | None = None


@dataclass(frozen=True)
class Claim:
    crop_id: int
    path: str
    sampling: str | None
    expires_at: dt.datetime


# --- adding crops -----------------------------------------------------------------------------


def add_crops(session: Session, source_id: int, crops: Sequence[NewCrop], *, votes_needed: int = 1,
              added_by: str = AddedBy.EXTRACT) -> list[int]:
    """Insert crops not yet known for this source (by ``origin``); return the new crop ids.

    Idempotent: re-adding the same origins adds nothing, so an interrupted job can simply redo
    its last chunk.
    """
    if not crops:
        return []
    known = set()
    for part in chunks([c.origin for c in crops]):
        known.update(session.scalars(
            select(Crop.origin).where(Crop.source_id == source_id, Crop.origin.in_(part))))
    rows, seen = [], set()
    now = utcnow()
    for c in crops:
        if c.origin in known or c.origin in seen:
            continue
        seen.add(c.origin)
        x1, y1, x2, y2 = c.box if c.box is not None else (None,) * 4
        rows.append(dict(
            source_id=source_id, origin=c.origin, frame_index=c.frame_index,
            timestamp_s=c.timestamp_s, x1=x1, y1=y1, x2=x2, y2=y2, detector=c.detector,
            det_score=c.det_score, keypoints=c.keypoints, sharpness=c.sharpness,
            width=c.width, height=c.height, track_id=c.track_id, sha256=c.sha256,
            path=c.path, status=CropStatus.UNLABELED, priority=0.0, votes_needed=votes_needed,
            added_by=added_by, created_at=now,
        ))
    if not rows:
        return []
    session.execute(insert(Crop), rows)
    ids = []
    for part in chunks(list(seen)):
        ids += session.scalars(
            select(Crop.id).where(Crop.source_id == source_id, Crop.origin.in_(part)))
    return sorted(ids)


def remove_unlabeled_crops(session: Session, source_id: int) -> list[tuple[str, str]]:
    """Delete the source's crops that no label row points to (re-extraction with new settings).

    A crop with any label, even an undone or superseded one, stays, so every label is kept
    (labels would go with their crop). Leases and predictions of the removed crops go with them
    (foreign keys, ``ON DELETE CASCADE``). Their files stay in the store: returns the removed
    crops' ``(sha256, path)`` so the caller can delete the files no other crop row uses.
    """
    stmt = (delete(Crop)
            .where(Crop.source_id == source_id, ~exists().where(Label.crop_id == Crop.id))
            .returning(Crop.sha256, Crop.path)
            .execution_options(synchronize_session=False))
    return [(sha, path) for sha, path in session.execute(stmt).all()]


# --- claiming ---------------------------------------------------------------------------------

CLAIM_ROUNDS = 10  # PostgreSQL: top-ups after rows lost to a concurrent claim (each loses a few)


def claimable(annotator_id: int, *, by_id: bool = False):
    """Crops waiting for a vote, not held by anyone, and not already labeled by this annotator.

    ``by_id=True`` is for lookups of given ids: the status test is then kept off the status
    index (``status || ''``), or SQLite scans every unlabeled crop instead of the given ids.
    """
    mine = _MINE
    return and_(
        ((Crop.status + "") if by_id else Crop.status) == CropStatus.UNLABELED,
        ~exists().where(Lease.crop_id == Crop.id),
        ~exists().where(mine.crop_id == Crop.id, mine.annotator_id == annotator_id,
                        active_label(mine)),
    )


# One alias for every claim: a fresh aliased() per call re-adapted its columns each time, ~1 ms
# of a claim's CPU (measured with cProfile on PostgreSQL, where a claim builds this twice).
_MINE = aliased(Label, name="mine")


def claim_batch(
    session: Session,
    annotator_id: int,
    size: int,
    *,
    lease_seconds: float = 600,
    candidates: Sequence[tuple[int, str | None]] | None = None,
    now: dt.datetime | None = None,
) -> list[Claim]:
    """Hold up to ``size`` crops for one annotator; crops it already holds come first.

    ``candidates`` is an ordered list of ``(crop_id, sampling)`` from a sampler; crops in it
    that are no longer claimable are passed over. Without it, the queue order is
    ``priority`` (model uncertainty) then id. Leases past ``expires_at`` are freed first, so an
    annotator who walked away (or whose process died) gives the crops back automatically.
    """
    if size < 1:
        raise InputError("batch size must be at least 1")
    now = now or utcnow()
    # Two claims freeing the same expired leases would wait on each other (or deadlock) on
    # PostgreSQL; each frees the ones nobody else is freeing.
    expired = _skip_locked(session, select(Lease.crop_id).where(Lease.expires_at < now), Lease)
    session.execute(delete(Lease).where(Lease.crop_id.in_(expired)))
    expires = now + dt.timedelta(seconds=lease_seconds)
    held = session.execute(
        select(Lease.crop_id, Crop.path, Lease.sampling)
        .join(Crop, Crop.id == Lease.crop_id)
        .where(Lease.annotator_id == annotator_id)
        .order_by(Lease.position, Lease.crop_id)
    ).all()
    if held:  # renew: the annotator is still working on them
        session.execute(
            update(Lease).where(Lease.annotator_id == annotator_id).values(expires_at=expires)
        )
    want = size - len(held)
    picked: list[tuple[int, str, str | None]] = []
    if want > 0:
        picked = _claimable_ids(session, annotator_id, want, candidates)
    if picked:
        start = len(held)
        session.execute(insert(Lease), [
            dict(crop_id=cid, annotator_id=annotator_id, claimed_at=now, expires_at=expires,
                 sampling=sampling, position=start + i)
            for i, (cid, _, sampling) in enumerate(picked)
        ])
    return [Claim(cid, path, sampling, expires) for cid, path, sampling in held] + [
        Claim(cid, path, sampling, expires) for cid, path, sampling in picked
    ]


def _claimable_ids(session, annotator_id, want, candidates):
    """Up to ``want`` claimable crops, in queue order (or the sampler's order of ``candidates``).

    The one place where claiming differs per dialect (here, not in ``db``, because the rule is
    about the queue: which rows a claim must own before it writes a lease).

    * SQLite: the transaction began with ``BEGIN IMMEDIATE`` and holds the only write lock, so
      what it reads stays true until it commits.
    * PostgreSQL (READ COMMITTED, many writers at once): the crop rows are taken with
      ``FOR UPDATE SKIP LOCKED``, so concurrent claimers pass over each other's rows instead of
      waiting, and never collide on the lease key. The lock alone is not enough: the statement's
      snapshot may predate a claim that committed just before our lock was granted (that claim
      wrote a lease, not the crop row). So the locked rows are re-read by a second statement,
      whose fresh snapshot sees every such lease; a lease is only ever written under its crop's
      lock. The few rows lost that way are topped up from the next ones.
    """
    sqlite = is_sqlite(session)
    flt = claimable(annotator_id, by_id=candidates is not None)

    def take(q) -> tuple[int, dict[int, str]]:  # (rows locked, {id: path} of those now ours)
        locked = dict(session.execute(_skip_locked(session, q, Crop)).all())
        if sqlite or not locked:
            return len(locked), locked
        ok = set(session.scalars(select(Crop.id).where(
            claimable(annotator_id, by_id=True), Crop.id.in_(list(locked)))))
        return len(locked), {c: p for c, p in locked.items() if c in ok}

    picked: list[tuple[int, str, str | None]] = []  # (crop id, path, sampling)
    if candidates is None:
        base = select(Crop.id, Crop.path).where(flt).order_by(Crop.priority.desc(), Crop.id)
        for _ in range(CLAIM_ROUNDS):
            n = want - len(picked)
            q = base.where(Crop.id.not_in([c for c, _, _ in picked])) if picked else base
            n_locked, got = take(q.limit(n))  # a dict keeps the query's order
            picked += [(cid, path, None) for cid, path in got.items()]
            if len(picked) >= want or n_locked < n:  # enough, or nothing more to take
                break
        return picked
    for part in chunks(list(candidates)):
        _, ok = take(select(Crop.id, Crop.path).where(flt, Crop.id.in_([c for c, _ in part])))
        picked += [(c, ok[c], s) for c, s in part if c in ok]
        if len(picked) >= want:
            break
    return picked[:want]


def _skip_locked(session, q, of):
    """PostgreSQL: ``FOR UPDATE SKIP LOCKED`` (rows another claim is taking are passed over, not
    waited for, so claims never queue up or deadlock). SQLite: unchanged (BEGIN IMMEDIATE)."""
    return q if is_sqlite(session) else q.with_for_update(of=of, skip_locked=True)


def release(session: Session, annotator_id: int, crop_ids: Iterable[int] | None = None) -> int:
    """Give held crops back to the queue (sign-out, or a batch the annotator does not want)."""
    stmt = delete(Lease).where(Lease.annotator_id == annotator_id)
    if crop_ids is not None:
        stmt = stmt.where(Lease.crop_id.in_(list(crop_ids)))
    return session.execute(stmt).rowcount or 0


def held_by(session: Session, crop_id: int, *, now: dt.datetime | None = None) -> int | None:
    """Annotator id holding a live lease on the crop, if any."""
    now = now or utcnow()
    return session.scalar(
        select(Lease.annotator_id).where(Lease.crop_id == crop_id, Lease.expires_at >= now)
    )


def require_votes(session: Session, crop_ids: Sequence[int], votes: int) -> int:
    """Ask for ``votes`` labels on crops that have none yet (double annotation); returns count."""
    n = 0
    for part in chunks(list(crop_ids)):
        n += session.execute(
            update(Crop)
            .where(Crop.id.in_(part), Crop.status == CropStatus.UNLABELED,
                   ~exists().where(Label.crop_id == Crop.id, active_label()))
            .values(votes_needed=votes)
        ).rowcount or 0
    return n


# --- labeling ---------------------------------------------------------------------------------


def submit_label(
    session: Session,
    annotator_id: int,
    crop_id: int,
    value: str,
    *,
    allowed: Sequence[str],
    seconds: float | None = None,
    method: str = "key",
    decision_id: str | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Record one decision (a class, ``not_a_face`` or ``skip``) and release the lease.

    Refused when another annotator holds the crop, when this annotator already labeled it (use
    ``relabel``), or when it no longer needs a vote: so no crop is labeled twice by accident, even
    if a lease expired while the annotator was away.
    """
    crop = _labelable_crop(session, crop_id, value, allowed)
    now = now or utcnow()
    lease = session.get(Lease, crop_id)
    live = lease is not None and lease.expires_at >= now
    if live and lease.annotator_id != annotator_id:
        raise QueueError(f"crop {crop_id} is held by another annotator")
    if _active_label_of(session, crop_id, annotator_id) is not None:
        raise QueueError(f"crop {crop_id} is already labeled by you; relabel it instead")
    if crop.status != CropStatus.UNLABELED:
        raise QueueError(f"crop {crop_id} is already labeled")
    mine = lease is not None and lease.annotator_id == annotator_id
    machine = _pending_machine_labels(session, crop_id)
    label = Label(crop_id=crop_id, annotator_id=annotator_id, value=value, created_at=now,
                  seconds=seconds, sampling=lease.sampling if mine else None,
                  method=LabelKind.AUDIT if machine else method, decision_id=decision_id)
    session.add(label)
    if lease is not None:
        session.delete(lease)
    session.flush()
    if machine:  # an audit crop: the person's label replaces the machine's, which stays on record
        session.execute(update(Label).where(Label.id.in_(machine))
                        .values(superseded_by_id=label.id))
        crop.votes_needed = 1
        session.flush()
    _refresh_status(session, crop)
    return label.id


def submit_decision(
    session: Session,
    annotator_id: int,
    crop_ids: Sequence[int],
    value: str,
    *,
    allowed: Sequence[str],
    seconds: float | None = None,
    method: str = "track",
    now: dt.datetime | None = None,
) -> tuple[str, list[int]]:
    """One gesture that labels several crops (a whole track): one label row per crop, sharing a
    ``decision_id`` so one undo reverts them all. Crops someone else holds, or that no longer
    need this annotator's vote, are passed over. Returns ``(decision_id, labeled crop ids)``."""
    decision = uuid.uuid4().hex
    _lock_crops(session, [int(c) for c in crop_ids])
    done = []
    each = None if seconds is None else seconds / max(len(crop_ids), 1)
    for cid in crop_ids:
        try:
            with session.begin_nested():
                submit_label(session, annotator_id, int(cid), value, allowed=allowed,
                             seconds=each, method=method, decision_id=decision, now=now)
        except QueueError:
            continue
        done.append(int(cid))
    return decision, done


def undo_last(
    session: Session, annotator_id: int, *, lease_seconds: float = 600, now: dt.datetime | None = None
) -> list[int]:
    """Withdraw the annotator's most recent decision (all labels of it, for a track decision);
    the crops come back to them first. Returns the crop ids (empty: nothing to undo)."""
    now = now or utcnow()
    label = session.scalar(
        select(Label)
        .where(Label.annotator_id == annotator_id, active_label())
        .order_by(Label.created_at.desc(), Label.id.desc())
        .limit(1)
    )
    if label is None:
        return []
    labels = [label]
    if label.decision_id is not None:  # a track decision or a grid page: one undo takes it back
        labels = list(session.scalars(
            select(Label).where(Label.decision_id == label.decision_id,
                                Label.annotator_id == annotator_id, active_label())
            .order_by(Label.id)))
    _lock_crops(session, [lab.crop_id for lab in labels])  # before the labels change
    # Double annotation: the crop may be back in the queue and held by someone else now;
    # their hold is theirs (an undo never takes it away), so nothing is undone.
    taken = session.scalar(select(Lease).where(
        Lease.crop_id.in_([lab.crop_id for lab in labels]), Lease.annotator_id != annotator_id,
        Lease.expires_at > now).limit(1))
    if taken is not None:
        raise QueueError(f"crop #{taken.crop_id} is being labeled by another annotator now: "
                         "nothing was undone")
    crop_ids = []
    for i, lab in enumerate(labels):
        lab.undone_at = now
        crop = session.get(Crop, lab.crop_id, populate_existing=True)
        session.flush()
        _refresh_status(session, crop)
        # Hold it again for the same annotator, in front of the batch they have.
        session.execute(delete(Lease).where(Lease.crop_id == crop.id))
        session.add(Lease(crop_id=crop.id, annotator_id=annotator_id, claimed_at=now,
                          expires_at=now + dt.timedelta(seconds=lease_seconds),
                          sampling=lab.sampling, position=-len(labels) + i))
        crop_ids.append(crop.id)
    return crop_ids


def relabel(
    session: Session,
    annotator_id: int,
    crop_id: int,
    value: str,
    *,
    allowed: Sequence[str],
    seconds: float | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Deliberately replace the crop's current label(s) with this decision (review, correction).

    The old labels stay in the history, each pointing at the new one through ``superseded_by``.
    """
    crop = _labelable_crop(session, crop_id, value, allowed)
    now = now or utcnow()
    label = Label(crop_id=crop_id, annotator_id=annotator_id, value=value, created_at=now,
                  seconds=seconds, sampling="review", method="review")
    session.add(label)
    session.flush()
    session.execute(
        update(Label)
        .where(Label.crop_id == crop_id, Label.id != label.id, active_label())
        .values(superseded_by_id=label.id)
    )
    crop.votes_needed = 1  # a deliberate decision settles the crop
    session.execute(delete(Lease).where(Lease.crop_id == crop_id))
    session.flush()
    _refresh_status(session, crop)
    return label.id


def import_labels(session: Session, annotator_id: int, values: dict[int, str], *,
                  sampling: str = "import") -> int:
    """Bulk-record labels that arrived with imported crops (one per crop, no lease needed)."""
    if not values:
        return 0
    now = utcnow()
    session.execute(insert(Label), [
        dict(crop_id=cid, annotator_id=annotator_id, value=v, created_at=now, sampling=sampling,
             method="import")
        for cid, v in values.items()
    ])
    by_status: dict[str, list[int]] = {}
    for cid, v in values.items():
        by_status.setdefault(crop_status([v], 1), []).append(cid)
    for status, ids in by_status.items():
        for part in chunks(ids):
            session.execute(update(Crop).where(Crop.id.in_(part)).values(status=status))
    return len(values)


# --- row helpers (machine labels: annotator.data.machine_labels) ------------------------------


def _labelable_crop(session, crop_id: int, value: str, allowed: Sequence[str]) -> Crop:
    if value not in allowed:
        raise InputError(f"unknown label {value!r}; expected one of {', '.join(allowed)}")
    crop = session.get(Crop, crop_id, with_for_update=True, populate_existing=True)
    if crop is None:
        raise QueueError(f"crop {crop_id} does not exist")
    return crop


def _lock_crops(session, crop_ids) -> None:
    """Writes that touch a crop's labels take its row first (``FOR UPDATE``; SQLAlchemy leaves it
    out on SQLite, where BEGIN IMMEDIATE already serializes writers). On PostgreSQL two labels
    on one crop would otherwise both pass their checks at READ COMMITTED and both be stored;
    claims write leases under the same lock. In id order, so two gestures over several crops (a
    track decision, its undo) cannot deadlock."""
    for part in chunks(sorted(set(crop_ids))):
        session.execute(select(Crop.id).where(Crop.id.in_(part)).order_by(Crop.id).with_for_update())


def _active_label_of(session, crop_id, annotator_id):
    return session.scalar(select(Label.id).where(
        Label.crop_id == crop_id, Label.annotator_id == annotator_id, active_label()))


def _refresh_status(session: Session, crop: Crop) -> None:
    values = session.scalars(
        select(Label.value).where(Label.crop_id == crop.id, active_label())).all()
    crop.status = crop_status(values, crop.votes_needed)


def _pending_machine_labels(session, crop_id: int) -> list[int]:
    """Active machine labels of a crop still in the queue (an audit crop)."""
    return list(session.scalars(select(Label.id).where(
        Label.crop_id == crop_id, Label.method.in_(LabelKind.MACHINE), active_label())))


# --- pure rules -------------------------------------------------------------------------------


def crop_status(values: Sequence[str], votes_needed: int) -> str:
    """Queue status from the crop's active label values."""
    decisive = [v for v in values if v != SKIP]
    if len(decisive) >= votes_needed:
        top = Counter(decisive).most_common(1)[0][0]
        return CropStatus.REJECTED if top == NOT_A_FACE else CropStatus.LABELED
    if values and len(values) >= votes_needed:
        return CropStatus.SKIPPED
    return CropStatus.UNLABELED
