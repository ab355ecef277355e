"""Motion gating for fixed cameras (pure NumPy): which parts of a frame are worth a detector.

A fixed CCTV camera looks at an empty scene most of the day. :class:`MotionGate` keeps a
running-average background of each frame shrunk to ~``width`` px (block means of the grey
image: cheap, and sensor noise averages out), marks cells whose pixels changed, and returns
windows in frame pixels that cover the moving cells, plus the boxes of faces seen in the last
``hold_s`` seconds (a person who stops moving fades into the background, but keeps being
detected while they are found there, up to ``max_still_s`` with no motion on them: a poster is
not a person). No window: the frame needs no detector at all.

Frigate, the NVR people run on such cameras, detects objects only where motion was found; this
is the same idea at the size of this project.

Why frame differencing against a running average and not OpenCV's MOG2: this layer is NumPy
only, and on a still camera the difference of block means is as good and costs ~1 ms per frame
(``bench/extract.py --camera-day`` measures what it saves).

Examples
--------
>>> gate = MotionGate(frame_size=(640, 360))
>>> still = np.full((360, 640, 3), 90, np.uint8)
>>> gate.windows(still, 0.0)  # first frame: no background yet, detect everywhere
[(0, 0, 640, 360)]
>>> gate.windows(still, 0.5)
[]
>>> moved = still.copy(); moved[100:180, 300:360] = 200
>>> [w for w in gate.windows(moved, 1.0)]
[(216, 32, 440, 256)]
"""
from __future__ import annotations

import base64

import numpy as np

__all__ = ["MotionGate", "merge_windows", "shrink"]

Box = tuple[int, int, int, int]


