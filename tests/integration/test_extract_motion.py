"""Motion gating in the extract job (``--motion``), real YuNet and real decoding.

The test video is built here: a still street-like background with sensor noise; a person (a real
face photo of ../shared/data/faces on a body blob) walks in at 4 s, stands still 8-13 s, walks
out by 17 s; then 3 s of nothing again.
"""
from __future__ import annotations

import sqlite3

import cv2
import numpy as np
import pytest

from annotator.service.workspace import Workspace
from pipelines import extract

pytestmark = pytest.mark.shared

FPS, SIZE, SECONDS = 10, (640, 360), 20
FACE = "faces/no_mask/0_0_aidai_0014.jpg"


def walker_video(path, face_bgr, *, seed: int = 0) -> None:
    """Still 0-4 s; a person walks in (4-8 s), stops (8-13 s), walks out (13-17 s); still 17-20 s."""
    w, h = SIZE
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bg = np.stack([60 + 80 * xx / w, 70 + 60 * yy / h, 90 + 30 * np.sin(xx / 37.0)], -1)
    bg += cv2.GaussianBlur(rng.normal(0, 25, (h, w)).astype(np.float32), (0, 0), 3)[..., None]
    fh = 90
    face = cv2.resize(face_bgr, (round(face_bgr.shape[1] * fh / face_bgr.shape[0]), fh))
    fw = face.shape[1]
    stand = w // 2 - fw // 2
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for i in range(SECONDS * FPS):
        t = i / FPS
        img = bg + rng.normal(0, 2.0, (h, w, 3))  # sensor noise
        if 4 <= t < 17:
            if t < 8:
                x = -fw + (stand + fw) * (t - 4) / 4
            elif t < 13:
                x = stand
            else:
                x = stand + (w - stand) * (t - 13) / 4
            x, y = int(round(x)), 60
            cv2.ellipse(img, (x + fw // 2, y + fh + 90), (55, 95), 0, 0, 360, (120, 40, 30), -1)
            x0, x1 = max(0, x), min(w, x + fw)
            if x1 > x0:
                img[y:y + fh, x0:x1] = face[:, x0 - x:x1 - x]
        out.write(np.clip(img, 0, 255).astype(np.uint8))
    out.release()


@pytest.fixture(scope="module")
def walker(shared_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("motion") / "walker.mp4"
    walker_video(path, cv2.imread(str(shared_data / FACE)))
    return path


def extract_with(tmp_path, video, motion: str, name: str):
    ws = Workspace.init(tmp_path / name)
    report = extract.run(ws, extract.ExtractOptions(sources=[str(video)], detector="yunet",
                                                    fps=2, motion=motion))
    con = sqlite3.connect(ws.root / "annotator.db")
    rows = con.execute("select origin, track_id from crops order by origin").fetchall()
    con.close()
    ws.dispose()
    assert report.errors == []
    return report, rows


def test_still_frames_skip_the_detector_and_the_stopped_person_keeps_one_track(walker, tmp_path):
    on, crops_on = extract_with(tmp_path, walker, "auto", "on")  # auto: on for a video file
    off, crops_off = extract_with(tmp_path, walker, "off", "off")
    assert on.frames == off.frames == SECONDS * 2
    # 0-4 s is still: every sampled frame but the first (no background yet) skips detection
    assert on.frames_skipped >= 7 and off.frames_skipped == 0
    assert on.pixels_detected < 0.75 * on.pixels_total
    assert off.pixels_detected == off.pixels_total == SECONDS * 2 * SIZE[0] * SIZE[1]
    # one person, one track, though they stood still for 5 s (background absorbs them; the
    # window where their face was seen keeps them looked for)
    assert on.tracks == off.tracks == 1
    assert len({t for _o, t in crops_on}) == 1
    assert len(crops_on) == len(crops_off) >= 2
    assert "motion gating: " in extract.summary(on) and "motion" not in extract.summary(off)


def test_a_second_run_adds_nothing_and_redo_with_gating_off_keeps_the_source(walker, tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    opts = dict(sources=[str(walker)], detector="yunet", fps=2)
    first = extract.run(ws, extract.ExtractOptions(**opts))
    again = extract.run(ws, extract.ExtractOptions(**opts))
    redo = extract.run(ws, extract.ExtractOptions(**opts, motion="off", redo=True))
    assert first.crops_kept >= 2 and again.crops_kept == 0 and again.skipped == 1
    assert redo.crops_removed == first.crops_kept and redo.frames_skipped == 0
    ws.dispose()


def test_a_bad_motion_value_is_one_clear_error(tmp_path, walker):
    ws = Workspace.init(tmp_path / "ws")
    with pytest.raises(extract.InputError, match="--motion"):
        extract.run(ws, extract.ExtractOptions(sources=[str(walker)], motion="sometimes"))
    ws.dispose()
