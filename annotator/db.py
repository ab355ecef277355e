"""Database schema, engine set-up and plain query functions.

One of the two modules that import SQLAlchemy (the other is ``queue``). SQLite-specific settings
live in ``_configure_sqlite`` only, so the same schema runs on PostgreSQL via ``ANNOTATOR_DB_URL``.
Functions take a ``Session`` first and never commit: the caller owns the transaction.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

# Crop status: where a crop stands in the labeling queue (denormalised from labels for fast claims).
UNLABELED, LABELED, SKIPPED, NOT_A_FACE = "unlabeled", "labeled", "skipped", "not_a_face"
CROP_STATUSES = (UNLABELED, LABELED, SKIPPED, NOT_A_FACE)
ROLES = ("admin", "annotator", "system")


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


class Source(Base):
    """A video file, stream, image file or imported folder that crops came from."""

    __tablename__ = "sources"
    id: Mapped[int] = mapped_column(primary_key=True)
    # Identity: the content sha256 for files, the URI for streams and folders.
    key: Mapped[str] = mapped_column(String(300), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # video | image | folder | stream
    uri: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(300))
    sha256: Mapped[Optional[str]] = mapped_column(String(64))
    fps: Mapped[Optional[float]]
    frame_count: Mapped[Optional[int]]
    width: Mapped[Optional[int]]
    height: Mapped[Optional[int]]
    # Extraction progress: frames [0, frames_done) are committed; a resumed run starts here.
    frames_done: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="new")  # new|running|done|error
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
    status: Mapped[str] = mapped_column(String(16), default=UNLABELED)
    # Higher first. Set from the active model's uncertainty when crops are scored.
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    votes_needed: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Annotator(Base):
    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[Optional[str]] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="annotator")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Label(Base):
    """One decision by one annotator. Never deleted: undo and relabel only mark it inactive."""

    __tablename__ = "labels"
    __table_args__ = (
        Index("ix_labels_crop", "crop_id"),
        Index("ix_labels_annotator_time", "annotator_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    crop_id: Mapped[int] = mapped_column(ForeignKey("crops.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    value: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    seconds: Mapped[Optional[float]]  # time the annotator spent on it
    sampling: Mapped[Optional[str]] = mapped_column(String(20))  # strategy that surfaced the crop
    superseded_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("labels.id"))
    undone_at: Mapped[Optional[dt.datetime]]


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
    manifest: Mapped[str] = mapped_column(Text)  # path of manifest.csv
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
    """A background job (extract, retrain, score) started from the UI; progress polled from here."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    args: Mapped[Optional[list]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="queued")  # queued|running|done|failed
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1
    message: Mapped[Optional[str]] = mapped_column(Text)
    result: Mapped[Optional[dict]] = mapped_column(JSON)
    pid: Mapped[Optional[int]]
    log_path: Mapped[Optional[str]] = mapped_column(Text)
    started_by: Mapped[Optional[str]] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]]


# --- engines ----------------------------------------------------------------------------------


def make_engine(url: str, *, immediate: bool = True) -> Engine:
    """An engine whose transactions are safe under several writer processes.

    ``immediate=False`` gives plain deferred transactions for read-only pages, which then never
    wait for the write lock under SQLite's WAL.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine, immediate=immediate)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, *, immediate: bool) -> None:
    """WAL, busy timeout, foreign keys, and BEGIN IMMEDIATE (SQLAlchemy's pysqlite recipe).

    pysqlite's own transaction handling is switched off so that SQLAlchemy's ``begin`` event
    decides how a transaction starts: IMMEDIATE takes the write lock up front, so two writers
    queue on ``busy_timeout`` instead of failing with "database is locked" on lock upgrade.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# --- small queries shared by jobs and pages ----------------------------------------------------


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
    """The source known by ``key`` (content hash or URI), created on first sight."""
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


def get_annotator(session: Session, name: str) -> Annotator | None:
    return session.scalar(select(Annotator).where(Annotator.name == name))


def active_model(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.active.is_(True)))


