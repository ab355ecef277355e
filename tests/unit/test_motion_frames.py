"""Motion gating inside extract's frame loop (``FrameLoop.process``), batches of 4 frames made in
code and a stand-in detector that finds a painted face wherever it lies whole in what it is shown:
a face found in a frame is looked for from the very next frame, inside the same batch too, and
frames that need the whole frame whatever is held still go to the detector in one call."""
from __future__ import annotations

import dataclasses

import numpy as np

from annotator.core.footage import Keeper
from annotator.core.geometry import Person
from annotator.core.motion import MotionGate
from annotator.media.video import Frame
from pipelines.extract.frames import FrameLoop
from pipelines.extract.options import SourceResult
from tests.unit.test_footage_paths import extract_settings

W, H, DT, BATCH = 640, 360, 0.5, 4
FACE = np.array([255, 0, 255], np.uint8)  # the face's colour: never in the noisy background
FW, FH = 40, 48


class PaintedFaces:
    """Finds each face painted in ``FACE`` colour that lies whole in an image; records how many
    images each call got."""

    def __init__(self):
        self.calls: list[int] = []

    def load(self) -> bool:
        return False

    def people(self, images):
        self.calls.append(len(images))
        out = []
        for img in images:
            ys, xs = np.nonzero((img == FACE).all(axis=2))
            whole = len(xs) == FW * FH and xs.max() - xs.min() + 1 == FW
            out.append([Person(face_box=(float(xs.min()), float(ys.min()), float(xs.max() + 1),
                                         float(ys.max() + 1)), score=0.9)] if whole else [])
        return out


def walker_frames(n: int = 16, seed: int = 0) -> list[Frame]:
    """A still scene with sensor noise; a person (a body blob under a painted face) steps in at
    frame 4, one more step at frame 5, then stands still."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    bg = np.stack([60 + 80 * xx / W, 70 + 60 * yy / H, 90 + 30 * np.sin(xx / 37.0)], -1)
    frames = []
    for i in range(n):
        img = np.clip(bg + rng.normal(0, 2.0, bg.shape), 0, 255).astype(np.uint8)
        if i >= 4:
            x, y = (260 if i == 4 else 300), 80
            img[y + FH:y + FH + 140, x - 20:x + FW + 20] = (120, 40, 30)  # the body
            img[y:y + FH, x:x + FW] = FACE
        frames.append(Frame(i, i * DT, img))
    return frames


def run(frames, gate: MotionGate) -> tuple[SourceResult, PaintedFaces]:
    st = dataclasses.replace(extract_settings(), batch_size=BATCH, motion="on")
    res = SourceResult(name="walk.mp4", uri="walk.mp4", kind="video")
    detector = PaintedFaces()
    loop = FrameLoop(st, detector, Keeper(st.per_track), res, kind="video", motion=gate)
    for i in range(0, len(frames), BATCH):
        loop.process(frames[i:i + BATCH])
    loop.finish()
    return res, detector


def test_a_person_who_stops_is_looked_for_from_the_next_frame_of_the_same_batch():
    frames = walker_frames()
    # a short background time constant: a person who stops is background one frame later, so
    # only the face held by the gate keeps them looked for (frames 6 and 7: same batch as 4-5)
    res, _det = run(frames, MotionGate((W, H), tau_s=0.1))
    assert res.frames == len(frames)
    assert res.frames_skipped == 3  # frames 1-3: nothing there yet (frame 0: no background)
    assert res.detections == len(frames) - 4  # the person in every frame from 4 on
    assert res.pixels_total == len(frames) * W * H
    assert W * H < res.pixels_detected < res.pixels_total


def test_frames_the_motion_fills_are_detected_in_one_call_per_batch():
    rng = np.random.default_rng(1)
    frames = [Frame(i, i * DT, rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
              for i in range(8)]  # every frame differs everywhere: a camera that moves
    res, det = run(frames, MotionGate((W, H)))
    assert det.calls == [BATCH, BATCH]
    assert res.frames_skipped == 0 and res.pixels_detected == res.pixels_total
