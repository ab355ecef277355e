"""Classification metrics over arrays (pure NumPy): accuracy, balanced accuracy, per-class
precision / recall / F1, confusion matrix, ROC AUC and expected calibration error.

``labels`` are integer class indices ``(N,)``; ``probs`` are class probabilities ``(N, K)``.
Plots of these live in :mod:`annotator.media.plots`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = [
    "confusion_matrix",
    "accuracy",
    "balanced_accuracy",
    "per_class",
    "roc_auc",
    "expected_calibration_error",
    "report",
    "cohen_kappa",
    "wilson_interval",
    "roc_curve",
    "binary_auc",
]


def _check(labels, probs=None, n_classes=None):
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[0] != labels.shape[0]:
            raise ValueError(f"probs must be (N, K) with N={labels.shape[0]}, got {probs.shape}")
        n_classes = probs.shape[1]
    if labels.size and (labels.min() < 0 or (n_classes is not None and labels.max() >= n_classes)):
        raise ValueError("labels must be class indices in [0, K)")
    return labels.astype(np.int64), probs


def confusion_matrix(labels, preds, n_classes: int) -> np.ndarray:
    """``(K, K)`` counts; row = true class, column = predicted class."""
    labels, _ = _check(labels, n_classes=n_classes)
    preds, _ = _check(preds, n_classes=n_classes)
    return np.bincount(labels * n_classes + preds, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def accuracy(labels, preds) -> float:
    labels, preds = np.asarray(labels), np.asarray(preds)
    return float((labels == preds).mean()) if labels.size else float("nan")


def balanced_accuracy(labels, preds, n_classes: int | None = None) -> float:
    """Mean recall over the classes present in ``labels`` (sklearn's definition)."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    if not labels.size:
        return float("nan")
    k = n_classes or int(max(labels.max(), preds.max()) + 1)
    cm = confusion_matrix(labels, preds, k)
    support = cm.sum(axis=1)
    present = support > 0
    return float((np.diag(cm)[present] / support[present]).mean())


def per_class(labels, preds, n_classes: int) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class, each ``(K,)`` (0 where undefined)."""
    cm = confusion_matrix(labels, preds, n_classes).astype(np.float64)
    tp = np.diag(cm)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(int)}


def binary_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney U / (n_pos n_neg), ties counted half (equals the trapezoidal ROC area)."""
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average ranks over runs of tied scores.
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], s.size]
    avg = (starts + ends + 1) / 2.0  # 1-based average rank of each run
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc(labels, probs) -> float:
    """ROC AUC: for 2 classes the AUC of class 1's probability; for K > 2 the macro one-vs-rest
    mean over classes present. NaN when only one class is present."""
    labels, probs = _check(labels, probs)
    k = probs.shape[1]
    if k == 2:
        return binary_auc(labels == 1, probs[:, 1])
    aucs = [binary_auc(labels == c, probs[:, c]) for c in range(k)]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def reliability(labels, probs, *, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and count (top-label calibration)."""
    labels, probs = _check(labels, probs)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"edges": edges, "confidence": conf_sum / count, "accuracy": acc_sum / count,
                "count": count}


def expected_calibration_error(labels, probs, *, n_bins: int = 15) -> float:
    """Sum over equal-width confidence bins of |accuracy - confidence| weighted by bin share."""
    labels, probs = _check(labels, probs)
    if not labels.size:
        return float("nan")
    rel = reliability(labels, probs, n_bins=n_bins)
    used = rel["count"] > 0
    gap = np.abs(rel["accuracy"][used] - rel["confidence"][used])
    return float((gap * rel["count"][used]).sum() / labels.size)


def report(labels, probs, classes: Sequence[str], *, n_bins: int = 15) -> dict:
    """All metrics as a JSON-ready dict.

    Keys: ``n``, ``accuracy``, ``balanced_accuracy``, ``per_class.<label>.{precision, recall, f1,
    support}``, ``confusion`` (rows = true, columns = predicted, in ``classes`` order),
    ``roc_auc``, ``ece``, ``classes``.
    """
    classes = list(classes)
    labels, probs = _check(labels, probs)
    if probs.shape[1] != len(classes):
        raise ValueError(f"probs has {probs.shape[1]} columns for {len(classes)} classes")
    preds = probs.argmax(axis=1)
    k = len(classes)
    pc = per_class(labels, preds, k)
    return {
        "n": int(labels.size),
        "classes": classes,
        "accuracy": _num(accuracy(labels, preds)),
        "balanced_accuracy": _num(balanced_accuracy(labels, preds, k)),
        "per_class": {
            c: {"precision": float(pc["precision"][i]), "recall": float(pc["recall"][i]),
                "f1": float(pc["f1"][i]), "support": int(pc["support"][i])}
            for i, c in enumerate(classes)
        },
        "confusion": confusion_matrix(labels, preds, k).tolist(),
        "roc_auc": _num(roc_auc(labels, probs)),
        "ece": _num(expected_calibration_error(labels, probs, n_bins=n_bins)),
    }


def _num(x: float) -> float | None:
    """NaN becomes None so that the JSON stays valid."""
    return None if x is None or np.isnan(x) else round(float(x), 6)


def roc_curve(positive: np.ndarray, scores: np.ndarray):
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None, None
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # end of each run of equal scores
    tps = np.cumsum(p)[last]
    fps = (last + 1) - tps
    return np.r_[0, fps / n_neg], np.r_[0, tps / n_pos]


def wilson_interval(successes: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% for z = 1.96): sound at small n and at 0 or 1,
    where the normal approximation gives impossible bounds. ``(nan, nan)`` when n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa of two annotators' labels on the same items (any hashable values).

    1 = perfect agreement, 0 = what chance gives. When both gave a single value throughout,
    agreement is perfect by definition (1.0) and kappa is undefined otherwise (0.0).
    """
    a, b = list(a), list(b)
    if len(a) != len(b):
        raise ValueError("a and b must have the same length")
    if not a:
        return float("nan")
    values = sorted(set(a) | set(b), key=str)
    observed = float(np.mean([x == y for x, y in zip(a, b)]))
    if len(values) < 2:
        return 1.0
    pa = np.array([a.count(v) for v in values], dtype=float) / len(a)
    pb = np.array([b.count(v) for v in values], dtype=float) / len(b)
    expected = float(pa @ pb)
    if expected >= 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)
