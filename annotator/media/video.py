"""Read frames from video files, image files, folders and network streams (OpenCV/FFmpeg).

Frames are streamed one at a time, never all held in memory. Timestamps come from the
container (``CAP_PROP_POS_MSEC``), falling back to ``index / fps``. Sampling is decided from
the frame index and timestamp alone, so a resumed read (``start=N``) samples exactly the frames an
uninterrupted read would have.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from annotator.core.errors import InputError

from annotator.media.images import IMAGE_EXTS, MAX_PIXELS, read_bgr
from annotator.core.urls import redact

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".ts", ".mts",
              ".wmv", ".flv", ".3gp", ".mjpeg", ".mjpg", ".h264", ".h265", ".hevc", ".asf", ".dav"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
OPEN_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class SourceSpec:
    """One thing to extract from: a video file, an image file or a stream URI.

    ``uri`` is what OpenCV opens (a stream's full URL, password included: it never leaves this
    object); ``name`` is what is stored, logged and shown (a stream's URL without secrets).
    """

    uri: str
    kind: str  # video | image | stream
    name: str
    max_pixels: int = MAX_PIXELS  # [limits] max_image_pixels: larger frames are refused undecoded

    @property
    def shown_uri(self) -> str:
        return self.name if self.kind == "stream" else self.uri


@dataclass(frozen=True)
class VideoInfo:
    fps: float | None
    frame_count: int | None
    width: int
    height: int


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source, 0-based (continues across runs for streams)
    timestamp_s: float
    image: np.ndarray  # BGR uint8 (H, W, 3)


def is_stream(uri: str) -> bool:
    return uri.lower().startswith(STREAM_SCHEMES)


def expand_sources(items: list[str], *, max_pixels: int = MAX_PIXELS
                   ) -> tuple[list[SourceSpec], list[str]]:
    """Sources named on the command line: folders are searched recursively for videos and images.

    Returns the sources in a stable order and one error line per unusable item.
    """
    specs, errors = _expand(items)
    return [dataclasses.replace(s, max_pixels=max_pixels) for s in specs], errors


def _expand(items: list[str]) -> tuple[list[SourceSpec], list[str]]:
    specs, errors = [], []
    for item in items:
        item = str(item)
        if is_stream(item):
            specs.append(SourceSpec(item, "stream", redact(item)))  # shown and stored: no password
            continue
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS)
            if not found:
                errors.append(f"{item}: folder has no videos or images")
            specs += [_file_spec(p) for p in found]
        elif path.is_file():
            specs.append(_file_spec(path))
        elif path.exists():
            errors.append(f"{item}: not a file or folder")
        else:
            errors.append(f"{item}: no such file or folder")
    return specs, errors


def _file_spec(path: Path) -> SourceSpec:
    kind = "image" if path.suffix.lower() in IMAGE_EXTS else "video"
    return SourceSpec(str(path.resolve()), kind, path.name)


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """Content hash of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def probe(spec: SourceSpec) -> VideoInfo:
    """Size, frame rate and length, checking that the first frame decodes."""
    import cv2

    if spec.kind == "image":
        img = _read_image(spec)
        return VideoInfo(None, 1, img.shape[1], img.shape[0])
    cap = _open(spec)
    try:
        ok, frame = cap.read()
        if not ok or frame is None:
            raise InputError(f"{spec.name}: no frame could be decoded (not a video, or corrupt)")
        if frame.shape[0] * frame.shape[1] > spec.max_pixels:
            raise InputError(f"{spec.name}: {frame.shape[1]}x{frame.shape[0]} frames are over the "
                             f"{spec.max_pixels:,}-pixel limit (limits.max_image_pixels)")
        fps = cap.get(cv2.CAP_PROP_FPS) or None
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
        if spec.kind == "stream":
            n = None
        return VideoInfo(fps if fps and 0 < fps < 1000 else None, n, frame.shape[1], frame.shape[0])
    finally:
        cap.release()


class FrameReader:
    """Iterate over the sampled frames of one source.

    Parameters
    ----------
    spec : SourceSpec
    start : int
        First frame index to consider (frames before it are skipped, not decoded to images).
        For streams it is only the number given to the first frame read.
    fps : float, optional
        Keep the first frame of every ``1 / fps`` seconds of video time.
    every : int, optional
        Keep every ``every``-th frame (by index). With neither, every frame is kept.
    max_seconds : float, optional
        Files: stop at this video time. Streams: stop after this much wall-clock capture.
    reconnect : int
        Streams: how many times to reopen a dropped stream in a row before giving up.
    stop : int, optional
        Files: stop before this frame index (a frame range ``[start, stop)``; not ``finished``).
    seek : bool
        Files: jump to ``start`` instead of grabbing every frame before it. The frame before
        ``start`` is read too, for its timestamp, so ``fps`` sampling keeps exactly the frames a
        read from 0 keeps; if the container cannot seek to the exact frame, it reads from 0.

    After iteration: ``next_index`` is the index of the first frame not read, ``finished`` is
    True when the end of the source was reached, and ``problem`` describes an early stop (a
    truncated or corrupt file, a stream that did not come back).
    """

    def __init__(self, spec: SourceSpec, *, start: int = 0, fps: float | None = None,
                 every: int | None = None, max_seconds: float | None = None,
                 reconnect: int = 3, retry_wait_s: float = 1.0, stop: int | None = None,
                 seek: bool = False):
        if fps is not None and fps <= 0:
            raise InputError(f"--fps must be > 0, got {fps}")
        if every is not None and every < 1:
            raise InputError(f"--every must be >= 1, got {every}")
        if fps is not None and every is not None:
            raise InputError("give either --fps or --every, not both")
        if start < 0:
            raise ValueError("start must be >= 0")
        if stop is not None and stop < start:
            raise ValueError("stop must be >= start")
        self.stop, self.seek = stop, seek
        self.spec, self.start, self.fps, self.every = spec, start, fps, every
        self.max_seconds, self.reconnect, self.retry_wait_s = max_seconds, reconnect, retry_wait_s
        self.next_index = start
        self.finished = False
        self.problem: str | None = None
        self.frame_count: int | None = None

    def __iter__(self) -> Iterator[Frame]:
        if self.spec.kind == "image":
            yield from self._image()
        elif self.spec.kind == "stream":
            yield from self._stream()
        else:
            yield from self._file()

    def _keep(self, index: int, t: float, t_prev: float | None) -> bool:
        if self.every is not None:
            return index % self.every == 0
        if self.fps is not None:
            return t_prev is None or math.floor(t * self.fps + 1e-6) > math.floor(t_prev * self.fps + 1e-6)
        return True

    def _image(self):
        if self.start > 0:
            self.finished = True
            return
        img = _read_image(self.spec)
        self.frame_count = 1
        self.next_index = 1
        self.finished = True
        yield Frame(0, 0.0, img)

    def _file(self):
        import cv2

        cap = _open(self.spec)
        try:
            native_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
            self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) or None
            index, t_prev = 0, None
            if self.seek and self.start > 0:
                cap, index, t_prev = self._seek(cap, native_fps)
            # grab() every frame, retrieve() only the sampled ones: measured (bench/extract.py,
            # 2 fps) faster than a seek per sampled frame on all five shared videos, 4-21 against
            # 16-29 ms per sampled frame, and exact; a seek decodes from the previous key frame.
            while True:
                if not cap.grab():
                    self._end_of_file(index)
                    return
                t = _timestamp(cap, index, native_fps, t_prev)
                if self.max_seconds is not None and t > self.max_seconds + 1e-9:
                    return  # stopped by the limit: not finished, resumable from here
                if self.stop is not None and index >= self.stop:
                    return  # end of the range: not finished
                if index >= self.start:
                    if self._keep(index, t, t_prev):
                        ok, img = cap.retrieve()
                        if not ok or img is None:
                            self._end_of_file(index)
                            return
                        self.next_index = index + 1
                        yield Frame(index, t, img)
                    else:
                        self.next_index = index + 1
                index += 1
                t_prev = t
        finally:
            cap.release()

    def _seek(self, cap, native_fps: float):
        """``(cap, index, t_prev)`` positioned on frame ``start`` with the timestamp of the frame
        before it; a capture that lands elsewhere is reopened to be read from frame 0."""
        import cv2

        before = self.start - 1
        if cap.set(cv2.CAP_PROP_POS_FRAMES, before) and cap.grab():
            if int(round(cap.get(cv2.CAP_PROP_POS_FRAMES))) == self.start:
                return cap, self.start, _timestamp(cap, before, native_fps, None)
        cap.release()
        return _open(self.spec), 0, None

    def _end_of_file(self, index: int) -> None:
        self.next_index = max(self.next_index, index)
        self.finished = True
        n = self.frame_count
        if n and index < n - 1 and index < n * 0.98:  # containers may overstate by a frame
            self.problem = (f"{self.spec.name}: decoding stopped at frame {index} of {n} "
                            "(truncated or corrupt file); kept what decoded before it")

    def _stream(self):
        import cv2

        cap = _open(self.spec)
        t0 = time.monotonic()
        index, t_prev, failures = self.start, None, 0
        native_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        try:
            while True:
                if self.max_seconds is not None and time.monotonic() - t0 > self.max_seconds:
                    self.finished = True
                    return
                ok = cap.grab()
                if not ok:
                    failures += 1
                    cap.release()
                    if failures > self.reconnect:
                        self.problem = (f"{self.spec.name}: stream dropped and did not come back "
                                        f"after {self.reconnect} reconnects; kept what was read")
                        self.finished = True
                        return
                    time.sleep(self.retry_wait_s * failures)
                    try:
                        cap = _open(self.spec)
                    except InputError:
                        cap = cv2.VideoCapture()  # an unopened capture: grab() fails, retry again
                    continue
                failures = 0
                # Stream clocks restart on reconnect: use wall time since the capture began.
                t = (self.start / native_fps if native_fps else 0.0) + time.monotonic() - t0
                if self._keep(index, t, t_prev):
                    ok, img = cap.retrieve()
                    if ok and img is not None:
                        self.next_index = index + 1
                        yield Frame(index, t, img)
                index += 1
                self.next_index = index
                t_prev = t
        finally:
            cap.release()


