"""YuNet's check skips candidates a sure face will drop anyway (``annotator.media.yunet``): the
faces kept are exactly those without the shortcut, whatever the checks decide. Pure NumPy: the
boxes are made here, no detector runs."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from annotator.core.tiles import merge_detections
from annotator.media.yunet import _not_suppressed


def boxes(draw, n: int, lo: float, hi: float) -> np.ndarray:
    rows = []
    for _ in range(n):
        x, y = draw(st.integers(0, 300)), draw(st.integers(0, 300))
        side = draw(st.integers(4, 120))
        rows.append([x, y, x + side, y + side, draw(st.floats(lo, hi, exclude_max=True))])
    out = np.array(rows, float).reshape(-1, 5)
    return out[np.argsort(-out[:, 4], kind="stable")]


@st.composite
def frames(draw):
    sure = boxes(draw, draw(st.integers(0, 6)), 0.7, 1.0)
    cand = boxes(draw, draw(st.integers(0, 8)), 0.2, 0.7)
    cand = cand[merge_detections(cand[:, :4], cand[:, 4])]  # as _checked deduplicates them
    passes = draw(st.lists(st.booleans(), min_size=len(cand), max_size=len(cand)))
    return sure, cand, np.array(passes, bool)


def kept(sure: np.ndarray, passed: np.ndarray) -> set:
    found = np.concatenate([sure, passed])
    return {tuple(r) for r in found[merge_detections(found[:, :4], found[:, 4])]}


@settings(max_examples=300, deadline=None)
@given(frames())
def test_skipping_suppressed_candidates_keeps_exactly_the_same_faces(frame):
    sure, cand, passes = frame
    checked = _not_suppressed(cand, sure)
    assert {tuple(r) for r in checked} <= {tuple(r) for r in cand}
    assert list(checked[:, 4]) == sorted(checked[:, 4], reverse=True)  # still best first
    chosen = {tuple(r) for r in cand[passes]}
    assert kept(sure, cand[passes]) == kept(sure, np.array(
        [r for r in checked if tuple(r) in chosen]).reshape(-1, 5))


def test_a_duplicate_of_a_sure_face_is_not_checked():
    sure = np.array([[100, 100, 140, 140, 0.95]])
    cand = np.array([[102, 101, 141, 139, 0.4],  # the same face from another tile
                     [300, 300, 320, 320, 0.3]])  # a face of its own
    assert _not_suppressed(cand, sure).tolist() == [[300, 300, 320, 320, 0.3]]


def test_when_a_candidate_outscores_a_sure_face_nothing_is_skipped():
    sure = np.array([[100, 100, 400, 400, 0.55]])  # sure by size (check_max_side), not score
    cand = np.array([[102, 101, 141, 139, 0.6]])
    assert _not_suppressed(cand, sure) is cand
