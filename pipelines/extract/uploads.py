"""Sources given in the app: typed paths and stream URLs checked (:func:`source_lines`), and
uploaded videos stored under the workspace's ``uploads/`` (:func:`save_upload`)."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from annotator.core.errors import InputError
from annotator.media import video
from annotator.service.workspace import Workspace

UPLOADS = "uploads"  # folder of the workspace that holds videos uploaded through the app

def source_lines(text: str) -> list[str]:
    """Sources typed in the app, one per line: existing files or folders on the server (made
    absolute) and stream URLs. Only ever sources: a line that is neither, such as
    ``--checkpoint=/x``, is refused, never read as an option.

    Raises InputError naming every refused line.
    """
    found, refused = [], []
    for line in text.splitlines():
        item = line.strip()
        if not item:
            continue
        if video.is_stream(item):
            found.append(item)
            continue
        path = Path(item).expanduser()
        if path.exists():
            found.append(str(path.resolve()))
        else:
            refused.append(item)
    if refused:
        lines = ", ".join(repr(r) for r in refused)
        raise InputError(f"no such file or folder on the server: {lines} (one path or stream URL "
                         "per line; settings are chosen above, not typed here)")
    return found


def save_upload(ws: Workspace, name: str, data, *, max_mb: int | None = None) -> Path:
    """Store an uploaded file in the workspace's ``uploads/`` and return its path.

    The file is written under a temporary name and renamed to ``<sha256[:12]>-<name>`` (name
    reduced to letters, digits, ``._-``), so a half-written upload never has a real name, two
    uploads called ``cam.mp4`` do not collide, and a file an older source points to is never
    replaced by other bytes. The same bytes uploaded again give the same path.

    Parameters
    ----------
    name : the file name the browser sent (any folders in it are dropped).
    data : bytes, or a binary file object (read from its start, 1 MiB at a time).
    max_mb : size limit in MiB (default: ``limits.max_upload_mb`` of config.toml).
    """
    limit_mb = ws.config.limits.max_upload_mb if max_mb is None else max_mb
    folder = ws.root / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    safe = _safe_name(name)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for block in _blocks(data):
                size += len(block)
                if size > limit_mb * 2**20:
                    raise InputError(f"{safe}: upload larger than {limit_mb} MB "
                                     "(limits.max_upload_mb in config.toml)")
                digest.update(block)
                out.write(block)
        if size == 0:
            raise InputError(f"{safe}: the upload is empty")
        sha = digest.hexdigest()
        for dest in (folder / f"{sha[:12]}-{safe}", folder / f"{sha}-{safe}"):
            if not dest.exists():
                os.replace(tmp, dest)
                return dest
            if video.file_sha256(dest) == sha:  # uploaded before: keep the file sources point to
                os.unlink(tmp)
                return dest
        raise InputError(f"{safe}: cannot store the upload (name taken by other bytes)")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _safe_name(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name).replace("\\", "/")).name).lstrip(".-")
    stem, dot, ext = base.rpartition(".")
    if len(base) > 100:  # keep the extension: it tells OpenCV the container
        base = (stem[: 99 - len(ext)] + "." + ext) if dot and len(ext) <= 10 else base[:100]
    return base or "upload"


def _blocks(data, size: int = 1 << 20):
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for i in range(0, len(view), size):
            yield view[i:i + size]
        return
    if hasattr(data, "seek"):
        data.seek(0)
    while block := data.read(size):
        yield block
