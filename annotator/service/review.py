"""The Review page's analytics: where annotators disagree, where a label contradicts a confident
model, and relabeling from there.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from annotator.data import crop_queue, model_reports, reports
from annotator.service.crop_cards import active_model
from annotator.service.workspace import Workspace


def disagreements(ws: Workspace, *, annotator_id: int | None = None, limit: int = 50) -> pd.DataFrame:
    """Crops whose active votes disagree: crop_id, votes ("ann: value, ..."), values.

    With ``annotator_id``, only crops that annotator voted on (an annotator reviews own work).
    """
    with ws.read_session() as s:
        votes = reports.multi_voted(s)
    cols = ["crop_id", "votes", "values"]
    if votes.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for crop_id, g in votes.groupby("crop_id", sort=True):
        if g["value"].nunique() < 2:
            continue
        if annotator_id is not None and annotator_id not in set(g["annotator_id"]):
            continue
        rows.append((int(crop_id), ", ".join(f"{a}: {v}" for a, v in zip(g["annotator"], g["value"])),
                     sorted(set(g["value"]))))
    return pd.DataFrame(rows[:limit], columns=cols)


def contradictions(ws: Workspace, *, threshold: float = 0.9, annotator: str | None = None,
                   limit: int = 50) -> pd.DataFrame:
    """Labeled crops the active model confidently contradicts (likely label errors).

    Self-confidence (the model's probability of the given label, as in cleanlab's ranking)
    below ``1 - threshold``; lowest first. Columns: crop_id, label, annotators, guess,
    confidence, self_confidence.
    """
    cols = ["crop_id", "label", "annotators", "guess", "confidence", "self_confidence"]
    model = active_model(ws)
    if model is None:
        return pd.DataFrame(columns=cols)
    with ws.read_session() as s:
        cur = reports.current_labels(s, ws.config.labels)
        if annotator is not None and not cur.empty:
            cur = cur[cur["annotators"].str.split(",").apply(lambda a: annotator in a)]
        ids, probs, _ = model_reports.prediction_arrays(s, model.id, cur["crop_id"].tolist())
    if len(ids) == 0:
        return pd.DataFrame(columns=cols)
    index = {c: k for k, c in enumerate(model.classes)}
    cur = cur.set_index("crop_id").loc[ids].reset_index()
    lab = cur["label"].map(index)
    ok = lab.notna().to_numpy()
    cur, probs = cur[ok], probs[ok]
    lab = lab[ok].astype(int).to_numpy()
    self_conf = probs[np.arange(len(lab)), lab]
    top = probs.argmax(axis=1)
    out = pd.DataFrame({
        "crop_id": cur["crop_id"].astype(int).to_numpy(), "label": cur["label"].to_numpy(),
        "annotators": cur["annotators"].to_numpy(),
        "guess": [model.classes[k] for k in top], "confidence": probs.max(axis=1),
        "self_confidence": self_conf,
    })
    out = out[out["self_confidence"] < 1 - threshold].sort_values("self_confidence")
    return out.head(limit).reset_index(drop=True)


def relabel(ws: Workspace, annotator_id: int, crop_id: int, value: str) -> int:
    with ws.session() as s:
        return crop_queue.relabel(s, annotator_id, crop_id, value, allowed=ws.config.label_values)
