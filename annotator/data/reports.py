"""Read models: what pages, export, datasets and the sampler read from the database.

Every function takes a ``Session`` first, only reads, and returns plain values or DataFrames
(never ORM rows), so a page can render them after the session is gone. The writes that change
the queue are in :mod:`annotator.data.crop_queue`; single-row helpers in :mod:`annotator.data.db`;
model versions' reads in ``model_reports``, exports' in ``export_reads``, label cost in
``label_cost``.
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from annotator.core.config import NOT_A_FACE, SKIP
from annotator.data.frames import frame, select_frame
from annotator.data.label_cost import label_cost
from annotator.data.db import (
    Annotator,
    Crop,
    CropStatus,
    Dataset,
    Label,
    LabelKind,
    Lease,
    ModelVersion,
    Prediction,
    Role,
    Source,
    active_label,
    chunks,
    count,
    utcnow,
)
from annotator.data.crop_queue import claimable
from annotator.core.label_rules import majority

CARD_COLUMNS = [Crop.id.label("crop_id"), Crop.path, Crop.width, Crop.height, Crop.status,
                Crop.votes_needed, Crop.track_id, Crop.frame_index, Crop.timestamp_s, Crop.x1,
                Crop.y1, Crop.x2, Crop.y2, Crop.source_id, Crop.added_by,
                Source.kind.label("source_kind"), Source.uri.label("source_uri"),
                Source.name.label("source_name")]


# --- labels -------------------------------------------------------------------------------------


def active_labels(session: Session) -> pd.DataFrame:
    """Every active label with its crop's grouping fields and whether a person gave it."""
    q = (
        select(
            Label.crop_id, Label.value, Label.created_at, Label.seconds, Label.sampling,
            Label.method, Annotator.name.label("annotator"),
            (Annotator.role != Role.SYSTEM).label("human"), Crop.source_id, Crop.track_id,
            Crop.sha256, Crop.path, Source.key.label("source_key"),
        )
        .join(Crop, Crop.id == Label.crop_id)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .join(Source, Source.id == Crop.source_id)
        .where(active_label())
        .order_by(Label.crop_id, Label.id)
    )
    return select_frame(session, q)


def current_labels(session: Session, classes: Sequence[str]) -> pd.DataFrame:
    """One row per crop whose active labels agree on a class (majority; ties and non-classes out).

    Columns: crop_id, source_id, source_key, track_id, sha256, path, label, votes, annotators,
    kind (``human``; ``import``; or ``auto``/``propagated`` when only the machine decided it),
    random (a person labeled it as the random share served it: the auto-label audit's sample).
    """
    labels = active_labels(session)
    cols = ["crop_id", "source_id", "source_key", "track_id", "sha256", "path", "label", "votes",
            "annotators", "kind", "random"]
    if labels.empty:
        return pd.DataFrame(columns=cols)
    decisive = labels[labels["value"] != SKIP]
    # once for all crops: a per-group pandas expression in the loop below cost ~30 us a crop
    random = ((decisive["sampling"] == "random") & decisive["human"].astype(bool)).groupby(
        decisive["crop_id"]).any()
    rows = []
    for crop_id, g in decisive.groupby("crop_id", sort=True):
        label = majority(list(g["value"]))
        if label is None or label not in classes:
            continue
        first = g.iloc[0]
        rows.append((crop_id, first.source_id, first.source_key, first.track_id, first.sha256,
                     first.path, label, len(g), ",".join(sorted(set(g["annotator"]))),
                     _kind(set(g["method"])), bool(random[crop_id])))
    return pd.DataFrame(rows, columns=cols)


def _kind(methods: set) -> str:
    """A crop's label kind for datasets: a machine kind only when no person or import took part."""
    if len(methods) == 1 and next(iter(methods)) in (*LabelKind.MACHINE, LabelKind.IMPORT):
        return next(iter(methods))
    return "human"


def current_values(session: Session, crop_ids: Sequence[int]) -> dict[int, str]:
    """The majority of each crop's active decisive labels (crops without one are left out)."""
    votes: dict[int, list[str]] = {}
    for part in chunks(list(crop_ids)):
        for cid, value in session.execute(
                select(Label.crop_id, Label.value).where(Label.crop_id.in_(part), active_label(),
                                                         Label.value != SKIP)):
            votes.setdefault(int(cid), []).append(value)
    return {cid: v for cid, vs in votes.items() if (v := majority(vs)) is not None}


