"""Figures of the metrics (matplotlib, Agg backend): confusion matrix, ROC, reliability, and
training curves. Files for the CLI (``evaluate --plots``), figures for the pages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from annotator.core.metrics import (
    binary_auc,
    confusion_matrix,
    expected_calibration_error,
    reliability,
    roc_curve,
)


def plot_report(labels, probs, classes: Sequence[str], out_dir: Path, *, n_bins: int = 15) -> list[Path]:
    """Write ``confusion.png``, ``roc.png`` and ``reliability.png`` into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels, probs = np.asarray(labels), np.asarray(probs, dtype=float)
    classes = list(classes)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    cm = confusion_matrix(labels, probs.argmax(axis=1), len(classes))
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center",
                color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix")
    written.append(_save(fig, out_dir / "confusion.png"))

    fig, ax = plt.subplots(figsize=(4, 4))
    curves = list(enumerate(classes)) if len(classes) > 2 else [(1, classes[1])]
    for c, name in curves:
        fpr, tpr = roc_curve(labels == c, probs[:, c])
        if fpr is not None:
            ax.plot(fpr, tpr, label=f"{name} (AUC {binary_auc(labels == c, probs[:, c]):.3f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC")
    ax.legend(loc="lower right", fontsize=8)
    written.append(_save(fig, out_dir / "roc.png"))

    rel = reliability(labels, probs, n_bins=n_bins)
    centers = (rel["edges"][:-1] + rel["edges"][1:]) / 2
    used = rel["count"] > 0
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.bar(centers[used], rel["accuracy"][used], width=1.0 / n_bins, edgecolor="k", alpha=0.7)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {expected_calibration_error(labels, probs, n_bins=n_bins):.3f})")
    written.append(_save(fig, out_dir / "reliability.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