class MotionGate:
    """Windows of a frame that may hold a face, from motion and from faces seen lately.

    Parameters
    ----------
    frame_size : (width, height) in pixels of the frames to come.
    width : int
        Width of the grey background model, pixels (cells are ``frame_width / width`` wide).
    threshold : float
        Grey levels (0-255) a cell must differ from the background, after the frame-wide
        median change is removed (slow light changes move every cell alike).
    tau_s : float > 0
        Time constant of the background, seconds: a change that stays (a parked car, a light
        switched on, a person who stopped) is background after ~2 ``tau_s``; a shorter one
        lets the trail of a person who walked away fade sooner. Measured on the test walker at
        2 fps: 10 s kept the whole frame "moving" for 3 s after they left, 2.5 s for 1.5 s.
    pad : float
        Each moving region grows by this share of the frame's short side on every side (a head
        sits above the moving torso; a face must lie whole inside its window).
    min_window : int
        Least window side, frame pixels (a detector needs some context around a face).
    hold_s : float
        Seconds a face box stays a window after it was last seen.
    max_still_s : float
        Seconds a face is held with no motion on it. A person who stops is looked for that long
        (a real person rarely stays this still: any movement on them renews it); a face-like
        poster, or a false face in the empty scene, stops being detected after it instead of
        all day (Frigate treats stationary objects alike). The camera-day bench measured the
        held false faces of an empty scene at a fifth of the CPU with gating on.
    full_share : float
        When the windows cover more than this share of the frame, the whole frame is returned
        (one call is cheaper than many; a moving camera ends up here too).
    reset_share : float
        When more than this share of the model's cells differ from the background at once, the
        scene itself changed (lights switched on, the camera's night mode, a camera that was
        moved or bumped): the background starts over from this frame, which is detected whole
        once, as a first frame is. Blending would call the whole frame "moving" for ~2
        ``tau_s`` (11 frames at 2 fps) while the new scene soaks in; on the camera-day bench
        that was half of the detector's CPU with gating. Frigate recalibrates alike
        (``lightning_threshold``, 0.8). A crowd close up can also change this much: then the
        whole frame is detected, as it would be anyway, and the background is that frame.
    """

    def __init__(self, frame_size: tuple[int, int], *, width: int = 160, threshold: float = 12.0,
                 tau_s: float = 2.5, pad: float = 0.12, min_window: int = 224,
                 hold_s: float = 3.0, max_still_s: float = 10.0, full_share: float = 0.6,
                 reset_share: float = 0.8):
        fw, fh = (int(v) for v in frame_size)
        if fw <= 0 or fh <= 0:
            raise ValueError(f"frame_size must be positive, got {frame_size}")
        if not tau_s > 0:
            raise ValueError(f"tau_s must be > 0, got {tau_s}")
        self.frame_w, self.frame_h = fw, fh
        self.step = max(1, fw // max(1, int(width)))  # frame pixels per model pixel
        self.threshold, self.tau_s, self.pad = float(threshold), float(tau_s), float(pad)
        self.min_window, self.hold_s, self.full_share = int(min_window), float(hold_s), full_share
        self.max_still_s, self.reset_share = float(max_still_s), float(reset_share)
        self._bg: np.ndarray | None = None
        self._t = 0.0  # time of the last frame
        # (time seen, face box, time of the last motion on it) of recent detections
        self._seen: list[tuple[float, Box, float]] = []
        self._moved: dict[float, list[Box]] = {}  # moving boxes of the latest frames, by time
        self._since = -np.inf  # time of the last resolution change

    def windows(self, frame: np.ndarray, t: float) -> list[Box]:
        """Windows ``(x0, y0, x1, y1)`` of ``frame`` (BGR or grey uint8) to run the detector on at
        time ``t`` seconds; ``[]`` means nothing moved and no face was seen lately.
        ``cover(moving(frame, t), t)``: a caller that batches frames takes the two steps apart."""
        return self.cover(self.moving(frame, t), t)

    def moving(self, frame: np.ndarray, t: float) -> list[Box]:
        """Boxes of ``frame`` (frame pixels, padded) where something moved; the whole frame while
        there is no background yet, and once when the scene changes (``reset_share``). Updates
        the background, so frames come in time order; it needs no face seen, so a batch's frames
        may all go through here before any is detected."""
        h, w = frame.shape[:2]
        if (w, h) != (self.frame_w, self.frame_h):  # a stream changed resolution: start over
            self.frame_w, self.frame_h, self._bg, self._seen = w, h, None, []
            self._since = float(t)  # faces of the old frames, told later, are not held
        small = shrink(frame, self.step)
        known = self._bg is not None and self._bg.shape == small.shape
        diff = np.abs(small - self._bg) if known else None
        if diff is None or np.count_nonzero(diff > self.threshold) > self.reset_share * diff.size:
            if diff is not None:  # a new scene: where the old one's faces were means nothing
                self._seen, self._since = [], float(t)
            self._bg, self._t = small, float(t)
            return self._log(t, [(0, 0, self.frame_w, self.frame_h)])
        diff -= np.median(diff)  # the same change everywhere is light, not motion
        alpha = 1.0 - np.exp(-max(float(t) - self._t, 0.0) / self.tau_s)
        self._bg += np.float32(alpha) * (small - self._bg)
        self._t = float(t)
        moving = diff > self.threshold
        # a lone changed model pixel is noise: keep those with a changed 4-neighbour
        moving &= _neighbours(moving) > 0
        return self._log(t, [self._frame_box(b) for b in _regions(moving)])

    def _log(self, t: float, boxes: list[Box]) -> list[Box]:
        """Keep the moving boxes of the frame at ``t`` for ``seen`` (a batch's frames all go
        through ``moving`` first)."""
        self._moved[float(t)] = boxes
        if len(self._moved) > 256:
            for old in sorted(self._moved)[:-128]:
                del self._moved[old]
        return boxes

    def cover(self, moving: list[Box], t: float, *, held: bool = True) -> list[Box]:
        """The windows at time ``t``: the ``moving`` boxes and (``held``) those of the faces seen
        in the ``hold_s`` seconds before, merged; the whole frame when they cover most of it.
        Changes nothing. Without ``held``: the whole frame here is the whole frame whatever
        faces are seen (adding boxes only grows the area)."""
        boxes = list(moving)
        if held:
            boxes += [self._grow(b, self.pad / 2) for ts, b, still in self._seen
                      if t - ts <= self.hold_s and t - still <= self.max_still_s]
        if not boxes:
            return []
        merged = merge_windows(boxes)
        area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in merged)
        if area > self.full_share * self.frame_w * self.frame_h:
            return [(0, 0, self.frame_w, self.frame_h)]
        return merged

    def seen(self, boxes, t: float) -> None:
        """Face (or head) boxes found at time ``t``, frame pixels: their places stay windows for
        ``hold_s`` seconds, so a person who stops moving is still looked for (from the very next
        frame's ``cover`` on)."""
        if t < self._since:
            return
        held = [(ts, b, m) for ts, b, m in self._seen if t - ts <= self.hold_s]
        moved = self._moved.get(float(t), [])
        for b in np.asarray(boxes, dtype=float).reshape(-1, 4):
            box = tuple(int(round(v)) for v in b)
            if any(_overlap(box, m) for m in moved):
                last_motion = float(t)
            else:  # found in a held window: it keeps the motion time of the face it continues
                last_motion = max((m for _ts, hb, m in held if _overlap(box, hb)), default=float(t))
            held.append((float(t), box, last_motion))
        self._seen = held

    def state(self) -> dict:
        """Everything the gate knows, as JSON-able values (a resumed run goes on exactly)."""
        bg = None if self._bg is None else {
            "shape": list(self._bg.shape),
            "data": base64.b64encode(self._bg.astype("<f4").tobytes()).decode("ascii")}
        return {"frame_size": [self.frame_w, self.frame_h], "step": self.step, "bg": bg,
                "t": self._t, "seen": [[t, *b, m] for t, b, m in self._seen]}

    @classmethod
    def from_state(cls, state: dict, **settings) -> "MotionGate":
        gate = cls(tuple(state["frame_size"]), **settings)
        gate.step = int(state["step"])
        if state.get("bg"):
            raw = base64.b64decode(state["bg"]["data"])
            gate._bg = np.frombuffer(raw, "<f4").reshape(state["bg"]["shape"]).astype(np.float32)
        gate._t = float(state["t"])
        # a state saved before max_still_s holds (t, box): its faces count as having just moved
        gate._seen = [(float(t), tuple(int(v) for v in rest[:4]),
                       float(rest[4]) if len(rest) > 4 else float(t)) for t, *rest in state["seen"]]
        return gate

    # -- frame pixels --
    def _frame_box(self, cells: Box) -> Box:
        x0, y0, x1, y1 = cells
        s = self.step
        return self._grow((x0 * s, y0 * s, x1 * s, y1 * s), self.pad)

    def _grow(self, box: Box, share: float) -> Box:
        """``box`` padded by ``share`` of the short frame side, at least ``min_window`` a side,
        clipped to the frame."""
        p = share * min(self.frame_w, self.frame_h)
        x0, y0, x1, y1 = box
        x0, y0, x1, y1 = x0 - p, y0 - p, x1 + p, y1 + p
        x0, x1 = _at_least(x0, x1, self.min_window, self.frame_w)
        y0, y1 = _at_least(y0, y1, self.min_window, self.frame_h)
        return int(x0), int(y0), int(x1), int(y1)


