"""The ``slices`` sampling strategy: a share of the batch from the worst slices, diverse there."""
from __future__ import annotations

import numpy as np
import pytest

from annotator.core import sample, slices


def _pool(n=600, seed=0):
    rng = np.random.default_rng(seed)
    p0 = rng.random(n)
    probs = np.stack([p0, 1 - p0], 1)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    return probs, emb


def test_half_of_the_batch_comes_from_the_worst_slice_one_per_group():
    probs, emb = _pool()
    score = np.zeros(600)
    score[:60] = 0.4  # the worst slice
    score[60:200] = 0.1  # a mildly bad one
    groups = np.arange(600) // 2  # tracks of two
    batch = sample.select_batch("slices", 20, probs=probs, emb=emb, groups=groups,
                                slice_score=score, slice_share=0.5, random_share=0.1, seed=1)
    targeted = [i for i, r in batch if r == "slices"]
    assert len(batch) == 20 and len({i for i, _ in batch}) == 20
    assert len(targeted) == 9  # half of the 18 non-random picks
    assert all(i < 60 for i in targeted)  # all from the worst slice while it has rows
    assert len({groups[i] for i, _ in batch}) == 20  # one per track, random share included
    assert {r for _, r in batch} == {"slices", "hybrid", "random"}


def test_diverse_within_the_slice():
    probs, emb = _pool()
    emb[:40] = emb[0] + 1e-3 * np.arange(40)[:, None]  # 40 near-copies of one crop
    score = np.zeros(600)
    score[:80] = 0.5  # the slice: the 40 copies and 40 distinct crops
    batch = sample.select_batch("slices", 10, probs=probs, emb=emb, slice_score=score,
                                random_share=0.0, slice_share=1.0, seed=0)
    picked = [i for i, r in batch if r == "slices"]
    assert len(picked) == 10
    assert sum(i < 40 for i in picked) <= 2  # k-center spreads out instead of taking copies


def test_without_slice_scores_it_is_hybrid():
    probs, emb = _pool()
    a = sample.select_batch("slices", 15, probs=probs, emb=emb, seed=3)
    b = sample.select_batch("hybrid", 15, probs=probs, emb=emb, seed=3)
    assert a == b


def test_cold_start_and_bad_share():
    assert {r for _, r in sample.select_batch("slices", 5, n=50, random_share=0.2)} <= {
        "cold_start", "random"}
    with pytest.raises(ValueError, match="slice_share"):
        sample.select_batch("slices", 5, n=50, slice_share=1.5)
    with pytest.raises(ValueError, match="disagree"):
        sample.select_batch("slices", 5, probs=np.full((5, 2), 0.5), slice_score=np.zeros(4))


def test_row_scores_skip_unknown_and_majority_bands():
    bands = {"light": np.array(["dark"] * 10 + ["bright"] * 90, dtype=object),
             "pose": np.array(["unknown"] * 100, dtype=object)}
    scores = {("light", "dark"): 0.3, ("light", "bright"): 0.2, ("pose", "unknown"): 0.9}
    r = slices.row_scores(bands, scores)
    assert (r[:10] == 0.3).all() and (r[10:] == 0).all()


def test_band_scores_prefer_measured_error_over_uncertainty():
    report = [{"attribute": "light", "band": "dark", "n": 30, "error_low": 0.25},
              {"attribute": "light", "band": "dim", "n": 3, "error_low": 0.6}]
    unc = {("light", "dark"): 0.1, ("light", "dim"): 0.05}
    got = slices.band_scores(report, unc, min_n=20)
    assert got == {("light", "dark"): 0.25, ("light", "dim"): 0.05}
