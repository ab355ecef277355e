"""Tracking and thinning on arrays built here."""
from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.core.track import Tracker, compact, crop_quality, thin


def box(cx, cy, side):
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def walk(n, dt=0.5):
    """Two heads walking in opposite directions, crossing paths halfway, sampled every dt s."""
    for i in range(n):
        yield i * dt, np.array([box(100 + 25 * i, 200, 30), box(400 - 25 * i, 210, 34)])


def test_two_walkers_keep_their_ids_through_a_crossing():
    tr = Tracker()
    seen = []
    for t, boxes in walk(12):
        ids, ended = tr.update(boxes, t)
        assert ended == []
        seen.append(ids.tolist())
    assert all(s == [1, 2] for s in seen)
    assert tr.finish() == [1, 2] and tr.live_ids == []


def test_gap_ends_a_track_and_a_new_one_starts():
    tr = Tracker(max_gap_s=1.0)
    ids, _ = tr.update(np.array([box(100, 100, 30)]), 0.0)
    assert ids.tolist() == [1]
    ids, ended = tr.update(np.zeros((0, 4)), 0.5)
    assert ids.tolist() == [] and ended == []
    ids, ended = tr.update(np.array([box(100, 100, 30)]), 2.0)  # unseen for 2 s > 1 s
    assert ended == [1] and ids.tolist() == [2]


def test_far_or_differently_sized_boxes_are_new_heads():
    tr = Tracker()
    tr.update(np.array([box(100, 100, 30)]), 0.0)
    ids, _ = tr.update(np.array([box(400, 100, 30)]), 0.1)  # 10 sides away in 0.1 s
    assert ids.tolist() == [2]
    tr = Tracker()
    tr.update(np.array([box(100, 100, 20)]), 0.0)
    ids, _ = tr.update(np.array([box(102, 100, 60)]), 0.1)  # 3x larger: not the same head
    assert ids.tolist() == [2]


def test_greedy_match_prefers_the_nearest():
    tr = Tracker()
    tr.update(np.array([box(100, 100, 30), box(160, 100, 30)]), 0.0)
    ids, _ = tr.update(np.array([box(158, 100, 30), box(104, 100, 30)]), 0.1)
    assert ids.tolist() == [2, 1]


def test_state_round_trip_resumes_exactly():
    frames = list(walk(10))
    full = Tracker()
    ref = [full.update(b, t)[0].tolist() for t, b in frames]
    first = Tracker()
    got = [first.update(b, t)[0].tolist() for t, b in frames[:4]]
    state = json.loads(json.dumps(first.state()))  # what sources.stats stores
    second = Tracker.from_state(state)
    got += [second.update(b, t)[0].tolist() for t, b in frames[4:]]
    assert got == ref


def test_tracker_validates_arguments():
    with pytest.raises(ValueError, match="max_gap_s"):
        Tracker(max_gap_s=0)
    with pytest.raises(ValueError, match="max_size_ratio"):
        Tracker(max_size_ratio=0.5)


def test_thin_keeps_the_best_in_each_part_of_the_track():
    times = np.arange(12, dtype=float)  # 12 s track
    quality = np.ones(12)
    quality[[1, 6, 10]] = 5.0  # one excellent crop in each third
    quality[[2, 3]] = 4.0  # two good ones, both in the first third
    keep = thin(times, quality, 3)
    assert keep.tolist() == [1, 6, 10]
    assert thin(times, quality, 1).tolist() in ([1], [6], [10])


def test_thin_fills_empty_parts_with_the_best_left():
    times = np.array([0.0, 0.1, 0.2, 10.0])  # nothing in the middle third
    quality = np.array([1.0, 3.0, 2.0, 1.0])
    assert thin(times, quality, 3).tolist() == [1, 2, 3]


def test_thin_short_tracks_and_bad_input():
    assert thin(np.array([3.0, 1.0]), np.array([1.0, 1.0]), 3).tolist() == [1, 0]
    assert thin(np.array([5.0, 5.0, 5.0]), np.array([1.0, 9.0, 2.0]), 1).tolist() == [1]
    with pytest.raises(ValueError, match="k must be"):
        thin(np.zeros(3), np.zeros(3), 0)
    with pytest.raises(ValueError, match="same length"):
        thin(np.zeros(3), np.zeros(2), 1)


def test_compact_bounds_memory_keeping_spread_and_quality():
    times = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 10.0])
    quality = np.array([1.0, 9.0, 2.0, 3.0, 1.0, 1.0])
    keep = compact(times, quality, 3)
    assert keep.tolist() == [1, 3, 5]
    assert compact(times, quality, 10).tolist() == list(range(6))


def test_crop_quality_prefers_sharp_large_confident():
    q = crop_quality([20, 40, 40, 40], [100, 100, 400, 400], [0.9, 0.9, 0.9, 0.5])
    assert q[1] > q[0] and q[2] > q[1] and q[2] > q[3]


def test_neighbour_appearing_a_second_later_is_not_the_same_head():
    """Seen in the shared pedestrian video: a head at x=231 last seen at 3.5 s, another at x=338
    at 4.5 s (3.3 head widths away); merging them would thin away one person's crops."""
    tr = Tracker()
    tr.update(np.array([box(231, 98, 30)]), 3.5)
    ids, _ = tr.update(np.array([box(338, 97, 33)]), 4.5)
    assert ids.tolist() == [2]
    # while the same head a little further on after half a second is kept
    tr = Tracker()
    tr.update(np.array([box(263, 85, 41)]), 2.5)
    ids, _ = tr.update(np.array([box(224, 77, 52)]), 4.0)
    assert ids.tolist() == [1]
