"""Job: train an OFMClassifier on a dataset version and register it (not promoted).

Nothing is written until training has finished: an interrupted run leaves no version behind
and never touches the active model. Training batches are gathered from the workspace's
memory-mapped tensor cache (``load_split(..., lazy=True)``), not decoded from files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path


from annotator.data import db, model_versions
from annotator.core.config import check_options
from annotator.core.errors import InputError
from annotator.core.metrics import report as metrics_report
from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace
from pipelines.common import registry
from pipelines.common.datasets import load_split, read_manifest

MASK, NO_MASK = "mask", "no_mask"


@dataclass(kw_only=True)
class TrainOptions:
    dataset: str | None = None  # default: the latest
    epochs: int | None = None  # defaults: config.training
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    init: str = "active"  # active | none | VERSION
    synthetic_masks: Path | None = None  # folder of RGBA mask PNGs (e.g. mask_overlays/)
    name: str | None = None
    augment: bool = True
    device: str | None = None  # default: CUDA when present, else CPU


@dataclass
class TrainReport:
    version: str
    dataset: str
    init: str
    n_train: int
    n_val: int
    best_epoch: int
    val: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    images_per_s: float = 0.0
    device: str = "cpu"
    seconds: float = 0.0


def run(ws: Workspace, opts: TrainOptions, progress: ProgressFn = silent) -> TrainReport:
    from models import registry as model_files
    from models.ofm import OFMClassifier
    from models.inference import predict
    from models.training import fit, load_mask_overlays, train_threads

    t0 = time.perf_counter()
    cfg = ws.config.training
    check_options(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed)
    epochs = cfg.epochs if opts.epochs is None else opts.epochs  # 0 is refused, not "default"
    batch_size = cfg.batch_size if opts.batch_size is None else opts.batch_size
    lr = cfg.lr if opts.lr is None else opts.lr
    seed = cfg.seed if opts.seed is None else opts.seed
    classes = list(ws.config.labels)
    ds, _ = read_manifest(ws, opts.dataset)
    ds_classes = list((ds.counts or {}).get("classes") or classes)
    if ds_classes != classes:
        raise InputError(f"dataset {ds.name} has classes {ds_classes}; the workspace has {classes}")
    # After the input checks (a refused run prints its one line, no bar): from here on the
    # job's row says "train", not the finished dataset stage.
    progress(0, None, "reading the dataset")
    train = load_split(ws, ds.name, "train", classes, lazy=True)  # batches from the memmap
    val = load_split(ws, ds.name, "val", classes)
    missing = [c for i, c in enumerate(classes) if not (train.y == i).any()]
    if missing:
        raise InputError(f"dataset {ds.name} has no training crops labeled {', '.join(missing)}")

    import torch

    torch.manual_seed(seed)  # the initial weights too: --seed reproduces a run
    model = OFMClassifier(classes)
    init = _initial_weights(ws, opts.init, classes)
    synthetic = None
    overlays = opts.synthetic_masks or (Path(cfg.mask_overlays) if cfg.synthetic_masks and
                                        cfg.mask_overlays else None)
    if cfg.synthetic_masks and overlays is None:
        raise InputError("config.training.synthetic_masks is on but mask_overlays is not set")
    if overlays is not None:
        if MASK not in classes or NO_MASK not in classes:
            raise InputError(f"synthetic masks need classes {MASK!r} and {NO_MASK!r}")
        synthetic = load_mask_overlays(overlays, source_class=classes.index(NO_MASK),
                                       target_class=classes.index(MASK))
    on_cpu = opts.device == "cpu" or (opts.device is None and not torch.cuda.is_available())
    if on_cpu:  # beside other work, one thread goes further (bench.train --with-load)
        torch.set_num_threads(train_threads())
    hist = fit(model, train.x, train.y, val.x, val.y, epochs=epochs, batch_size=batch_size,
               lr=lr, seed=seed, augment=opts.augment, synthetic=synthetic, progress=progress,
               init_state=init[1], device=opts.device)
    model_files.as_stored(model)  # the figures below are the saved model's
    val_report = {}
    if len(val.y):
        probs, _ = predict(model, val.x)
        val_report = metrics_report(val.y, probs, classes)
    params = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
              "init": init[0], "augment": opts.augment, "balanced": True,
              "synthetic_masks": str(overlays) if overlays else None}
    metrics = {"source": "train", "dataset": ds.name, "n_train": int(len(train.y)),
               "n_val": int(len(val.y)), "best_epoch": hist.best_epoch, "epochs": epochs,
               "params": params, "val": val_report, "history": hist.epochs,
               "images_per_s": hist.images_per_s, "device": hist.device,
               "train_seconds": hist.seconds}
    with ws.read_session() as s:
        name = opts.name or db.next_name(s, db.ModelVersion, "v", ws.models_dir)
    card = model_files.model_card(name=name, classes=classes, dataset=ds.name, metrics=metrics,
                                  params=params, source=f"trained ({init[0]} init)")
    name = registry.register(ws, model, metrics=metrics, card=card, dataset_id=ds.id, name=name)
    return TrainReport(version=name, dataset=ds.name, init=init[0], n_train=len(train.y),
                       n_val=len(val.y), best_epoch=hist.best_epoch, val=val_report,
                       history=hist.epochs, images_per_s=hist.images_per_s, device=hist.device,
                       seconds=round(time.perf_counter() - t0, 2))


def _initial_weights(ws: Workspace, init: str, classes: list[str]):
    """``(description, state_dict or None)`` for ``--init active|none|VERSION``."""

    if init in ("none", "", None):
        return "none", None
    if init == "active":
        with ws.read_session() as s:
            mv = model_versions.active_model(s)
        if mv is None:
            return "none (no active model)", None
        if list(mv.classes) != classes:
            return f"none (active {mv.name} has other classes)", None
        if not mv.path:  # imported predictions: no weights to start from
            return f"none (active {mv.name} has no weights)", None
        init = mv.name
    model, mv = registry.load(ws, init)
    if list(mv.classes) != classes:
        raise InputError(f"{mv.name} predicts {mv.classes}; the workspace has {classes}")
    return mv.name, model.state_dict()
