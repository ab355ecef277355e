"""Tiling a frame and merging tile detections: properties checked with hypothesis."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from annotator.core import tiles
from annotator.core.tiles import box_iou, merge_detections, tile_grid

# A loaded 2-core CI machine: no per-example deadline, a bounded number of examples.
PROPS = settings(deadline=None, max_examples=150)


@st.composite
def grids(draw):
    tile = draw(st.integers(16, 1200))
    overlap = draw(st.integers(0, tile - 1))
    width = draw(st.integers(1, 2500))
    height = draw(st.integers(1, 2500))
    return width, height, tile, overlap


@st.composite
def detections(draw, max_n=25):
    n = draw(st.integers(0, max_n))
    xy = draw(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 400),
                                 st.integers(1, 120), st.integers(1, 120)), min_size=n, max_size=n))
    boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in xy], dtype=float).reshape(-1, 4)
    # Few distinct values: ties are common, as with YuNet's integer confidences.
    scores = np.array(draw(st.lists(st.integers(0, 20), min_size=n, max_size=n)), float) / 20
    return boxes, scores


def test_doctests():
    assert doctest.testmod(tiles).failed == 0


# --- tile_grid ----------------------------------------------------------------------------------


@PROPS
@given(grids())
def test_windows_lie_inside_the_frame_and_cover_every_pixel(g):
    width, height, tile, overlap = g
    windows = tile_grid(width, height, tile=tile, overlap=overlap)
    covered = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in windows:
        assert all(isinstance(v, int) for v in (x0, y0, x1, y1))
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        covered[y0:y1, x0:x1] = True
    assert covered.all()


@PROPS
@given(grids())
def test_no_window_is_larger_than_the_tile_and_all_have_one_size(g):
    width, height, tile, overlap = g
    windows = tile_grid(width, height, tile=tile, overlap=overlap)
    sizes = {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in windows}
    assert len(sizes) == 1
    (w, h), = sizes
    assert w <= tile and h <= tile
    assert len(set(windows)) == len(windows)


@PROPS
@given(grids(), st.data())
def test_a_box_no_larger_than_the_overlap_lies_whole_in_some_window(g, data):
    """The reason for the overlap: a face up to ``overlap`` px is seen uncut by some tile."""
    width, height, tile, overlap = g
    bw = data.draw(st.integers(0, min(overlap, width - 1)))
    bh = data.draw(st.integers(0, min(overlap, height - 1)))
    x = data.draw(st.integers(0, width - 1 - bw))
    y = data.draw(st.integers(0, height - 1 - bh))
    windows = tile_grid(width, height, tile=tile, overlap=overlap)
    assert any(x0 <= x and x + bw < x1 and y0 <= y and y + bh < y1 for x0, y0, x1, y1 in windows)


@pytest.mark.parametrize("w, h", [(640, 360), (960, 960), (1, 1)])
def test_a_frame_within_the_tile_is_one_window(w, h):
    assert tile_grid(w, h, tile=960, overlap=192) == [(0, 0, w, h)]


def test_720p_and_1080p_grids():
    # The fewest windows the overlap allows, each shrunk to the shortest that still overlaps.
    assert tile_grid(1280, 720, tile=960, overlap=192) == [(0, 0, 736, 720), (544, 0, 1280, 720)]
    g = tile_grid(1920, 1080, tile=960, overlap=192)
    assert len(g) == 6 and {(x1 - x0, y1 - y0) for x0, y0, x1, y1 in g} == {(768, 636)}


@pytest.mark.parametrize("kw", [dict(width=0, height=10), dict(width=10, height=-1),
                                dict(width=10.5, height=10), dict(width=10, height=10, tile=0),
                                dict(width=10, height=10, tile=8, overlap=8),
                                dict(width=10, height=10, tile=8, overlap=-1)])
def test_tile_grid_rejects_bad_arguments(kw):
    with pytest.raises(ValueError):
        tile_grid(**kw)


# --- merge_detections ---------------------------------------------------------------------------


@PROPS
@given(detections(), st.sampled_from([0.3, 0.4, 0.5]), st.sampled_from([0.6, 0.7, 1.0]))
def test_merge_keeps_no_two_overlapping_boxes_and_is_idempotent(det, iou, contain):
    boxes, scores = det
    keep = merge_detections(boxes, scores, iou=iou, contain=contain)
    assert keep.dtype == np.int64 and len(set(keep.tolist())) == len(keep)
    assert np.all(np.diff(scores[keep]) <= 0)  # best first
    kb = boxes[keep]
    m = box_iou(kb, kb)
    np.fill_diagonal(m, 0)
    assert not np.any(m > iou)
    again = merge_detections(kb, scores[keep], iou=iou, contain=contain)
    assert sorted(again.tolist()) == list(range(len(keep)))


@PROPS
@given(detections())
def test_every_dropped_box_overlaps_a_kept_box_that_scores_at_least_as_high(det):
    boxes, scores = det
    keep = merge_detections(boxes, scores, iou=0.4, contain=0.7)
    for i in sorted(set(range(len(boxes))) - set(keep.tolist())):
        b = boxes[i]
        area = (b[2] - b[0]) * (b[3] - b[1])
        reasons = []
        for j in keep:
            k = boxes[j]
            iw = max(0.0, min(b[2], k[2]) - max(b[0], k[0]))
            ih = max(0.0, min(b[3], k[3]) - max(b[1], k[1]))
            inside = iw * ih / area
            iou = box_iou(b[None], k[None])[0, 0]
            reasons.append(scores[j] >= scores[i] and (iou > 0.4 or inside > 0.7))
        assert any(reasons), f"box {i} dropped with no kept box covering it"


@PROPS
@given(st.integers(0, 500), st.integers(0, 500), st.integers(8, 300), st.integers(8, 300),
       st.floats(0.05, 0.95), st.booleans(), st.floats(0.5, 1.0), st.data())
def test_a_box_split_at_a_tile_seam_merges_to_one(x, y, w, h, at, vertical, score, data):
    """A face whole in one tile, cut in two by a neighbour's edge, and seen slightly shifted by
    the downscaled pass: one box comes out, the whole one."""
    box = np.array([x, y, x + w, y + h], float)
    left, right = box.copy(), box.copy()
    if vertical:
        cut = x + at * w
        left[2] = right[0] = cut
    else:
        cut = y + at * h
        left[3] = right[1] = cut
    dx, dy = data.draw(st.floats(-0.08, 0.08)) * w, data.draw(st.floats(-0.08, 0.08)) * h
    shifted = box + np.array([dx, dy, dx, dy])
    lower = data.draw(st.lists(st.floats(0.0, score, exclude_max=True), min_size=3, max_size=3))
    boxes = np.stack([left, box, right, shifted])
    scores = np.array([lower[0], score, lower[1], lower[2]])
    assume(score > max(lower))
    assert merge_detections(boxes, scores).tolist() == [1]


def test_separate_faces_side_by_side_are_all_kept():
    boxes = np.array([[0, 0, 20, 20], [22, 0, 42, 20], [44, 0, 64, 20], [0, 25, 20, 45]], float)
    assert sorted(merge_detections(boxes, np.array([0.9, 0.8, 0.7, 0.6])).tolist()) == [0, 1, 2, 3]


def test_merge_of_nothing_is_empty():
    assert merge_detections(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    assert merge_detections([], []).tolist() == []


@pytest.mark.parametrize("boxes, scores, kw", [
    (np.zeros((2, 3)), np.zeros(2), {}),
    (np.zeros((2, 4)), np.zeros(3), {}),
    (np.array([[10, 0, 0, 10]]), np.zeros(1), {}),
    (np.array([[0, 0, np.nan, 10]]), np.zeros(1), {}),
    (np.zeros((1, 4)), np.zeros(1), {"iou": 1.5}),
    (np.zeros((1, 4)), np.zeros(1), {"contain": 0.0}),
])
def test_merge_rejects_bad_arguments(boxes, scores, kw):
    with pytest.raises(ValueError):
        merge_detections(boxes, scores, **kw)