def machine_labeled(session: Session, crop_ids: Sequence[int]) -> set[int]:
    """Which of these crops carry an active machine label (``auto``/``propagated``): on a crop
    still in the queue, an audit crop, which people must see as an ordinary crop."""
    out: set[int] = set()
    for part in chunks(list(crop_ids)):
        out.update(session.scalars(select(Label.crop_id).where(
            Label.crop_id.in_(part), Label.method.in_(LabelKind.MACHINE), active_label())))
    return out


def voted_by(session: Session, annotator_id: int, crop_ids: Sequence[int]) -> set[int]:
    """Which of these crops this annotator already has an active label on."""
    out: set[int] = set()
    for part in chunks(list(crop_ids)):
        out.update(session.scalars(select(Label.crop_id).where(
            Label.crop_id.in_(part), Label.annotator_id == annotator_id, active_label())))
    return out


def my_recent_labels(session: Session, annotator_id: int, *, limit: int = 50) -> pd.DataFrame:
    """This annotator's latest active labels, newest first: ``CARD_COLUMNS`` + value,
    labeled_at, method."""
    q = (select(*CARD_COLUMNS, Label.value, Label.created_at.label("labeled_at"), Label.method)
         .join(Source, Source.id == Crop.source_id)
         .join(Label, Label.crop_id == Crop.id)
         .where(Label.annotator_id == annotator_id, active_label())
         .order_by(Label.created_at.desc(), Label.id.desc()).limit(limit))
    return select_frame(session, q)


def unlabeled_count(session: Session) -> int:
    return count(session, Crop, Crop.status == CropStatus.UNLABELED)


def held_by_others(session: Session, annotator_id: int, *,
                   now: dt.datetime | None = None) -> tuple[int, dt.datetime | None]:
    """Unlabeled crops other annotators hold right now, and when the last of those holds
    expires (naive UTC): why a queue that is not empty shows nothing to label."""
    now = now or utcnow()
    n, last = session.execute(
        select(func.count(), func.max(Lease.expires_at)).join(Crop, Crop.id == Lease.crop_id)
        .where(Lease.annotator_id != annotator_id, Lease.expires_at >= now,
               Crop.status == CropStatus.UNLABELED)).one()
    return int(n or 0), last


def multi_voted(session: Session) -> pd.DataFrame:
    """Active decisive labels of crops with two or more of them (agreement, disagreements).

    Columns: crop_id, annotator_id, annotator, value, created_at.
    """
    decisive = (active_label(), Label.value != SKIP)
    many = select(Label.crop_id).where(*decisive).group_by(Label.crop_id).having(func.count() > 1)
    q = (
        select(Label.crop_id, Label.annotator_id, Annotator.name.label("annotator"), Label.value,
               Label.created_at)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .where(Label.crop_id.in_(many), *decisive)
        .order_by(Label.crop_id, Label.id)
    )
    return select_frame(session, q)


def label_times(session: Session, *, since: dt.datetime | None = None,
                annotator_id: int | None = None) -> pd.DataFrame:
    """Labels by people (undone ones out) with their time: columns annotator, value,
    created_at, seconds, sampling, method. For pace and speed plots."""
    q = (
        select(Annotator.name.label("annotator"), Label.value, Label.created_at, Label.seconds,
               Label.sampling, Label.method)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .where(Label.undone_at.is_(None), Annotator.role != Role.SYSTEM)
        .order_by(Label.created_at)
    )
    if since is not None:
        q = q.where(Label.created_at >= since)
    if annotator_id is not None:
        q = q.where(Label.annotator_id == annotator_id)
    return select_frame(session, q)


def label_count_since(session: Session, annotator_id: int, since: dt.datetime) -> int:
    """Decisions by one annotator since a time that were not undone."""
    return count(session, Label, Label.annotator_id == annotator_id, Label.created_at >= since,
                 Label.undone_at.is_(None))


def random_share_labels(session: Session, model_version_id: int, classes: Sequence[str]):
    """Labels of crops surfaced by the random share that this version had scored before:
    ``(labels (n,) class index, probs (n, K))`` for an unbiased estimate of its accuracy on the
    queue."""
    q = (
        select(Label.value, Prediction.probs)
        .join(Prediction, (Prediction.crop_id == Label.crop_id)
              & (Prediction.model_version_id == model_version_id))
        .where(active_label(), Label.sampling == "random", Label.value.in_(list(classes)))
    )
    rows = session.execute(q).all()
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v, _ in rows], dtype=np.int64)
    probs = np.array([p for _, p in rows], dtype=np.float64).reshape(len(rows), len(classes))
    return y, probs


