"""Image files: which ones we read, decoding, resizing to the model's input, thumbnails, MIME
types and ImageFolders. The one adapter every job and page reads pictures through.

Arrays are uint8 RGB ``(H, W, 3)`` unless a name says BGR (OpenCV's order, used for frames).
Files larger than ``MAX_PIXELS`` are refused before they are decoded (a 168 KB PNG can hold a
12000 x 12000 picture: 432 MB decoded).
"""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from annotator.core.errors import InputError

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".jp2",
                        ".pgm", ".ppm"})
MIME_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
              "bmp": "image/bmp", "gif": "image/gif", "tif": "image/tiff", "tiff": "image/tiff"}
EXT_BY_FORMAT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "GIF": "gif",
                 "TIFF": "tif"}
MAX_PIXELS = 40_000_000  # default limit; config.toml [limits] max_image_pixels overrides it
MODEL_SIZE = 45  # OFMClassifier's input side (models.ofm.INPUT_SIZE; the core cannot import it)


class ImageTooLarge(InputError):
    pass


def is_image(path: Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def mime_type(path: str | Path) -> str:
    return MIME_TYPES.get(Path(path).suffix.lower().lstrip("."), "image/png")


def probe_bytes(data: bytes, *, max_pixels: int = MAX_PIXELS) -> tuple[str, int, int]:
    """``(file extension, width, height)`` of encoded image bytes, fully decoded once so that a
    truncated file fails here rather than in the labeling app. Raises InputError for anything
    that is not a readable image or is larger than ``max_pixels``."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # our own limit below replaces PIL's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageTooLarge(f"{w}x{h} pixels is over the {max_pixels:,}-pixel limit")
            im.load()
            fmt = im.format
    except ImageTooLarge:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError,
            SyntaxError) as exc:
        raise InputError(f"not a readable image ({type(exc).__name__})") from None
    return EXT_BY_FORMAT.get(fmt, (fmt or "img").lower()), w, h


def image_size(path: str | Path) -> tuple[int, int] | None:
    """``(width, height)`` from the file header, without decoding; None if not an image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def read_bgr(path: str | Path, *, max_pixels: int = MAX_PIXELS) -> np.ndarray | None:
    """A picture file as a BGR array, or None when unreadable or over ``max_pixels``."""
    import cv2

    size = image_size(path)
    if size is None or size[0] * size[1] > max_pixels:
        return None
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def to_model_input(bgr: np.ndarray, size: int = MODEL_SIZE) -> np.ndarray:
    """A BGR crop as the classifier's input: RGB uint8 ``(size, size, 3)``, area-resized."""
    import cv2

    if bgr.shape[:2] != (size, size):
        bgr = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_model_input(path: str, size: int) -> np.ndarray | None:
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if bgr is None else to_model_input(bgr, size)


def load_images_checked(paths: Sequence, size: int = MODEL_SIZE, *,
                        workers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Read files as model input; unreadable ones give a zero image and ``ok[i] = False``.

    Returns
    -------
    images : uint8 (N, size, size, 3) RGB
    ok : bool (N,)
    """
    paths = [str(p) for p in paths]
    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    ok = np.zeros(len(paths), dtype=bool)
    if not paths:
        return out, ok
    with ThreadPoolExecutor(max_workers=workers) as pool:  # OpenCV decodes without the GIL
        for i, im in enumerate(pool.map(lambda p: _read_model_input(p, size), paths, chunksize=64)):
            if im is not None:
                out[i] = im
                ok[i] = True
    return out, ok


def load_images(paths: Sequence, size: int = MODEL_SIZE, *, workers: int = 4) -> np.ndarray:
    """Like :func:`load_images_checked`, but any unreadable file is an InputError (the first
    few are named)."""
    paths = [str(p) for p in paths]
    out, ok = load_images_checked(paths, size, workers=workers)
    if not ok.all():
        bad = [p for p, good in zip(paths, ok) if not good]
        raise InputError(f"{len(bad)} unreadable image(s), e.g. {', '.join(bad[:3])}")
    return out


def dhash_thumbnails(images: np.ndarray) -> np.ndarray:
    """Grey 8x9 thumbnails ``(N, 8, 9)`` of RGB images ``(N, H, W, 3)``, for difference hashes."""
    import cv2

    out = np.empty((len(images), 8, 9), dtype=np.float32)
    for i, im in enumerate(images):
        out[i] = cv2.resize(cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2GRAY), (9, 8),
                            interpolation=cv2.INTER_AREA)
    return out


def encode_png(bgr: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError("could not encode image as PNG")
    return buf.tobytes()


def encode_jpeg(rgb: np.ndarray, *, quality: int = 90) -> bytes:
    """An RGB array as JPEG bytes (context views in the browser: far smaller than PNG)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode image as JPEG")
    return buf.tobytes()


def read_image_folder(root: Path, classes: Sequence[str] | None = None
                      ) -> tuple[list[Path], list[str]]:
    """Image files of an ImageFolder (``root/<label>/**/*``) and their labels, sorted.

    ``classes`` keeps only those subfolders (in that order); by default every subfolder is a
    label. Raises InputError when the folder is missing or holds no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    names = list(classes) if classes is not None else sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for name in names:
        folder = root / name
        if not folder.is_dir():
            continue
        files = sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p)
                       and not p.name.startswith("."))
        paths += files
        labels += [name] * len(files)
    if not paths:
        wanted = f" named {', '.join(names)}" if classes is not None else ""
        raise InputError(f"{root} has no images in label subfolders{wanted}")
    return paths, labels