def count(session: Session, model, *where) -> int:
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def list_annotators(session: Session, *, include_system: bool = False) -> list[Annotator]:
    q = select(Annotator).order_by(Annotator.name)
    if not include_system:
        q = q.where(Annotator.role != "system")
    return list(session.scalars(q))


# --- labeling app (issue 5): predictions, model versions and jobs for the pages ---------------


def prediction_arrays(session: Session, model_version_id: int, crop_ids):
    """The model's stored outputs for these crops, as arrays.

    Returns ``(ids (n,), probs (n, K) float64, emb (n, D) float32 or None)`` for the crops that
    have a prediction; ``emb`` is None unless every row has an embedding of one size.
    """
    import numpy as np

    rows = []
    ids = list(crop_ids)
    for i in range(0, len(ids), 500):
        rows += session.execute(
            select(Prediction.crop_id, Prediction.probs, Prediction.embedding).where(
                Prediction.model_version_id == model_version_id,
                Prediction.crop_id.in_(ids[i : i + 500]),
            )
        ).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 2)), None
    out_ids = np.array([r[0] for r in rows], np.int64)
    probs = np.array([r[1] for r in rows], np.float64)
    embs = [r[2] for r in rows]
    emb = None
    if all(e is not None for e in embs) and len({len(e) for e in embs}) == 1:
        emb = np.frombuffer(b"".join(embs), np.float32).reshape(len(embs), -1)
    return out_ids, probs, emb


def model_versions_frame(session: Session):
    """One row per model version, oldest first: name, created_at, promoted_at, active, classes,
    labels (training examples, from its dataset's counts when known) and every numeric metric
    as its own column."""
    import pandas as pd

    rows = []
    q = select(ModelVersion, Dataset.counts).outerjoin(
        Dataset, Dataset.id == ModelVersion.dataset_id
    ).order_by(ModelVersion.created_at, ModelVersion.id)
    for mv, counts in session.execute(q).all():
        row = {"name": mv.name, "created_at": mv.created_at, "promoted_at": mv.promoted_at,
               "active": bool(mv.active), "classes": list(mv.classes or [])}
        metrics = mv.metrics or {}
        for k, v in _flatten(metrics).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[k] = v
        row["labels"] = _label_count(metrics, counts)
        rows.append(row)
    return pd.DataFrame(rows)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _label_count(metrics: dict, counts: dict | None):
    flat = _flatten(metrics)
    if isinstance(flat.get("n_train"), (int, float)) and isinstance(flat.get("n_val"), (int, float)):
        return flat["n_train"] + flat["n_val"]  # every label the version was built from
    for key in ("n_labels", "labels", "n_train", "train_size", "train.n", "n_train_labels"):
        if isinstance(flat.get(key), (int, float)):
            return flat[key]
    if counts:
        flat = _flatten(counts)
        if isinstance(flat.get("total"), (int, float)):
            return flat["total"]
        nums = [v for k, v in flat.items() if isinstance(v, (int, float)) and not k.startswith("val")]
        return sum(nums) if nums else None
    return None


JOB_STATUSES = ("queued", "running", "done", "failed")


def create_job(session: Session, *, kind: str, args: list, started_by: str | None = None) -> int:
    job = Job(kind=kind, args=list(args), status="queued", progress=0.0, started_by=started_by)
    session.add(job)
    session.flush()
    return job.id


def update_job(session: Session, job_id: int, **values) -> None:
    """Set fields of a job (status, progress, message, result, pid, log_path, finished_at)."""
    unknown = set(values) - {"status", "progress", "message", "result", "pid", "log_path",
                             "finished_at"}
    if unknown:
        raise ValueError(f"not job fields: {sorted(unknown)}")
    job = session.get(Job, job_id)
    if job is None:
        raise LookupError(f"job {job_id} does not exist")
    for k, v in values.items():
        setattr(job, k, v)