# --- crops --------------------------------------------------------------------------------------


def stats(session: Session, classes: Sequence[str]) -> dict:
    """Counts for ``annotator stats --json`` and the dashboard."""
    by_status = dict(session.execute(select(Crop.status, func.count()).group_by(Crop.status)).all())
    by_label = dict(session.execute(
        select(Label.value, func.count()).where(active_label()).group_by(Label.value)).all())
    human = dict(session.execute(
        select(Label.value, func.count()).join(Annotator, Annotator.id == Label.annotator_id)
        .where(active_label(), Annotator.role != Role.SYSTEM).group_by(Label.value)).all())
    by_origin = dict(session.execute(
        select(Crop.added_by, func.count()).group_by(Crop.added_by)).all())

    def ordered(counts: dict) -> dict:
        return {**{c: counts.get(c, 0) for c in classes},
                **{k: v for k, v in counts.items() if k not in classes}}

    return {
        "sources": count(session, Source),
        "crops": {
            "total": sum(by_status.values()),
            "labeled": by_status.get(CropStatus.LABELED, 0),
            "unlabeled": by_status.get(CropStatus.UNLABELED, 0),
            "skipped": by_status.get(CropStatus.SKIPPED, 0),
            "not_a_face": by_status.get(CropStatus.REJECTED, 0),
        },
        "crops_by_origin": {str(k or "extract"): v for k, v in by_origin.items()},
        "labels": ordered(by_label),
        "human_labels": ordered(human),
        "annotators": count(session, Annotator, Annotator.role != Role.SYSTEM),
        "leases": count(session, Lease, Lease.expires_at >= utcnow()),
        "models": count(session, ModelVersion),
        "datasets": count(session, Dataset),
        **label_cost(session),
    }


def crop_images(session: Session) -> dict[str, str]:
    """sha256 -> store path of every distinct crop image (identical bytes share one file)."""
    return dict(session.execute(select(Crop.sha256, func.min(Crop.path)).group_by(Crop.sha256)).all())


def crop_details(session: Session, crop_ids: Sequence[int]) -> pd.DataFrame:
    """Provenance and quality fields of the given crops, for export and display."""
    cols = [Crop.id.label("crop_id"), Source.name.label("source"), Crop.origin, Crop.frame_index,
            Crop.timestamp_s, Crop.x1, Crop.y1, Crop.x2, Crop.y2, Crop.detector, Crop.det_score,
            Crop.sharpness, Crop.width, Crop.height, Crop.added_by]
    rows = []
    for part in chunks(list(crop_ids)):
        rows += session.execute(
            select(*cols).join(Source, Source.id == Crop.source_id).where(Crop.id.in_(part))).all()
    return frame(rows, [c.key for c in cols])


def crop_origins(session: Session, crop_ids: Sequence[int]) -> dict[int, str]:
    out = {}
    for part in chunks(list(crop_ids)):
        out.update(session.execute(select(Crop.id, Crop.origin).where(Crop.id.in_(part))).all())
    return out


def crop_cards(session: Session, crop_ids: Sequence[int]) -> pd.DataFrame:
    """What the label pages show about each crop, in the order asked (``CARD_COLUMNS``)."""
    rows = []
    ids = list(crop_ids)
    for part in chunks(ids):
        rows += session.execute(select(*CARD_COLUMNS).join(Source, Source.id == Crop.source_id)
                                .where(Crop.id.in_(part))).all()
    df = frame(rows, [c.key for c in CARD_COLUMNS])
    if df.empty:
        return df
    present = set(df["crop_id"])
    return df.set_index("crop_id").loc[[i for i in ids if i in present]].reset_index()


def queue_priorities(session: Session, *, limit: int = 200_000) -> list[float]:
    """Priority (model uncertainty) of unlabeled crops, for the queue histogram."""
    return list(session.scalars(
        select(Crop.priority).where(Crop.status == CropStatus.UNLABELED).limit(limit)))


# --- what the sampler reads ---------------------------------------------------------------------

# an unlabeled crop with an active machine label is an audit crop (served to check that label)
AUDIT_CROP = exists().where(Label.crop_id == Crop.id, Label.method.in_(LabelKind.MACHINE),
                            active_label()).label("audit")
