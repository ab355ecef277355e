"""Job: compact the tensor cache to the crops the database still has, then fill in the rest
(``annotator cache rebuild``). The cache itself is ``annotator.media.cache``."""
from __future__ import annotations

import time
from dataclasses import dataclass

from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent
from annotator.media import images
from annotator.media.cache import FILL_CHUNK, of, stored_images


@dataclass(kw_only=True)
class RebuildOptions:
    size: int = images.MODEL_SIZE
    fill: bool = True  # decode and add every crop that is missing
    chunk: int = FILL_CHUNK


@dataclass
class RebuildReport:
    kept: int = 0
    dropped_unused: int = 0  # no crop row uses the sha256 (or it was forgotten)
    dropped_damaged: int = 0  # failed the checksum
    reclaimed_bytes: int = 0
    filled: int = 0
    unreadable: int = 0
    entries: int = 0
    bytes: int = 0
    seconds: float = 0.0
    crops_per_s: float = 0.0


def rebuild(ws, opts: RebuildOptions | None = None, progress: ProgressFn = silent) -> RebuildReport:
    """Compact the cache to the crops the database still has, then (``fill``) add the rest."""
    opts = opts or RebuildOptions()
    if opts.size < 8 or opts.chunk < 1:
        raise InputError("--size must be >= 8 and the chunk >= 1")
    t0 = time.perf_counter()
    c = of(ws, opts.size)
    stored = stored_images(ws)
    rep = RebuildReport(**c.compact(set(stored)))
    if opts.fill:
        todo = [(h, ws.store.path(p)) for h, p in sorted(stored.items()) if h not in c]
        for start in range(0, len(todo), opts.chunk):
            part = todo[start:start + opts.chunk]
            c.load(part)
            done = start + len(part)
            rate = done / max(time.perf_counter() - t0, 1e-9)
            progress(done, len(todo), f"{rate:.0f} crops/s", stage="cache")
        rep.filled, rep.unreadable = c.filled, c.unreadable
    st = c.status()
    rep.entries, rep.bytes = st["entries"], st["bytes"]
    rep.seconds = round(time.perf_counter() - t0, 2)
    rep.crops_per_s = round(rep.filled / max(rep.seconds, 1e-9), 1)
    return rep
