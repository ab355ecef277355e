"""One footage core: a head of one frame becomes a :class:`Candidate`; one :class:`Keeper` per
source follows heads across frames and keeps a few good crops per track.

Pure (NumPy and ``annotator.core``): the jobs that read footage (extract on this machine,
extract's Ray ranges, detect) all call :meth:`Keeper.update` once per sampled frame and differ
only in what they do with a kept crop (store it, send it to the driver, write it as a hard crop).

Inside the keeper, per frame: the tracker (``annotator.core.track``) gives each head a track
id and names the tracks that ended; a track's candidates wait until it ends, then
:func:`~annotator.core.track.thin` keeps ``per_track`` of them; a long track is compacted to
``PENDING_CAP * per_track`` candidates as it goes (memory stays bounded). The keeper's state
is plain JSON (:meth:`Keeper.state`), so an interrupted extraction resumes exactly.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotator.core.geometry import head_box, sharpness
from annotator.core.track import Tracker, compact, crop_quality, thin

__all__ = ["Candidate", "Ended", "Step", "Keeper", "head_crops", "crop_origin", "candidate",
           "first_track_id", "PENDING_CAP", "TRACK_BASE"]

PENDING_CAP = 8  # candidates held per live track = PENDING_CAP * per_track (bounds memory)
# detect's queued tracks start here, above any extract track, so a track labeled as one person
# never mixes two; below labeling.GROUP_STRIDE so group ids stay per source.
TRACK_BASE = 5_000_000


@dataclass
class Candidate:
    """One head of one frame that may become a crop (one name per field, in every job)."""

    origin: str  # ``fNNNNNN:x1,y1,x2,y2``: with the source, the crop's idempotency key
    frame_index: int
    time_s: float  # seconds into the source, rounded to 0.1 ms
    box: tuple  # x1, y1, x2, y2 in frame pixels
    width: int
    height: int
    det_score: float
    sharpness: float
    keypoints: list | None
    method: str  # how the head box was found (geometry.HeadBox.method)
    quality: float  # crop_quality: thinning keeps the best
    image: np.ndarray | None = None  # BGR pixels (a copy) until the job stores them
    sha256: str | None = None  # set once a job wrote the image to its store
    path: str | None = None
    data: Any = None  # the job's own payload (detect: probabilities, embedding)

    def saved(self) -> dict:
        """JSON form, as extract keeps it in a source's resume state (no pixels, no payload)."""
        return {"origin": self.origin, "sha256": self.sha256, "path": self.path,
                "width": self.width, "height": self.height, "frame_index": self.frame_index,
                "timestamp_s": self.time_s, "box": list(self.box), "det_score": self.det_score,
                "keypoints": self.keypoints, "sharpness": self.sharpness, "method": self.method,
                "quality": self.quality}

    @classmethod
    def from_saved(cls, d: dict) -> "Candidate":
        return cls(origin=d["origin"], frame_index=int(d["frame_index"]),
                   time_s=float(d["timestamp_s"]), box=tuple(d["box"]), width=d["width"],
                   height=d["height"], det_score=d["det_score"], sharpness=d["sharpness"],
                   keypoints=d.get("keypoints"), method=d.get("method", ""),
                   quality=float(d["quality"]), sha256=d.get("sha256"), path=d.get("path"))


def crop_origin(frame_index: int, hb) -> str:
    """Where a crop is in its source; with the source, the key that makes adding it idempotent."""
    return f"f{frame_index:06d}:{hb.x1},{hb.y1},{hb.x2},{hb.y2}"


def head_crops(image: np.ndarray, people, *, margin: float, min_size: float,
               min_sharpness: float, dropped: Counter) -> list:
    """``(person, head box, crop, sharpness)`` for each usable head of one frame; the others
    are counted in ``dropped`` by reason. The crop is a view of ``image`` at native resolution."""
    h, w = image.shape[:2]
    found = []
    for p in people:
        hb = head_box(p, (w, h), margin=margin, min_size=min_size)
        if not hb.ok:
            dropped[hb.reason] += 1
            continue
        crop = image[hb.y1:hb.y2, hb.x1:hb.x2]
        sharp = sharpness(crop)
        if sharp < min_sharpness:
            dropped["min_sharpness"] += 1
            continue
        found.append((p, hb, crop, sharp))
    return found


