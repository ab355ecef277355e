"""The `annotator` command: thin commands that open the workspace, call one job and print.

A surface, like the pages and the background-job runner (``pipelines.cli.runner``): a command
parses arguments into a job's keyword-only options, calls the job with a rich progress bar, and
prints a short text or ``--json``. Flags default to ``None`` and only the given ones reach the
job, so each job's options dataclass owns its defaults. One module per command group; heavy
libraries (torch, openpifpaf, streamlit) are imported inside command bodies so that
``annotator --help`` stays fast.
"""
from __future__ import annotations

import typer

from pipelines.cli import (cache, data, detect, extract, label, models, privacy, server, simulate,
                           train, users, workspace)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Turn CCTV footage into a labeled mask / no-mask dataset and a better classifier.",
)
for group in (workspace, data, label, extract, detect, train, models, server, simulate, privacy):
    app.add_typer(group.commands)  # no name: its commands sit at the top level
app.add_typer(users.user_app, name="user")
app.add_typer(models.models_app, name="models")
app.add_typer(cache.cache_app, name="cache")


def main() -> None:
    app()
