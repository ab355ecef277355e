"""Head boxes from body keypoints or face boxes, and crop quality (pure NumPy, no I/O).

A detector adapter (``annotator.media.detectors``) turns its output into :class:`Person` objects in frame
pixels; :func:`head_box` turns one person into a square head box inside the frame, or says why
it cannot (``HeadBox.reason``). Crops are then cut from the original frame at native resolution.

Keypoints follow the COCO order: 0 nose, 1 left_eye, 2 right_eye, 3 left_ear, 4 right_ear,
5 left_shoulder, 6 right_shoulder, 7..16 arms and legs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Person",
    "HeadBox",
    "head_box",
    "head_box_from_keypoints",
    "head_box_from_face",
    "neuralet_head_box",
    "square_box",
    "sharpness",
    "context_window",
    "NOSE", "LEFT_EYE", "RIGHT_EYE", "LEFT_EAR", "RIGHT_EAR", "LEFT_SHOULDER", "RIGHT_SHOULDER",
]

NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR, LEFT_SHOULDER, RIGHT_SHOULDER = range(7)
FACE_POINTS = (NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR)
SHOULDERS = (LEFT_SHOULDER, RIGHT_SHOULDER)

# Head height (crown to chin) as a multiple of the distance between two keypoints, from adult
# head proportions: head 23 cm tall, 15 cm wide; eyes 6.3 cm apart; nose tip 4.5 cm from an eye,
# 10 cm from an ear; shoulders 37 cm apart. Turning away only shortens a distance in the image,
# so the largest estimate over the pairs that are present is the best one.
_SCALE_PAIRS = (
    (LEFT_EYE, RIGHT_EYE, 3.6),
    (LEFT_EAR, RIGHT_EAR, 1.6),
    (NOSE, LEFT_EYE, 5.0),
    (NOSE, RIGHT_EYE, 5.0),
    (NOSE, LEFT_EAR, 2.2),
    (NOSE, RIGHT_EAR, 2.2),
    (LEFT_EYE, LEFT_EAR, 3.0),
    (RIGHT_EYE, RIGHT_EAR, 3.0),
    (LEFT_SHOULDER, RIGHT_SHOULDER, 0.6),
)
# The shoulder line lies about one head height below the eyes.
_EYE_TO_SHOULDER = 1.0
# A face detector's box spans brows to chin: the whole head is about 1.25 times taller.
_FACE_TO_HEAD = 1.25


@dataclass(frozen=True)
class Person:
    """One detection in frame pixels, from any detector.

    Attributes
    ----------
    keypoints : ndarray (17, 3) or None
        COCO keypoints as x, y, confidence (0 = not found).
    score : float
        The detector's confidence for the whole detection.
    face_box : tuple (x1, y1, x2, y2) or None
        Set by face detectors instead of (or besides) body keypoints.
    """

    keypoints: np.ndarray | None = None
    score: float = 1.0
    face_box: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class HeadBox:
    """Integer pixel box ``[x1, x2) x [y1, y2)`` inside the frame, or the reason there is none.

    ``size`` is the estimated head height in pixels (before the margin); ``method`` names the
    cues used (e.g. ``"eyes+shoulders"``, ``"face"``).
    """

    x1: int = 0
    y1: int = 0
    x2: int = 0
    y2: int = 0
    size: float = 0.0
    method: str = ""
    reason: str | None = None  # None when the box is usable; else a drop reason

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1


def head_box(
    person: Person,
    frame_size: tuple[int, int],
    *,
    margin: float = 0.15,
    min_size: float = 0.0,
    min_conf: float = 0.15,
    square: bool = True,
) -> HeadBox:
    """The head box of one person: from the face box when there is one, else from keypoints.

    Parameters
    ----------
    person : Person
    frame_size : (width, height) of the frame in pixels.
    margin : extra context on every side, as a share of the head height.
    min_size : heads smaller than this many pixels (height, before margin) are dropped
        with reason ``"min_size"``.
    min_conf : keypoints at or below this confidence count as missing.
    square : keep the crop square by sliding it inside the frame at an edge (clipped only when
        the frame is smaller than the crop).
    """
    _check(frame_size, margin, min_size)
    if person.face_box is not None:
        return _face_box(person.face_box, frame_size, margin=margin, min_size=min_size, square=square)
    if person.keypoints is None:
        return HeadBox(reason="no_head")
    kps = np.asarray(person.keypoints, dtype=float)
    if kps.shape != (17, 3):
        raise ValueError(f"keypoints must have shape (17, 3), got {kps.shape}")
    return _keypoint_box(kps, frame_size, margin=margin, min_size=min_size, min_conf=min_conf,
                         square=square)


def head_box_from_keypoints(keypoints: np.ndarray, frame_size: tuple[int, int], **kw) -> HeadBox:
    """:func:`head_box` for COCO keypoints ``(17, 3)``."""
    return head_box(Person(keypoints=np.asarray(keypoints)), frame_size, **kw)


def head_box_from_face(face_box, frame_size: tuple[int, int], **kw) -> HeadBox:
    """:func:`head_box` for a face detector's ``(x1, y1, x2, y2)`` box."""
    return head_box(Person(face_box=tuple(float(v) for v in face_box)), frame_size, **kw)


