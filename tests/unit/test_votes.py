"""Per-track votes on label sequences made in the test (no video, no model)."""
from __future__ import annotations

import doctest

import numpy as np
import pytest

from annotator.core import votes
from annotator.core.votes import (UNKNOWN, Voter, changes, debounce, flicker_rate, frame_labels,
                             majority, parse_vote, uncertain, vote)

U = UNKNOWN


def test_docstring_examples():
    assert doctest.testmod(votes).failed == 0


def test_debounce_3_keeps_mask_through_one_no_mask_frame():
    labels = ["m", "m", "n", "m", "m"]
    assert debounce(labels, 3) == ["m"] * 5
    assert changes(labels) == 2 and changes(debounce(labels, 3)) == 0


def test_debounce_changes_only_after_k_identical_frames():
    assert debounce(["m", "n", "n", "n", "m", "n"], 3) == ["m", "m", "m", "n", "n", "n"]
    assert debounce(["m", "n", "n", "m", "n", "n"], 3) == ["m"] * 6  # runs of 2 never switch
    assert debounce(["m", "n", "m"], 1) == ["m", "n", "m"]  # k = 1 is the per-frame label


def test_unknown_frames_neither_vote_nor_break_a_run():
    assert debounce([U, U], 3) == [None, None]
    assert debounce([U, "n", "m"], 3) == [None, "n", "n"]
    # n, unknown, n, n is a run of three n: the unknown frame does not break it.
    assert debounce(["m", "n", U, "n", "n"], 3) == ["m", "m", "m", "m", "n"]
    assert majority([U, "m", U]) == [None, "m", "m"]


def test_majority_counts_so_far_and_a_tie_keeps_the_state():
    assert majority(["m", "m", "n", "m", "m"]) == ["m"] * 5
    assert majority(["n", "n", "m", "m", "m"]) == ["n", "n", "n", "n", "m"]
    assert majority(["m", "n"]) == ["m", "m"]


def test_voter_is_the_online_form_of_vote():
    labels = ["m", "n", "n", U, "n", "m"]
    v = Voter("debounce", 3)
    assert [v.add(x) for x in labels] == vote(labels, "debounce", 3)
    assert v.state == "n"


def test_frame_labels_below_min_prob_are_unknown():
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.74, 0.26], [0.75, 0.25]])
    assert frame_labels(probs, ["mask", "no_mask"], min_prob=0.75) == ["mask", U, U, "mask"]
    assert frame_labels(probs, ["mask", "no_mask"], min_prob=0.0) == [
        "mask", "no_mask", "mask", "mask"]
    assert frame_labels(np.zeros((0, 2)), ["mask", "no_mask"], min_prob=0.5) == []


def test_changes_skip_undecided_and_flicker_is_pooled_per_second():
    assert changes([None, None, "m", "n", "n", U]) == 2
    assert changes([]) == 0
    # 2 changes over 4 s and 1 over 1 s -> 3 / 5; the one-frame track (0 s) does not count.
    assert flicker_rate([2, 1, 0], [4.0, 1.0, 0.0]) == pytest.approx(0.6)
    assert flicker_rate([], []) == 0.0


def test_uncertain_reasons():
    sure = np.array([[0.95, 0.05]] * 4)
    assert uncertain(sure, "mask", 0.0) is None
    assert uncertain(sure, None, 0.0) == "unknown"
    assert uncertain(sure, U, 0.0) == "unknown"
    assert uncertain(sure, "mask", 1.2, max_flicker=0.5) == "flicker"
    torn = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])  # mean 0.55
    assert uncertain(torn, "mask", 0.0, margin=0.2) == "near_0.5"
    assert uncertain(torn, "mask", 0.0, margin=0.01) is None


@pytest.mark.parametrize("spec, expected", [
    ("debounce:3", ("debounce", 3)), ("debounce", ("debounce", 3)), ("debounce:1", ("debounce", 1)),
    ("majority", ("majority", 0)),
])
def test_parse_vote(spec, expected):
    assert parse_vote(spec) == expected


@pytest.mark.parametrize("spec", ["debounce:0", "debounce:x", "majority:2", "vote", "", None])
def test_parse_vote_rejects(spec):
    with pytest.raises(ValueError):
        parse_vote(spec)


def test_public_functions_validate():
    with pytest.raises(ValueError):
        Voter("debounce", 0)
    with pytest.raises(ValueError):
        Voter("median")
    with pytest.raises(ValueError):
        debounce(["m", 1], 3)
    with pytest.raises(ValueError):
        frame_labels(np.ones((2, 3)), ["mask", "no_mask"], min_prob=0.5)
    with pytest.raises(ValueError):
        frame_labels(np.ones((2, 2)), ["mask", U], min_prob=0.5)
    with pytest.raises(ValueError):
        frame_labels(np.ones((2, 2)), ["mask", "no_mask"], min_prob=1.5)
    with pytest.raises(ValueError):
        flicker_rate([1, 2], [1.0])
    with pytest.raises(ValueError):
        uncertain(np.zeros((0, 2)), "mask", 0.0)