SAMPLER_COLUMNS = [Crop.id.label("crop_id"), Crop.priority, Crop.source_id, Crop.track_id,
                   Crop.detector, Crop.det_score, AUDIT_CROP]


def unlabeled_scores(session: Session, *, limit: int = 200_000) -> pd.DataFrame:
    """What the junk-last rule reads of the unlabeled crops (columns priority, detector,
    det_score, audit)."""
    return select_frame(session, select(Crop.priority, Crop.detector, Crop.det_score, AUDIT_CROP)
                        .where(Crop.status == CropStatus.UNLABELED).limit(limit))


def decided_scores(session: Session, *, limit: int = 5000) -> pd.DataFrame:
    """Detector and score of the ``limit`` crops people decided last, a class or
    ``not_a_face`` (skips and machine labels left out): what the sampler's junk-last rule
    learns from. Columns: detector, det_score, face (False for ``not_a_face``), random (the crop
    came in the random share: the Dashboard checks the rule on those)."""
    q = (select(Crop.detector, Crop.det_score, Label.value,
                (Label.sampling == "random").label("random"))
         .join(Crop, Crop.id == Label.crop_id)
         .where(active_label(), Label.method.in_(LabelKind.HUMAN), Label.value != SKIP)
         .order_by(Label.id.desc()).limit(limit))
    df = select_frame(session, q)
    df["face"] = df.pop("value") != NOT_A_FACE
    df["random"] = df["random"].fillna(False).astype(bool)
    return df


def claimable_top(session: Session, annotator_id: int, *, limit: int) -> pd.DataFrame:
    """The ``limit`` claimable crops with the highest priority (model uncertainty).

    Columns: crop_id, priority, source_id, track_id, detector, det_score, audit. Walks ``ix_crops_queue`` backwards, so it
    stays fast on a large queue (ties on priority: newest id first).
    """
    q = (select(*SAMPLER_COLUMNS).where(claimable(annotator_id))
         .order_by(Crop.status.desc(), Crop.priority.desc(), Crop.id.desc()).limit(limit))
    return select_frame(session, q)


def claimable_sample(session: Session, annotator_id: int, *, size: int, seed: int) -> pd.DataFrame:
    """A uniform random sample of the claimable crops (same columns as ``claimable_top``).

    Draws random ids from the id range and keeps the claimable ones, so it costs a few indexed
    lookups instead of sorting the whole queue; falls back to ``ORDER BY random()`` when
    claimable crops are too sparse among the ids.
    """
    names = [c.key for c in SAMPLER_COLUMNS]
    # Two queries: SQLite answers min() or max() alone from the rowid, both together by a scan.
    lo = session.scalar(select(func.min(Crop.id)))
    hi = session.scalar(select(func.max(Crop.id)))
    if lo is None or size < 1:
        return pd.DataFrame(columns=names)
    rng = np.random.default_rng(seed)
    flt = claimable(annotator_id, by_id=True)
    rows: dict[int, tuple] = {}
    for attempt in range(3):
        draw = np.unique(rng.integers(lo, hi + 1, size=min(hi - lo + 1, size * 4 * 4**attempt)))
        for part in chunks([int(x) for x in rng.permutation(draw)]):
            for r in session.execute(select(*SAMPLER_COLUMNS).where(flt, Crop.id.in_(part))).all():
                rows.setdefault(r[0], tuple(r))
        if len(rows) >= size:
            break
    else:
        q = select(*SAMPLER_COLUMNS).where(claimable(annotator_id)).order_by(func.random()).limit(size)
        for r in session.execute(q):
            rows.setdefault(r[0], tuple(r))
    picked = list(rows.values())
    rng.shuffle(picked)
    return pd.DataFrame(picked[:size], columns=names)


def awaiting_vote(session: Session, annotator_id: int, *, limit: int) -> list[int]:
    """Claimable crops that already have a person's vote and need another (double annotation).
    An audit crop's one vote is the machine's: it waits for the sampler like any other crop."""
    return list(session.scalars(
        select(Crop.id)
        .where(claimable(annotator_id), Crop.votes_needed > 1,
               exists().where(Label.crop_id == Crop.id, active_label(),
                              Label.method.notin_(LabelKind.MACHINE)))
        .order_by(Crop.id)
        .limit(limit)
    ))


