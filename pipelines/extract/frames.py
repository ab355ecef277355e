"""extract's frame loop, shared by a source on this machine and a Ray range: detect (only where
something moved, with motion gating), cut head crops, and hand them to the footage keeper
(``annotator.core.footage``). What happens to a kept crop is the caller's business."""
from __future__ import annotations

import time
from collections import Counter

import numpy as np

from annotator.core.footage import Candidate, Ended, Keeper, candidate, head_crops
from annotator.core.geometry import Person
from annotator.core.motion import MotionGate
from pipelines.extract.detector import load_timed
from pipelines.extract.options import Settings, SourceResult

Kept = tuple[int, Candidate]  # (track id, candidate) of a crop thinning kept


class FrameLoop:
    """Frames of one source (or range) -> kept crops; counts go to ``res``, ``dropped`` and
    ``timings`` (``detect``; ``crop_store`` for head crops and tracking)."""

    def __init__(self, st: Settings, detector, keeper: Keeper, res: SourceResult, *, kind: str,
                 motion: MotionGate | None = None, timings: Counter | None = None):
        self.st, self.detector, self.keeper, self.res, self.kind = st, detector, keeper, res, kind
        self.dropped: Counter = Counter()
        self.timings: Counter = Counter() if timings is None else timings
        self.motion = motion
        self._gate_known = motion is not None  # a resumed gate keeps its background

    def process(self, frames) -> tuple[list[Kept], list[Candidate]]:
        """One batch of frames: ``(kept, dropped)`` candidates of the tracks that ended."""
        st, res = self.st, self.res
        load_timed(self.detector, self.timings)
        gate = self._gate(frames[0].image)
        res.pixels_total += sum(f.image.shape[0] * f.image.shape[1] for f in frames)
        # frame by frame: with gating, frame i's faces are told to the gate before frame i+1's
        # windows are made, so a person who stands still is held from the very next frame
        if gate is None:
            people_per_frame = whole_people(self.detector, frames, res)
        else:
            people_per_frame = gated_people(self.detector, frames, gate, res)
        kept: list[Kept] = []
        dropped: list[Candidate] = []
        for frame in frames:
            t = time.perf_counter()
            people = next(people_per_frame)
            self.timings["detect"] += time.perf_counter() - t
            t = time.perf_counter()
            res.frames += 1
            res.detections += len(people)
            found = head_crops(frame.image, people, margin=st.margin, min_size=st.min_size,
                               min_sharpness=st.min_sharpness, dropped=self.dropped)
            if gate is not None:  # where faces are, the detector looks again for a while
                gate.seen([hb.box for _p, hb, _crop, _sharp in found], frame.timestamp_s)
            step = self.keeper.update(frame.timestamp_s, [
                candidate(frame.index, frame.timestamp_s, *f) for f in found])
            self._ended(step.ended, kept, dropped)
            dropped += step.dropped
            self.dropped["near_duplicate"] += len(step.dropped)
            self.timings["crop_store"] += time.perf_counter() - t
        return kept, dropped

    def finish(self) -> tuple[list[Kept], list[Candidate]]:
        """End every live track (end of the source, range or ``--max-seconds``)."""
        kept: list[Kept] = []
        dropped: list[Candidate] = []
        self._ended(self.keeper.finish(), kept, dropped)
        return kept, dropped

    def _ended(self, ended: list[Ended], kept: list[Kept], dropped: list[Candidate]) -> None:
        for e in ended:
            kept += [(e.track_id, c) for c in e.kept]
            dropped += e.dropped
            self.dropped["near_duplicate"] += len(e.dropped)
            self.res.tracks += 1

    def _gate(self, image):
        """This source's motion gate (built on its first frame), or None when gating is off."""
        if not self._gate_known:
            on = self.st.motion == "on" or (self.st.motion == "auto"
                                            and self.kind in ("video", "stream"))
            h, w = image.shape[:2]
            self.motion = MotionGate((w, h)) if on else None
            self._gate_known = True
        return self.motion


def whole_people(detector, frames, res: SourceResult):
    """Per frame, the people the detector finds in the whole frame (one batched call)."""
    res.pixels_detected += sum(f.image.shape[0] * f.image.shape[1] for f in frames)
    yield from detector.people([f.image for f in frames])


def gated_people(detector, frames, gate: MotionGate, res: SourceResult):
    """Per frame, the people the detector finds in the windows the motion gate gives: none and
    no detector call where nothing moved (counted in ``res.frames_skipped``); the frame itself
    where the windows would cover most of it. Windows do not overlap, so nothing is found twice.

    A generator: the caller tells the gate frame i's faces (``gate.seen``) before it takes frame
    i+1, whose windows then hold them. Frames whose motion alone fills them are detected whole
    whatever faces are held, so they are known up front and detected in one batched call, as
    without gating; any other frame is decided only when its turn comes."""
    moving = [gate.moving(f.image, f.timestamp_s) for f in frames]  # background: in time order
    whole = [i for i, (f, m) in enumerate(zip(frames, moving))
             if gate.cover(m, f.timestamp_s, held=False) == [full(f)]]
    batched = {}
    if whole:
        batched = dict(zip(whole, detector.people([frames[i].image for i in whole])))
    for i, (f, m) in enumerate(zip(frames, moving)):
        wins = gate.cover(m, f.timestamp_s)
        res.pixels_detected += sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in wins)
        if not wins:
            res.frames_skipped += 1
            yield []
        elif i in batched:
            yield batched[i]
        elif wins == [full(f)]:  # held faces tipped it over: this frame alone
            yield detector.people([f.image])[0]
        else:
            people = []
            for x0, y0, x1, y1 in wins:
                found = detector.people([np.ascontiguousarray(f.image[y0:y1, x0:x1])])[0]
                people += [shifted(p, x0, y0) for p in found]
            yield people


def full(frame) -> tuple[int, int, int, int]:
    """The window of a whole frame."""
    h, w = frame.image.shape[:2]
    return (0, 0, w, h)


def shifted(p: Person, dx: float, dy: float) -> Person:
    """A person found in a window, in the frame's pixels."""
    kps = None
    if p.keypoints is not None:
        kps = np.array(p.keypoints, dtype=np.float32, copy=True)
        kps[:, 0] += dx
        kps[:, 1] += dy
    box = None if p.face_box is None else (p.face_box[0] + dx, p.face_box[1] + dy,
                                           p.face_box[2] + dx, p.face_box[3] + dy)
    return Person(keypoints=kps, score=p.score, face_box=box)
