"""Slices: where the model fails. Pure functions over a crop, its box and its keypoints.

A crop gets a few cheap raw attributes when it is stored (:func:`attributes`): face height in
pixels, sharpness (variance of the Laplacian), brightness around the head, head pose from the
detector's eye/nose points, the dominant colour of the lower face (a mask's colour), and the hour
of day when the source's start time is known. Bands are drawn from the raw values at read time
(:func:`bands`), so a band edge can change without recomputing anything.

:func:`slice_report` then gives per band: count, balanced accuracy, error with a 95% Wilson
interval and the model's mean uncertainty, worst first.

Examples
--------
>>> face_band(30)
'20-45'
>>> light_band(20.0)
'dark'
>>> colour_name(np.array([[[0, 0, 200]]], np.uint8))  # one BGR pixel
'red'
"""
from __future__ import annotations

import datetime as dt
import re

import numpy as np

from annotator.core.geometry import sharpness as laplacian_variance
from annotator.core.metrics import balanced_accuracy, wilson_interval

__all__ = ["ATTRIBUTES", "attributes", "bands", "face_band", "sharpness_band", "light_band",
           "pose", "colour_name", "hour_band", "start_time", "slice_report", "band_uncertainty",
           "band_scores", "row_scores", "UNKNOWN"]

# The attributes a slice is cut by, in the order they are shown.
ATTRIBUTES = ("face", "sharpness", "light", "pose", "colour", "source", "hour")
UNKNOWN = "unknown"

# Face height (px): under 20 px is too small for a person to judge (Neuralet's account); 45 px is
# the classifier's input side, so above it the model sees every pixel it can use.
FACE_BANDS = ((10, "<10"), (20, "10-20"), (45, "20-45"), (np.inf, ">=45"))
# Variance of the Laplacian on the stored crop; below ~30 a person calls a face blurry.
SHARPNESS_BANDS = ((30.0, "blurry"), (150.0, "soft"), (np.inf, "sharp"))
# Mean luma (0-255) around the head: night footage sits well under 50.
LIGHT_BANDS = ((50.0, "dark"), (100.0, "dim"), (np.inf, "bright"))
HOUR_BANDS = ((6, "00-06 night"), (12, "06-12"), (18, "12-18"), (24, "18-24 evening"))

# COCO keypoint rows as stored with a crop (17 x (x, y, confidence)); MTCNN fills nose and eyes.
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 1, 2, 3, 4
KEYPOINT_MIN_CONF = 0.3
FRONTAL_MAX_OFFSET = 0.3  # |nose - eye midpoint| / eye distance; beyond it the head is turned


# --- attributes of one crop ---------------------------------------------------------------------


def attributes(crop: np.ndarray, *, box=None, keypoints=None, frame: np.ndarray | None = None,
               start: dt.datetime | None = None, timestamp_s: float | None = None) -> dict:
    """Raw slice attributes of one crop.

    Parameters
    ----------
    crop : uint8 array (H, W, 3) BGR (OpenCV's order) or (H, W) grey
    box : (x1, y1, x2, y2) of the head in the frame, optional; its height is the face height
        (else the crop's height: imported crops are faces already).
    keypoints : (17, 3) COCO keypoints, optional (None for detectors without landmarks).
    frame : the whole frame, optional: brightness is then measured on the box grown by half its
        size on every side (the scene's light, not a dark mask's).
    start, timestamp_s : the source's start time and the crop's offset in it, for the hour.

    Returns
    -------
    dict with ``face_px``, ``sharpness``, ``brightness`` (floats), ``pose``, ``colour`` (str)
    and ``hour`` (int or None).
    """
    img = np.asarray(crop)
    if img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"crop must be a non-empty (H, W[, 3]) image, got {img.shape}")
    face_px = float(img.shape[0]) if box is None else float(box[3] - box[1])
    grey = _grey(img)
    around = grey if frame is None or box is None else _grey(_grown(frame, box, 0.5))
    hour = None
    if start is not None:
        hour = (start + dt.timedelta(seconds=float(timestamp_s or 0.0))).hour
    return {
        "face_px": round(face_px, 1),
        "sharpness": round(laplacian_variance(grey), 2),
        "brightness": round(float(around.mean()) if around.size else 0.0, 1),
        "pose": pose(keypoints),
        "colour": colour_name(img if img.ndim == 3 else np.repeat(img[..., None], 3, 2)),
        "hour": hour,
    }