def batches(frames, size: int, timings: dict, *, clock=time.perf_counter
            ) -> Iterator[list[Frame]]:
    """``frames`` in lists of ``size`` (the last one may be shorter), for detectors that take a
    batch per call; the time spent producing them (decoding) is added to ``timings["decode"]``,
    never the time the caller spends on a batch. ``clock``: seconds, injectable for tests."""
    batch: list[Frame] = []
    it = iter(frames)
    while True:
        t = clock()
        frame = next(it, None)
        timings["decode"] += clock() - t
        if frame is None:
            break
        batch.append(frame)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _timestamp(cap, index: int, native_fps: float, t_prev: float | None) -> float:
    import cv2

    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
    t = ms / 1000.0 if ms and ms > 0 else None
    if index == 0 and t is None:
        return 0.0
    if t is None or (t_prev is not None and t <= t_prev):
        t = index / native_fps if native_fps else (t_prev or 0.0) + 1e-3
        if t_prev is not None and t <= t_prev:
            t = t_prev + 1e-3
    return t


def _open(spec: SourceSpec):
    import os

    import cv2

    # FFmpeg's and OpenCV's own log lines would bury our one-line errors (unless asked for).
    if "OPENCV_FFMPEG_LOGLEVEL" not in os.environ:
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

    if spec.kind == "stream":
        cap = cv2.VideoCapture(spec.uri, cv2.CAP_FFMPEG,
                               [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS,
                                cv2.CAP_PROP_READ_TIMEOUT_MSEC, OPEN_TIMEOUT_MS])
        if not cap.isOpened():
            raise InputError(f"{spec.name}: cannot open stream (unreachable, or not a video stream)")
        return cap
    if not Path(spec.uri).is_file():
        raise InputError(f"{spec.name}: no such file")
    cap = cv2.VideoCapture(spec.uri)
    if not cap.isOpened():
        raise InputError(f"{spec.name}: not a video OpenCV can read")
    return cap


