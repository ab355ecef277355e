"""`annotator cache ...`: the tensor cache (crops decoded once at the model's input size)."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, command, given, open_ws
from pipelines.cli.render import emit, progress_bar

cache_app = typer.Typer(no_args_is_help=True, help="The tensor cache: crops decoded once at the model's input size.")


@command(cache_app, "status")
def cache_status_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Entries, bytes, and how many of the workspace's crops are cached."""
    from annotator.media import cache

    ws = open_ws(project)
    st = cache.status(ws)
    share = "n/a" if st["hit_share"] is None else f"{st['hit_share']:.1%}"
    emit(st, as_json, f"{st['entries']} tensors ({st['bytes'] / 1e6:.1f} MB) in {st['path']}: "
                      f"{st['cached_crops']} of {st['crops']} crop images cached ({share}), "
                      f"{st['missing']} missing, {st['unused_entries']} unused, "
                      f"{st['dead_records']} dead records ({st['dead_bytes'] / 1e6:.1f} MB)")


@command(cache_app, "rebuild")
def cache_rebuild_cmd(
    fill: Annotated[Optional[bool], typer.Option("--fill/--no-fill", help="Also decode and add every crop that is missing.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Compact the cache to the crops the database has (dropping forgotten, damaged and
    unused tensors), then fill what is missing."""
    from pipelines import rebuild_cache

    ws = open_ws(project)
    with progress_bar("cache", enabled=not as_json) as progress:
        rep = rebuild_cache.rebuild(ws, rebuild_cache.RebuildOptions(**given(fill=fill)), progress)
    emit(rep, as_json, f"kept {rep.kept}, dropped {rep.dropped_unused} unused and "
                       f"{rep.dropped_damaged} damaged ({rep.reclaimed_bytes / 1e6:.1f} MB freed), "
                       f"filled {rep.filled} ({rep.crops_per_s}/s, {rep.unreadable} unreadable): "
                       f"{rep.entries} tensors, {rep.bytes / 1e6:.1f} MB")
