"""The pure parts of bench/label_cost_videos.py: the truth fixture is matched by box (IoU within
the same video and frame), not by file hash, and the simulated annotator keys a mixed track
strip crop by crop. No real data: fixtures are made here."""
from __future__ import annotations

import pytest

from bench.label_cost_videos import (TRUTH, Truth, decisions_to, iou, match_truth, read_truth,
                                      use_track_key)


def test_iou_of_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0  # an empty box matches nothing


def test_truth_is_matched_by_video_frame_and_overlap_not_by_exact_numbers():
    truth = [Truth("a.mp4", 10, (100, 100, 140, 140), "mask"),
             Truth("a.mp4", 10, (300, 100, 340, 140), "no_mask"),
             Truth("b.mp4", 10, (100, 100, 140, 140), "not_a_face")]
    crops = [("a.mp4", 10, (101.4, 99.2, 141.0, 139.6)),  # a pixel off: still the mask row
             ("a.mp4", 10, (302, 101, 341, 141)),  # the other person in that frame
             ("b.mp4", 10, (100, 100, 140, 140)),  # same box, other video
             ("a.mp4", 12, (100, 100, 140, 140)),  # another frame: no truth
             ("a.mp4", 10, (125, 125, 165, 165))]  # overlaps, IoU < 0.5: no truth
    assert match_truth(crops, truth) == ["mask", "no_mask", "not_a_face", None, None]


def test_the_fixture_reads_and_says_its_rule(tmp_path):
    rows = read_truth(TRUTH)
    assert len(rows) > 100 and {r.label for r in rows} <= {"mask", "no_mask", "not_a_face",
                                                           "skip"}
    assert "Rule:" in TRUTH.read_text()
    bad = tmp_path / "bad.csv"
    bad.write_text("# c\nvideo,frame_index,x1,y1,x2,y2,label\na.mp4,1,0,0,1,1,masked\n")
    with pytest.raises(ValueError, match="masked"):
        read_truth(bad)


def test_the_annotator_uses_the_track_key_only_when_every_open_mate_agrees():
    assert use_track_key("mask", ["mask", "mask"])
    assert not use_track_key("mask", ["mask", "no_mask"])  # mixed strip: keys, crop by crop
    assert not use_track_key("mask", ["mask", None])  # a mate without truth: not trusted
    assert not use_track_key("mask", [])  # nothing else to decide: a plain key


def test_decisions_to_a_share_of_the_faces_counts_gestures_not_crops():
    values = [("not_a_face", 1), ("mask", 4), ("skip", 1), ("no_mask", 1), ("mask", 5)]
    assert decisions_to(values, 0.5) == 4  # 4 + 1 = 5 of 10 class labels after 4 decisions
    assert decisions_to(values, 0.9) == 5
    assert decisions_to(values, 0.4) == 2
    assert decisions_to([("not_a_face", 1)], 0.9) == 1  # no faces at all: nothing to wait for
