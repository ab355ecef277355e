"""The labeling queue: add crops, claim batches under expiring leases, label, undo, relabel.

Shared by the CLI, the jobs and the Streamlit pages. Every function takes a ``Session`` first and
never commits; run it inside ``with ws.session() as s:`` (a ``BEGIN IMMEDIATE`` transaction on
SQLite, so a claim is atomic across processes). On PostgreSQL the lease primary key still makes a
double claim impossible: the losing transaction fails on insert and can simply be retried.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd
from sqlalchemy import and_, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from annotator.config import NOT_A_FACE as NOT_A_FACE_LABEL
from annotator.config import SKIP
from annotator.db import (
    LABELED,
    NOT_A_FACE,
    SKIPPED,
    UNLABELED,
    Annotator,
    Crop,
    Dataset,
    Label,
    Lease,
    ModelVersion,
    Source,
    count,
    utcnow,
)
from annotator.errors import InputError, QueueError


@dataclass
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


def add_crops(session: Session, source_id: int, crops: Sequence[NewCrop], *, votes_needed: int = 1) -> list[int]:
    """Insert crops not yet known for this source (by ``origin``); return the new crop ids.

    Idempotent: re-adding the same origins adds nothing, so an interrupted job can simply redo
    its last chunk.
    """
    if not crops:
        return []
    origins = [c.origin for c in crops]
    known = set()
    for chunk in _chunks(origins, 500):
        known.update(
            session.scalars(
                select(Crop.origin).where(Crop.source_id == source_id, Crop.origin.in_(chunk))
            )
        )
    rows, seen = [], set()
    now = utcnow()
    for c in crops:
        if c.origin in known or c.origin in seen:
            continue
        seen.add(c.origin)
        x1, y1, x2, y2 = c.box if c.box is not None else (None,) * 4
        rows.append(
            dict(
                source_id=source_id, origin=c.origin, frame_index=c.frame_index,
                timestamp_s=c.timestamp_s, x1=x1, y1=y1, x2=x2, y2=y2, detector=c.detector,
                det_score=c.det_score, keypoints=c.keypoints, sharpness=c.sharpness,
                width=c.width, height=c.height, track_id=c.track_id, sha256=c.sha256,
                path=c.path, status=UNLABELED, priority=0.0, votes_needed=votes_needed,
                created_at=now,
            )
        )
    if not rows:
        return []
    session.execute(insert(Crop), rows)
    return list(
        session.scalars(
            select(Crop.id).where(Crop.source_id == source_id, Crop.origin.in_(list(seen)))
        )
    )


# --- claiming ---------------------------------------------------------------------------------


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
    session.execute(delete(Lease).where(Lease.expires_at < now))
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
    picked: list[tuple[int, str | None]] = []
    if want > 0:
        picked = _claimable(session, annotator_id, want, candidates)
    if picked:
        start = len(held)
        session.execute(
            insert(Lease),
            [
                dict(crop_id=cid, annotator_id=annotator_id, claimed_at=now, expires_at=expires,
                     sampling=sampling, position=start + i)
                for i, (cid, sampling) in enumerate(picked)
            ],
        )
    paths = dict(
        session.execute(select(Crop.id, Crop.path).where(Crop.id.in_([c for c, _ in picked]))).all()
    ) if picked else {}
    return [Claim(cid, path, sampling, expires) for cid, path, sampling in held] + [
        Claim(cid, paths[cid], sampling, expires) for cid, sampling in picked
    ]


def _claimable_filter(annotator_id: int, *, by_id: bool = False):
    """Crops waiting for a vote, not held by anyone, and not already labeled by this annotator.

    ``by_id=True`` is for lookups of given ids: the status test is then kept off the status
    index (``status || ''``), or SQLite scans every unlabeled crop instead of the given ids.
    """
    mine = aliased(Label)
    return and_(
        ((Crop.status + "") if by_id else Crop.status) == UNLABELED,
        ~exists().where(Lease.crop_id == Crop.id),
        ~exists().where(
            mine.crop_id == Crop.id,
            mine.annotator_id == annotator_id,
            mine.superseded_by_id.is_(None),
            mine.undone_at.is_(None),
        ),
    )


def _claimable(session, annotator_id, want, candidates):
    flt = _claimable_filter(annotator_id, by_id=candidates is not None)
    if candidates is None:
        ids = session.scalars(
            select(Crop.id).where(flt).order_by(Crop.priority.desc(), Crop.id).limit(want)
        ).all()
        return [(cid, None) for cid in ids]
    picked = []
    for chunk in _chunks(list(candidates), 500):
        ok = set(session.scalars(select(Crop.id).where(flt, Crop.id.in_([c for c, _ in chunk]))))
        picked += [(c, s) for c, s in chunk if c in ok]
        if len(picked) >= want:
            break
    return picked[:want]


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


# --- labeling ---------------------------------------------------------------------------------


def submit_label(
    session: Session,
    annotator_id: int,
    crop_id: int,
    value: str,
    *,
    allowed: Sequence[str],
    seconds: float | None = None,
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
    if _active_label(session, crop_id, annotator_id) is not None:
        raise QueueError(f"crop {crop_id} is already labeled by you; relabel it instead")
    if crop.status != UNLABELED:
        raise QueueError(f"crop {crop_id} is already labeled")
    sampling = lease.sampling if lease is not None and lease.annotator_id == annotator_id else None
    label = Label(crop_id=crop_id, annotator_id=annotator_id, value=value, created_at=now,
                  seconds=seconds, sampling=sampling)
    session.add(label)
    if lease is not None:
        session.delete(lease)
    session.flush()
    _refresh_status(session, crop)
    return label.id


def skip(session: Session, annotator_id: int, crop_id: int, **kw) -> int:
    return submit_label(session, annotator_id, crop_id, SKIP, **kw)


def mark_not_a_face(session: Session, annotator_id: int, crop_id: int, **kw) -> int:
    return submit_label(session, annotator_id, crop_id, NOT_A_FACE_LABEL, **kw)


def undo_last(
    session: Session, annotator_id: int, *, lease_seconds: float = 600, now: dt.datetime | None = None
) -> int | None:
    """Withdraw the annotator's most recent active label; the crop comes back to them first.

    Returns the crop id, or None when there is nothing to undo.
    """
    now = now or utcnow()
    label = session.scalar(
        select(Label)
        .where(Label.annotator_id == annotator_id, Label.superseded_by_id.is_(None),
               Label.undone_at.is_(None))
        .order_by(Label.created_at.desc(), Label.id.desc())
        .limit(1)
    )
    if label is None:
        return None
    label.undone_at = now
    crop = session.get(Crop, label.crop_id)
    session.flush()
    _refresh_status(session, crop)
    # Hold it again for the same annotator, in front of the batch they have.
    session.execute(delete(Lease).where(Lease.crop_id == crop.id))
    session.add(Lease(crop_id=crop.id, annotator_id=annotator_id, claimed_at=now,
                      expires_at=now + dt.timedelta(seconds=lease_seconds),
                      sampling=label.sampling, position=-1))
    return crop.id


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
                  seconds=seconds, sampling="review")
    session.add(label)
    session.flush()
    session.execute(
        update(Label)
        .where(Label.crop_id == crop_id, Label.id != label.id, Label.superseded_by_id.is_(None),
               Label.undone_at.is_(None))
        .values(superseded_by_id=label.id)
    )
    crop.votes_needed = 1  # a deliberate decision settles the crop
    session.execute(delete(Lease).where(Lease.crop_id == crop_id))
    session.flush()
    _refresh_status(session, crop)
    return label.id


def _labelable_crop(session, crop_id: int, value: str, allowed: Sequence[str]) -> Crop:
    if value not in allowed:
        raise InputError(f"unknown label {value!r}; expected one of {', '.join(allowed)}")
    crop = session.get(Crop, crop_id)
    if crop is None:
        raise QueueError(f"crop {crop_id} does not exist")
    return crop


def _active_label(session, crop_id, annotator_id):
    return session.scalar(
        select(Label.id).where(
            Label.crop_id == crop_id, Label.annotator_id == annotator_id,
            Label.superseded_by_id.is_(None), Label.undone_at.is_(None),
        )
    )


def _refresh_status(session: Session, crop: Crop) -> None:
    values = session.scalars(
        select(Label.value).where(
            Label.crop_id == crop.id, Label.superseded_by_id.is_(None), Label.undone_at.is_(None)
        )
    ).all()
    crop.status = crop_status(values, crop.votes_needed)


def crop_status(values: Sequence[str], votes_needed: int) -> str:
    """Queue status from the crop's active label values (pure)."""
    decisive = [v for v in values if v != SKIP]
    if len(decisive) >= votes_needed:
        top = Counter(decisive).most_common(1)[0][0]
        return NOT_A_FACE if top == NOT_A_FACE_LABEL else LABELED
    if values and len(values) >= votes_needed:
        return SKIPPED
    return UNLABELED


