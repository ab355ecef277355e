"""The detector of an extraction process, built once and only when a frame needs it, and how
many processes a machine runs (shared by the local engine and the Ray ranges)."""
from __future__ import annotations

import os
import time
from collections import Counter

from annotator.core.errors import AnnotatorError, InputError
from annotator.media import detectors
from pipelines.extract.options import Settings


class NoDetector(InputError):
    """The detector could not be built: the run stops (every source would fail the same way)."""


class LazyDetector:
    """The detector of a process, built when the first frame needs it: a re-run whose sources
    are all done already starts no torch (MTCNN: ~5 s here)."""

    def __init__(self, st: Settings, *, threads: int | None):
        self.st, self.threads, self._detector = st, threads, None

    def load(self) -> bool:
        """Build the detector now if it is not built yet; True if it was built by this call."""
        if self._detector is not None:
            return False
        try:
            self._detector = load(self.st, threads=self.threads)
        except AnnotatorError as exc:
            raise NoDetector(str(exc)) from None
        return True

    @property
    def device(self) -> str:
        return getattr(self._detector, "device", "cpu")

    def people(self, frames):
        self.load()
        return self._detector.people(frames)


def load_timed(detector: LazyDetector, timings: Counter) -> None:
    """Build the detector if needed, its seconds counted as the ``load`` stage."""
    t = time.perf_counter()
    if detector.load():
        timings["load"] += time.perf_counter() - t


def load(st: Settings, *, threads: int | None):
    """The detector for this process. MTCNN's small convolutions gain nothing from several
    threads and lose a lot when cores are busy, so it runs on one; OpenPifPaf gets the cores."""
    if st.detector in ("mtcnn", "yunet"):  # YuNet: one OpenMP thread per calling thread
        threads = 1
    return detectors.load_detector(
        st.detector, checkpoint=st.checkpoint, long_edge=st.long_edge, batch_size=st.batch_size,
        min_face_size=max(12, int(st.min_size / 1.25)), threads=threads, min_score=st.min_score)


def workers_for(requested: int | None, specs) -> int:
    """Worker processes for ``specs``: as asked (at most one per source), else one per video or
    stream up to one per core."""
    heavy = sum(1 for s in specs if s.kind != "image") or (1 if specs else 0)
    if requested is not None:
        if requested < 1:
            raise InputError(f"--workers must be >= 1, got {requested}")
        return min(requested, max(len(specs), 1))
    return max(1, min(heavy, cores()))


def cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than the machine)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1