def list_jobs(session: Session, *, kinds=None, limit: int = 20) -> list[dict]:
    """Newest jobs first, as plain dicts with every Job column."""
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if kinds:
        q = q.where(Job.kind.in_(list(kinds)))
    cols = [c.key for c in Job.__table__.columns]
    return [{c: getattr(j, c) for c in cols} for j in session.scalars(q)]


# --- datasets, model versions, predictions and priorities (issue 4) ----------------------------


def get_dataset(session: Session, name: str) -> Dataset | None:
    return session.scalar(select(Dataset).where(Dataset.name == name))


def latest_dataset(session: Session) -> Dataset | None:
    return session.scalar(select(Dataset).order_by(Dataset.id.desc()).limit(1))


def list_datasets(session: Session) -> list[Dataset]:
    return list(session.scalars(select(Dataset).order_by(Dataset.id)))


def get_model_version(session: Session, name: str) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.name == name))


def list_model_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))


def activate_model(session: Session, version_id: int, *, stamp: bool = True) -> None:
    """Make one version the active one, in the caller's (single) transaction.

    ``stamp`` records the promotion time (rollback re-activates without stamping, so that a
    second rollback goes one step further back).
    """
    from sqlalchemy import update

    session.execute(update(ModelVersion).values(active=ModelVersion.id == version_id))
    if stamp:
        session.execute(
            update(ModelVersion).where(ModelVersion.id == version_id).values(promoted_at=utcnow())
        )


def previous_model(session: Session) -> ModelVersion | None:
    """The version promoted last before the active one (the target of a rollback)."""
    cur = active_model(session)
    q = select(ModelVersion).where(ModelVersion.promoted_at.is_not(None))
    if cur is not None:
        q = q.where(ModelVersion.id != cur.id)
        if cur.promoted_at is not None:
            q = q.where(ModelVersion.promoted_at < cur.promoted_at)
    return session.scalar(q.order_by(ModelVersion.promoted_at.desc(), ModelVersion.id.desc()).limit(1))


def unscored_crops(
    session: Session, model_version_id: int, *, after_id: int = 0, limit: int = 2048
) -> list[tuple[int, str]]:
    """Unlabeled crops (id > ``after_id``) with no prediction from this version: ``(id, path)``."""
    from sqlalchemy import exists

    q = (
        select(Crop.id, Crop.path)
        .where(
            Crop.status == UNLABELED,
            Crop.id > after_id,
            ~exists().where(Prediction.crop_id == Crop.id,
                            Prediction.model_version_id == model_version_id),
        )
        .order_by(Crop.id)
        .limit(limit)
    )
    return [(int(i), p) for i, p in session.execute(q).all()]


def add_predictions(session: Session, rows: list[dict]) -> None:
    """Insert prediction rows (crop_id, model_version_id, probs, uncertainty, embedding)."""
    from sqlalchemy import insert

    if rows:
        session.execute(insert(Prediction), rows)


def set_priorities(session: Session, priorities: dict[int, float]) -> int:
    """Set ``Crop.priority`` (the queue claims highest first) for the given crop ids."""
    from sqlalchemy import update

    if not priorities:
        return 0
    session.execute(
        update(Crop), [{"id": cid, "priority": float(p)} for cid, p in priorities.items()]
    )
    return len(priorities)


def prediction_uncertainties(
    session: Session, model_version_id: int, *, after_id: int = 0, limit: int = 5000
) -> list[tuple[int, float]]:
    """``(crop_id, uncertainty)`` of this version's predictions on unlabeled crops, by crop id."""
    q = (
        select(Prediction.crop_id, Prediction.uncertainty)
        .join(Crop, Crop.id == Prediction.crop_id)
        .where(Prediction.model_version_id == model_version_id, Crop.status == UNLABELED,
               Prediction.crop_id > after_id)
        .order_by(Prediction.crop_id)
        .limit(limit)
    )
    return [(int(c), float(u)) for c, u in session.execute(q).all()]