def majority(values: Sequence[str]) -> str | None:
    """The most common value, or None on a tie (pure)."""
    if not values:
        return None
    ranked = Counter(values).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


# --- reading ----------------------------------------------------------------------------------


def active_labels(session: Session) -> pd.DataFrame:
    """Every active (not undone, not superseded) label with its crop's grouping fields."""
    q = (
        select(
            Label.crop_id, Label.value, Label.created_at, Label.seconds, Label.sampling,
            Annotator.name.label("annotator"), Crop.source_id, Crop.track_id, Crop.sha256,
            Crop.path, Source.key.label("source_key"),
        )
        .join(Crop, Crop.id == Label.crop_id)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .join(Source, Source.id == Crop.source_id)
        .where(Label.superseded_by_id.is_(None), Label.undone_at.is_(None))
        .order_by(Label.crop_id, Label.id)
    )
    return pd.DataFrame(session.execute(q).all(), columns=list(q.selected_columns.keys()))


def current_labels(session: Session, classes: Sequence[str]) -> pd.DataFrame:
    """One row per crop whose active labels agree on a class (majority; ties and non-classes out).

    Columns: crop_id, source_id, source_key, track_id, sha256, path, label, votes, annotators.
    """
    labels = active_labels(session)
    cols = ["crop_id", "source_id", "source_key", "track_id", "sha256", "path", "label", "votes",
            "annotators"]
    if labels.empty:
        return pd.DataFrame(columns=cols)
    decisive = labels[labels["value"] != SKIP]
    rows = []
    for crop_id, g in decisive.groupby("crop_id", sort=True):
        label = majority(list(g["value"]))
        if label is None or label not in classes:
            continue
        first = g.iloc[0]
        rows.append((crop_id, first.source_id, first.source_key, first.track_id, first.sha256,
                     first.path, label, len(g), ",".join(sorted(set(g["annotator"])))))
    return pd.DataFrame(rows, columns=cols)


