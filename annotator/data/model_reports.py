"""Read models of model versions and their predictions (arrays for the sampler and the audit,
the Models page's table).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotator.data.db import Crop, CropStatus, Dataset, ModelVersion, Prediction, chunks, count


def prediction_arrays(session: Session, model_version_id: int, crop_ids):
    """The model's stored outputs for these crops, as arrays.

    Returns ``(ids (n,), probs (n, K) float64, emb (n, D) float32 or None)`` for the crops that
    have a prediction; ``emb`` is None unless every row has an embedding of one size.
    """
    rows = []
    for part in chunks(list(crop_ids)):
        rows += session.execute(
            select(Prediction.crop_id, Prediction.probs, Prediction.embedding).where(
                Prediction.model_version_id == model_version_id, Prediction.crop_id.in_(part))
        ).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 2)), None
    out_ids = np.array([r[0] for r in rows], np.int64)
    probs = np.array([r[1] for r in rows], np.float64)
    embs = [r[2] for r in rows]
    emb = None
    if all(e is not None for e in embs) and len({len(e) for e in embs}) == 1:
        emb = np.frombuffer(b"".join(embs), np.float32).reshape(len(embs), -1)
    return out_ids, probs, emb


def scored_share(session: Session, model_version_id: int) -> tuple[int, int]:
    """``(unlabeled crops scored by this version, unlabeled crops)``."""
    total = count(session, Crop, Crop.status == CropStatus.UNLABELED)
    scored = session.scalar(
        select(func.count()).select_from(Prediction).join(Crop, Crop.id == Prediction.crop_id)
        .where(Prediction.model_version_id == model_version_id,
               Crop.status == CropStatus.UNLABELED)) or 0
    return scored, total


def model_versions_frame(session: Session) -> pd.DataFrame:
    """One row per model version, oldest first: name, created_at, promoted_at, active, classes,
    labels (examples it was built from) and every numeric metric as its own column."""
    rows = []
    q = (select(ModelVersion, Dataset.counts)
         .outerjoin(Dataset, Dataset.id == ModelVersion.dataset_id)
         .order_by(ModelVersion.created_at, ModelVersion.id))
    for mv, counts in session.execute(q).all():
        row = {"name": mv.name, "created_at": mv.created_at, "promoted_at": mv.promoted_at,
               "active": bool(mv.active), "classes": list(mv.classes or [])}
        metrics = mv.metrics or {}
        for k, v in _flatten(metrics).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[k] = v
        row["labels"] = _label_count(metrics, counts)
        rows.append(row)
    return pd.DataFrame(rows)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _label_count(metrics: dict, counts: dict | None) -> int | None:
    """Labels a version was built from: its train + val crops, else its dataset's total."""
    n_train, n_val = metrics.get("n_train"), metrics.get("n_val")
    if isinstance(n_train, int) and isinstance(n_val, int):
        return n_train + n_val
    if counts and isinstance(counts.get("total"), int):
        return counts["total"]
    return None
