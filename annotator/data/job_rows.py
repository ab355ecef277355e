"""Job rows: what a background job is, how far it got, and what it left (one row per job).

Processes, heartbeats and cancelling are ``annotator.service.jobs``; this module only reads
and writes the rows.
"""
from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from annotator.data.db import Job, JobStatus


JOB_FIELDS = {"status", "progress", "message", "result", "detail", "pid", "host", "log_path",
              "cancel_requested", "started_at", "heartbeat_at", "finished_at"}


def create_job(session: Session, *, kind: str, args: dict, started_by: str | None = None) -> int:
    job = Job(kind=kind, args=args, status=JobStatus.QUEUED, progress=0.0, started_by=started_by)
    session.add(job)
    session.flush()
    return job.id


def update_job(session: Session, job_id: int, **values) -> None:
    """Set fields of a job (see ``JOB_FIELDS``)."""
    unknown = set(values) - JOB_FIELDS
    if unknown:
        raise ValueError(f"not job fields: {sorted(unknown)}")
    session.execute(update(Job).where(Job.id == job_id).values(**values))


def get_job(session: Session, job_id: int) -> dict | None:
    job = session.get(Job, job_id)
    return None if job is None else _job_dict(job)


def list_jobs(session: Session, *, kinds=None, limit: int = 20) -> list[dict]:
    """Newest jobs first, as plain dicts with every Job column."""
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if kinds:
        q = q.where(Job.kind.in_(list(kinds)))
    return [_job_dict(j) for j in session.scalars(q)]


def _job_dict(job: Job) -> dict:
    return {c.key: getattr(job, c.key) for c in Job.__table__.columns}