def stats(session: Session, classes: Sequence[str]) -> dict:
    """Counts for ``annotator stats --json`` and the dashboard."""
    by_status = dict(session.execute(select(Crop.status, func.count()).group_by(Crop.status)).all())
    by_label = dict(
        session.execute(
            select(Label.value, func.count())
            .where(Label.superseded_by_id.is_(None), Label.undone_at.is_(None))
            .group_by(Label.value)
        ).all()
    )
    return {
        "sources": count(session, Source),
        "crops": {
            "total": sum(by_status.values()),
            "labeled": by_status.get(LABELED, 0),
            "unlabeled": by_status.get(UNLABELED, 0),
            "skipped": by_status.get(SKIPPED, 0),
            "not_a_face": by_status.get(NOT_A_FACE, 0),
        },
        "labels": {**{c: by_label.get(c, 0) for c in classes},
                   **{k: v for k, v in by_label.items() if k not in classes}},
        "annotators": count(session, Annotator, Annotator.role != "system"),
        "leases": count(session, Lease, Lease.expires_at >= utcnow()),
        "models": count(session, ModelVersion),
        "datasets": count(session, Dataset),
    }


def _chunks(seq, n):
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def import_labels(session: Session, annotator_id: int, values: dict[int, str], *, sampling: str = "import") -> int:
    """Bulk-record labels that arrived with imported crops (one per crop, no lease needed)."""
    if not values:
        return 0
    now = utcnow()
    session.execute(
        insert(Label),
        [dict(crop_id=cid, annotator_id=annotator_id, value=v, created_at=now, sampling=sampling)
         for cid, v in values.items()],
    )
    for status in {crop_status([v], 1) for v in values.values()}:
        ids = [cid for cid, v in values.items() if crop_status([v], 1) == status]
        for chunk in _chunks(ids, 500):
            session.execute(update(Crop).where(Crop.id.in_(chunk)).values(status=status))
    return len(values)


