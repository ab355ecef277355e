"""Folders that appear whole or not at all (datasets, model versions): stdlib only."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a hidden temporary folder beside ``final``; it is renamed to ``final`` when the block
    ends normally and removed when it raises, so a crash never leaves a half-written folder
    under a valid name. Refuses an existing ``final``."""
    final = Path(final)
    if final.exists():
        raise FileExistsError(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def removed_on_error(folder: Path) -> Iterator[None]:
    """Remove ``folder`` if the block raises (its database row could not be added)."""
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
