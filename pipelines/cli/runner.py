"""Background jobs for the app: which jobs the UI may start, and the process that runs one.

A surface, like the CLI: :func:`submit` checks a job's options (only the fields the UI offers,
each of the right type; server paths must exist) and records it through ``annotator.service.jobs``;
``python -m pipelines.cli.runner --project DIR ID`` (:func:`command_line`, which
``annotator.service.jobs.start`` launches) rebuilds
the options from the row, calls the same job function the CLI calls with a progress reporter
that writes to the row, and records the report, the real failure reason, or ``cancelled``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from annotator.data import db, job_rows
from annotator.service import jobs
from annotator.data.db import JobStatus
from annotator.core.errors import AnnotatorError, InputError
from annotator.core.failpoints import failpoint
from annotator.core.progress import StagedProgress
from annotator.core.urls import redact_text
from annotator.service.workspace import Workspace

PROGRESS_EVERY_S = 0.5


class JobCancelled(BaseException):
    """Raised in the job's thread when a cancel arrives (SIGTERM or the row's flag)."""


@dataclass(frozen=True)
class JobSpec:
    """One kind of background job."""

    options: type  # the job's keyword-only options dataclass
    run: Callable  # run(ws, options, progress) -> report dataclass
    ui_fields: frozenset[str]  # the options the UI may set; every other one keeps its default
    stages: dict | None = None  # declared stages and their shares, for one monotonic progress
    paths: frozenset[str] = frozenset()  # fields (a path or a list) that must exist here
    for_job: Callable | None = None  # for_job(ws, options, job_id) -> options (e.g. its folder)


def specs() -> dict[str, JobSpec]:
    from pipelines import autolabel, detect, export, extract, import_folder, promote, retrain, score
    from pipelines.detect.options import for_job as detect_for_job

    out = {
        "extract": JobSpec(extract.ExtractOptions, extract.run, frozenset({
            "sources", "detector", "fps", "every", "per_track", "min_size", "min_score",
            "motion", "redo"}), paths=frozenset({"sources"})),
        "retrain": JobSpec(retrain.RetrainOptions, retrain.run, frozenset({
            "epochs", "init", "synthetic_masks", "force"}), stages=retrain.STAGES,
            paths=frozenset({"synthetic_masks"})),
        "score": JobSpec(score.ScoreOptions, score.run, frozenset({"model"})),
        "import": JobSpec(import_folder.ImportOptions, import_folder.run,
                          frozenset({"folder", "labeled"}), paths=frozenset({"folder"})),
        "promote": JobSpec(promote.PromoteOptions, promote.promote,
                           frozenset({"version", "force"})),
        "rollback": JobSpec(promote.RollbackOptions, promote.rollback, frozenset()),
        "autolabel": JobSpec(autolabel.AutolabelOptions, autolabel.run, frozenset()),
        "detect": JobSpec(detect.DetectOptions, detect.run, frozenset({
            "sources", "model", "detector", "fps", "min_prob", "vote", "max_seconds",
            "to_queue", "codec"}), paths=frozenset({"sources"}), for_job=detect_for_job),
        "export": JobSpec(export.ExportOptions, export.run,
                          frozenset({"out", "format", "with_provenance"})),
    }
    from pipelines import retention  # privacy: [privacy] retention from the Personal data page

    out["retention"] = JobSpec(retention.RetentionOptions, retention.run, frozenset())
    return out


def submit(ws: Workspace, kind: str, options, *, started_by: str | None = None,
           env: dict[str, str] | None = None, account_id: int | None = None,
           token: str | None = None) -> int:
    """Validate a job the UI asks for and start it; returns the job id.

    Only fields in the job's ``ui_fields`` may differ from their defaults, so no browser field
    reaches an option the page did not offer (a checkpoint path, say). A page passes its
    ``account_id`` (and session ``token``): the account must still be an enabled admin now.
    """
    if account_id is not None:
        from annotator.service import auth

        auth.require_admin(ws, account_id, token=token)
    spec = specs().get(kind)
    if spec is None:
        raise InputError(f"not a job the app can run: {kind!r}")
    if not isinstance(options, spec.options):
        raise InputError(f"{kind} needs {spec.options.__name__}, got {type(options).__name__}")
    args = _check_fields(spec, options)
    for name in spec.paths:
        value = args.get(name)
        for item in (value if isinstance(value, list) else [] if value is None else [value]):
            _check_server_path(item)
    args, secrets = _split_secrets(args)
    if secrets:  # the job's process gets them in its environment; the row keeps the redacted form
        env = {**(env or {}), SECRETS_ENV: json.dumps(secrets)}
    return jobs.start(ws, kind, args, command=command_line, started_by=started_by, env=env)


SECRETS_ENV = "ANNOTATOR_JOB_SECRETS"
BEFORE_JOB = "runner_before_job"  # failpoint: a job's process, before it reads its row


def _split_secrets(args: dict) -> tuple[dict, dict[str, str]]:
    """Replace every URL with a password in the options by its redacted form; returns the
    redacted options and ``{redacted: full}`` for the job's process."""
    from annotator.core.urls import redact

    secrets: dict[str, str] = {}

    def clean(v):
        if isinstance(v, str) and redact(v) != v:
            secrets[redact(v)] = v
            return redact(v)
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return {k: clean(v) for k, v in args.items()}, secrets