def candidate(frame_index: int, time_s: float, person, hb, crop: np.ndarray, sharp: float, *,
              data: Any = None) -> Candidate:
    """The candidate of one usable head (an entry of :func:`head_crops`). The pixels are copied:
    the frame is not held while the track lives."""
    kps = None
    if person.keypoints is not None:
        kps = np.round(np.asarray(person.keypoints, dtype=float), 2).tolist()
    return Candidate(
        origin=crop_origin(frame_index, hb), frame_index=int(frame_index),
        time_s=round(float(time_s), 4), box=tuple(hb.box), width=hb.width, height=hb.height,
        det_score=round(float(person.score), 4), sharpness=round(float(sharp), 3), keypoints=kps,
        method=hb.method, quality=float(crop_quality([hb.width], [sharp], [person.score])[0]),
        image=crop.copy(), data=data)


def first_track_id(highest: int, *, by: str) -> int:
    """The first track id a new run on a source hands out, given the highest one its crops have.

    ``by="extract"``: right after (a continued source never gives one id to two people).
    ``by="detect"``: detect's run-local track ``n`` is queued as ``base + n``, with ``base`` a
    block from :data:`TRACK_BASE` up; this returns ``base + 1``.
    """
    if by == "extract":
        return int(highest) + 1
    if by == "detect":
        return max(TRACK_BASE, int(highest) + 1) + 1
    raise ValueError(f"by must be 'extract' or 'detect', got {by!r}")


@dataclass
class Ended:
    """A track that ended: the candidates thinning kept (in time order) and those it dropped."""

    track_id: int
    kept: list[Candidate]
    dropped: list[Candidate]


@dataclass
class Step:
    """What one frame did: a track id per candidate given, the tracks that ended before it, and
    candidates compacted away to bound memory."""

    ids: list[int] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)
    dropped: list[Candidate] = field(default_factory=list)


class Keeper:
    """Per-track candidates of one source (or one range of it).

    Parameters
    ----------
    per_track : int >= 1
        Crops kept per track when it ends.
    first_id : int
        The first track id (see :func:`first_track_id`).
    cap : int
        Candidates held per live track, in multiples of ``per_track``.
    """

    def __init__(self, per_track: int, *, first_id: int = 1, cap: int = PENDING_CAP,
                 tracker: Tracker | None = None):
        if per_track < 1:
            raise ValueError(f"per_track must be >= 1, got {per_track}")
        self.per_track, self.cap = int(per_track), int(cap) * int(per_track)
        self.tracker = tracker if tracker is not None else Tracker(first_id=first_id)
        self.pending: dict[int, list[Candidate]] = {}

    def update(self, time_s: float, found: list[Candidate]) -> Step:
        """One sampled frame's candidates (an empty list too: time moves on, tracks end)."""
        boxes = np.array([c.box for c in found], dtype=float).reshape(-1, 4)
        ids, ended = self.tracker.update(boxes, time_s)
        step = Step(ids=ids.tolist(), ended=[self._end(tid) for tid in ended])
        for tid, cand in zip(step.ids, found):
            cands = self.pending.setdefault(tid, [])
            cands.append(cand)
            if len(cands) > self.cap:
                keep = set(compact([c.time_s for c in cands], [c.quality for c in cands],
                                   self.cap).tolist())
                step.dropped += [c for i, c in enumerate(cands) if i not in keep]
                self.pending[tid] = [c for i, c in enumerate(cands) if i in keep]
        step.ended = [e for e in step.ended if e is not None]
        return step

    def finish(self) -> list[Ended]:
        """End every live track (end of the source, range or ``--max-seconds``)."""
        return [e for e in (self._end(tid) for tid in self.tracker.finish()) if e is not None]

    @property
    def tracks_made(self) -> int:
        """Track ids handed out so far by a keeper that started at 1."""
        return self.tracker.state()["next_id"] - 1

    def state(self) -> dict:
        """JSON-ready: the tracker and the candidates waiting (``Candidate.saved``: a job that
        resumes needs their images stored first)."""
        return {"tracker": self.tracker.state(),
                "pending": {str(k): [c.saved() for c in cs] for k, cs in self.pending.items()}}

    @classmethod
    def from_state(cls, state: dict, per_track: int, *, cap: int = PENDING_CAP) -> "Keeper":
        keeper = cls(per_track, cap=cap, tracker=Tracker.from_state(state["tracker"]))
        keeper.pending = {int(k): [Candidate.from_saved(c) for c in v]
                          for k, v in state["pending"].items()}
        return keeper

    def _end(self, tid: int) -> Ended | None:
        cands = self.pending.pop(tid, [])
        if not cands:
            return None
        keep = thin(np.array([c.time_s for c in cands]), np.array([c.quality for c in cands]),
                    self.per_track).tolist()
        kept = set(keep)
        return Ended(tid, [cands[i] for i in keep],
                     [c for i, c in enumerate(cands) if i not in kept])
