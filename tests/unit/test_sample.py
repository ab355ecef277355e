"""Sampling strategies on arrays built in the test (no database)."""
from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotator.core import sample
from annotator.core.sample import k_center_greedy, select_batch, uncertainty


def _two_class(u_target):
    """probs whose uncertainty is exactly u_target (two classes)."""
    p0 = 0.5 + (1 - np.asarray(u_target)) / 2
    return np.stack([p0, 1 - p0], axis=1)


def test_docstring_examples():
    assert doctest.testmod(sample).failed == 0


def test_uncertainty_two_classes_is_one_minus_abs_difference():
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.7, 0.3], [0.2, 0.8]])
    np.testing.assert_allclose(uncertainty(probs), [1.0, 0.0, 0.6, 0.4])


def test_uncertainty_more_classes_is_margin():
    probs = np.array([[0.4, 0.35, 0.25], [0.8, 0.1, 0.1], [0.34, 0.33, 0.33]])
    np.testing.assert_allclose(uncertainty(probs), [0.95, 0.3, 0.99])


def test_uncertainty_rejects_bad_shapes():
    with pytest.raises(ValueError, match="probs"):
        uncertainty(np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="probs"):
        uncertainty(np.ones((3, 1)))


def test_k_center_greedy_covers_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [100, 0], [0, 100], [100, 100]], float)
    emb = np.concatenate([c + rng.normal(size=(50, 2)) for c in centers])
    idx = k_center_greedy(emb, 4, seed=3)
    assert len(set(idx.tolist())) == 4
    assert sorted(set(i // 50 for i in idx)) == [0, 1, 2, 3]  # one per cluster
    assert np.array_equal(idx, k_center_greedy(emb, 4, seed=3))  # reproducible
    assert len(k_center_greedy(emb, 1000, seed=0)) == 200  # capped at N, no repeats


def test_k_center_greedy_empty_and_bad_k():
    assert k_center_greedy(np.zeros((0, 3)), 5, seed=0).size == 0
    with pytest.raises(ValueError, match="k must"):
        k_center_greedy(np.zeros((4, 3)), -1, seed=0)


def test_uncertainty_strategy_takes_most_uncertain():
    u = np.linspace(0, 1, 100)
    batch = select_batch("uncertainty", 10, probs=_two_class(u), random_share=0.0)
    assert sorted(i for i, _ in batch) == list(range(90, 100))
    assert {r for _, r in batch} == {"uncertainty"}


def test_hybrid_never_two_crops_of_one_track():
    rng = np.random.default_rng(1)
    n = 5000
    groups = rng.integers(0, 300, n)  # tracks with ~17 frames each
    emb = rng.normal(size=(n, 8)) + groups[:, None] * 0.01  # frames of a track are alike
    probs = _two_class(rng.random(n))
    for seed in range(5):
        batch = select_batch("hybrid", 40, probs=probs, emb=emb, groups=groups, seed=seed)
        assert len(batch) == 40
        tracks = [groups[i] for i, _ in batch]
        assert len(set(tracks)) == len(tracks), "two crops of one track in a batch"


def test_hybrid_picks_from_uncertain_pool_and_is_diverse():
    rng = np.random.default_rng(2)
    n = 4000
    u = rng.random(n)
    emb = rng.normal(size=(n, 4))
    batch = select_batch("hybrid", 20, probs=_two_class(u), emb=emb, pool=400,
                         random_share=0.0, seed=0)
    top400 = set(np.argsort(-u)[:400].tolist())
    assert all(i in top400 for i, _ in batch)
    assert {r for _, r in batch} == {"hybrid"}
    # Diversity: the picks are further apart than the 20 most uncertain rows.
    picked = emb[[i for i, _ in batch]]
    plain = emb[np.argsort(-u)[:20]]

    def min_dist(a):
        d = np.linalg.norm(a[:, None] - a[None], axis=-1)
        return d[np.triu_indices(len(a), 1)].min()

    assert min_dist(picked) > min_dist(plain)


def test_hybrid_with_duplicates_of_uncertain_faces_returns_one_each():
    # 30 near-identical copies of one uncertain face (a track), plus distinct others.
    n = 200
    groups = np.arange(n)
    groups[:30] = 7
    u = np.full(n, 0.3)
    u[:30] = 0.99
    emb = np.random.default_rng(0).normal(size=(n, 4))
    emb[:30] = emb[0] + 1e-3
    batch = select_batch("hybrid", 10, probs=_two_class(u), emb=emb, groups=groups,
                         random_share=0.0)
    assert sum(1 for i, _ in batch if i < 30) == 1


@pytest.mark.parametrize("strategy", ["hybrid", "uncertainty", "diverse"])
def test_random_share_holds_and_is_recorded(strategy):
    rng = np.random.default_rng(3)
    n = 3000
    probs = _two_class(rng.random(n))
    emb = rng.normal(size=(n, 4))
    for k, share, expected in [(20, 0.1, 2), (50, 0.2, 10), (10, 0.0, 0), (30, 1.0, 30)]:
        batch = select_batch(strategy, k, probs=probs, emb=emb, random_share=share, seed=k)
        assert len(batch) == k
        assert sum(r == "random" for _, r in batch) == expected
        assert len({i for i, _ in batch}) == k


def test_random_share_is_unbiased_over_random_pool():
    # Rows 0..999 are the uncertain top; rows 1000.. a uniform sample of the queue.
    n = 1500
    u = np.r_[np.ones(1000), np.zeros(500)]
    eligible = np.r_[np.zeros(1000, bool), np.ones(500, bool)]
    for seed in range(10):
        batch = select_batch("hybrid", 20, probs=_two_class(u), emb=np.eye(n, 3),
                             random_pool=eligible, seed=seed)
        assert all(i >= 1000 for i, r in batch if r == "random")
        assert all(i < 1000 for i, r in batch if r != "random")


def test_random_strategy_is_uniform():
    counts = np.zeros(10)
    for seed in range(2000):
        for i, r in select_batch("random", 2, n=10, seed=seed):
            assert r == "random"
            counts[i] += 1
    assert counts.min() > 300 and counts.max() < 500  # expected 400 each


def test_cold_start_without_model():
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 50, 1000)
    batch = select_batch("hybrid", 20, groups=groups, seed=1)  # no probs, no embeddings
    reasons = [r for _, r in batch]
    assert len(batch) == 20
    assert reasons.count("random") == 2 and reasons.count("cold_start") == 18
    assert len({groups[i] for i, _ in batch}) == 20
    # With embeddings (e.g. from a pretrained network) the cold start is k-center diverse.
    emb = rng.normal(size=(1000, 5))
    batch = select_batch("uncertainty", 10, emb=emb, random_share=0.0, seed=1)
    assert {r for _, r in batch} == {"cold_start"} and len(batch) == 10


def test_fewer_groups_than_batch_returns_fewer():
    groups = np.array([1, 1, 2, 2, 3, 3])
    batch = select_batch("diverse", 5, groups=groups, random_share=0.0)
    assert len(batch) == 3
    assert len({groups[i] for i, _ in batch}) == 3


def test_select_batch_validates_inputs():
    with pytest.raises(ValueError, match="unknown strategy"):
        select_batch("entropy", 5, n=10)
    with pytest.raises(ValueError, match="disagree"):
        select_batch("hybrid", 5, probs=np.full((10, 2), 0.5), groups=np.arange(9))
    with pytest.raises(ValueError, match="number of rows"):
        select_batch("random", 5)
    with pytest.raises(ValueError, match="random_share"):
        select_batch("random", 5, n=10, random_share=1.5)
    assert select_batch("hybrid", 5, probs=np.zeros((0, 2))) == []


def test_hybrid_on_a_large_pool_reads_only_its_most_uncertain_rows():
    """What keeps hybrid fast on 100,000 rows, without a clock: beyond one sort by uncertainty,
    only the ``pool`` most uncertain rows are worked on, so the batch is the one picked from
    those rows alone and the embeddings of every other row are never read."""
    rng = np.random.default_rng(5)
    n, pool = 100_000, 3000
    u = rng.random(n)
    probs = _two_class(u)
    emb = rng.normal(size=(n, 64)).astype(np.float32)
    groups = rng.integers(0, 20000, n)
    batch = select_batch("hybrid", 20, probs=probs, emb=emb, groups=groups, pool=pool,
                         random_share=0.0)
    assert len(batch) == 20
    top = np.argsort(-u, kind="stable")[:pool]
    alone = select_batch("hybrid", 20, probs=probs[top], emb=emb[top], groups=groups[top],
                         pool=pool, random_share=0.0)
    assert batch == [(int(top[i]), r) for i, r in alone]
    rest = np.ones(n, bool)
    rest[top] = False
    blind = emb.copy()
    blind[rest] = np.nan  # a distance to any of these rows would spoil the picks
    assert select_batch("hybrid", 20, probs=probs, emb=blind, groups=groups, pool=pool,
                        random_share=0.0) == batch


def test_main_pool_keeps_unscored_rows_for_the_random_share_only():
    n = 300
    u = np.full(n, 0.2)
    u[200:] = 1.0  # placeholder probs of rows the model has not scored: look most uncertain
    scored = np.arange(n) < 200
    for strategy in ("hybrid", "uncertainty", "diverse"):
        batch = select_batch(strategy, 20, probs=_two_class(u), emb=np.random.default_rng(0)
                             .normal(size=(n, 3)), main_pool=scored, seed=2)
        assert all(i < 200 for i, r in batch if r != "random"), strategy
        assert len(batch) == 20


# --- junk last --------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), k=st.integers(0, 30), seed=st.integers(0, 2**16),
       strategy=st.sampled_from(["hybrid", "uncertainty", "diverse", "slices"]))
