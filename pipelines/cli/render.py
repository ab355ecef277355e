"""What the commands print: one JSON object or a short human text on stdout, tables, and a
progress bar per stage on stderr.

Shared by every command module, so a report reads the same whichever command made it.
"""
from __future__ import annotations

import dataclasses
import json
from contextlib import contextmanager
from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def emit(data, as_json: bool, human: str | None = None) -> None:
    """Print a report as JSON (machine) or as a short human text."""
    if dataclasses.is_dataclass(data):
        data = dataclasses.asdict(data)
    if as_json:
        print(json.dumps(data, default=str))
    elif human is not None:
        out.print(human, markup=False, soft_wrap=True)


def print_errors(lines, as_json: bool) -> None:
    """A job's per-source errors, one line each on stderr (the JSON report carries them)."""
    for line in lines if not as_json else ():
        err.print(f"error: {line}", markup=False, soft_wrap=True)


@contextmanager
def progress_bar(description: str, *, enabled: bool = True):
    """A rich progress bar per stage on stderr, handed to jobs as their ``ProgressFn``.

    The bar appears on the first update, so a job that fails its input checks prints only
    its one-line error.
    """
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[msg]}"), TimeElapsedColumn(), console=err, disable=not enabled,
    )
    tasks: dict[str, int] = {}

    def update(done: int, total: Optional[int], message: str = "", *, stage: str | None = None,
               data: dict | None = None):
        key = stage or description
        if not tasks:
            bar.start()
        if key not in tasks:
            tasks[key] = bar.add_task(key, total=None, msg="")
        bar.update(tasks[key], completed=done, total=total, msg=message)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()
