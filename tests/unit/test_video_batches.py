"""video.batches: the frame batching extract, extract's Ray ranges and detect share."""
from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from annotator.media import video


@given(n=st.integers(0, 50), size=st.integers(1, 9))
def test_batches_keep_every_frame_in_order_in_lists_of_size(n, size):
    got = list(video.batches(range(n), size, Counter()))
    assert [x for b in got for x in b] == list(range(n))
    assert all(len(b) == size for b in got[:-1])
    assert not got or 1 <= len(got[-1]) <= size


def test_batches_count_the_time_spent_decoding_not_the_time_spent_on_a_batch():
    clock = [0.0]  # seconds; advanced by the "decoder" and by the caller, never by sleeping

    def frames():
        for i in range(3):
            clock[0] += 0.02  # decoding one frame
            yield i

    timings = Counter()
    for _ in video.batches(frames(), 1, timings, clock=lambda: clock[0]):
        clock[0] += 0.2  # the caller's work on the batch
    assert clock[0] == pytest.approx(0.66)
    assert timings["decode"] == pytest.approx(0.06)  # the caller's 0.6 is not decoding
