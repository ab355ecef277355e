"""One synthetic detection sequence through extract's frame loop and detect's: the same kept
crops under the same track ids (both call the footage keeper; only what they do with a kept
crop differs). The frames and the detector's answers are made here; no model runs."""
from __future__ import annotations

from collections import Counter

import numpy as np

from annotator.core.footage import PENDING_CAP, Keeper
from annotator.core.geometry import Person
from annotator.media.video import Frame, SourceSpec, VideoInfo
from pipelines.detect import options as detect_options
from pipelines.detect.frames import SourceRun
from pipelines.detect.outputs import Tables
from pipelines.extract import options as extract_options
from pipelines.extract.frames import FrameLoop

PER_TRACK = 2
DT = 0.5  # 2 fps
N = 30
W, H = 640, 360


def face(cx: float, cy: float, side: float) -> tuple[float, float, float, float]:
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)


def sequence():
    """Frames with noise (sharp crops whose quality varies) and the detector's answer for each:
    a walker seen in every frame (more candidates than the cap: compacted, then thinned), one
    that leaves at frame 6, one that comes at frame 12 and leaves at 20, and a face too small
    to keep."""
    rng = np.random.default_rng(21)
    for i in range(N):
        image = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
        boxes = [face(60 + 15 * i, 120, 60)]
        if i < 6:
            boxes.append(face(560, 250, 50))
        if 12 <= i < 20:
            boxes.append(face(300, 280 - 5 * (i - 12), 56))
        boxes.append(face(400, 60, 6))  # below min_size
        people = [Person(face_box=b, score=float(0.6 + 0.3 * rng.random())) for b in boxes]
        yield Frame(i, round(i * DT, 3), image), people


class Detector:
    """Answers the prepared people for each frame image it is shown."""

    def __init__(self, seq):
        self.by_image = {id(f.image): people for f, people in seq}

    def load(self) -> bool:
        return False

    def people(self, images):
        return [self.by_image[id(img)] for img in images]


def extract_settings() -> extract_options.Settings:
    return extract_options.Settings(
        detector="yunet", detector_reason="test", checkpoint=None, fps=2.0, every=None,
        min_size=20.0, margin=0.15, per_track=PER_TRACK, min_sharpness=0.0, min_score=None,
        redo=False, max_seconds=None, long_edge=None, batch_size=4, chunk_frames=16,
        motion="off")


def detect_settings() -> detect_options.Settings:
    return detect_options.Settings(
        detector="yunet", detector_why="test", checkpoint=None, fps=2.0, every=None,
        max_seconds=None, min_prob=0.75, method="debounce", k=3, video=False, codec="mp4v",
        min_size=20.0, margin=0.15, min_sharpness=0.0, per_track=PER_TRACK, hard_flicker=0.5,
        hard_margin=0.2, batch_size=4, long_edge=None, detector_min_score=None)


def by_extract(seq) -> tuple[list, Counter]:
    st = extract_settings()
    res = extract_options.SourceResult(name="walk.mp4", uri="walk.mp4", kind="video")
    loop = FrameLoop(st, Detector(seq), Keeper(st.per_track), res, kind="video")
    frames = [f for f, _ in seq]
    kept = []
    for i in range(0, len(frames), st.batch_size):
        kept += loop.process(frames[i:i + st.batch_size])[0]
    kept += loop.finish()[0]
    assert res.frames == N and res.tracks == 3
    return [(tid, c.origin, c.frame_index) for tid, c in kept], loop.dropped


def by_detect(seq, tmp_path) -> tuple[list, Tables]:
    def infer(x, batch_size):  # a classifier that is never sure: every track is uncertain
        return np.tile([0.55, 0.45], (len(x), 1)), np.ones((len(x), 4))

    st = detect_settings()
    spec = SourceSpec("walk.mp4", "video", "walk.mp4")
    res = detect_options.SourceDetect(name="walk.mp4", uri="walk.mp4", kind="video", key="k")
    tables = Tables(tmp_path, ["mask", "no_mask"])
    run = SourceRun(spec, st, None, infer, ["mask", "no_mask"], tables, tmp_path, set(),
                    lambda *a, **k: None, res, Counter())
    info = VideoInfo(2.0, N, W, H)
    ended = []
    for frame, people in seq:
        ended += run.frame(frame, people, info).ended
    ended += run.finish()
    tables.close()
    assert res.frames == N and res.tracks == 3 and res.hard_tracks == 3
    return [(e.track_id, c.origin, c.frame_index) for e in ended for c in e.kept], tables


def test_extract_and_detect_keep_the_same_crops_under_the_same_track_ids(tmp_path):
    seq = list(sequence())
    from_extract, dropped = by_extract(seq)
    from_detect, tables = by_detect(seq, tmp_path)
    assert from_extract == from_detect
    tracks = Counter(tid for tid, _o, _f in from_extract)
    assert tracks == {1: PER_TRACK, 2: PER_TRACK, 3: PER_TRACK}
    # the one that left ended first; the walker was compacted as it went, then thinned
    assert [tid for tid, _o, _f in from_extract][:PER_TRACK] == [2] * PER_TRACK
    assert dropped["min_size"] == N
    assert dropped["near_duplicate"] == (N + 6 + 8) - 3 * PER_TRACK
    assert N > PENDING_CAP * PER_TRACK
    walker = [f for tid, _o, f in from_extract if tid == 1]
    assert walker[0] < N // 2 <= walker[-1]  # spread over the track
    # detect writes exactly those as the uncertain tracks' hard crops
    assert [(h.track, h.origin) for h in tables.hard] == [(t, o) for t, o, _f in from_detect]