def neuralet_head_box(keypoints: np.ndarray, frame_size: tuple[int, int], *, min_conf: float = 0.15):
    """Neuralet's original rule, kept as the baseline: needs nose, both eyes, both shoulders.

    Returns ``(x1, y1, x2, y2)`` clipped to the frame, or None when a keypoint is missing.
    """
    kps = np.asarray(keypoints, dtype=float)
    need = (NOSE, LEFT_EYE, RIGHT_EYE, LEFT_SHOULDER, RIGHT_SHOULDER)
    if any(kps[i, 2] <= min_conf for i in need):
        return None
    w, h = frame_size
    x_min = min(kps[RIGHT_SHOULDER, 0], kps[LEFT_SHOULDER, 0])
    y_max = (kps[LEFT_SHOULDER, 1] + kps[RIGHT_SHOULDER, 1]) / 2
    eye_y = (kps[LEFT_EYE, 1] + kps[RIGHT_EYE, 1]) / 2
    y_min = 2 * eye_y - y_max
    side = y_max - y_min
    if side <= 0:
        return None
    x1, y1 = x_min - 0.2 * side, y_min - 0.1 * side
    return (max(0.0, x1), max(0.0, y1), min(float(w), x1 + side), min(float(h), y1 + side))


def square_box(
    cx: float, cy: float, side: float, frame_size: tuple[int, int], *, square: bool = True
) -> tuple[int, int, int, int]:
    """Integer square of ``side`` pixels centred on ``(cx, cy)``, kept inside the frame.

    With ``square=True`` a box that crosses an edge slides back inside (the head stays in it,
    off-centre) and is clipped only if it is larger than the frame; otherwise it is clipped.
    """
    w, h = frame_size
    s = max(1, int(round(side)))
    x1 = int(math.floor(cx - s / 2))
    y1 = int(math.floor(cy - s / 2))
    if square:
        x1 = min(max(x1, 0), max(w - s, 0))
        y1 = min(max(y1, 0), max(h - s, 0))
    x2, y2 = x1 + s, y1 + s
    return max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)


def sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image ``(H, W)`` (higher = sharper).

    Same kernel as ``cv2.Laplacian(gray, cv2.CV_64F)``, computed on the interior pixels.
    """
    g = np.asarray(gray, dtype=np.float64)
    if g.ndim == 3:  # BGR -> grey with OpenCV's weights
        g = g[..., 0] * 0.114 + g[..., 1] * 0.587 + g[..., 2] * 0.299
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def context_window(box, frame_size: tuple[int, int], *, pad: float = 1.5) -> tuple[int, int, int, int]:
    """The part of the frame to show around a crop: reaching ``1 + 2 * pad`` crop sides from the
    crop's centre on every side, clipped to the frame, as integer ``(x1, y1, x2, y2)``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = frame_size
    reach = max(x2 - x1, y2 - y1) * (1 + 2 * pad)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return (int(max(0, cx - reach)), int(max(0, cy - reach)),
            int(min(w, cx + reach)), int(min(h, cy + reach)))


