"""Job: freeze the current labels into a versioned dataset.

Writes ``datasets/NAME/{train,val}/<label>/<crop_id>.<ext>`` (hard links to the stored crops,
not copies) and ``manifest.csv.gz`` (crop id,
source, track, label, annotators, split, group, sha256, file). The crops' tensors at the
classifier's input size go to the workspace's tensor cache (``annotator.media.cache``, keyed by
sha256), so training and evaluation start without decoding files and a crop in several
dataset versions is stored once. The split is grouped and stratified (``annotator.core.dataset``)
and sticky across versions. Reading a dataset back is :mod:`pipelines.common.datasets`.
"""
from __future__ import annotations

import csv
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from annotator.data import db, reports
from annotator.media import images
from annotator.core.dataset import TRAIN, VAL, assign_split, dhash, group_ids
from annotator.core.errors import InputError
from annotator.core.files import atomic_folder, open_text, removed_on_error
from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace
from pipelines.common.datasets import previous_splits, tensors

MANIFEST = "manifest.csv.gz"  # gzip: mostly hex digests, a third of the bytes
FIELDS = ["crop_id", "source", "track", "label", "annotators", "split", "group", "sha256", "file",
          "kind"]
LABEL_CHOICES = ("all", "human")  # all: people's, imported and audited machine labels


@dataclass(kw_only=True)
class BuildOptions:
    name: str | None = None
    val_fraction: float | None = None  # default: config.training.val_fraction
    seed: int | None = None
    group_by: str = "track"  # track | source
    max_distance: int = 4  # near-duplicate threshold in dHash bits
    labels: str = "all"  # all | human (leave auto and propagated labels out)


@dataclass
class BuildReport:
    name: str
    path: str
    crops: int
    counts: dict = field(default_factory=dict)  # {split: {label: n}}
    groups: int = 0
    largest_group: int = 0
    kept_in_val: int = 0  # crops that an earlier version had in validation
    kept_in_train: int = 0
    kinds: dict = field(default_factory=dict)  # {kind: crops}, validation is human only
    machine_left_out: int = 0  # machine labels left out: --labels human, unaudited, or in val
    seconds: float = 0.0


