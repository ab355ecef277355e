"""Personal data (README "Personal data"): erase, audit, retention."""
from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, cli_actor, command, given, open_ws, run_job
from pipelines.cli.render import emit, progress_bar

commands = typer.Typer()


@command(commands, "erase")
def erase_cmd(
    source: Annotated[Optional[str], typer.Option("--source", metavar="NAME|ID", help="A whole source: its crops, rows, files, uploads and detect rows.")] = None,
    track: Annotated[Optional[str], typer.Option("--track", metavar="SOURCE:TRACK", help="One tracked person of a source.")] = None,
    crop: Annotated[Optional[int], typer.Option("--crop", metavar="ID", help="One crop.")] = None,
    dry_run: Annotated[Optional[bool], typer.Option("--dry-run", help="List what would go; change nothing.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Only complete erasures a killed run left half done.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Erase a source, a person (track) or a crop from every row and file of the workspace."""
    from annotator.core.errors import InputError
    from pipelines import erase

    if not resume and source is None and track is None and crop is None:
        raise InputError("give --source NAME|ID, --track SOURCE:TRACK, --crop ID or --resume")
    ws = open_ws(project)
    opts = erase.EraseOptions(source=source, track=track, crop=crop, actor=cli_actor(),
                              **given(dry_run=dry_run))
    with progress_bar("erase", enabled=not as_json) as progress:
        rep = erase.run(ws, opts, progress)
    verb = "would erase" if rep.dry_run else "erased"
    emit(rep, as_json, (f"{verb} {rep.target}: {len(rep.crops)} crops, {rep.labels} labels, "
                        f"{rep.predictions} predictions, {len(rep.store_files)} crop files, "
                        f"{rep.cache_entries} cache entries, {len(rep.dataset_files)} dataset "
                        f"files in {', '.join(rep.datasets) or '-'}, {len(rep.detect_files)} detect files, "
                        f"{len(rep.uploads)} uploads; models marked: {', '.join(rep.models) or '-'}")
         + (f"\ncompleted interrupted erasures: {rep.resumed}" if rep.resumed else ""))


@command(commands, "audit")
def audit_cmd(
    user: Annotated[Optional[str], typer.Option("--user", help="Only this account.")] = None,
    action: Annotated[Optional[str], typer.Option("--action", help="view, context, export, erase, role or retention.")] = None,
    crop: Annotated[Optional[int], typer.Option("--crop", metavar="ID")] = None,
    page: Annotated[Optional[str], typer.Option("--page", help="label, grid, review, browse, ...")] = None,
    since: Annotated[Optional[str], typer.Option("--since", metavar="YYYY-MM-DD[THH:MM]")] = None,
    until: Annotated[Optional[str], typer.Option("--until", metavar="YYYY-MM-DD[THH:MM]")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="At most this many events (default 1000).")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """The audit trail, newest first: who viewed which crop or frame, exported, erased, changed a role."""
    import datetime as _dt

    from annotator.data import trail
    from annotator.core.errors import InputError

    def when(v):
        try:
            return None if v is None else _dt.datetime.fromisoformat(v)
        except ValueError:
            raise InputError(f"not a date: {v!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None

    if action is not None and action not in trail.ACTIONS:
        raise InputError(f"--action must be one of {', '.join(trail.ACTIONS)}")
    if limit is not None and limit < 1:
        raise InputError("--limit must be >= 1")
    rows = trail.events(open_ws(project), actor=user, action=action, crop_id=crop, page=page,
                        since=when(since), until=when(until), **given(limit=limit))
    emit(rows, as_json, "\n".join(f"{r['at']}  {r['actor']}  {r['action']}  {r['page'] or ''}  "
                                  f"{r['what'] or json.dumps(r['detail'] or {})}" for r in rows)
         or "no events")


@command(commands, "retention")
def retention_cmd(
    dry_run: Annotated[Optional[bool], typer.Option("--dry-run", help="List what is due; delete nothing.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Apply [privacy] retention: old uploads, unlabeled crops and detect runs go."""
    from pipelines import retention

    ws = open_ws(project)
    with progress_bar("retention", enabled=not as_json) as progress:
        rep = run_job(ws, "retention", retention.RetentionOptions(**given(dry_run=dry_run)), progress)
    emit(rep, as_json, retention.summary(rep))