def _read_image(spec: SourceSpec) -> np.ndarray:
    if not Path(spec.uri).is_file():
        raise InputError(f"{spec.name}: no such file")
    img = read_bgr(spec.uri, max_pixels=spec.max_pixels)
    if img is None:
        raise InputError(f"{spec.name}: not an image OpenCV can read (or too large)")
    return img


def read_frame(uri: str, *, kind: str, index: int | None,
               max_pixels: int = MAX_PIXELS) -> np.ndarray | None:
    """One frame of a video file (by index) or a still image, BGR; None if it cannot be read
    or is larger than ``max_pixels``."""
    if kind == "image":
        return read_bgr(uri, max_pixels=max_pixels)
    if kind != "video" or index is None or not Path(uri).is_file():
        return None
    import cv2

    cap = cv2.VideoCapture(uri)
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
    finally:
        cap.release()
    return frame if ok and frame.shape[0] * frame.shape[1] <= max_pixels else None


def read_frames(uri: str, *, kind: str, indices,
                max_pixels: int = MAX_PIXELS) -> Iterator[tuple[int, np.ndarray | None]]:
    """``(index, BGR frame or None)`` for these frames of one source, in increasing order, with
    the video opened once: near frames are reached by grabbing forward (no seek), far ones by a
    seek. For exports that re-read many frames of one video (``read_frame`` reopens each time)."""
    indices = sorted(set(int(i) for i in indices))
    if kind != "video" or not Path(uri).is_file():
        for i in indices:
            yield i, read_frame(uri, kind=kind, index=i, max_pixels=max_pixels)
        return
    import cv2

    cap = cv2.VideoCapture(uri)
    pos = 0  # the index the next read returns
    try:
        for i in indices:
            if not 0 <= i - pos <= 48:  # a seek beats decoding more than ~2 s of frames
                cap.set(cv2.CAP_PROP_POS_FRAMES, i)
                pos = i
            while pos < i and cap.grab():
                pos += 1
            ok, frame = cap.read() if pos == i else (False, None)
            pos += 1 if ok else 0
            yield i, frame if ok and frame.shape[0] * frame.shape[1] <= max_pixels else None
    finally:
        cap.release()
