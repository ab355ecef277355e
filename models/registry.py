"""Model registry: versions under ``ws.models_dir/VERSION/{model.pt, metrics.json, card.md}``.

One row per version in ``model_versions``; exactly one may be active. Files are written to a
hidden folder and renamed into place, and the row is added only after that, so an interrupted
training never leaves a half version and never touches the active model. Switching the active
version is one database transaction. The promotion rule (``should_promote``) is here; the
evaluation that feeds it is in ``pipelines.evaluate``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from annotator import db
from annotator.errors import InputError
from models.ofm import INPUT_SIZE, OFMClassifier

__all__ = [
    "VersionInfo",
    "save_version",
    "load_model",
    "list_versions",
    "should_promote",
    "activate",
    "rollback",
    "next_name",
]

FORMAT = "facemask-annotator/ofm/1"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class VersionInfo:
    name: str
    path: str
    classes: list[str]
    active: bool
    dataset: str | None
    created_at: str
    promoted_at: str | None
    val_balanced_accuracy: float | None
    val_accuracy: float | None
    source: str | None


def next_name(session, prefix: str = "v") -> str:
    """``v001``, ``v002``, ...: the first free name after the versions made so far."""
    n = len(db.list_model_versions(session)) + 1
    while db.get_model_version(session, f"{prefix}{n:03d}") is not None:
        n += 1
    return f"{prefix}{n:03d}"


def save_version(
    ws,
    model: OFMClassifier,
    *,
    metrics: dict,
    card: str,
    dataset_id: int | None = None,
    name: str | None = None,
) -> str:
    """Write a new version's files atomically and register it (inactive). Returns its name."""
    if name is not None and not NAME_RE.match(name):
        raise InputError(f"invalid version name {name!r}: letters, digits, _ . - (max 100)")
    ws.models_dir.mkdir(parents=True, exist_ok=True)
    with ws.read_session() as s:
        name = name or next_name(s)
        if db.get_model_version(s, name) is not None:
            raise InputError(f"model version {name!r} already exists")
    final = ws.models_dir / name
    if final.exists():
        raise InputError(f"{final} already exists; pick another --name")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=ws.models_dir))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        torch.save({"format": FORMAT, "arch": "OFMClassifier", "classes": list(model.classes),
                    "input_size": INPUT_SIZE, "state_dict": state}, tmp / "model.pt")
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        (tmp / "card.md").write_text(card)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        with ws.session() as s:
            s.add(db.ModelVersion(name=name, path=os.path.relpath(final, ws.root),
                                  dataset_id=dataset_id, classes=list(model.classes),
                                  metrics=_summary(metrics), active=False))
    except BaseException:
        shutil.rmtree(final, ignore_errors=True)
        raise
    return name


def _summary(metrics: dict) -> dict:
    """The numbers kept in the database row (the full report stays in metrics.json)."""
    val = metrics.get("val") or {}
    out = {k: val.get(k) for k in ("accuracy", "balanced_accuracy", "roc_auc", "ece") if k in val}
    for k in ("n_train", "n_val", "dataset", "source", "best_epoch", "epochs"):
        if k in metrics:
            out[k] = metrics[k]
    return out


def _resolve(ws, session, version: str | None):
    mv = db.active_model(session) if version in (None, "active") else db.get_model_version(session, version)
    if mv is None:
        if version in (None, "active"):
            raise InputError("no active model: train one (`annotator train`) or import Neuralet's "
                             "(`annotator models import-keras PATH.h5`), then promote it")
        raise InputError(f"no model version {version!r}; see `annotator models list`")
    return mv


def load_model(ws, version: str | None = None) -> tuple[OFMClassifier, db.ModelVersion]:
    """The model of ``version`` (None or "active" = the active one) and its registry row."""
    with ws.read_session() as s:
        mv = _resolve(ws, s, version)
    path = ws.root / mv.path / "model.pt"
    if not path.is_file():
        raise InputError(f"model file {path} is missing")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != FORMAT:
        raise InputError(f"{path} is not a facemask-annotator model file")
    model = OFMClassifier(blob["classes"])
    model.load_state_dict(blob["state_dict"])
    return model.eval(), mv


def read_metrics(ws, mv) -> dict:
    path = ws.root / mv.path / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def list_versions(ws) -> list[VersionInfo]:
    with ws.read_session() as s:
        datasets = {d.id: d.name for d in db.list_datasets(s)}
        rows = db.list_model_versions(s)
    out = []
    for mv in rows:
        m = mv.metrics or {}
        out.append(VersionInfo(
            name=mv.name, path=mv.path, classes=list(mv.classes), active=bool(mv.active),
            dataset=datasets.get(mv.dataset_id), created_at=str(mv.created_at),
            promoted_at=str(mv.promoted_at) if mv.promoted_at else None,
            val_balanced_accuracy=m.get("balanced_accuracy"), val_accuracy=m.get("accuracy"),
            source=m.get("source"),
        ))
    return out


def should_promote(candidate: float | None, active: float | None, *, force: bool = False) -> bool:
    """The gate: promote when forced, when nothing is active, or when the candidate's validation
    balanced accuracy is at least the active model's on the same validation set."""
    if force or active is None:
        return True
    return candidate is not None and candidate >= active


def activate(ws, version: str) -> str | None:
    """Make ``version`` active in one transaction; returns the previously active name."""
    with ws.session() as s:
        mv = _resolve(ws, s, version)
        if list(mv.classes) != list(ws.config.labels):
            raise InputError(f"{version} predicts {mv.classes}; this workspace's classes are "
                             f"{ws.config.labels}")
        cur = db.active_model(s)
        db.activate_model(s, mv.id)
        return cur.name if cur is not None else None


def rollback(ws) -> tuple[str, str]:
    """Re-activate the version promoted before the active one; returns ``(from, to)``."""
    with ws.session() as s:
        cur = db.active_model(s)
        prev = db.previous_model(s)
        if cur is None or prev is None:
            raise InputError("nothing to roll back to: no earlier promoted version")
        db.activate_model(s, prev.id, stamp=False)
        return cur.name, prev.name


def model_card(*, name: str, classes: Sequence[str], dataset: str | None, metrics: dict,
               params: dict, source: str) -> str:
    """A short markdown model card."""
    val = metrics.get("val") or {}
    lines = [
        f"# Model {name}",
        "",
        f"- architecture: OFMClassifier (Neuralet), input {INPUT_SIZE}x{INPUT_SIZE} RGB in [0, 1]",
        f"- classes (output order): {', '.join(classes)}",
        f"- source: {source}",
        f"- dataset: {dataset or '-'} (train {metrics.get('n_train', '-')}, "
        f"val {metrics.get('n_val', '-')})",
        f"- training: {', '.join(f'{k}={v}' for k, v in params.items())}",
        "",
        "## Validation",
        "",
    ]
    if val:
        lines += ["| metric | value |", "|---|---|"]
        for k in ("accuracy", "balanced_accuracy", "roc_auc", "ece"):
            lines.append(f"| {k} | {val.get(k)} |")
        for c, pc in (val.get("per_class") or {}).items():
            lines.append(f"| recall {c} | {pc.get('recall'):.3f} |")
    else:
        lines.append("not evaluated")
    lines += [
        "",
        "## Intended use and limits",
        "",
        "Mask / no-mask decisions on head crops from CCTV (OpenPifPaf keypoint boxes). Known hard",
        "cases: night scenes, red masks, very blurry faces, overhead views. Validation figures",
        "come from the frozen validation split of the dataset above, grouped by source and track.",
        "",
    ]
    return "\n".join(lines)
