"""Job: erase a source, one tracked person, or one crop from everywhere in the workspace.

``--dry-run`` lists exactly what a real run removes. The erasure itself (rows, crop files,
cache, dataset versions, detect runs, uploads; journaled, crash safe) is
:mod:`pipelines.common.erasure`; a run first completes the erasures a killed one left.
"""
from __future__ import annotations

from dataclasses import dataclass

from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace
from pipelines.common.erasure import EraseReport, Target, erase


@dataclass(kw_only=True)
class EraseOptions:
    source: str | None = None  # NAME or ID
    track: str | None = None  # SOURCE:TRACK
    crop: int | None = None
    crops: list[int] | None = None  # several crops by id (not a CLI option)
    dry_run: bool = False
    actor: str = "cli"


def run(ws: Workspace, opts: EraseOptions, progress: ProgressFn = silent) -> EraseReport:
    return erase(ws, Target(opts.source, opts.track, opts.crop, opts.crops),
                 dry_run=opts.dry_run, actor=opts.actor, progress=progress)
