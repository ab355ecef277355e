"""Overlapping tiles over a large frame, and merging the detections found in them (pure NumPy).

A detector that works best on small images (YuNet degrades above 960 px per side) runs on each
window of :func:`tile_grid` at native resolution, so small faces keep their pixels; the boxes,
shifted back to frame pixels, are merged by :func:`merge_detections`: a face seen in two
overlapping tiles, or cut by a tile edge in one and whole in the next, comes out once.

Any box no larger than ``overlap`` on each side lies wholly inside at least one window, so a
face up to that size is always seen uncut by some tile.

Examples
--------
>>> tile_grid(1280, 720, tile=960, overlap=192)
[(0, 0, 736, 720), (544, 0, 1280, 720)]
>>> len(tile_grid(1920, 1080, tile=960, overlap=192))
6
>>> boxes = np.array([[600, 100, 680, 180], [600, 100, 630, 180], [900, 50, 950, 100]])
>>> merge_detections(boxes, np.array([0.9, 0.8, 0.7]))  # box 1: box 0 cut by a tile edge
array([0, 2])
"""
from __future__ import annotations

import numpy as np

__all__ = ["tile_grid", "merge_detections", "box_iou"]


# --- public functions ---------------------------------------------------------------------------


def tile_grid(width: int, height: int, *, tile: int = 960, overlap: int = 192
              ) -> list[tuple[int, int, int, int]]:
    """Windows that cover a ``width`` x ``height`` frame, neighbours overlapping.

    Parameters
    ----------
    width, height : int > 0
        Frame size in pixels.
    tile : int > 0, keyword-only
        Largest window side. A frame side not larger than ``tile`` gets one window spanning it.
    overlap : int, 0 <= overlap < tile, keyword-only
        Neighbouring windows share at least this many pixels, so any box with sides up to
        ``overlap`` lies wholly inside one window.

    Returns
    -------
    list of (x0, y0, x1, y1)
        Integer windows ``[x0, x1) x [y0, y1)`` inside the frame, row by row (top row first,
        left to right), all of one size, no side over ``tile``; together they cover every
        pixel. Along each side there are as few windows as the overlap allows, each as short
        as still gives it.
    """
    for name, v in (("width", width), ("height", height), ("tile", tile)):
        if int(v) != v or v <= 0:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if int(overlap) != overlap or not 0 <= overlap < tile:
        raise ValueError(f"overlap must be an integer in [0, tile), got {overlap!r} (tile {tile})")
    xs, tw = _span(int(width), int(tile), int(overlap))
    ys, th = _span(int(height), int(tile), int(overlap))
    return [(x, y, x + tw, y + th) for y in ys for x in xs]


def merge_detections(boxes, scores, *, iou: float = 0.4, contain: float = 0.7) -> np.ndarray:
    """Which detections to keep when the same objects were found in several overlapping tiles.

    Greedy, highest score first: a box is dropped when its IoU with a kept box is above ``iou``
    (non-maximum suppression), or when more than ``contain`` of its own area lies inside a kept
    box (a face cut by a tile edge, found whole by a neighbouring tile, or a part of a face
    found inside it).

    Parameters
    ----------
    boxes : array-like, shape (N, 4)
        ``x1, y1, x2, y2`` per detection, in frame pixels (``x2 >= x1``, ``y2 >= y1``).
    scores : array-like, shape (N,)
        Higher is better. Ties keep the earlier box.
    iou : float in [0, 1], keyword-only
    contain : float in (0, 1], keyword-only
        1 turns the containment rule off.

    Returns
    -------
    np.ndarray of int64, shape (M,)
        Indices of the kept boxes, best score first. Merging the kept boxes again keeps them all.
    """
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if b.size == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {np.shape(boxes)}")
    if s.shape != (b.shape[0],):
        raise ValueError(f"scores must have shape ({b.shape[0]},), got {s.shape}")
    if not (np.isfinite(b).all() and np.isfinite(s).all()):
        raise ValueError("boxes and scores must be finite")
    if np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1]):
        raise ValueError("boxes must have x2 >= x1 and y2 >= y1")
    if not 0.0 <= iou <= 1.0:
        raise ValueError(f"iou must be in [0, 1], got {iou}")
    if not 0.0 < contain <= 1.0:
        raise ValueError(f"contain must be in (0, 1], got {contain}")
    return _greedy_merge(b, s, iou=float(iou), contain=float(contain))


def box_iou(a, b) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4): (N, M).

    Boxes are ``x1, y1, x2, y2``; two empty boxes have IoU 0.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# --- computation (inputs already validated) ---------------------------------------------------


def _span(size: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Window starts and length along one side: the fewest windows that overlap by ``overlap``,
    each shrunk to the shortest length that still does (fewer pixels to run a detector on),
    spread evenly, the last one ending at the edge."""
    if size <= tile:
        return [0], size
    n = -(-(size - overlap) // (tile - overlap))  # ceil: n windows of `tile` reach `size`
    length = -(-(size + (n - 1) * overlap) // n)  # <= tile by the choice of n
    # Floor steps are <= ceil((size - length) / (n - 1)) <= length - overlap.
    return [i * (size - length) // (n - 1) for i in range(n)], length


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _greedy_merge(b: np.ndarray, s: np.ndarray, *, iou: float, contain: float) -> np.ndarray:
    order = np.argsort(-s, kind="stable")
    area = _area(b)
    inter = _intersection(b, b)
    union = area[:, None] + area[None, :] - inter
    iou_m = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    # inside[i, j]: share of box i's own area that lies inside box j.
    inside = np.divide(inter, area[:, None], out=np.zeros_like(inter), where=area[:, None] > 0)
    keep: list[int] = []
    for i in order:
        if keep and (np.any(iou_m[i, keep] > iou) or np.any(inside[i, keep] > contain)):
            continue
        keep.append(int(i))
    return np.asarray(keep, dtype=np.int64)
