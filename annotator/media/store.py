"""Content-addressed crop files: ``crops/ab/abcdef....png``. Identical images are stored once."""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.media.images import encode_png


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    relpath: str  # relative to the store root, forward slashes


class CropStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def put_bytes(self, data: bytes, ext: str) -> StoredFile:
        """Store encoded image bytes under their sha256; a second put of the same bytes is free."""
        digest = hashlib.sha256(data).hexdigest()
        rel = f"{digest[:2]}/{digest}.{ext.lstrip('.').lower()}"
        dest = self.root / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename: a crash never leaves a half-written file under a valid name.
            fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, dest)
        return StoredFile(digest, rel)

    def put_image(self, bgr: np.ndarray) -> StoredFile:
        """Encode an OpenCV BGR crop as lossless PNG and store it."""
        return self.put_bytes(encode_png(bgr), "png")

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def read_bytes(self, relpath: str) -> bytes:
        return (self.root / relpath).read_bytes()

    def remove(self, relpath: str) -> bool:
        """Delete a stored file (the caller checked that no crop row uses it)."""
        try:
            (self.root / relpath).unlink()
        except FileNotFoundError:
            return False
        return True