def run(ws: Workspace, opts: BuildOptions, progress: ProgressFn = silent) -> BuildReport:
    from models.registry import check_name

    t0 = time.perf_counter()
    classes = list(ws.config.labels)
    frac = ws.config.training.val_fraction if opts.val_fraction is None else opts.val_fraction
    if not 0.0 <= frac < 1.0:
        raise InputError(f"--val-fraction must be in [0, 1), got {frac}")
    seed = ws.config.training.seed if opts.seed is None else opts.seed
    if opts.group_by not in ("track", "source"):
        raise InputError(f"--group-by must be track or source, got {opts.group_by!r}")
    with ws.read_session() as s:
        name = opts.name or db.next_name(s, db.Dataset, "d", ws.datasets_dir)
        check_name(name, "dataset")
        if db.get_dataset(s, name) is not None or (ws.datasets_dir / name).exists():
            raise InputError(f"dataset {name!r} already exists")
        if opts.labels not in LABEL_CHOICES:
            raise InputError(f"--labels must be all or human, got {opts.labels!r}")
        labels = reports.current_labels(s, classes)
        machine_ok = _machine_kinds(s, ws, opts.labels)
        earlier = [ws.root / d.manifest for d in db.list_datasets(s)]
    n_all = len(labels)
    if not labels.empty:
        labels = labels[labels["kind"].isin(["human", "import", *machine_ok])]
    if labels.empty:
        raise InputError("no labeled crops yet: label some (or import a labeled folder) first")
    labels = labels.sort_values("crop_id").reset_index(drop=True)
    progress(0, len(labels), "reading crops", stage="dataset")
    x = tensors(ws, list(zip(labels["sha256"], (ws.store.path(p) for p in labels["path"]))))
    progress(len(labels) // 2, len(labels), "grouping", stage="dataset")
    y = np.array([classes.index(v) for v in labels["label"]], dtype=np.int64)
    track = [None if _na(t) else int(t) for t in labels["track_id"]]
    groups = group_ids(list(labels["source_key"]), track, list(labels["sha256"]),
                       hashes=dhash(images.dhash_thumbnails(x)), max_distance=opts.max_distance, by=opts.group_by)
    previous = previous_splits(earlier)
    prev = [previous.get(int(c)) for c in labels["crop_id"]]
    is_val = assign_split(y, groups, val_fraction=frac, seed=seed, previous=prev,
                          prefer_val=labels["random"].astype(bool).to_numpy())
    # Validation takes people's labels only, so the promotion gate never grades the model on
    # its own labels; a machine label whose group went to validation is left out (moving it to
    # train would put its track mates on both sides).
    machine = labels["kind"].isin(db.LabelKind.MACHINE).to_numpy()
    keep = ~(machine & is_val)
    if not keep.all():
        labels = labels[keep].reset_index(drop=True)
        x, y, groups, is_val = x[keep], y[keep], groups[keep], is_val[keep]
        track = [t for t, k in zip(track, keep) if k]
        prev = [p for p, k in zip(prev, keep) if k]
    split = np.where(is_val, VAL, TRAIN)

    final = ws.datasets_dir / name
    with atomic_folder(final) as tmp:
        rows = _write_files(ws, tmp, labels, split, groups, track, progress)
        with open_text(tmp / MANIFEST, "w") as fh:
            w = csv.DictWriter(fh, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
    counts = {sp: {c: int(((split == sp) & (y == i)).sum()) for i, c in enumerate(classes)}
              for sp in (TRAIN, VAL)}
    sizes = np.bincount(groups)
    report = BuildReport(
        name=name, path=str(final), crops=len(labels), counts=counts,
        groups=int((sizes > 0).sum()), largest_group=int(sizes.max()),
        kept_in_val=sum(p == VAL for p in prev), kept_in_train=sum(p == TRAIN for p in prev),
        kinds={str(k): int(v) for k, v in labels["kind"].value_counts().items()},
        machine_left_out=n_all - len(labels),
    )
    with removed_on_error(final), ws.session() as s:
        s.add(db.Dataset(name=name, path=os.path.relpath(final, ws.root),
                         manifest=os.path.relpath(final / MANIFEST, ws.root),
                         counts={"classes": classes, **counts, "total": len(labels),
                                 "val_fraction": frac, "group_by": opts.group_by}))
    progress(len(labels), len(labels), f"{name}: {len(labels)} crops", stage="dataset")
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def _machine_kinds(session, ws: Workspace, which: str) -> list[str]:
    """Machine label kinds a dataset takes: ``auto`` (each passed its audited threshold) and
    ``propagated`` once its own audit bounds its error under ``[autolabel] max_error``."""
    if which == "human":
        return []
    from annotator.service.autolabels import measured_error

    ok = [db.LabelKind.AUTO]
    if measured_error(session, db.LabelKind.PROPAGATED)["bound"] <= ws.config.autolabel.max_error:
        ok.append(db.LabelKind.PROPAGATED)
    return ok


def _na(v) -> bool:
    try:
        return v is None or bool(np.isnan(float(v)))
    except (TypeError, ValueError):
        return True


def _write_files(ws, root: Path, labels, split, groups, track, progress) -> list[dict]:
    rows = []
    for sp in (TRAIN, VAL):
        for label in ws.config.labels:
            (root / sp / label).mkdir(parents=True, exist_ok=True)
    for i, r in enumerate(labels.itertuples(index=False)):
        src = ws.store.path(r.path)
        if not src.is_file():
            raise InputError(f"crop {int(r.crop_id)}: its file {src} is missing")
        # A hard link to the content-addressed crop, whatever its format: a dataset version
        # costs its manifest and directory entries, not a copy of every crop (JPEG crops used
        # to be re-encoded as PNG copies: 99 MB a version for 27 MB of crops).
        rel = f"{split[i]}/{r.label}/{int(r.crop_id)}{src.suffix.lower() or '.png'}"
        try:
            os.link(src, root / rel)
        except OSError:  # another file system: the bytes, unchanged
            shutil.copyfile(src, root / rel)
        rows.append({"crop_id": int(r.crop_id), "source": r.source_key,
                     "track": "" if track[i] is None else track[i], "label": r.label,
                     "annotators": r.annotators, "split": split[i], "group": int(groups[i]),
                     "sha256": r.sha256, "file": rel, "kind": r.kind})
        if i % 500 == 0:
            progress(len(labels) // 2 + i // 2, len(labels), "writing files", stage="dataset")
    return rows


def discard(ws: Workspace, name: str) -> bool:
    """Remove a dataset version no model refers to (its row and folder): what a cancelled or
    failed retrain built. Returns whether it was removed."""
    with ws.session() as s:
        ds = db.get_dataset(s, name)
        if ds is None or s.scalar(select(func.count()).select_from(db.ModelVersion)
                                  .where(db.ModelVersion.dataset_id == ds.id)):
            return False
        path = ws.root / ds.path
        s.delete(ds)
    shutil.rmtree(path, ignore_errors=True)
    return True
