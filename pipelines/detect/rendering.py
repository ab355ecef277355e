"""The annotated footage: boxes, track ids and voted labels drawn on frames (heads blurred
first with ``--blur-faces``), and the MP4 encoder that runs in a thread of its own."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from annotator.core import votes
from annotator.core.errors import InputError

COLOURS = {"mask": (60, 180, 60), "no_mask": (40, 40, 220), votes.UNKNOWN: (0, 190, 250)}  # BGR
OTHER_COLOURS = ((220, 130, 40), (200, 60, 200), (40, 200, 200))


def colour(label: str) -> tuple[int, int, int]:
    """BGR colour of a label (mask green, no_mask red, unknown amber, others a fixed palette)."""
    if label in COLOURS:
        return COLOURS[label]
    return OTHER_COLOURS[sum(map(ord, label)) % len(OTHER_COLOURS)]


def draw_boxes(img: np.ndarray, drawn) -> None:
    """Box, track id, voted label and the frame's top probability, in place."""
    import cv2

    scale = max(0.4, min(img.shape[:2]) / 900)
    thick = max(1, round(2 * scale))
    for hb, tid, label, p in drawn:
        c = colour(label)
        cv2.rectangle(img, (hb.x1, hb.y1), (hb.x2 - 1, hb.y2 - 1), c, thick)
        text = f"#{tid} {label} {p:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        y = hb.y1 - 4 if hb.y1 - th - base - 4 >= 0 else hb.y2 + th + 4
        cv2.rectangle(img, (hb.x1, y - th - base), (hb.x1 + tw + 4, y + base // 2), c, -1)
        cv2.putText(img, text, (hb.x1 + 2, y - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thick, cv2.LINE_AA)


def annotated(image: np.ndarray, drawn, *, blur: bool) -> np.ndarray:
    """A copy of the frame with its heads drawn (``drawn``: ``(head box, track, label, p)``);
    with ``blur`` (privacy) the heads are blurred before the boxes go on."""
    img = image.copy()
    if blur:
        from annotator.media.blur import blur_boxes

        img = blur_boxes(img, [(hb.x1, hb.y1, hb.x2, hb.y2) for hb, *_ in drawn], grow=0.0)
    draw_boxes(img, drawn)
    return img


def output_fps(info, st) -> float:
    native = info.fps or 25.0
    if st.every:
        return native / st.every
    if st.fps:
        return min(st.fps, native) if info.fps else st.fps
    return native


def open_video(path: Path, fps: float, size: tuple[int, int], codec: str):
    """``(cv2.VideoWriter, codec used)``. VP9 in MP4 plays in browsers and OpenCV reads it back,
    but encodes ~60x slower than mp4v here; where no VP9 encoder is built in, mp4v it is."""
    import cv2

    for c in dict.fromkeys([codec, "mp4v"]):
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*c), float(fps), size)
        if w.isOpened():
            return w, c
        w.release()
    raise InputError(f"cannot write an MP4 video here ({codec} and mp4v both failed); use --no-video")


class VideoOut:
    """An MP4 written by a thread of its own: OpenCV encodes without the GIL, so encoding the
    last frame overlaps detecting the next one (VP9 costs about as much as YuNet here)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], codec: str):
        import queue as stdqueue
        import threading

        self.size = size
        self._writer, self.codec = open_video(path, fps, size, codec)
        self._frames: stdqueue.Queue = stdqueue.Queue(maxsize=8)  # bounds memory
        self._seconds, self._error = 0.0, None
        self._thread = threading.Thread(target=self._encode, daemon=True)
        self._thread.start()

    def write(self, img: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        if (img.shape[1], img.shape[0]) != self.size:
            import cv2

            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        self._frames.put(img)

    def close(self) -> float:
        """Flush and close; returns the seconds spent encoding."""
        self._frames.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._seconds

    def _encode(self):
        while True:
            img = self._frames.get()
            t = time.perf_counter()
            try:
                if img is None:
                    self._writer.release()
                else:
                    self._writer.write(img)
            except Exception as exc:  # raised in the job's thread at its next write
                self._error = exc
            self._seconds += time.perf_counter() - t
            if img is None:
                return