def shrink(frame: np.ndarray, step: int) -> np.ndarray:
    """Grey float32 image of ``step`` x ``step`` block means of ``frame`` (rows and columns that
    do not fill a block are dropped; grey is the channel mean).

    Sums each block's rows of uint8 in uint16 first: 0.5 ms for a 720p frame against 14 ms for
    a float mean (on the camera-day bench, 12% of all the CPU with gating was this)."""
    f = np.asarray(frame)
    if f.ndim == 2:
        f = f[..., None]
    f = f[..., :3]
    c = f.shape[2]
    h, w = (f.shape[0] // step) * step, (f.shape[1] // step) * step
    blocks = f[:h, :w].reshape(h // step, step, w // step, step * c)
    exact = f.dtype == np.uint8 and step * 255 <= np.iinfo(np.uint16).max
    rows = np.add.reduce(blocks, axis=1, dtype=np.uint16 if exact else np.float64)
    return (rows.sum(axis=2, dtype=np.float64) / (step * step * c)).astype(np.float32)


def merge_windows(boxes) -> list[Box]:
    """Boxes ``(x0, y0, x1, y1)`` merged until none overlap: two that overlap become the box
    around both (a face cut by one window lies whole in the merged one). Sorted, top-left first."""
    out = [tuple(int(v) for v in b) for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if _overlap(a, b):
                    out[i] = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    del out[j]
                    merged = True
                    break
            if merged:
                break
    return sorted(out, key=lambda b: (b[1], b[0]))


# --- helpers ------------------------------------------------------------------------------------


def _at_least(lo: float, hi: float, size: int, limit: int) -> tuple[float, float]:
    """The span [lo, hi) widened about its centre to ``size`` and shifted inside [0, limit)."""
    if hi - lo < size:
        c = (lo + hi) / 2
        lo, hi = c - size / 2, c + size / 2
    if lo < 0:
        lo, hi = 0, hi - lo
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    return max(0.0, lo), float(min(hi, limit))


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _neighbours(mask: np.ndarray) -> np.ndarray:
    """How many of each pixel's 4 neighbours are set."""
    m = mask.astype(np.int8)
    n = np.zeros_like(m)
    n[1:] += m[:-1]
    n[:-1] += m[1:]
    n[:, 1:] += m[:, :-1]
    n[:, :-1] += m[:, 1:]
    return n


def _regions(mask: np.ndarray, cell: int = 4) -> list[Box]:
    """Bounding boxes (model pixels) of the 8-connected groups of ``cell`` x ``cell`` blocks that
    hold a set pixel (blocks keep the search small: a 160x90 model is 40x23 blocks)."""
    h, w = mask.shape
    hb, wb = -(-h // cell), -(-w // cell)
    padded = np.zeros((hb * cell, wb * cell), bool)
    padded[:h, :w] = mask
    blocks = padded.reshape(hb, cell, wb, cell).any(axis=(1, 3))
    seen = np.zeros_like(blocks)
    out = []
    for y, x in zip(*np.nonzero(blocks)):
        if seen[y, x]:
            continue
        stack, x0, y0, x1, y1 = [(y, x)], x, y, x, y
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            x0, y0, x1, y1 = min(x0, cx), min(y0, cy), max(x1, cx), max(y1, cy)
            for ny in range(max(0, cy - 1), min(hb, cy + 2)):
                for nx in range(max(0, cx - 1), min(wb, cx + 2)):
                    if blocks[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        out.append((int(x0) * cell, int(y0) * cell, min(w, (int(x1) + 1) * cell),
                    min(h, (int(y1) + 1) * cell)))
    return out
