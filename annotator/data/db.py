"""Database schema and single-table row helpers.

Where a query goes:

* here (``db``): the schema, and helpers that read or write rows of one entity by its key (a
  source, an account, a dataset);
* ``dialect``: engines, SQLite's and PostgreSQL's differences; ``model_versions``: versions,
  the active one, predictions; ``job_rows``: job rows;
* ``crop_queue``: the queue's state transitions (add crops, claim under leases, label, undo,
  relabel);
* ``reports``: read models for pages, export and datasets (joins and aggregates -> DataFrames).

Functions take a ``Session`` first and never commit: the caller owns the transaction.

"""
from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    and_,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class CropStatus:
    """Where a crop stands in the queue (denormalised from its labels for fast claims).

    Not label values: a label says ``not_a_face`` (``config.NOT_A_FACE``); a crop that got it
    is ``REJECTED`` (stored as ``"not_a_face"``) and stays out of every dataset.
    """

    UNLABELED = "unlabeled"
    LABELED = "labeled"
    SKIPPED = "skipped"
    REJECTED = "not_a_face"
    ALL = (UNLABELED, LABELED, SKIPPED, REJECTED)


class Role:
    ADMIN = "admin"
    ANNOTATOR = "annotator"
    SYSTEM = "system"  # records automatic labels (imports); cannot sign in
    HUMAN = (ADMIN, ANNOTATOR)


class LabelKind:
    """How a label was decided (``labels.method``). People: ``KEY`` one crop, ``TRACK`` a
    Shift+key decision, ``GRID`` a grid page, ``AUDIT`` a crop that carried a machine label,
    ``REVIEW`` a deliberate relabel. Machine: ``AUTO`` (the active model above its audited
    threshold; ``model_version_id`` and ``probability`` say which and how sure),
    ``PROPAGATED`` (a track mate of a person's label whose prediction agrees), ``IMPORT``."""

    KEY = "key"
    TRACK = "track"
    GRID = "grid"
    AUDIT = "audit"
    REVIEW = "review"
    AUTO = "auto"
    PROPAGATED = "propagated"
    IMPORT = "import"
    HUMAN = (KEY, TRACK, GRID, AUDIT, REVIEW)
    MACHINE = (AUTO, PROPAGATED)
    ALL = (KEY, TRACK, GRID, AUDIT, REVIEW, AUTO, PROPAGATED, IMPORT)


class JobStatus:
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ACTIVE = (QUEUED, RUNNING)


class AddedBy:
    """How a crop entered the queue."""

    EXTRACT = "extract"
    IMPORT = "import"
    DETECT = "detect"  # an uncertain track sent back by `annotator detect --to-queue`


