"""Labels from the machine and the queue's slices: autolabel, slices."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, command, given, open_ws, run_job
from pipelines.cli.render import emit, progress_bar

commands = typer.Typer()


@command(commands, "autolabel")
def autolabel_cmd(
    max_error: Annotated[Optional[float], typer.Option(
        "--max-error", help="Audited 95% error bound per class (default: autolabel.max_error).")] = None,
    dry_run: Annotated[Optional[bool], typer.Option("--dry-run", help="Show what it would label.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Label the crops the active model is sure of, where the audit bounds its error."""
    from pipelines import autolabel

    with progress_bar("autolabel", enabled=not as_json) as progress:
        rep = run_job(open_ws(project), "autolabel", autolabel.AutolabelOptions(
            **given(max_error=max_error, dry_run=dry_run)), progress)
    emit(rep, as_json, autolabel.summary(rep))


@command(commands, "slices")
def slices_cmd(
    backfill: Annotated[bool, typer.Option("--backfill", help="Compute the attributes of crops that have none (resumable).")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most this many crops.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Slice attributes of the crops: counts per band, or --backfill the missing ones."""
    ws = open_ws(project)
    if backfill:
        from pipelines import slices as slices_job

        with progress_bar("slices", enabled=not as_json) as progress:
            rep = slices_job.run(ws, slices_job.BackfillOptions(**given(limit=limit)), progress)
        emit(rep, as_json, f"{rep.filled} crops given slice attributes ({rep.unreadable} "
                           f"unreadable) in {rep.seconds} s; {rep.missing_after} still without")
        return
    import numpy as np

    from annotator.core import slices
    from annotator.data import slice_store

    with ws.read_session() as s:
        df = slice_store.frame(s)
        missing = slice_store.missing_count(s)
    bands = slices.bands(df.to_dict("records"))
    counts = {a: dict(sorted(zip(*np.unique(b.astype(str), return_counts=True)))) if len(b) else {}
              for a, b in bands.items()}
    counts = {a: {k: int(v) for k, v in c.items()} for a, c in counts.items()}
    emit({"crops": int(len(df)), "without_attributes": int(missing), "bands": counts}, as_json,
         "\n".join([f"{len(df)} crops, {missing} without attributes "
                    "(run `annotator slices --backfill`)" if missing else f"{len(df)} crops"]
                   + [f"  {a}: " + ", ".join(f"{k} {v}" for k, v in c.items())
                      for a, c in counts.items()]))
