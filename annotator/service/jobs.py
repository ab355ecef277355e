"""Background jobs: a ``Job`` row plus a detached process that runs it.

:func:`start` records the job (its kind and its options as a JSON object, never a command line)
and launches the process its caller names (the runner, ``pipelines.cli.runner``, passes its own
command line: this service layer never names a module above it) in its own session, so it
survives page reloads and a restart of the Streamlit server. The runner reports progress, a heartbeat
and the outcome on the row; pages poll :func:`list_jobs`, which also settles jobs whose process
is gone (killed, crashed, or never started), so a dead job never blocks the Models page.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, fields
from typing import Callable

from annotator.data import db, job_rows
from annotator.data.db import JobStatus
from annotator.service.workspace import Workspace

HEARTBEAT_S = 5.0  # the runner touches heartbeat_at this often
STALE_S = 90.0  # no heartbeat for this long: the process is gone (any host)
START_GRACE_S = 60.0  # a queued job with no process after this long never started


@dataclass(frozen=True)
class JobInfo:
    id: int
    kind: str
    args: dict | list | None
    status: str
    progress: float
    message: str | None
    result: dict | None
    detail: dict | None
    pid: int | None
    host: str | None
    log_path: str | None
    started_by: str | None
    cancel_requested: bool
    created_at: dt.datetime
    started_at: dt.datetime | None
    heartbeat_at: dt.datetime | None
    finished_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.status in JobStatus.ACTIVE

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the measured pace: the runner's estimate (the current stage at its
        own pace) less the time since it was made; else the average pace so far. None before
        1% or while queued."""
        if not self.active or self.started_at is None or self.progress <= 0.01:
            return None
        detail = self.detail if isinstance(self.detail, dict) else {}
        if detail.get("eta_at"):
            if detail.get("eta_s") is None:
                return None
            since = (db.utcnow() - dt.datetime.fromisoformat(detail["eta_at"])).total_seconds()
            return max(0.0, float(detail["eta_s"]) - max(since, 0.0))
        elapsed = ((self.heartbeat_at or db.utcnow()) - self.started_at).total_seconds()
        return max(0.0, elapsed * (1 - self.progress) / self.progress)

    def describe(self) -> str:
        """The job's options in one line, for lists (values shortened)."""
        if isinstance(self.args, dict):
            parts = [f"{k}={_short(v)}" for k, v in self.args.items() if v not in (None, [], "")]
            return ", ".join(parts)
        return " ".join(str(a) for a in self.args or [])


def _short(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_short(x) for x in v[:3]) + (", ..." if len(v) > 3 else "") + "]"
    text = str(v)
    return text if len(text) <= 60 else "..." + text[-57:]


# Jobs that grind through footage for minutes to hours run at this niceness, so that a retrain
# (and the app) beside them keep the cores they need; measured with `bench.train --with-load`.
BACKGROUND_KINDS = frozenset({"extract", "detect"})
BACKGROUND_NICENESS = 10


def host() -> str:
    return socket.gethostname()


# (absolute workspace folder, job id) -> the command line of the process that runs that job
CommandLine = Callable[[str, int], list[str]]


def start(ws: Workspace, kind: str, args: dict, *, command: CommandLine,
          started_by: str | None = None, env: dict[str, str] | None = None) -> int:
    """Record a job and launch ``command(root, job_id)``; returns the job id at once.

    ``args`` must already be validated (``pipelines.cli.runner.submit`` does, and passes its own
    command line). ``env`` reaches only the job's process: how secrets (a stream's password)
    travel without being stored.
    """
    with ws.session() as s:
        job_id = job_rows.create_job(s, kind=kind, args=args, started_by=started_by)
        log = ws.jobs_dir / f"job-{job_id}.log"
        job_rows.update_job(s, job_id, log_path=str(log), host=host())
    ws.jobs_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            command(str(ws.root.resolve()), job_id),
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: a page reload or server stop won't kill it
            env={**os.environ, **(env or {}), "ANNOTATOR_PROJECT": str(ws.root.resolve()),
                 "ANNOTATOR_DB_URL": ws.db_url, "PYTHONUNBUFFERED": "1"},
        )
    # Reap it when it ends, so a finished job never lingers as a zombie of the app server.
    threading.Thread(target=proc.wait, name=f"reap-job-{job_id}", daemon=True).start()
    with ws.session() as s:
        job_rows.update_job(s, job_id, pid=proc.pid)
    return job_id