def utcnow() -> dt.datetime:
    """Naive UTC timestamp: stored the same way by SQLite and PostgreSQL."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    # Named constraints so Alembic's batch mode can alter SQLite tables later.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


SOURCE_TEXT_LEN = 300  # sources.key and sources.name (migration 0001)


class Source(Base):
    """A video file, stream, image file or imported folder that crops came from."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    # Identity: the content sha256 for files; the URI without its password for streams.
    key: Mapped[str] = mapped_column(String(SOURCE_TEXT_LEN), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # video | image | folder | stream
    uri: Mapped[str] = mapped_column(Text)  # never holds a stream password
    name: Mapped[str] = mapped_column(String(SOURCE_TEXT_LEN))
    sha256: Mapped[Optional[str]] = mapped_column(String(64))
    fps: Mapped[Optional[float]]
    frame_count: Mapped[Optional[int]]
    width: Mapped[Optional[int]]
    height: Mapped[Optional[int]]
    # Extraction progress: frames [0, frames_done) are committed; a resumed run starts here.
    frames_done: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="new")  # new|running|partial|done|error
    error: Mapped[Optional[str]] = mapped_column(Text)
    stats: Mapped[Optional[dict]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Crop(Base):
    """One head crop: where it came from, how good it is, and where it stands in the queue."""

    __tablename__ = "crops"
    __table_args__ = (
        UniqueConstraint("source_id", "origin"),
        Index("ix_crops_queue", "status", "priority", "id"),
        Index("ix_crops_source_track", "source_id", "track_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    # Where in the source: "f000123:x1,y1,x2,y2" for frames, the relative path for imported files.
    origin: Mapped[str] = mapped_column(String(500))
    frame_index: Mapped[Optional[int]]
    timestamp_s: Mapped[Optional[float]]
    x1: Mapped[Optional[float]]
    y1: Mapped[Optional[float]]
    x2: Mapped[Optional[float]]
    y2: Mapped[Optional[float]]
    detector: Mapped[Optional[str]] = mapped_column(String(40))
    det_score: Mapped[Optional[float]]
    keypoints: Mapped[Optional[Any]] = mapped_column(JSON)
    sharpness: Mapped[Optional[float]]
    width: Mapped[int]
    height: Mapped[int]
    track_id: Mapped[Optional[int]]
    # Content address of the image file in the crop store; identical images share one file.
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default=CropStatus.UNLABELED)
    # Higher first. Set from the active model's uncertainty when crops are scored.
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    votes_needed: Mapped[int] = mapped_column(default=1)
    added_by: Mapped[Optional[str]] = mapped_column(String(16), default=AddedBy.EXTRACT)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Lower-cased name: "root" and "ROOT" are one account.
    name_key: Mapped[Optional[str]] = mapped_column(String(100), unique=True)
    password_hash: Mapped[Optional[str]] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=Role.ANNOTATOR)
    disabled_at: Mapped[Optional[dt.datetime]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuthFailure(Base):
    """Wrong sign-ins counted per key (``user:NAME`` or ``client:ADDRESS``) for the lockout."""

    __tablename__ = "auth_failures"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    first_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    locked_until: Mapped[Optional[dt.datetime]]


class UserSession(Base):
    """A signed-in browser: only the token's sha256 is stored; sign-out revokes it here."""

    __tablename__ = "user_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    annotator_id: Mapped[int] = mapped_column(
        ForeignKey("annotators.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    last_seen_at: Mapped[Optional[dt.datetime]]
    revoked_at: Mapped[Optional[dt.datetime]]


class Label(Base):
    """One decision by one annotator. Never deleted: undo and relabel only mark it inactive."""

    __tablename__ = "labels"
    __table_args__ = (
        Index("ix_labels_crop", "crop_id"),
        Index("ix_labels_annotator_time", "annotator_id", "created_at"),
        Index("ix_labels_decision", "decision_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    crop_id: Mapped[int] = mapped_column(ForeignKey("crops.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    value: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    seconds: Mapped[Optional[float]]  # time the annotator spent on it
    sampling: Mapped[Optional[str]] = mapped_column(String(20))  # strategy that surfaced the crop
    # How the decision was made: a LabelKind (key | grid | track | audit | review | auto |
    # propagated | import).
    method: Mapped[Optional[str]] = mapped_column(String(16))
    # Labels given by one gesture (a track decision) share it; one undo reverts them all.
    decision_id: Mapped[Optional[str]] = mapped_column(String(32))
    superseded_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("labels.id"))
    undone_at: Mapped[Optional[dt.datetime]]
    # Machine labels (auto, propagated): the model version that backed it and its probability.
    model_version_id: Mapped[Optional[int]] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"))
    probability: Mapped[Optional[float]]


class Lease(Base):
    """A crop held by one annotator until ``expires_at``. The primary key makes holds exclusive."""

    __tablename__ = "leases"
    crop_id: Mapped[int] = mapped_column(
        ForeignKey("crops.id", ondelete="CASCADE"), primary_key=True
    )
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    claimed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    sampling: Mapped[Optional[str]] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(default=0)  # order within the claimed batch


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    path: Mapped[str] = mapped_column(Text)
    manifest: Mapped[str] = mapped_column(Text)  # path of manifest.csv.gz (plain .csv before 2026-12)
    counts: Mapped[Optional[dict]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    path: Mapped[str] = mapped_column(Text)
    dataset_id: Mapped[Optional[int]] = mapped_column(ForeignKey("datasets.id"))
    classes: Mapped[list] = mapped_column(JSON)
    metrics: Mapped[Optional[dict]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[Optional[dt.datetime]]


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("model_version_id", "crop_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    crop_id: Mapped[int] = mapped_column(ForeignKey("crops.id", ondelete="CASCADE"), index=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE")
    )
    probs: Mapped[list] = mapped_column(JSON)  # class probabilities in the model's class order
    uncertainty: Mapped[float]
    embedding: Mapped[Optional[bytes]] = mapped_column(LargeBinary)  # float32 penultimate layer
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Job(Base):
    """A background job started from the UI; its process reports progress here."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    # The job's options as a JSON object (validated by pipelines.cli.runner before it is stored).
    args: Mapped[Optional[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1, never goes back
    message: Mapped[Optional[str]] = mapped_column(Text)
    result: Mapped[Optional[dict]] = mapped_column(JSON)
    detail: Mapped[Optional[dict]] = mapped_column(JSON)  # live data for the UI (e.g. epochs)
    pid: Mapped[Optional[int]]
    host: Mapped[Optional[str]] = mapped_column(String(255))
    log_path: Mapped[Optional[str]] = mapped_column(Text)
    started_by: Mapped[Optional[str]] = mapped_column(String(100))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[Optional[dt.datetime]]
    heartbeat_at: Mapped[Optional[dt.datetime]]
    finished_at: Mapped[Optional[dt.datetime]]


class TrailEvent(Base):
    """The audit trail (privacy): who viewed which crop or frame, exported, erased, changed a
    role. Append-only; no foreign keys, so an event outlives its crop ("crop N (erased)") and
    its account. ``detail`` never holds an image, a box or a sha256."""

    __tablename__ = "trail_events"
    __table_args__ = (Index("ix_trail_events_at", "at"), Index("ix_trail_events_crop", "crop_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(24))  # view | context | export | erase | role | ...
    page: Mapped[Optional[str]] = mapped_column(String(24))
    crop_id: Mapped[Optional[int]]
    erased: Mapped[bool] = mapped_column(Boolean, default=False)
    detail: Mapped[Optional[dict]] = mapped_column(JSON)


class CropAttributes(Base):
    """Slice attributes of one crop (``annotator.core.slices.attributes``), raw: bands are drawn at
    read time. Written when a crop is stored; ``annotator slices --backfill`` fills older ones."""

    __tablename__ = "crop_attributes"
    crop_id: Mapped[int] = mapped_column(
        ForeignKey("crops.id", ondelete="CASCADE"), primary_key=True)
    face_px: Mapped[Optional[float]]
    sharpness: Mapped[Optional[float]]
    brightness: Mapped[Optional[float]]
    pose: Mapped[Optional[str]] = mapped_column(String(16))
    colour: Mapped[Optional[str]] = mapped_column(String(16))
    hour: Mapped[Optional[int]]


# --- shared building blocks ---------------------------------------------------------------------


CHUNK = 500  # ids per IN (...) list: well under SQLite's and PostgreSQL's parameter limits


def chunks(seq: Sequence, n: int = CHUNK) -> Iterator[Sequence]:
    """``seq`` in slices of ``n`` (for IN lists and bulk statements)."""
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def active_label(label=Label):
    """The filter for a label that counts: neither undone nor superseded by a relabel.

    Pass an ``aliased(Label)`` to filter an alias.
    """
    return and_(label.superseded_by_id.is_(None), label.undone_at.is_(None))


def count(session: Session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def next_name(session: Session, model, prefix: str, folder: Path) -> str:
    """``d001``/``v001``...: the first name that has neither a row nor a folder.

    A folder without a row is what a crash between the folder's rename and the row's insert
    leaves behind; skipping it keeps "Retrain now" working without anyone cleaning up.
    """
    n = count(session, model) + 1
    while (session.scalar(select(model.id).where(model.name == f"{prefix}{n:03d}")) is not None
           or (Path(folder) / f"{prefix}{n:03d}").exists()):
        n += 1
    return f"{prefix}{n:03d}"


# --- sources ------------------------------------------------------------------------------------


def get_or_create_source(
    session: Session,
    *,
    key: str,
    kind: str,
    uri: str,
    name: str,
    sha256: str | None = None,
    fps: float | None = None,
    frame_count: int | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Source:
    """The source known by ``key`` (content hash or URI), created on first sight.

    A key or name longer than its column (a signed stream URL can be) is shortened here, the key
    to a hash of itself, so PostgreSQL, which enforces the lengths SQLite ignores, stores it too.
    """
    if len(key) > SOURCE_TEXT_LEN:
        key = "sha256-of-uri:" + hashlib.sha256(key.encode()).hexdigest()
    if len(name) > SOURCE_TEXT_LEN:
        name = name[: SOURCE_TEXT_LEN - 1] + "…"
    src = session.scalar(select(Source).where(Source.key == key))
    if src is None:
        src = Source(
            key=key, kind=kind, uri=uri, name=name, sha256=sha256, fps=fps,
            frame_count=frame_count, width=width, height=height,
        )
        session.add(src)
        session.flush()
    return src


def update_source_progress(
    session: Session,
    source_id: int,
    *,
    frames_done: int | None = None,
    status: str | None = None,
    error: str | None = None,
    stats: dict | None = None,
) -> None:
    src = session.get(Source, source_id)
    if frames_done is not None:
        src.frames_done = frames_done
    if status is not None:
        src.status = status
    if error is not None:
        src.error = error
    if stats is not None:
        src.stats = stats


# --- accounts -----------------------------------------------------------------------------------


def get_annotator(session: Session, name: str) -> Annotator | None:
    """The account whose name matches case-insensitively."""
    return session.scalar(select(Annotator).where(Annotator.name_key == name.strip().lower()))


def list_annotators(session: Session, *, include_system: bool = False) -> list[Annotator]:
    q = select(Annotator).order_by(Annotator.name_key)
    if not include_system:
        q = q.where(Annotator.role != Role.SYSTEM)
    return list(session.scalars(q))


# --- datasets and model versions ----------------------------------------------------------------


def get_dataset(session: Session, name: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.name == name))


def latest_dataset(session: Session) -> Dataset | None:
    return session.scalar(select(Dataset).order_by(Dataset.id.desc()).limit(1))


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.id)))
