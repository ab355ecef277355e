"""The camera-day bench's track comparison (bench/extract.py): a track gating misses is one with
no crop near it in time and place in the other run; the same person tracked a little differently
still matches. No real data: tracks are made here."""
from __future__ import annotations

from bench.extract import in_spans, tracks_only_in

POSTER = [(2.0, 80, 60, 160, 140, 0.21), (6.0, 82, 62, 162, 142, 0.39)]  # (t, box, score)
WALKER = [(50.0, 400, 100, 440, 140, 0.9), (50.5, 410, 100, 450, 140, 0.92)]


def test_a_track_found_in_both_runs_is_not_missed():
    shifted = [[(50.5, 412, 102, 452, 142, 0.88)]]  # one crop, kept from another frame
    assert tracks_only_in([WALKER], shifted) == []


def test_a_track_with_nothing_near_it_in_time_or_place_is_missed():
    later = [[(9.0, 80, 60, 160, 140, 0.3)]]  # same place, 3 s after the poster's last crop
    elsewhere = [[(2.0, 600, 300, 680, 380, 0.8)]]  # same time, another place
    assert tracks_only_in([POSTER, WALKER], later + elsewhere + [WALKER]) == [POSTER]
    assert tracks_only_in([POSTER], []) == [POSTER]


def test_a_track_counts_as_in_view_when_one_of_its_crops_lies_in_a_people_span():
    spans = [[48.0, 60.0], [120.0, 132.0]]
    assert in_spans(WALKER, spans)
    assert not in_spans(POSTER, spans)  # the still scene between clips
    assert not in_spans([(60.0, 1, 1, 2, 2, 0.5)], spans)  # a span's end is the next stretch
    assert not in_spans(WALKER, [])
