"""Job: evaluate a model version on an ImageFolder or a dataset split; promote if better.

The promotion gate compares the candidate and the active model on the same frozen validation
set (the candidate's dataset, or the latest one), so the numbers are comparable.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator import db
from annotator.errors import InputError
from annotator.metrics import plot_report
from annotator.metrics import report as metrics_report
from annotator.workspace import Workspace

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


@dataclass
class EvalOptions:
    model: str | None = None  # version name; None = the active model
    data: Path | None = None  # ImageFolder; None = the model's dataset validation split
    dataset: str | None = None  # dataset name (its validation split), instead of data
    plots: Path | None = None
    batch_size: int = 256


@dataclass
class PromoteReport:
    version: str
    promoted: bool
    previous: str | None
    dataset: str | None
    candidate_balanced_accuracy: float | None
    active_balanced_accuracy: float | None
    forced: bool
    reason: str


def read_image_folder(root: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Files under ``root/<class>/`` (recursive) and their class indices; other folders ignored."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    paths, labels = [], []
    for i, c in enumerate(classes):
        folder = root / c
        if folder.is_dir():
            files = sorted(p for p in folder.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXT)
            paths += files
            labels += [i] * len(files)
    if not paths:
        raise InputError(f"{root} has no images in subfolders named {', '.join(classes)}")
    return paths, np.array(labels, dtype=np.int64)


def evaluate_arrays(model, x: np.ndarray, y: np.ndarray, *, batch_size: int = 256) -> tuple[dict, np.ndarray]:
    from models.training import predict

    probs, _ = predict(model, x, batch_size=batch_size)
    return metrics_report(y, probs, model.classes), probs


def run(ws: Workspace, opts: EvalOptions) -> dict:
    """Metrics dict (``annotator.metrics.report``) plus ``model``, ``data`` and ``plots``."""
    from models import registry
    from models.training import load_images
    from pipelines.build_dataset import load_split

    model, mv = registry.load_model(ws, opts.model)
    classes = list(model.classes)
    if opts.data is not None:
        paths, y = read_image_folder(opts.data, classes)
        x = load_images(paths)
        where = str(opts.data)
    else:
        name = opts.dataset
        if name is None:
            with ws.read_session() as s:
                ds = s.get(db.Dataset, mv.dataset_id) if mv.dataset_id else db.latest_dataset(s)
            if ds is None:
                raise InputError("give --data DIR (an ImageFolder) or build a dataset first")
            name = ds.name
        arr = load_split(ws, name, "val", classes)
        if not len(arr.y):
            raise InputError(f"dataset {name} has an empty validation split")
        x, y, where = arr.x, arr.y, f"dataset {name} (val)"
    rep, probs = evaluate_arrays(model, x, y, batch_size=opts.batch_size)
    out = {"model": mv.name, "data": where, **rep}
    if opts.plots is not None:
        out["plots"] = [str(p) for p in plot_report(y, probs, classes, opts.plots)]
    return out


def promote(ws: Workspace, version: str, *, force: bool = False) -> PromoteReport:
    """Activate ``version`` if its validation balanced accuracy is at least the active model's on
    the same frozen validation set (or when forced, or when nothing is active yet)."""
    from models import registry
    from pipelines.build_dataset import load_split

    with ws.read_session() as s:
        cand = db.get_model_version(s, version)
        if cand is None:
            raise InputError(f"no model version {version!r}; see `annotator models list`")
        active = db.active_model(s)
        ds = s.get(db.Dataset, cand.dataset_id) if cand.dataset_id else db.latest_dataset(s)
    if active is not None and active.id == cand.id:
        return PromoteReport(version, False, version, None, None, None, force,
                             "already the active model")
    cand_score = active_score = None
    if active is not None and not force:
        if ds is None:
            raise InputError("no validation set to compare against the active model: build a "
                             "dataset first, or pass --force")
        val = load_split(ws, ds.name, "val", list(cand.classes))
        if not len(val.y):
            raise InputError(f"dataset {ds.name} has an empty validation split; pass --force")
        scores = []
        for name in (cand.name, active.name):
            model, _ = registry.load_model(ws, name)
            if list(model.classes) != list(cand.classes):
                scores.append(None)
                continue
            rep, _ = evaluate_arrays(model, val.x, val.y)
            scores.append(rep["balanced_accuracy"])
        cand_score, active_score = scores
    ok = registry.should_promote(cand_score, active_score, force=force)
    where = ds.name if ds is not None else None
    if not ok:
        return PromoteReport(
            version, False, active.name if active else None, where, cand_score, active_score,
            force, f"balanced accuracy {cand_score:.4f} < active {active.name}'s "
                   f"{active_score:.4f} on dataset {where} (val); use --force to promote anyway")
    previous = registry.activate(ws, version)
    _sync_priorities(ws, version)
    reason = ("forced" if force else "no active model" if active is None else
              f"balanced accuracy {cand_score:.4f} >= {active_score:.4f} on dataset {where} (val)")
    return PromoteReport(version, True, previous, where, cand_score, active_score, force, reason)


def _sync_priorities(ws: Workspace, version: str) -> int:
    """Queue priorities from the predictions this (now active) version already stored."""
    from pipelines.score import sync_priorities

    with ws.read_session() as s:
        mv = db.get_model_version(s, version)
    return sync_priorities(ws, mv.id)


@dataclass
class KerasImportReport:
    version: str
    path: str
    classes: list
    active: bool
    val: dict | None


def import_keras(ws: Workspace, path: Path, *, name: str | None = None) -> KerasImportReport:
    """Register Neuralet's released Keras weights as a model version.

    The version is evaluated on the latest dataset's validation split when there is one, and
    becomes active when no model is active yet (the loop can start from it).
    """
    from models import registry
    from models.keras_import import load_keras_h5
    from pipelines.build_dataset import load_split

    classes = list(ws.config.labels)
    model = load_keras_h5(path, classes)
    with ws.read_session() as s:
        ds = db.latest_dataset(s)
        has_active = db.active_model(s) is not None
    val = {}
    if ds is not None:
        arr = load_split(ws, ds.name, "val", classes)
        if len(arr.y):
            val, _ = evaluate_arrays(model, arr.x, arr.y)
    metrics = {"source": "keras-import", "keras_file": str(Path(path).resolve()),
               "dataset": ds.name if ds is not None and val else None, "val": val}
    with ws.read_session() as s:
        name = name or registry.next_name(s)
    card = registry.model_card(name=name, classes=classes, dataset=metrics["dataset"],
                               metrics=metrics, params={"weights": Path(path).name},
                               source="Neuralet OFMClassifier.h5 (Keras), imported")
    name = registry.save_version(ws, model, metrics=metrics, card=card, name=name,
                                 dataset_id=ds.id if ds is not None and val else None)
    if not has_active:
        registry.activate(ws, name)
    return KerasImportReport(name, str(path), classes, not has_active, val or None)