def _restore_secrets(args: dict) -> dict:
    secrets = json.loads(os.environ.get(SECRETS_ENV) or "{}")

    def put(v):
        if isinstance(v, list):
            return [put(x) for x in v]
        return secrets.get(v, v) if isinstance(v, str) else v

    return {k: put(v) for k, v in args.items()}


def _check_fields(spec: JobSpec, options) -> dict:
    args = json.loads(json.dumps(dataclasses.asdict(options), default=str))
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else
                         f.default_factory() if f.default_factory is not dataclasses.MISSING
                         else dataclasses.MISSING) for f in fields(spec.options)}
    for name, value in args.items():
        default = defaults[name]
        if name not in spec.ui_fields and default is not dataclasses.MISSING and \
                value != json.loads(json.dumps(default, default=str)):
            raise InputError(f"the app cannot set {name!r} of a {spec.options.__name__}")
    return args


def _check_server_path(item: str) -> None:
    from annotator.media import video

    if not isinstance(item, str) or not item.strip():
        raise InputError("empty source")
    if video.is_stream(item):
        return
    if item.startswith("-"):
        raise InputError(f"{item!r} is not a path")
    if not Path(item).exists():
        raise InputError(f"{item}: no such file or folder on the server")


# --- the runner (in the detached process) -----------------------------------------------------


def run_job(ws: Workspace, job_id: int) -> int:
    """Run one recorded job in this process and record its outcome. Returns the exit code."""
    failpoint(BEFORE_JOB)
    with ws.read_session() as s:
        row = job_rows.get_job(s, job_id)
    if row is None:
        raise InputError(f"job {job_id} does not exist")
    spec = specs().get(row["kind"])
    if spec is None or not isinstance(row["args"], dict):
        with ws.session() as s:
            job_rows.update_job(s, job_id, status=JobStatus.FAILED, finished_at=db.utcnow(),
                          message=f"unknown job {row['kind']!r}")
        return 2
    now = db.utcnow()
    with ws.session() as s:
        job_rows.update_job(s, job_id, status=JobStatus.RUNNING, pid=os.getpid(), host=jobs.host(),
                      started_at=now, heartbeat_at=now, message="started")
    nice = jobs.BACKGROUND_NICENESS if row["kind"] in jobs.BACKGROUND_KINDS else 0
    if nice:  # long footage jobs yield the cores to a retrain someone waits for (bench.train)
        with contextlib.suppress(OSError):
            os.nice(nice)
    reporter = _Reporter(ws, job_id, spec.stages)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with _outcome_recorded(ws, job_id, reporter) as outcome:
            options = spec.options(**_restore_secrets(row["args"]))
            if spec.for_job is not None:
                options = spec.for_job(ws, options, job_id)
            outcome["result"] = _result(spec.run(ws, options, reporter))
            print(json.dumps(outcome["result"]), flush=True)
        return 0
    except JobCancelled:
        return 130
    except AnnotatorError as exc:  # bad input or state: the reason, in one line
        print(f"error: {redact_text(str(exc))}", file=sys.stderr, flush=True)
        return exc.exit_code
    except Exception:  # a bug: the traceback goes to the log, the reason to the row
        traceback.print_exc()
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def _result(report) -> dict:
    """A job's report as the row keeps it: JSON, and no stream secret in it, whatever a job
    reports (``urls.redact_text``)."""
    return json.loads(redact_text(json.dumps(dataclasses.asdict(report) if
                                             dataclasses.is_dataclass(report) else report,
                                             default=str)))


@contextlib.contextmanager
def _outcome_recorded(ws: Workspace, job_id: int, reporter: "_Reporter"):
    """Keeps the row's heartbeat while the body runs, then records how it ended: done with the
    ``result`` the body put in the yielded dict, cancelled, or failed with the reason.
    Exceptions pass on to the caller."""
    box: dict = {}
    outcome = dict(status=JobStatus.FAILED, message="failed")
    threading.Thread(target=reporter.heartbeat, daemon=True).start()
    try:
        yield box
        outcome = dict(status=JobStatus.DONE, progress=1.0, message="done", result=box.get("result"))
    except JobCancelled:
        outcome = dict(status=JobStatus.CANCELLED, message="cancelled")
        raise
    except KeyboardInterrupt:
        outcome = dict(status=JobStatus.CANCELLED, message="interrupted on the command line")
        raise
    except AnnotatorError as exc:
        outcome = dict(status=JobStatus.FAILED, message=redact_text(str(exc)))
        raise
    except Exception as exc:
        outcome = dict(status=JobStatus.FAILED,
                       message=redact_text(f"internal error: {type(exc).__name__}: {exc}"))
        raise
    finally:
        reporter.stop = True
        with ws.session() as s:
            job_rows.update_job(s, job_id, finished_at=db.utcnow(), heartbeat_at=db.utcnow(),
                                **outcome)