def test_rows_marked_last_are_picked_only_when_the_rest_runs_out(n, k, seed, strategy):
    rng = np.random.default_rng(seed)
    probs, emb = _two_class(rng.random(n)), rng.normal(size=(n, 3))
    last = rng.random(n) < 0.5
    kw = dict(probs=probs, emb=emb, groups=rng.integers(0, max(1, n // 2), n), seed=seed,
              random_share=0.2, slice_score=rng.random(n) * (rng.random(n) < 0.3))
    plain = select_batch(strategy, k, **kw)
    batch = select_batch(strategy, k, last=last, **kw)
    assert len(batch) == len(plain)  # junk last changes the order, never how many
    main = [i for i, why in batch if why != "random"]
    others = select_batch(strategy, k, main_pool=~last, **kw)
    n_others = sum(why != "random" for _i, why in others)
    # as many non-junk picks as the non-junk rows alone can give, then junk
    assert sum(not last[i] for i in main) == n_others
    assert len({i for i, _ in batch}) == len(batch)


def test_likely_junk_needs_evidence_of_both_kinds_and_a_score_that_means_face():
    decided = np.r_[np.linspace(0.2, 0.45, 12), np.linspace(0.7, 0.99, 12)]
    face = np.r_[np.zeros(12, bool), np.ones(12, bool)]
    rows = [0.25, 0.4, 0.8, 0.95, np.nan]
    assert sample.likely_junk(rows, decided, face).tolist() == [True, True, False, False, False]
    assert not sample.likely_junk(rows, decided, face, min_each=13).any()
    assert not sample.likely_junk(rows, decided, ~face).any()  # higher score, more junk: no rule
    assert not sample.likely_junk(rows, [], []).any()
    with pytest.raises(ValueError, match="differ in length"):
        sample.likely_junk(rows, decided, face[:3])
