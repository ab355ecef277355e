"""The footage keeper on candidates built here: thinning per track, the memory cap, resume
from saved state, and the one track-numbering rule."""
from __future__ import annotations

import json

import numpy as np
import pytest

from annotator.core.footage import (PENDING_CAP, TRACK_BASE, Candidate, Keeper,
                                    first_track_id)


def cand(frame: int, t: float, cx: float, side: float = 40.0, q: float = 1.0) -> Candidate:
    x1, y1 = int(cx - side / 2), 100
    box = (x1, y1, x1 + int(side), y1 + int(side))
    return Candidate(origin=f"f{frame:06d}:{box[0]},{box[1]},{box[2]},{box[3]}",
                     frame_index=frame, time_s=t, box=box, width=int(side), height=int(side),
                     det_score=0.9, sharpness=10.0, keypoints=None, method="face", quality=q)


def frames(n: int, *, dt: float = 0.5):
    """One head walking right (every frame, quality varying), one that leaves at frame 4."""
    rng = np.random.default_rng(7)
    for i in range(n):
        found = [cand(i, i * dt, 60 + 10 * i, q=float(rng.uniform(1, 2)))]
        if i < 4:
            found.append(cand(i, i * dt, 500, q=1.0))
        yield i * dt, found


def run(keeper: Keeper, seq) -> list[tuple[int, str]]:
    kept = []
    for t, found in seq:
        step = keeper.update(t, found)
        assert len(step.ids) == len(found)
        kept += [(e.track_id, c.origin) for e in step.ended for c in e.kept]
    return kept


def test_a_track_that_leaves_is_thinned_when_it_ends_and_the_rest_at_finish():
    keeper = Keeper(per_track=2)
    seq = list(frames(12))
    ended_at = {}
    for t, found in seq:
        for e in keeper.update(t, found).ended:
            ended_at[e.track_id] = (t, [c.frame_index for c in e.kept], len(e.dropped))
    assert list(ended_at) == [2]  # the head that left, 1.5 s after it was last seen
    t, kept, dropped = ended_at[2]
    assert 1.5 < t - 1.5 <= 2.0 and len(kept) == 2 and dropped == 2
    assert kept == sorted(kept) and kept[0] < 2 <= kept[1]  # spread over the track
    last = keeper.finish()
    assert [e.track_id for e in last] == [1] and len(last[0].kept) == 2
    assert keeper.finish() == [] and keeper.pending == {}


def test_a_long_track_is_compacted_to_the_cap_as_it_goes():
    keeper = Keeper(per_track=1)
    dropped = 0
    for t, found in frames(3 * PENDING_CAP):
        dropped += len(keeper.update(t, found[:1]).dropped)
        assert len(keeper.pending[1]) <= PENDING_CAP
    assert dropped == 3 * PENDING_CAP - PENDING_CAP
    times = [c.time_s for c in keeper.pending[1]]
    assert times == sorted(times) and times[0] < 2.0 and times[-1] > 10.0  # still spread


def test_a_resumed_keeper_keeps_exactly_what_an_uninterrupted_one_keeps():
    seq = list(frames(16))
    whole = Keeper(per_track=3)
    expected = run(whole, seq) + [(e.track_id, c.origin) for e in whole.finish() for c in e.kept]
    first = Keeper(per_track=3)
    kept = run(first, seq[:7])
    state = json.loads(json.dumps(first.state()))  # as a source's stats store it
    assert set(state["pending"]["1"][0]) >= {"origin", "timestamp_s", "quality", "sha256"}
    second = Keeper.from_state(state, per_track=3)
    kept += run(second, seq[7:]) + [(e.track_id, c.origin) for e in second.finish()
                                    for c in e.kept]
    assert kept == expected and len(expected) == 3 + 3


def test_first_ids_and_the_numbering_rule():
    keeper = Keeper(per_track=1, first_id=41)
    assert keeper.update(0.0, [cand(0, 0.0, 100)]).ids == [41]
    assert keeper.tracks_made == 41  # counted from 1: Ray's ranges start there
    assert first_track_id(0, by="extract") == 1
    assert first_track_id(17, by="extract") == 18
    assert first_track_id(17, by="detect") == TRACK_BASE + 1
    assert first_track_id(TRACK_BASE + 9, by="detect") == TRACK_BASE + 11
    with pytest.raises(ValueError):
        first_track_id(0, by="import")
    with pytest.raises(ValueError):
        Keeper(per_track=0)


def test_candidate_json_round_trip_drops_pixels_and_payload():
    c = cand(3, 1.5, 100)
    c.image, c.data = np.zeros((4, 4, 3), np.uint8), ("probs",)
    back = Candidate.from_saved(json.loads(json.dumps(c.saved())))
    assert back.image is None and back.data is None
    assert (back.origin, back.time_s, back.box, back.quality) == (c.origin, c.time_s, c.box,
                                                                   c.quality)
