"""What every command module shares: the --project and --json options, the command decorator
(an AnnotatorError is one line on stderr and its exit code), opening the workspace, and
``given`` (only the options a user gave reach a job: its options dataclass owns the defaults).
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from annotator.core.errors import AnnotatorError

ProjectOpt = Annotated[
    Path,
    typer.Option("--project", "-p", envvar="ANNOTATOR_PROJECT", help="Workspace folder.",
                 show_default=True),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def command(typer_app: typer.Typer, name: str | None = None, **kw):
    """Register a command whose AnnotatorErrors become one line on stderr and a non-zero exit."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except AnnotatorError as exc:
                print(f"error: {exc}", file=sys.stderr)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                print("interrupted: work done so far is saved; run the command again to resume",
                      file=sys.stderr)
                raise typer.Exit(130) from None

        return typer_app.command(name, **kw)(wrapper)

    return deco


def given(**options) -> dict:
    """The options the user gave (not None): flags default to None so that the job's options
    dataclass, not the command line, owns every default."""
    return {k: v for k, v in options.items() if v is not None}


def deprecated(old: str, new: str) -> None:
    """One line on stderr for a renamed flag or key that still works."""
    print(f"warning: {old} is deprecated; use {new}", file=sys.stderr)


def open_ws(project: Path):
    from annotator.service.workspace import Workspace

    return Workspace.open(project)


def cli_actor() -> str:
    """Who the audit trail names for a CLI command: the operating-system user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def run_job(ws, kind: str, options, progress):
    """Run a job from the command line as a recorded job row (``runner.run_recorded``): the app's
    job lists show CLI runs beside its own, by ``cli_actor()``."""
    from pipelines.cli.runner import run_recorded

    return run_recorded(ws, kind, options, progress, started_by=cli_actor())
