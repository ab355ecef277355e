"""Folders and files that appear whole or not at all (datasets, model versions, exports), and the
one check of a user-named output path: stdlib only."""
from __future__ import annotations

import gzip
import os
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from annotator.core.errors import InputError


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


def output_path(path: Path, *, owned, force: bool, folder: bool = False) -> Path:
    """The one check for a user-named output: refuses what ``owned(path)`` says is the
    workspace's own (its database, config, crops, models ..., through symlinks and hard links
    too), a folder where a file is wanted (and the reverse), and an existing file or non-empty
    folder without ``force``. Write files to it with :func:`atomic_file`."""
    path = Path(path)
    if owned is not None and owned(path):
        raise InputError(f"{path} is part of the workspace itself (database, config, crops, "
                         "models, ...); write somewhere else")
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir() and parent != path:
            raise InputError(f"cannot write {path}: {parent} is a file, not a folder")
    if folder:
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} exists and is not a folder")
        if path.is_dir() and any(path.iterdir()) and not force:
            raise InputError(f"{path} is not empty; pass --force to write into it")
    else:
        if path.is_dir():
            raise InputError(f"{path} is a folder; give a file name")
        if (path.exists() or path.is_symlink()) and not force:
            raise InputError(f"{path} exists; pass --force to replace it")
    return path


@contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a hidden temporary file name beside ``final``; it is renamed over ``final`` when the
    block ends normally (so a symlink or hard link at ``final`` is replaced, never written
    through) and removed when it raises."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write {final}: {exc.strerror or exc}") from None
    # A fresh name the writer creates (with the user's umask, as a plain write would).
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.part")
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_text(path: Path, mode: str = "r"):
    """A text file for the csv module, gzip-compressed when its name ends in ``.gz`` (a dataset
    manifest: a crop's row is mostly hex digests, which gzip shrinks about 3x)."""
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "t", newline="", encoding="utf-8")
    return open(path, mode, newline="", encoding="utf-8")
