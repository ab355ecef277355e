"""The audit of machine labels: how wrong the active model is, per predicted class and confidence
band, measured on crops people labeled from the unbiased random share; and the thresholds above
which its labels are safe to keep.

Arrays in, numbers out. ``pred`` is the model's class per audited crop, ``conf`` its top
probability, ``wrong`` whether the person's label differs. Bounds are one-sided 95% Clopper-
Pearson upper bounds (exact binomial; ``scipy.stats.beta`` rather than a hand-written inverse).

Threshold selection is *fixed-sequence testing*: per class the candidate thresholds are tested
from the most confident down, and the first one whose bound exceeds ``max_error`` stops the
walk. Testing in a fixed order needs no multiple-comparison correction, so the chosen
threshold's true error is <= ``max_error`` with probability >= ``confidence`` (checked by
tests/unit/test_audit.py on synthetic data with a known error rate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

CONFIDENCE = 0.95
# Lower edges of the confidence bands (also the candidate thresholds), most confident last.
BANDS = (0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999)


def upper_bound(errors: int, n: int, confidence: float = CONFIDENCE) -> float:
    """One-sided Clopper-Pearson upper bound of an error rate seen as ``errors`` in ``n``."""
    if n <= 0:
        return 1.0
    if errors >= n:
        return 1.0
    return float(beta.ppf(confidence, errors + 1, n - errors))


def interval(errors: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval (for reports: the error "with its interval")."""
    if n <= 0:
        return 0.0, 1.0
    a = (1 - confidence) / 2
    lo = 0.0 if errors == 0 else float(beta.ppf(a, errors, n - errors + 1))
    hi = 1.0 if errors == n else float(beta.ppf(1 - a, errors + 1, n - errors))
    return lo, hi


def labels_needed(errors: int, n: int, max_error: float, confidence: float = CONFIDENCE) -> int:
    """How many more audited crops (all right) would bring the bound to <= ``max_error``."""
    if upper_bound(errors, n, confidence) <= max_error:
        return 0
    # With no further errors the bound falls like (1 - confidence)^(1/n): start near there.
    lo, hi = 0, max(1, math.ceil(math.log(1 - confidence) / math.log1p(-max_error)) * (errors + 1) * 4)
    while upper_bound(errors, n + hi, confidence) > max_error:
        hi *= 2
    while lo < hi:  # the bound falls as n grows: bisect for the first m that passes
        mid = (lo + hi) // 2
        if upper_bound(errors, n + mid, confidence) <= max_error:
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class Band:
    cls: int
    lo: float  # conf in [lo, hi)
    hi: float
    n: int
    errors: int
    bound: float

    @property
    def error(self) -> float | None:
        return self.errors / self.n if self.n else None


def band_table(pred: np.ndarray, conf: np.ndarray, wrong: np.ndarray, n_classes: int, *,
               bands=BANDS, confidence: float = CONFIDENCE) -> list[Band]:
    """Error per predicted class and confidence band (bands below ``bands[0]`` are left out)."""
    pred, conf, wrong = np.asarray(pred), np.asarray(conf, float), np.asarray(wrong, bool)
    edges = list(bands) + [1.0 + 1e-9]
    out = []
    for c in range(n_classes):
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (pred == c) & (conf >= lo) & (conf < hi)
            n, k = int(sel.sum()), int(wrong[sel].sum())
            out.append(Band(c, lo, min(hi, 1.0), n, k, upper_bound(k, n, confidence)))
    return out


@dataclass(frozen=True)
class Threshold:
    cls: int
    threshold: float | None  # None: refused (too few audited crops, or too many errors)
    n: int  # audited crops at or above the threshold (the most confident candidate if refused)
    errors: int
    bound: float
    needed: int = 0  # refused: more random-share labels (all kinds) it would take, if all right

    @property
    def error(self) -> float | None:
        return self.errors / self.n if self.n else None


def choose_thresholds(pred: np.ndarray, conf: np.ndarray, wrong: np.ndarray, n_classes: int, *,
                      max_error: float, candidates=BANDS,
                      confidence: float = CONFIDENCE) -> list[Threshold]:
    """Per class, the lowest candidate threshold whose audited error bound is <= ``max_error``,
    walking down from the most confident one (fixed-sequence testing; see the module doc)."""
    if not 0 < max_error < 1:
        raise ValueError("max_error must be in (0, 1)")
    pred, conf, wrong = np.asarray(pred), np.asarray(conf, float), np.asarray(wrong, bool)
    total = len(pred)
    out = []
    for c in range(n_classes):
        chosen = None
        first = None
        for t in sorted(candidates, reverse=True):
            sel = (pred == c) & (conf >= t)
            n, k = int(sel.sum()), int(wrong[sel].sum())
            b = upper_bound(k, n, confidence)
            # Too few crops to pass with room for an error or two (a bound of half the
            # maximum with none): skipped, not a stop, or one unlucky error in a thin top band
            # would end the walk. Which ones are skipped depends on the predictions only, never
            # on who was right, so the order of the tests stays fixed in advance.
            if first is None and upper_bound(0, n, confidence) > max_error / 2:
                last = (n, k, b)
                continue
            if first is None:
                first = (n, k, b)
            if b > max_error:
                break
            chosen = Threshold(c, float(t), n, k, b)
        if chosen is None:
            n, k, b = first or last
            more = labels_needed(k, n, max_error, confidence)
            # Random-share labels land in this class's top band at the rate seen so far.
            share = n / total if total and n else 1.0
            out.append(Threshold(c, None, n, k, b, needed=math.ceil(more / share)))
        else:
            out.append(chosen)
    return out


def true_error_above(pred: np.ndarray, conf: np.ndarray, wrong: np.ndarray, cls: int,
                     threshold: float) -> float | None:
    """The realised error of the crops a threshold would label (simulations, with the truth)."""
    sel = (np.asarray(pred) == cls) & (np.asarray(conf, float) >= threshold)
    return float(np.asarray(wrong, bool)[sel].mean()) if sel.any() else None