def list_jobs(ws: Workspace, *, kinds=None, limit: int = 20) -> list[JobInfo]:
    """Newest first. Active jobs whose process is gone are settled first (see :func:`settle`)."""
    with ws.read_session() as s:
        rows = job_rows.list_jobs(s, kinds=kinds, limit=limit)
    if settle(ws, [_info(r) for r in rows if r["status"] in JobStatus.ACTIVE]):
        with ws.read_session() as s:
            rows = job_rows.list_jobs(s, kinds=kinds, limit=limit)
    return [_info(r) for r in rows]


def get(ws: Workspace, job_id: int) -> JobInfo | None:
    with ws.read_session() as s:
        row = job_rows.get_job(s, job_id)
    if row is None:
        return None
    if row["status"] in JobStatus.ACTIVE and settle(ws, [_info(row)]):
        with ws.read_session() as s:
            row = job_rows.get_job(s, job_id)
    return _info(row)


def settle(ws: Workspace, active: list[JobInfo], *, now: dt.datetime | None = None) -> int:
    """Mark active jobs whose process is gone as failed (or cancelled, if that was asked).

    Gone means: on this host and its pid is not alive; on any host, no heartbeat for
    ``STALE_S``; or still queued with no process ``START_GRACE_S`` after it was created.
    Returns how many jobs were settled.
    """
    now = now or db.utcnow()
    here = host()
    dead = []
    for j in active:
        reason = None
        if j.pid and (j.host in (None, here)) and not pid_alive(j.pid):
            reason = "the job process ended without a report (killed or crashed)"
        elif j.heartbeat_at is not None and (now - j.heartbeat_at).total_seconds() > STALE_S:
            reason = f"no heartbeat for {int((now - j.heartbeat_at).total_seconds())} s"
        elif j.pid is None and (now - j.created_at).total_seconds() > START_GRACE_S:
            reason = "the job process never started"
        if reason:
            dead.append((j, reason))
    if not dead:
        return 0
    with ws.session() as s:
        for j, reason in dead:
            status = JobStatus.CANCELLED if j.cancel_requested else JobStatus.FAILED
            job_rows.update_job(s, j.id, status=status, finished_at=now,
                          message="cancelled" if j.cancel_requested else reason)
    return len(dead)


def cancel(ws: Workspace, job_id: int) -> bool:
    """Stop an active job: ask its runner (which ends the work and records ``cancelled``) and
    send SIGTERM to its process group when it runs on this host. Work done so far is kept."""
    job = get(ws, job_id)
    if job is None or not job.active:
        return False
    with ws.session() as s:
        job_rows.update_job(s, job_id, cancel_requested=True)
    if job.pid and job.host in (None, host()):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signal.SIGTERM)
    return True


def wait(ws: Workspace, job_id: int, *, timeout: float = 60.0, poll: float = 0.2) -> JobInfo:
    """Block until the job ends (tests, scripts)."""
    end = time.monotonic() + timeout
    while True:
        job = get(ws, job_id)
        if job is not None and not job.active:
            return job
        if time.monotonic() > end:
            raise TimeoutError(f"job {job_id} still {job.status if job else 'missing'}")
        time.sleep(poll)


def log_tail(job: JobInfo, *, lines: int = 30) -> str:
    if not job.log_path or not os.path.exists(job.log_path):
        return ""
    with open(job.log_path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64_000))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def _info(row: dict) -> JobInfo:
    return JobInfo(**{f.name: row.get(f.name) for f in fields(JobInfo)})


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (a zombie child is reaped: gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child of this process stays a zombie until reaped: reap it, then it is gone.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True
