"""The Footage page's track tiles: the best head per track, the cut, the video's start second,
the run's own hard crops reused (never a file outside the run), and blurred runs blurred."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pandas as pd

from pipelines.detect import outputs, tiles


def test_best_detection_is_the_highest_detector_score_per_source_and_track():
    det = pd.DataFrame({
        "source": ["a", "a", "a", "b"], "frame": [3, 5, 8, 5], "track": [1, 1, 2, 1],
        "x1": [0, 10, 20, 30], "y1": [0, 0, 0, 0], "x2": [5, 15, 25, 35], "y2": [5, 5, 5, 5],
        "det_score": [0.5, 0.9, 0.7, 0.9]})
    assert tiles.best_detections(det) == {("a", 1): (5, (10.0, 0.0, 15.0, 5.0)),
                                          ("a", 2): (8, (20.0, 0.0, 25.0, 5.0)),
                                          ("b", 1): (5, (30.0, 0.0, 35.0, 5.0))}
    assert tiles.best_detections(det.iloc[:0]) == {}


def test_cut_clips_to_the_frame_and_never_grows_past_the_thumbnail_size():
    img = np.zeros((360, 640, 3), np.uint8)
    small = tiles.cut(img, (620, 350, 650, 380))  # partly outside: clipped
    assert small is not None and small.shape[:2] == (15, 25)  # from x 615, y 345 (4.5 px margin)
    big = tiles.cut(img, (0, 0, 400, 300))
    assert max(big.shape[:2]) == tiles.THUMB
    assert tiles.cut(img, (700, 400, 720, 420)) is None


def test_video_start_is_the_whole_second_the_track_first_shows_in():
    assert [tiles.video_start(t) for t in (0.0, 0.99, 1.0, 3.7)] == [0, 0, 1, 3]
    assert tiles.page_count(0) == 1 and tiles.page_count(24) == 1 and tiles.page_count(25) == 2


def _run(tmp_path, hard_rows, *, blur=False):
    run = tmp_path / "run"
    (run / "hard").mkdir(parents=True)
    (run / "report.json").write_text(json.dumps({"blur_faces": blur}))
    with open(run / "hard_crops.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "track", "det_score", "file"])
        w.writerows(hard_rows)
    pd.DataFrame(columns=["source", "frame", "time_s", "track", "x1", "y1", "x2", "y2",
                          "det_score"]).to_csv(run / "detections.csv", index=False)
    return run


def test_a_hard_track_reuses_its_most_confident_crop_and_a_planted_path_is_ignored(tmp_path):
    outside = tmp_path / "secret.png"
    cv2.imwrite(str(outside), np.full((20, 20, 3), 255, np.uint8))
    run = _run(tmp_path, [["v.mp4", 1, 0.6, "hard/000000.png"],
                          ["v.mp4", 1, 0.9, "hard/000001.png"],
                          ["v.mp4", 2, 0.9, "../secret.png"], ["v.mp4", 3, 0.9, "hard/../../x"]])
    cv2.imwrite(str(run / "hard" / "000000.png"), np.zeros((40, 30, 3), np.uint8))
    cv2.imwrite(str(run / "hard" / "000001.png"), np.full((200, 100, 3), 90, np.uint8))
    assert outputs.hard_crop_files(run) == {("v.mp4", 1): "hard/000001.png"}
    rows = pd.DataFrame({"track": [1, 2], "first_s": [0.5, 2.25], "last_s": [1.0, 3.0],
                         "voted": ["mask", "no_mask"]})
    src = {"name": "v.mp4", "uri": str(tmp_path / "gone.mp4"), "kind": "video"}
    one, two = tiles.tiles(run, {}, src, rows)
    assert (one.track, one.start_s, two.track, two.start_s) == (1, 0, 2, 2)
    img = cv2.imdecode(np.frombuffer(one.png, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (tiles.THUMB, tiles.THUMB // 2) and int(img[0, 0, 0]) == 90
    assert two.png is None  # no hard crop of its own and the source is gone: no picture


def test_a_blurred_run_gets_blurred_tiles(tmp_path):
    run = _run(tmp_path, [["v.mp4", 1, 0.9, "hard/000000.png"]], blur=True)
    sharp = np.indices((60, 60)).sum(0).astype(np.uint8)[..., None].repeat(3, 2) % 2 * 255
    cv2.imwrite(str(run / "hard" / "000000.png"), sharp)
    rows = pd.DataFrame({"track": [1], "first_s": [0.0], "last_s": [1.0], "voted": ["mask"]})
    (tile,) = tiles.tiles(run, {"blur_faces": True}, {"name": "v.mp4", "kind": "video"}, rows)
    img = cv2.imdecode(np.frombuffer(tile.png, np.uint8), cv2.IMREAD_COLOR)
    assert img.std() < sharp.std() / 4  # the checkerboard is gone