def pose(keypoints) -> str:
    """``frontal``, ``profile``, ``away`` (ears or shoulders but no eyes/nose) or ``unknown``
    (no keypoints) from COCO keypoints ``(17, 3)``."""
    if keypoints is None:
        return UNKNOWN
    k = np.asarray(keypoints, dtype=np.float64)
    if k.ndim != 2 or k.shape[0] < 5 or k.shape[1] < 3:
        return UNKNOWN
    seen = k[:, 2] >= KEYPOINT_MIN_CONF
    eyes = int(seen[LEFT_EYE]) + int(seen[RIGHT_EYE])
    if eyes == 0 and not seen[NOSE]:
        return "away" if seen[3:].any() else UNKNOWN
    if eyes < 2 or not seen[NOSE]:
        return "profile"
    mid = (k[LEFT_EYE, 0] + k[RIGHT_EYE, 0]) / 2
    span = abs(k[LEFT_EYE, 0] - k[RIGHT_EYE, 0])
    if span < 1e-6:
        return "profile"
    return "frontal" if abs(k[NOSE, 0] - mid) / span <= FRONTAL_MAX_OFFSET else "profile"


def colour_name(crop: np.ndarray) -> str:
    """The dominant colour of the lower face (rows 55-90%, middle 60% of columns) of a BGR
    crop: ``red``, ``orange``, ``yellow``, ``green``, ``cyan``, ``blue``, ``purple``, ``pink``,
    ``skin`` (no mask), ``white``, ``grey`` or ``black``."""
    img = np.asarray(crop)
    h, w = img.shape[:2]
    r0, r1 = int(h * 0.55), max(int(h * 0.9), int(h * 0.55) + 1)
    c0, c1 = int(w * 0.2), max(int(w * 0.8), int(w * 0.2) + 1)
    # At most ~24 x 24 samples: the dominant colour does not need every pixel of a big crop.
    step = max(1, (r1 - r0) // 24, (c1 - c0) // 24)
    part = img[r0:r1:step, c0:c1:step].reshape(-1, 3).astype(np.float32) / 255.0
    hue, sat, val = _hsv(part)
    codes = _pixel_codes(hue, sat, val)
    return _NAMES[int(np.argmax(np.bincount(codes, minlength=len(_NAMES))))]


def start_time(name: str | None) -> dt.datetime | None:
    """A source's start time from its file or stream name, e.g. ``cam3_2024-05-01_22-30-00.mp4``
    or ``20240501T223000``; None when the name holds none."""
    if not name:
        return None
    m = _STAMP.search(name)
    if m is None:
        return None
    try:
        return dt.datetime(*(int(g) for g in m.groups()))
    except ValueError:  # 2024-13-45: digits that only look like a date
        return None


# --- bands (read time) --------------------------------------------------------------------------


def face_band(px) -> str:
    return _band(px, FACE_BANDS)


def sharpness_band(v) -> str:
    return _band(v, SHARPNESS_BANDS)


def light_band(v) -> str:
    return _band(v, LIGHT_BANDS)


def hour_band(h) -> str:
    return _band(h, HOUR_BANDS)


def bands(rows) -> dict[str, np.ndarray]:
    """Band of every attribute for each row: ``rows`` is a sequence of dicts (or a DataFrame's
    records) with the raw attributes and ``source``; missing values give ``unknown``."""
    rows = list(rows)
    get = lambda key: [r.get(key) for r in rows]  # noqa: E731
    return {
        "face": np.array([face_band(v) for v in get("face_px")], dtype=object),
        "sharpness": np.array([sharpness_band(v) for v in get("sharpness")], dtype=object),
        "light": np.array([light_band(v) for v in get("brightness")], dtype=object),
        "pose": np.array([v or UNKNOWN for v in get("pose")], dtype=object),
        "colour": np.array([v or UNKNOWN for v in get("colour")], dtype=object),
        "source": np.array([UNKNOWN if v is None else str(v) for v in get("source")], dtype=object),
        "hour": np.array([hour_band(v) for v in get("hour")], dtype=object),
    }


# --- per-slice metrics --------------------------------------------------------------------------


def slice_report(slices: dict[str, np.ndarray], labels, probs, *, n_classes: int | None = None
                 ) -> list[dict]:
    """Per band of every attribute: ``attribute``, ``band``, ``n``, ``errors``, ``error``,
    ``error_low``/``error_high`` (95% Wilson), ``balanced_accuracy`` (over the classes present
    in the band), ``mean_uncertainty``; worst first.

    Worst = the highest lower bound of the error interval, so a 4-crop band with 2 mistakes does
    not outrank a 400-crop band with 30% errors; ties by the error itself.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be (N, K) with N = {y.shape[0]}, got {p.shape}")
    k = n_classes or p.shape[1]
    pred = p.argmax(axis=1)
    top2 = -np.partition(-p, 1, axis=1)[:, :2] if p.shape[1] > 1 else np.c_[p, p]
    unsure = np.clip(1.0 - (top2[:, 0] - top2[:, 1]), 0.0, 1.0)
    out = []
    for attr, band_of in slices.items():
        band_of = np.asarray(band_of, dtype=object)
        if band_of.shape[0] != y.shape[0]:
            raise ValueError(f"{attr}: {band_of.shape[0]} bands for {y.shape[0]} rows")
        for band in sorted(set(band_of.tolist()), key=str):
            m = band_of == band
            n = int(m.sum())
            errors = int((pred[m] != y[m]).sum())
            low, high = wilson_interval(errors, n)
            out.append({
                "attribute": attr, "band": str(band), "n": n, "errors": errors,
                "error": round(errors / n, 4), "error_low": round(low, 4),
                "error_high": round(high, 4),
                "balanced_accuracy": round(balanced_accuracy(y[m], pred[m], k), 4),
                "mean_uncertainty": round(float(unsure[m].mean()), 4),
            })
    out.sort(key=lambda r: (-r["error_low"], -r["error"], -r["n"]))
    return out


def worst_bands(report: list[dict], *, min_n: int = 1, top: int | None = None) -> list[dict]:
    """The rows of a :func:`slice_report` with at least ``min_n`` crops, worst first."""
    rows = [r for r in report if r["n"] >= min_n]
    return rows if top is None else rows[:top]


# --- targeting (the ``slices`` sampling strategy) -----------------------------------------------


def band_uncertainty(slices_: dict[str, np.ndarray], probs) -> dict[tuple[str, str], float]:
    """Mean uncertainty (``1 - margin``) of the model per band, on rows without labels."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[0] == 0:
        return {}
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    u = np.clip(1.0 - (top2[:, 0] - top2[:, 1]), 0.0, 1.0)
    out = {}
    for attr, band_of in slices_.items():
        band_of = np.asarray(band_of, dtype=object)
        for band in set(band_of.tolist()):
            out[(attr, str(band))] = float(u[band_of == band].mean())
    return out


def band_scores(report: list[dict], uncertainty: dict[tuple[str, str], float] | None = None, *,
                min_n: int = 20) -> dict[tuple[str, str], float]:
    """How bad each band is, in [0, 1]: the lower bound of its measured error where at least
    ``min_n`` labeled crops measure it (a :func:`slice_report`), else the model's mean
    uncertainty on it (:func:`band_uncertainty`)."""
    out = dict(uncertainty or {})
    for r in report:
        if r["n"] >= min_n:
            out[(r["attribute"], r["band"])] = float(r["error_low"])
    return out


def row_scores(slices_: dict[str, np.ndarray], scores: dict[tuple[str, str], float], *,
               max_share: float = 0.5) -> np.ndarray:
    """Each row's worst band score (N,). ``unknown`` bands and bands holding more than
    ``max_share`` of the rows are no slice to target (they are most of the data) and count 0."""
    n = len(next(iter(slices_.values()))) if slices_ else 0
    out = np.zeros(n)
    for attr, band_of in slices_.items():
        band_of = np.asarray(band_of, dtype=object)
        for band in set(band_of.tolist()):
            m = band_of == band
            if band == UNKNOWN or m.sum() > max_share * n:
                continue
            out[m] = np.maximum(out[m], scores.get((attr, str(band)), 0.0))
    return out


# --- helpers ------------------------------------------------------------------------------------

_STAMP = re.compile(
    r"(20\d\d|19\d\d)[-_.]?(\d\d)[-_.]?(\d\d)[T_ -]?(\d\d)[-_:.h]?(\d\d)[-_:.m]?(\d\d)")


def _band(v, edges) -> str:
    if v is None:
        return UNKNOWN
    try:
        x = float(v)
    except (TypeError, ValueError):
        return UNKNOWN
    if not np.isfinite(x):
        return UNKNOWN
    for upper, name in edges:
        if x < upper:
            return name
    return edges[-1][1]


def _grown(frame: np.ndarray, box, pad: float) -> np.ndarray:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * pad, (y2 - y1) * pad
    a, b = max(0, int(x1 - dx)), min(w, int(np.ceil(x2 + dx)))
    c, d = max(0, int(y1 - dy)), min(h, int(np.ceil(y2 + dy)))
    return frame[c:d, a:b] if b > a and d > c else frame


def _grey(img: np.ndarray) -> np.ndarray:
    """Luma (float32) of a BGR or grey image, with OpenCV's weights."""
    g = np.asarray(img, dtype=np.float32)
    if g.ndim == 3:
        g = g[..., 0] * 0.114 + g[..., 1] * 0.587 + g[..., 2] * 0.299
    return g


def _hsv(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] of BGR rows ``(N, 3)`` in [0, 1]."""
    b, g, r = bgr[:, 0], bgr[:, 1], bgr[:, 2]
    mx, mn = bgr.max(axis=1), bgr.min(axis=1)
    d = mx - mn
    safe = np.where(d > 0, d, 1.0)
    hue = np.where(mx == r, (g - b) / safe % 6, np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = np.where(d > 0, hue * 60.0, 0.0) % 360.0
    sat = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    return hue, sat, mx


_HUES = ((15, "red"), (40, "orange"), (70, "yellow"), (165, "green"), (200, "cyan"),
         (260, "blue"), (290, "purple"), (335, "pink"), (361, "red"))
_NAMES = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "skin", "white",
          "grey", "black"]
_HUE_EDGES = np.array([e for e, _ in _HUES], dtype=np.float64)
_HUE_CODES = np.array([_NAMES.index(n) for _, n in _HUES])


def _pixel_codes(hue, sat, val) -> np.ndarray:
    """Index into ``_NAMES`` of each pixel's colour name."""
    codes = _HUE_CODES[np.minimum(np.searchsorted(_HUE_EDGES, hue, side="right"), len(_HUES) - 1)]
    # Skin: warm hues at moderate saturation (a bare lower face is no mask colour).
    codes = np.where((hue >= 5) & (hue < 40) & (sat < 0.6) & (val >= 0.3), _NAMES.index("skin"), codes)
    pale = sat < 0.2
    codes = np.where(pale, np.where(val >= 0.75, _NAMES.index("white"), _NAMES.index("grey")), codes)
    return np.where(val < 0.2, _NAMES.index("black"), codes)