# --- private helpers (inputs already validated) -------------------------------------------------


def _check(frame_size, margin, min_size):
    if len(frame_size) != 2 or min(frame_size) <= 0:
        raise ValueError(f"frame_size must be (width, height) > 0, got {frame_size}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if min_size < 0:
        raise ValueError(f"min_size must be >= 0, got {min_size}")


def _finish(cx, cy, size, method, frame_size, *, margin, min_size, square, anchor=None) -> HeadBox:
    """``anchor``: the seen point that must lie in the frame (default: the box centre)."""
    w, h = frame_size
    ax, ay = anchor if anchor is not None else (cx, cy)
    if not (0 <= ax < w and 0 <= ay < h):
        return HeadBox(size=size, method=method, reason="outside_frame")
    if size < min_size or size < 2:
        return HeadBox(size=size, method=method, reason="min_size")
    x1, y1, x2, y2 = square_box(cx, cy, size * (1 + 2 * margin), frame_size, square=square)
    return HeadBox(x1, y1, x2, y2, size=float(size), method=method)


def _keypoint_box(kps, frame_size, *, margin, min_size, min_conf, square) -> HeadBox:
    seen = kps[:, 2] > min_conf
    face = [i for i in FACE_POINTS if seen[i]]
    if not face:  # shoulders alone: seen from behind or face hidden; nothing to label
        return HeadBox(reason="no_head")
    estimates = {}
    for i, j, factor in _SCALE_PAIRS:
        if seen[i] and seen[j]:
            estimates[f"{i}-{j}"] = factor * float(np.hypot(*(kps[i, :2] - kps[j, :2])))
    shoulders = [i for i in SHOULDERS if seen[i]]
    eyes = [i for i in (LEFT_EYE, RIGHT_EYE) if seen[i]]
    level = eyes or [i for i in (LEFT_EAR, RIGHT_EAR) if seen[i]]  # ears sit at eye level
    if shoulders and level:
        drop = np.mean(kps[shoulders, 1]) - np.mean(kps[level, 1])
        if drop > 0:
            estimates["shoulders"] = _EYE_TO_SHOULDER * float(drop)
    if not estimates:  # one lone face point gives a place but no size
        return HeadBox(reason="no_scale")
    size = max(estimates.values())
    cx = float(np.mean(kps[face, 0]))
    if level:
        cy = float(np.mean(kps[level, 1])) + 0.05 * size  # eyes are mid-head; favour the mouth
    else:  # nose only: it sits about 0.15 head below the eyes
        cy = float(kps[NOSE, 1]) - 0.1 * size
    method = "+".join(n for n, ok in (
        ("nose", seen[NOSE]), ("eyes", bool(eyes)), ("ears", seen[LEFT_EAR] or seen[RIGHT_EAR]),
        ("shoulders", bool(shoulders)),
    ) if ok)
    return _finish(cx, cy, size, method, frame_size, margin=margin, min_size=min_size, square=square)


def _face_box(face_box, frame_size, *, margin, min_size, square) -> HeadBox:
    x1, y1, x2, y2 = (float(v) for v in face_box)
    if not (x2 > x1 and y2 > y1):
        return HeadBox(reason="no_head")
    size = _FACE_TO_HEAD * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 - 0.05 * size  # the crown is above the face box
    return _finish(cx, cy, size, "face", frame_size, margin=margin, min_size=min_size,
                   square=square, anchor=((x1 + x2) / 2, (y1 + y2) / 2))


def box_iou(a, b) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 when either is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
