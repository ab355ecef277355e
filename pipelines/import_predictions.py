"""Job: import another model's predictions as a model version without weights.

The file (CSV or JSON) names each crop by ``crop_id`` or ``sha256`` (every crop with those bytes)
and gives either one probability column per class of the workspace or ``label`` + ``score``
(the probability of that label; the rest is shared by the other classes). The version is
listed like a trained one and, once active (``--activate``), drives sampling (its
uncertainties become the queue's priorities), Review's contradictions and agreement figures;
it cannot score new crops or be retrained from, having no weights.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from annotator.data import db, export_reads, model_versions
from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent
from annotator.core.sample import uncertainty
from annotator.service.workspace import Workspace
from pipelines.common.measuring import stored_metrics

MAX_BYTES = 512 * 1024 * 1024


@dataclass(kw_only=True)
class ImportPredictionsOptions:
    file: Path
    name: str
    activate: bool = False  # make it the active model (sampling, Review) at once


@dataclass
class ImportPredictionsReport:
    name: str
    rows: int
    crops: int  # crops that got a prediction
    unknown: int  # rows naming no crop of this workspace
    active: bool
    priorities_set: int = 0
    val: dict | None = None  # agreement with the latest dataset's validation labels


def _summary(val: dict | None) -> dict:
    if not val:
        return {}
    return {"dataset": val["dataset"], "n_val": val["n"],
            **{k: val.get(k) for k in ("accuracy", "balanced_accuracy", "roc_auc", "ece")}}


def probabilities(frame: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """Class probabilities ``(N, K)`` from per-class columns or ``label`` + ``score``. Pure."""
    k = len(classes)
    if set(classes) <= set(frame.columns):
        p = frame[classes].to_numpy(dtype=np.float64)
    elif "label" in frame.columns:
        bad = sorted(set(frame["label"].astype(str)) - set(classes))
        if bad:
            raise InputError(f"labels {bad} are not classes of this workspace ({classes})")
        score = (frame["score"].to_numpy(dtype=np.float64) if "score" in frame.columns
                 else np.ones(len(frame)))
        idx = frame["label"].astype(str).map(classes.index).to_numpy()
        p = np.repeat(((1 - score) / (k - 1))[:, None], k, axis=1)
        p[np.arange(len(frame)), idx] = score
    else:
        raise InputError(f"need a column per class ({', '.join(classes)}) or label [+ score]")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise InputError("probabilities must be numbers in [0, 1]")
    sums = p.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise InputError("a row's probabilities add up to 0")
    return p / sums


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    if path.stat().st_size > MAX_BYTES:
        raise InputError(f"{path} is larger than {MAX_BYTES // 2**20} MB")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                data = data.get("predictions")
            if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
                raise InputError(f"{path}: expected a JSON list of objects (or "
                                 "{{\"predictions\": [...]}})")
            return pd.DataFrame(data)
        return pd.read_csv(path)
    except (UnicodeDecodeError, json.JSONDecodeError, pd.errors.ParserError,
            pd.errors.EmptyDataError) as exc:
        raise InputError(f"{path} cannot be read: {exc.__class__.__name__}") from None


def run(ws: Workspace, opts: ImportPredictionsOptions,
        progress: ProgressFn = silent) -> ImportPredictionsReport:
    from models.registry import check_name

    check_name(opts.name, "model version")
    classes = list(ws.config.labels)
    path = Path(opts.file)
    frame = read_table(path)
    if "crop_id" not in frame.columns and "sha256" not in frame.columns:
        raise InputError("each row needs a crop_id or a sha256 column")
    probs = probabilities(frame, classes)
    with ws.read_session() as s:
        if model_versions.get_model_version(s, opts.name) is not None:
            raise InputError(f"model version {opts.name!r} already exists")
        if "crop_id" in frame.columns:
            ids = pd.to_numeric(frame["crop_id"], errors="coerce")
            known = set(export_reads.crop_files(s, ids.dropna().astype(int).tolist())["crop_id"])
            crops = [[int(c)] if c == c and int(c) in known else [] for c in ids]
        else:
            by_sha = export_reads.crops_by_sha256(s, frame["sha256"].astype(str).tolist())
            crops = [by_sha.get(str(h), []) for h in frame["sha256"]]
    per_crop = {}
    for row, cs in enumerate(crops):
        for c in cs:
            per_crop[c] = probs[row]  # a later row for the same crop wins
    ids = sorted(per_crop)
    p = np.array([per_crop[c] for c in ids]).reshape(len(ids), len(classes))
    unc = uncertainty(p) if len(ids) else np.zeros(0)
    rep = ImportPredictionsReport(opts.name, len(frame), len(ids),
                                  sum(1 for cs in crops if not cs), opts.activate)
    rep.val = stored_metrics(ws, dict(zip(ids, p)), classes)
    with ws.session() as s:  # one transaction: the version appears with all its predictions
        mv = db.ModelVersion(name=opts.name, path="", classes=classes, metrics={
            "source": "predictions-import", "imported_from": path.name, "weights": None,
            "predictions": len(ids), **_summary(rep.val)})
        s.add(mv)
        s.flush()
        for n, part in enumerate(db.chunks(list(range(len(ids))))):
            model_versions.add_predictions(s, [{"crop_id": ids[i], "model_version_id": mv.id,
                                    "probs": [float(x) for x in p[i]],
                                    "uncertainty": float(unc[i]), "embedding": None}
                                   for i in part], set_priority=False)
            progress(min((n + 1) * db.CHUNK, len(ids)), len(ids), "storing", stage="import")
        if opts.activate:
            # No weights to score with, so not promote.activate (which scores what is
            # missing first): the activation and its priorities in this one transaction.
            rep.priorities_set = model_versions.activate_model(s, mv.id)
    return rep
