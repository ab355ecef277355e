"""Job: backfill slice attributes for crops stored before they existed (or whose write failed).

Resumable by construction: each chunk picks crops that still have no attributes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from annotator.data import slice_store
from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace

CHUNK = 500  # crops per transaction


@dataclass(kw_only=True)
class BackfillOptions:
    limit: int | None = None  # at most this many crops (None: all)


@dataclass
class BackfillReport:
    missing_before: int = 0
    filled: int = 0
    unreadable: int = 0
    missing_after: int = 0
    seconds: float = 0.0


def run(ws: Workspace, opts: BackfillOptions, progress: ProgressFn = silent) -> BackfillReport:
    t0 = time.perf_counter()
    with ws.read_session() as s:
        missing = slice_store.missing_count(s)
    todo = missing if opts.limit is None else min(missing, max(0, int(opts.limit)))
    rep = BackfillReport(missing_before=missing)
    while rep.filled < todo:
        with ws.read_session() as s:
            ids = slice_store.missing_ids(s, limit=min(CHUNK, todo - rep.filled))
        if not ids:
            break
        filled, bad = slice_store.fill(ws, ids)
        if filled == 0:
            break  # someone else filled them meanwhile
        rep.filled += filled
        rep.unreadable += bad
        progress(rep.filled, todo, f"{rep.unreadable} unreadable", stage="slices")
    with ws.read_session() as s:
        rep.missing_after = slice_store.missing_count(s)
    rep.seconds = round(time.perf_counter() - t0, 2)
    return rep
