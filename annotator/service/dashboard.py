"""The service behind the Dashboard: queue counts, the team's pace and agreement, model history.
Takes a workspace, opens short read transactions, returns DataFrames and dicts; the arithmetic is
in :mod:`annotator.core.metrics`. (Accounts: ``accounts``; instructions: ``instructions``.)
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from annotator.core import sample
from annotator.data import db, model_reports, model_versions, reports
from annotator.core.metrics import cohen_kappa, wilson_interval
from annotator.service.workspace import Workspace


def stats(ws: Workspace) -> dict:
    with ws.read_session() as s:
        return reports.stats(s, ws.config.labels)


def labels_per_hour(ws: Workspace, *, hours: int = 48, now: dt.datetime | None = None) -> pd.DataFrame:
    """Labels per annotator per hour over the last ``hours``: index hour, one column per
    annotator (people only: imported labels are not anyone's pace)."""
    now = now or db.utcnow()
    with ws.read_session() as s:
        df = reports.label_times(s, since=now - dt.timedelta(hours=hours))
    if df.empty:
        return pd.DataFrame()
    df["hour"] = pd.to_datetime(df["created_at"]).dt.floor("h")
    return df.pivot_table(index="hour", columns="annotator", values="value", aggfunc="count",
                          fill_value=0)


def agreement(ws: Workspace) -> pd.DataFrame:
    """Cohen's kappa for every pair of annotators with crops in common.

    Columns: annotator_a, annotator_b, crops (in common), agree (share), kappa.
    """
    with ws.read_session() as s:
        votes = reports.multi_voted(s)
    cols = ["annotator_a", "annotator_b", "crops", "agree", "kappa"]
    if votes.empty:
        return pd.DataFrame(columns=cols)
    wide = votes.pivot_table(index="crop_id", columns="annotator", values="value", aggfunc="last")
    names = sorted(wide.columns)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = wide[[a, b]].dropna()
            if both.empty:
                continue
            agree = float((both[a] == both[b]).mean())
            rows.append((a, b, len(both), agree, cohen_kappa(both[a], both[b])))
    return pd.DataFrame(rows, columns=cols)


def queue_accuracy(ws: Workspace) -> dict | None:
    """The active model's accuracy on the queue, estimated without bias from the crops the
    random share surfaced (labeled after the model scored them), with a 95% Wilson interval:
    ``{"model", "n", "accuracy", "low", "high"}``, or None without a model or such labels."""
    with ws.read_session() as s:
        mv = model_versions.active_model(s)
        if mv is None:
            return None
        y, probs = reports.random_share_labels(s, mv.id, list(mv.classes))
        name = mv.name
    if len(y) == 0:
        return None
    right = int((probs.argmax(axis=1) == y).sum())
    low, high = wilson_interval(right, len(y))
    return {"model": name, "n": int(len(y)), "accuracy": right / len(y), "low": low, "high": high}


def junk_last(ws: Workspace) -> dict:
    """What the junk-last rule (``[sampling] junk_last``) holds back now: ``{"on", "min_each",
    "unlabeled", "held_back", "evidence": {detector: {"faces", "not_a_face"}}, "check"}``
    (evidence: the decisions by people it learns from, per detector; check: :func:`junk_check`).
    """
    from annotator.service import labeling

    cfg = ws.config.sampling
    with ws.read_session() as s:
        crops = reports.unlabeled_scores(s)
        decided = reports.decided_scores(s)
        junk = labeling.likely_junk(s, crops, cfg.junk_min_each) if cfg.junk_last else None
    evidence = {str(name): {"faces": int(d["face"].sum()), "not_a_face": int((~d["face"]).sum())}
                for name, d in decided.groupby("detector")}
    return {"on": bool(cfg.junk_last), "min_each": int(cfg.junk_min_each),
            "unlabeled": len(crops), "held_back": 0 if junk is None else int(junk.sum()),
            "evidence": evidence, "check": junk_check(decided, cfg.junk_min_each)}


def junk_check(decided: pd.DataFrame, min_each: int) -> dict:
    """How the junk-last rule does on crops it did not learn from: fitted on the decisions of
    crops the sampler chose, applied to the random share's (an unbiased sample of the queue).
    ``{"labels", "not_a_face", "not_a_face_held", "faces", "faces_held"}``: of the random-share
    decisions, how many were not a face and how many of those the rule would hold back, and
    the same for faces (the price: faces that come later)."""
    out = dict.fromkeys(("labels", "not_a_face", "not_a_face_held", "faces", "faces_held"), 0)
    for _name, d in decided.groupby("detector"):
        train, test = d[~d["random"]], d[d["random"]]
        if test.empty:
            continue
        held = sample.likely_junk(test["det_score"].astype(float), train["det_score"].astype(float),
                                  train["face"], min_each=min_each)
        face = test["face"].to_numpy(bool)
        out["labels"] += len(test)
        out["not_a_face"] += int((~face).sum())
        out["not_a_face_held"] += int((held & ~face).sum())
        out["faces"] += int(face.sum())
        out["faces_held"] += int((held & face).sum())
    return out


def queue_scored(ws: Workspace) -> tuple[int, int]:
    """``(unlabeled crops the active model scored, unlabeled crops)``; (0, n) without a model."""
    with ws.read_session() as s:
        mv = model_versions.active_model(s)
        if mv is None:
            return 0, reports.unlabeled_count(s)
        return model_reports.scored_share(s, mv.id)


def queue_uncertainty(ws: Workspace) -> np.ndarray:
    """Uncertainty (priority) of every unlabeled crop, for the histogram."""
    with ws.read_session() as s:
        return np.asarray(reports.queue_priorities(s), dtype=float)


def model_history(ws: Workspace) -> pd.DataFrame:
    """Model versions oldest first with their metrics as columns."""
    with ws.read_session() as s:
        return model_reports.model_versions_frame(s)