def crop_origins(session: Session, crop_ids: Sequence[int]) -> dict[int, str]:
    out = {}
    for chunk in _chunks(list(crop_ids), 500):
        out.update(session.execute(select(Crop.id, Crop.origin).where(Crop.id.in_(chunk))).all())
    return out


def crop_details(session: Session, crop_ids: Sequence[int]) -> pd.DataFrame:
    """Provenance and quality fields of the given crops, for export and display."""
    cols = [Crop.id.label("crop_id"), Source.name.label("source"), Crop.origin, Crop.frame_index,
            Crop.timestamp_s, Crop.x1, Crop.y1, Crop.x2, Crop.y2, Crop.detector, Crop.det_score,
            Crop.sharpness, Crop.width, Crop.height]
    rows = []
    for chunk in _chunks(list(crop_ids), 500):
        rows += session.execute(
            select(*cols).join(Source, Source.id == Crop.source_id).where(Crop.id.in_(chunk))
        ).all()
    return pd.DataFrame(rows, columns=[c.key for c in cols])


# --- labeling app (issue 5): what the sampler and the pages read -------------------------------


def claimable_top(session: Session, annotator_id: int, *, limit: int) -> pd.DataFrame:
    """The ``limit`` claimable crops with the highest priority (model uncertainty).

    Columns: crop_id, priority, source_id, track_id. Walks ``ix_crops_queue`` backwards, so it
    stays fast on a large queue (ties on priority: newest id first).
    """
    q = (
        select(Crop.id.label("crop_id"), Crop.priority, Crop.source_id, Crop.track_id)
        .where(_claimable_filter(annotator_id))
        .order_by(Crop.status.desc(), Crop.priority.desc(), Crop.id.desc())
        .limit(limit)
    )
    return _frame(session.execute(q).all(), list(q.selected_columns.keys()))


def _frame(rows, columns) -> pd.DataFrame:
    # Plain tuples: pandas probes each Row object otherwise (7x slower on 3,000 rows).
    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def claimable_sample(session: Session, annotator_id: int, *, size: int, seed: int) -> pd.DataFrame:
    """A uniform random sample of the claimable crops (same columns as ``claimable_top``).

    Draws random ids from the id range and keeps the claimable ones, so it costs a few indexed
    lookups instead of sorting the whole queue; falls back to ``ORDER BY random()`` when
    claimable crops are too sparse among the ids.
    """
    import numpy as np

    cols = [Crop.id.label("crop_id"), Crop.priority, Crop.source_id, Crop.track_id]
    # Two queries: SQLite answers min() or max() alone from the rowid, both together by a scan.
    lo = session.scalar(select(func.min(Crop.id)))
    hi = session.scalar(select(func.max(Crop.id)))
    if lo is None or size < 1:
        return pd.DataFrame(columns=[c.key for c in cols])
    rng = np.random.default_rng(seed)
    flt = _claimable_filter(annotator_id, by_id=True)
    rows: dict[int, tuple] = {}
    for attempt in range(3):
        draw = np.unique(rng.integers(lo, hi + 1, size=min(hi - lo + 1, size * 4 * 4**attempt)))
        for chunk in _chunks([int(x) for x in rng.permutation(draw)], 500):
            for r in session.execute(select(*cols).where(flt, Crop.id.in_(chunk))).all():
                rows.setdefault(r[0], tuple(r))
        if len(rows) >= size:
            break
    else:
        everywhere = _claimable_filter(annotator_id)
        for r in session.execute(select(*cols).where(everywhere).order_by(func.random()).limit(size)):
            rows.setdefault(r[0], tuple(r))
    picked = list(rows.values())
    rng.shuffle(picked)
    return pd.DataFrame(picked[:size], columns=[c.key for c in cols])