def track_mates(session: Session, crop_id: int, *, limit: int = 24) -> pd.DataFrame:
    """The other kept crops of this crop's track (same source and track), in time order, with
    their status and whether someone holds them: ``CARD_COLUMNS`` + ``held_by``."""
    crop = session.get(Crop, crop_id)
    if crop is None or crop.track_id is None:
        return pd.DataFrame(columns=[c.key for c in CARD_COLUMNS] + ["held_by"])
    q = (select(*CARD_COLUMNS, Lease.annotator_id.label("held_by"))
         .join(Source, Source.id == Crop.source_id)
         .outerjoin(Lease, Lease.crop_id == Crop.id)
         .where(Crop.source_id == crop.source_id, Crop.track_id == crop.track_id,
                Crop.id != crop_id)
         .order_by(Crop.timestamp_s, Crop.id).limit(limit))
    return select_frame(session, q)


def browse(session: Session, *, source_id: int | None = None, track_id: int | None = None,
           label: str | None = None, annotator: str | None = None,
           since: dt.datetime | None = None, until: dt.datetime | None = None,
           status: str | None = None, limit: int = 200, offset: int = 0,
           model_version_id: int | None = None, min_uncertainty: float | None = None,
           crop_ids: Sequence[int] | None = None) -> pd.DataFrame:
    """Crops with their current labels, filtered; newest label first. ``CARD_COLUMNS`` +
    ``value``, ``annotator``, ``labeled_at`` (null for unlabeled crops). ``offset``: paging;
    ``min_uncertainty``: only crops that model version is at least this unsure about.
    A crop still in the queue shows no machine label (nor is found by it): an audit crop is
    browsed as the unlabeled crop people are asked to decide."""
    shown = ~(Label.method.in_(LabelKind.MACHINE) & (Crop.status == CropStatus.UNLABELED))
    q = (select(*CARD_COLUMNS, Label.value, Annotator.name.label("annotator"),
                Label.created_at.label("labeled_at"))
         .join(Source, Source.id == Crop.source_id)
         .outerjoin(Label, (Label.crop_id == Crop.id) & active_label() & shown)
         .outerjoin(Annotator, Annotator.id == Label.annotator_id))
    if source_id is not None:
        q = q.where(Crop.source_id == source_id)
    if track_id is not None:
        q = q.where(Crop.track_id == track_id)
    if label is not None:
        q = q.where(Label.value == label)
    if annotator is not None:
        q = q.where(Annotator.name_key == annotator.lower())
    if since is not None:
        q = q.where(Label.created_at >= since)
    if until is not None:
        q = q.where(Label.created_at < until)
    if status is not None:
        q = q.where(Crop.status == status)
    if crop_ids is not None:  # a slice opened from the Dashboard (at most db.CHUNK ids)
        q = q.where(Crop.id.in_([int(i) for i in crop_ids][:500]))  # one IN list (db.CHUNK)
    if model_version_id is not None and min_uncertainty is not None:
        q = q.where(exists().where(Prediction.crop_id == Crop.id,
                                   Prediction.model_version_id == model_version_id,
                                   Prediction.uncertainty >= min_uncertainty))
    q = (q.order_by(Label.created_at.desc().nulls_last(), Crop.id.desc())
         .limit(limit).offset(offset))
    return select_frame(session, q)


def crop_ids_by_origin(session: Session, source_id: int, origins: Sequence[str]) -> dict[str, int]:
    """``{origin: crop id}`` of the given origins that this source already has."""
    out: dict[str, int] = {}
    for part in chunks(list(origins)):
        out.update(session.execute(select(Crop.origin, Crop.id).where(
            Crop.source_id == source_id, Crop.origin.in_(list(part)))).all())
    return out


def max_track_id(session: Session, source_id: int) -> int:
    """The highest track id among the source's crops (0 when it has none)."""
    return int(session.scalar(select(func.max(Crop.track_id)).where(
        Crop.source_id == source_id)) or 0)


def media_sources(session: Session) -> list[tuple[str, str, str]]:
    """``(name, uri, kind)`` of every video and stream source, oldest first."""
    return [tuple(r) for r in session.execute(
        select(Source.name, Source.uri, Source.kind).where(Source.kind.in_(["video", "stream"]))
        .order_by(Source.id)).all()]


def sources(session: Session) -> pd.DataFrame:
    """Every source: id, name, kind, status, crops."""
    n = select(func.count()).where(Crop.source_id == Source.id).scalar_subquery()
    q = select(Source.id, Source.name, Source.kind, Source.status, n.label("crops")).order_by(Source.id)
    return select_frame(session, q)
