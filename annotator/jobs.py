"""Background jobs started from the UI: ``annotator <command> --json`` in a detached process.

:func:`start` records a ``Job`` row and launches ``python -m annotator.jobs --project DIR ID``
in its own session (so it survives page reloads and a restart of the Streamlit server). That
runner executes the ordinary CLI command in-process with ``--json``, sends the command's
progress callbacks to the ``Job`` row (progress 0..1 and a message), writes everything the
command prints to ``jobs/job-ID.log``, and stores the command's JSON report as ``Job.result``.
Pages poll :func:`list_jobs`; nothing heavy ever runs inside the Streamlit script.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from annotator import db
from annotator.errors import InputError
from annotator.workspace import Workspace

# Commands the UI may start, by the words that name them.
ALLOWED = {("extract",), ("retrain",), ("score",), ("models", "promote"), ("models", "rollback"),
           ("stats",), ("import-folder",), ("export",)}
PROGRESS_EVERY_S = 0.5


@dataclass(frozen=True)
class JobInfo:
    id: int
    kind: str
    args: list
    status: str  # queued | running | done | failed
    progress: float
    message: str | None
    result: dict | None
    pid: int | None
    log_path: str | None
    started_by: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


def start(ws: Workspace, args: list[str], *, started_by: str | None = None) -> int:
    """Launch ``annotator ARGS --json`` in the background; returns the job id at once."""
    args = [str(a) for a in args]
    kind = _kind(args)
    if "--json" not in args:
        args.append("--json")
    with ws.session() as s:
        job_id = db.create_job(s, kind=kind, args=args, started_by=started_by)
        log = ws.jobs_dir / f"job-{job_id}.log"
        db.update_job(s, job_id, log_path=str(log))
    ws.jobs_dir.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "annotator.jobs", "--project", str(ws.root.resolve()),
             str(job_id)],
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: a page reload or server stop won't kill it
            env={**os.environ, "ANNOTATOR_PROJECT": str(ws.root.resolve()),
                 "ANNOTATOR_DB_URL": ws.db_url, "PYTHONUNBUFFERED": "1"},
        )
    with ws.session() as s:
        db.update_job(s, job_id, pid=proc.pid)
    return job_id


def list_jobs(ws: Workspace, *, kinds=None, limit: int = 20) -> list[JobInfo]:
    """Newest first. Jobs whose process died without finishing are marked failed here."""
    with ws.read_session() as s:
        rows = db.list_jobs(s, kinds=kinds, limit=limit)
    jobs = [JobInfo(**{k: r[k] for k in JobInfo.__dataclass_fields__}) for r in rows]
    dead = [j for j in jobs if j.status == "running" and j.pid and not _alive(j.pid)]
    if dead:
        with ws.session() as s:
            for j in dead:
                db.update_job(s, j.id, status="failed", finished_at=db.utcnow(),
                              message=j.message or "the job process ended without a report")
        return list_jobs(ws, kinds=kinds, limit=limit)
    return jobs


def get(ws: Workspace, job_id: int) -> JobInfo | None:
    return next((j for j in list_jobs(ws, limit=10_000) if j.id == job_id), None)


def log_tail(job: JobInfo, *, lines: int = 30) -> str:
    if not job.log_path or not os.path.exists(job.log_path):
        return ""
    with open(job.log_path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - 64_000))
        text = fh.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


def cancel(ws: Workspace, job_id: int) -> bool:
    """Stop a running job (SIGTERM to its process group); the work done so far is kept."""
    job = get(ws, job_id)
    if job is None or not job.active or not job.pid:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job.pid, signal.SIGTERM)
    with ws.session() as s:
        db.update_job(s, job_id, status="failed", message="cancelled", finished_at=db.utcnow())
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


# --- the runner (in the detached process) -----------------------------------------------------


def run_job(ws: Workspace, job_id: int) -> int:
    """Execute one job's command in this process and record its outcome. Returns the exit code."""
    from annotator import cli

    with ws.read_session() as s:
        rows = [r for r in db.list_jobs(s, limit=1_000_000) if r["id"] == job_id]
    if not rows:
        raise InputError(f"job {job_id} does not exist")
    args = list(rows[0]["args"])
    with ws.session() as s:
        db.update_job(s, job_id, status="running", pid=os.getpid(), message="started")
    cli.progress_bar = _job_progress(ws, job_id)  # the command's progress goes to the Job row
    captured = io.StringIO()
    code, error = 1, None
    try:
        with contextlib.redirect_stdout(captured):
            code = cli.app(args=args, standalone_mode=False, prog_name="annotator")
        code = 0 if code is None else int(code)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # a crash must still end as a failed job, with the traceback
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    out = captured.getvalue()
    sys.stdout.write(out)
    result = _last_json(out)
    ok = code == 0 and error is None
    sys.stdout.flush()
    sys.stderr.flush()
    done = dict(status="done", progress=1.0, message="done") if ok else dict(
        status="failed", message=error or _last_error_line(rows[0]["log_path"]))
    with ws.session() as s:
        db.update_job(
            s, job_id, finished_at=db.utcnow(),
            result=result if isinstance(result, dict) else ({"output": result} if result else None),
            **done,
        )
    return code


def _job_progress(ws: Workspace, job_id: int):
    @contextlib.contextmanager
    def progress_bar(description: str, *, enabled: bool = True):
        last = [0.0]

        def update(done, total, message: str = "", *, stage: str | None = None):
            now = time.monotonic()
            finished = total is not None and done >= total
            if now - last[0] < PROGRESS_EVERY_S and not finished:
                return
            last[0] = now
            frac = min(1.0, done / total) if total else 0.0
            text = f"{stage or description}: {done}" + (f"/{total}" if total else "")
            with ws.session() as s:
                db.update_job(s, job_id, progress=frac,
                              message=f"{text} {message}".strip())
            print(f"[progress] {frac:.3f} {text} {message}", file=sys.stderr, flush=True)

        yield update

    return progress_bar


def _last_json(text: str):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith(("{", "[")):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


def _last_error_line(log_path: str | None) -> str:
    if not log_path or not os.path.exists(log_path):
        return "failed"
    lines = [ln for ln in Path(log_path).read_text(errors="replace").splitlines() if ln.strip()]
    errs = [ln for ln in lines if ln.startswith("error:")]
    return (errs or lines or ["failed"])[-1][:500]


def _kind(args: list[str]) -> str:
    words = [a for a in args if not a.startswith("-")]
    for n in (2, 1):
        if tuple(words[:n]) in ALLOWED:
            return " ".join(words[:n])
    raise InputError(f"not a command the app can run: {' '.join(args) or '(none)'}")


def _alive(pid: int) -> bool:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m annotator.jobs",
                                     description="Run one recorded background job.")
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("job_id", type=int)
    ns = parser.parse_args(argv)
    ws = Workspace.open(ns.project)
    return run_job(ws, ns.job_id)


if __name__ == "__main__":
    sys.exit(main())