class CancelledFromApp(AnnotatorError):
    """A command-line run whose job row someone cancelled on a page."""

    exit_code = 130


def run_recorded(ws: Workspace, kind: str, options, progress, *, started_by: str):
    """Run a job in this process from the command line, recorded as a job row like the app's:
    the pages list it, with its progress, who started it and how it ended, and its Cancel
    works. ``progress`` (the CLI's bar) gets every update too. Returns the job's report."""
    spec = specs()[kind]
    args, _secrets = _split_secrets(json.loads(json.dumps(dataclasses.asdict(options), default=str)))
    now = db.utcnow()
    with ws.session() as s:
        job_id = job_rows.create_job(s, kind=kind, args=args, started_by=started_by)
        job_rows.update_job(s, job_id, status=JobStatus.RUNNING, pid=os.getpid(), host=jobs.host(),
                            started_at=now, heartbeat_at=now, message="started from the command line")
    reporter = _Reporter(ws, job_id, spec.stages, echo=False)

    def both(done, total, message="", *, stage=None, data=None):
        progress(done, total, message, stage=stage, data=data)
        reporter(done, total, message, stage=stage, data=data)

    # The page's Cancel sends SIGTERM to this process too: end as a recorded cancel, not a kill.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if main else None
    try:
        with _outcome_recorded(ws, job_id, reporter) as outcome:
            report = spec.run(ws, options, both)
            outcome["result"] = _result(report)
        return report
    except JobCancelled:
        raise CancelledFromApp("cancelled from the app; the work done so far is kept") from None
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _on_sigterm(signum, frame):
    raise JobCancelled()


class _Reporter:
    """The job's ``ProgressFn``: a monotonic overall fraction, the stage's message and any
    per-step data (training epochs) on the row, at most every ``PROGRESS_EVERY_S``; a cancel
    flag set on the row (from any host) stops the job at its next progress call."""

    def __init__(self, ws: Workspace, job_id: int, stages: dict | None, *, echo: bool = True):
        self.ws, self.job_id, self.echo = ws, job_id, echo
        self.staged = StagedProgress(stages)
        self.detail: dict[str, list] = {}
        self.last = 0.0
        self.stop = False
        self.lock = threading.Lock()

    def __call__(self, done, total, message="", *, stage=None, data=None):
        message = redact_text(message)
        frac = self.staged.update(done, total, stage)
        if data is not None:
            self.detail.setdefault(stage or "_", []).append(data)
        now = time.monotonic()
        finished = total is not None and done >= total
        if now - self.last < PROGRESS_EVERY_S and not finished and data is None:
            return
        self.last = now
        text = f"{stage + ': ' if stage else ''}{done}" + (f"/{total}" if total else "")
        text = f"{text} {message}"
        eta = self.staged.eta_s()
        stamp = db.utcnow()
        detail = {**self.detail, "eta_s": None if eta is None else round(eta, 1),
                  "eta_at": stamp.isoformat()}
        with self.lock, self.ws.session() as s:
            job_rows.update_job(s, self.job_id, progress=frac, message=text.strip(),
                          heartbeat_at=stamp, detail=detail)
            cancel = job_rows.get_job(s, self.job_id)["cancel_requested"]
        if self.echo:  # the job's log; a CLI run has its own bar
            print(f"[progress] {frac:.3f} {text}", file=sys.stderr, flush=True)
        if cancel:
            raise JobCancelled()

    def heartbeat(self):
        """Keep ``heartbeat_at`` fresh while a long step reports nothing (other hosts use it
        to tell a live job from a dead one)."""
        while not self.stop:
            time.sleep(jobs.HEARTBEAT_S)
            if self.stop:
                return
            try:
                with self.lock, self.ws.session() as s:
                    job_rows.update_job(s, self.job_id, heartbeat_at=db.utcnow())
            except Exception:  # a busy database: the next beat tries again
                pass


def command_line(root: str, job_id: int) -> list[str]:
    """The process that runs recorded job ``job_id`` of the workspace at ``root`` (``main``)."""
    return [sys.executable, "-m", "pipelines.cli.runner",
            "--project", root, str(job_id)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.cli.runner",
                                     description="Run one recorded background job.")
    parser.add_argument("--project", required=True, type=Path)
    parser.add_argument("job_id", type=int)
    ns = parser.parse_args(argv)
    ws = Workspace.open(ns.project)
    return run_job(ws, ns.job_id)


if __name__ == "__main__":
    sys.exit(main())