def awaiting_vote(session: Session, annotator_id: int, *, limit: int) -> list[int]:
    """Claimable crops that already have a vote and need another (double annotation)."""
    return list(
        session.scalars(
            select(Crop.id)
            .where(
                _claimable_filter(annotator_id),
                Crop.votes_needed > 1,
                exists().where(Label.crop_id == Crop.id, Label.superseded_by_id.is_(None),
                               Label.undone_at.is_(None)),
            )
            .order_by(Crop.id)
            .limit(limit)
        )
    )


def require_votes(session: Session, crop_ids: Sequence[int], votes: int) -> int:
    """Ask for ``votes`` labels on crops that have none yet (double annotation); returns count."""
    if not crop_ids:
        return 0
    n = 0
    for chunk in _chunks(list(crop_ids), 500):
        n += session.execute(
            update(Crop)
            .where(Crop.id.in_(chunk), Crop.status == UNLABELED,
                   ~exists().where(Label.crop_id == Crop.id, Label.superseded_by_id.is_(None),
                                   Label.undone_at.is_(None)))
            .values(votes_needed=votes)
        ).rowcount or 0
    return n


def crop_cards(session: Session, crop_ids: Sequence[int]) -> pd.DataFrame:
    """What the label pages show about each crop, in the order asked.

    Columns: crop_id, path, width, height, status, votes_needed, track_id, frame_index, x1, y1,
    x2, y2, source_id, source_kind, source_uri, source_name.
    """
    cols = [Crop.id.label("crop_id"), Crop.path, Crop.width, Crop.height, Crop.status,
            Crop.votes_needed, Crop.track_id, Crop.frame_index, Crop.x1, Crop.y1, Crop.x2,
            Crop.y2, Crop.source_id, Source.kind.label("source_kind"),
            Source.uri.label("source_uri"), Source.name.label("source_name")]
    rows = []
    ids = list(crop_ids)
    for chunk in _chunks(ids, 500):
        rows += session.execute(
            select(*cols).join(Source, Source.id == Crop.source_id).where(Crop.id.in_(chunk))
        ).all()
    df = _frame(rows, [c.key for c in cols])
    if df.empty:
        return df
    return df.set_index("crop_id").loc[[i for i in ids if i in set(df["crop_id"])]].reset_index()


def label_count_since(session: Session, annotator_id: int, since: dt.datetime) -> int:
    """Active decisions by one annotator since a time (labels/hour on the label page)."""
    return session.scalar(
        select(func.count()).select_from(Label).where(
            Label.annotator_id == annotator_id, Label.created_at >= since,
            Label.undone_at.is_(None),
        )
    ) or 0


def label_times(session: Session, *, since: dt.datetime | None = None) -> pd.DataFrame:
    """Every label (undone ones out) with its annotator and time: columns annotator, value,
    created_at, seconds, sampling. For labels-per-hour and speed plots."""
    q = (
        select(Annotator.name.label("annotator"), Label.value, Label.created_at, Label.seconds,
               Label.sampling)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .where(Label.undone_at.is_(None), Annotator.role != "system")
    )
    if since is not None:
        q = q.where(Label.created_at >= since)
    return pd.DataFrame(session.execute(q).all(), columns=list(q.selected_columns.keys()))


def multi_voted(session: Session) -> pd.DataFrame:
    """Active decisive labels of crops with two or more of them (agreement, disagreements).

    Columns: crop_id, annotator_id, annotator, value, created_at.
    """
    many = (
        select(Label.crop_id)
        .where(Label.superseded_by_id.is_(None), Label.undone_at.is_(None), Label.value != SKIP)
        .group_by(Label.crop_id)
        .having(func.count() > 1)
    )
    q = (
        select(Label.crop_id, Label.annotator_id, Annotator.name.label("annotator"), Label.value,
               Label.created_at)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .where(Label.crop_id.in_(many), Label.superseded_by_id.is_(None),
               Label.undone_at.is_(None), Label.value != SKIP)
        .order_by(Label.crop_id, Label.id)
    )
    return pd.DataFrame(session.execute(q).all(), columns=list(q.selected_columns.keys()))


def queue_priorities(session: Session, *, limit: int = 200_000) -> list[float]:
    """Priority (model uncertainty) of unlabeled crops, for the queue histogram."""
    return list(
        session.scalars(select(Crop.priority).where(Crop.status == UNLABELED).limit(limit))
    )
