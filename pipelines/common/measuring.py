"""A model version's figures on a frozen validation split.

Two ways, one report (``annotator.core.metrics.report``): run its weights on the split's images
(``on_split``), or, for a version of imported predictions that has no weights, read what it
predicted for the split's crops (``stored_metrics``). Evaluation, promotion's gate, the Keras
import and the predictions import all measure through here, so their figures compare.
"""
from __future__ import annotations

import numpy as np

from annotator.core import metrics
from annotator.data import db, model_reports
from annotator.service.workspace import Workspace
from pipelines.common.datasets import load_split, read_manifest


def evaluate_arrays(model, x: np.ndarray, y: np.ndarray, *,
                    batch_size: int = 256) -> tuple[dict, np.ndarray]:
    """``(metrics report, probs (N, K))`` of a model on images ``(N, 45, 45, 3)`` and labels."""
    from models.inference import predict

    probs, _ = predict(model, x, batch_size=batch_size)
    return metrics.report(y, probs, model.classes), probs


def on_split(ws: Workspace, model, dataset: str) -> dict:
    """Metrics of a model on a dataset's validation split ({} when the split is empty)."""
    val = load_split(ws, dataset, "val", list(model.classes))
    return evaluate_arrays(model, val.x, val.y)[0] if len(val.y) else {}


def stored_metrics(ws: Workspace, probs: dict, classes: list[str],
                   dataset: str | None = None) -> dict | None:
    """Predictions ``{crop id: probs (K,)}`` measured like a trained model: on a frozen
    validation split (the latest by default; the crops they cover), so the promote gate and
    the Models page can compare them. None without a dataset or without a covered crop."""
    with ws.read_session() as s:
        if dataset is None and db.latest_dataset(s) is None:
            return None
    ds, rows = read_manifest(ws, dataset)
    val = [(int(r["crop_id"]), r["label"]) for r in rows
           if r["split"] == "val" and int(r["crop_id"]) in probs and r["label"] in classes]
    if not val:
        return None
    y = np.array([classes.index(v) for _, v in val])
    p = np.array([probs[c] for c, _ in val])
    return {"dataset": ds.name, "n": len(val), **metrics.report(y, p, classes)}


def measure_stored(ws: Workspace, version_id: int, classes: list[str],
                   dataset: str) -> dict | None:
    """Metrics of a version without weights on a dataset's validation split, from its stored
    predictions (what promotion asks instead of running a model it does not have)."""
    _, rows = read_manifest(ws, dataset)
    with ws.read_session() as s:
        ids, probs, _ = model_reports.prediction_arrays(
            s, version_id, [int(r["crop_id"]) for r in rows if r["split"] == "val"])
    return stored_metrics(ws, dict(zip(ids.tolist(), probs)), classes, dataset)
