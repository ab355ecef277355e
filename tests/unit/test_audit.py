"""The audit's statistics: Clopper-Pearson bounds and the threshold selection, on synthetic
probabilities whose true error rate is known."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotator.core import audit


def world(rng, *, n=10_000, scale=0.5, sharp=8.0):
    """A queue of ``n`` crops: predicted class, top probability, and the true probability that
    the prediction is wrong (``scale * (1 - conf)``: the model is over-confident by 1/scale)."""
    pred = rng.integers(0, 2, n)
    conf = 1 - 0.5 * rng.beta(1.0, sharp, n)  # most crops near 1, a tail down to 0.5
    p_wrong = np.clip(scale * (1 - conf) * 2, 0, 1)
    return pred, conf, p_wrong


def one_trial(seed, *, n_audit, max_error, scale):
    """Audit a random share of one synthetic queue; the expected error of what each chosen
    threshold labels, per class (None: refused)."""
    rng = np.random.default_rng(seed)
    pred, conf, p_wrong = world(rng, scale=scale)
    pick = rng.choice(len(pred), n_audit, replace=False)
    wrong = rng.random(n_audit) < p_wrong[pick]
    chosen = audit.choose_thresholds(pred[pick], conf[pick], wrong, 2, max_error=max_error)
    out = []
    for t in chosen:
        if t.threshold is None:
            out.append(None)
            continue
        sel = (pred == t.cls) & (conf >= t.threshold)
        out.append((float(p_wrong[sel].mean()), float(sel.mean())))
    return out


def test_clopper_pearson_matches_the_exact_binomial_figures():
    # 0 errors in n: the one-sided bound is 1 - 0.05^(1/n); 299 clean crops prove <= 1%.
    for n in (10, 100, 299, 1000):
        assert audit.upper_bound(0, n) == pytest.approx(1 - 0.05 ** (1 / n), rel=1e-9)
    assert audit.upper_bound(0, 299) <= 0.01 < audit.upper_bound(0, 298)
    lo, hi = audit.interval(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.2034, abs=2e-3)
    assert audit.upper_bound(0, 0) == 1.0 and audit.interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("errors, n, max_error", [(0, 0, 0.01), (0, 100, 0.01), (3, 200, 0.02),
                                                  (10, 400, 0.05)])
def test_labels_needed_is_the_least_that_passes(errors, n, max_error):
    m = audit.labels_needed(errors, n, max_error)
    assert audit.upper_bound(errors, n + m) <= max_error
    assert m == 0 or audit.upper_bound(errors, n + m - 1) > max_error


@settings(max_examples=5, deadline=None, derandomize=True)
@given(max_error=st.sampled_from([0.01, 0.02, 0.05]),
       n_audit=st.integers(1_000, 6_000),
       scale=st.floats(0.2, 3.0))
def test_the_chosen_threshold_keeps_the_true_error_under_max_error_in_95_percent_of_trials(
        max_error, n_audit, scale):
    ok = 0
    for seed in range(200):
        res = one_trial(seed, n_audit=n_audit, max_error=max_error, scale=scale)
        ok += all(r is None or r[0] <= max_error for r in res)
    assert ok >= 190, f"{ok}/200 trials kept the error under {max_error}"


def test_a_large_clean_audit_finds_a_threshold_that_labels_most_crops():
    # Power, not just safety: refusing everything would pass the test above trivially.
    labeled = []
    for seed in range(20):
        res = one_trial(seed, n_audit=5_000, max_error=0.02, scale=0.2)
        labeled.append(sum(r[1] for r in res if r is not None))
    assert np.mean(labeled) > 0.5 and min(labeled) > 0


def test_too_small_an_audit_refuses_and_says_how_many_more_labels_it_needs():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 2, 120)
    conf = np.full(120, 0.9995)
    wrong = np.zeros(120, bool)
    res = audit.choose_thresholds(pred, conf, wrong, 2, max_error=0.01)
    assert all(t.threshold is None for t in res)
    for t in res:  # ~half the audit lands in each class: twice the labels that class lacks
        lack = audit.labels_needed(0, t.n, 0.01)
        assert t.needed == math.ceil(lack / (t.n / 120)) > 0


def test_errors_in_the_top_band_stop_the_walk_at_once():
    pred = np.zeros(2000, int)
    conf = np.where(np.arange(2000) < 1000, 0.9995, 0.96)
    wrong = np.arange(2000) % 20 == 0  # 5% wrong everywhere
    (t,) = audit.choose_thresholds(pred, conf, wrong, 1, max_error=0.01)
    assert t.threshold is None and t.errors == 50 and t.n == 1000 and t.bound > 0.05


def test_band_table_counts_each_crop_once():
    rng = np.random.default_rng(1)
    pred, conf = rng.integers(0, 3, 500), rng.uniform(0.5, 1.0, 500)
    wrong = rng.random(500) < 0.1
    bands = audit.band_table(pred, conf, wrong, 3)
    assert sum(b.n for b in bands) == 500 and sum(b.errors for b in bands) == wrong.sum()
    assert all(b.bound >= (b.error or 0) for b in bands)
