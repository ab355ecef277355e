"""What the two simulators share: their options, the labeled pool and EVAL as cached tensors,
a fresh model, its evaluation on EVAL and the seed set of a repeat.

``pipelines.simulate`` (strategies) and ``pipelines.simulate_policies`` (labeling cost) are two
jobs that replay the same product code on the same data; this module is that common ground, so
neither job imports the other.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.core.errors import InputError
from annotator.media import images


@dataclass(kw_only=True)
class SimulateOptions:
    pool: Path
    eval: Path
    out: Path
    strategies: tuple[str, ...] = ("random", "uncertainty", "diverse", "hybrid")
    seed_size: int = 100
    batch: int = 100
    rounds: int = 15
    repeats: int = 3
    epochs: int = 5  # per round, warm-started from the previous round's weights
    min_steps: int = 100  # at least this many optimizer steps per round: small seed sets still learn
    full_epochs: int = 10  # the full-pool reference model
    batch_size: int = 16
    lr: float = 2e-4
    init: str = "none"  # none | PATH.h5 (Neuralet's released weights)
    jobs: int = 1
    random_share: float = 0.1
    hybrid_pool: int = 1000
    seed: int = 0
    slice_share: float = 0.5  # strategy "slices": share of each batch on the worst slices
    slice_min_n: int = 20  # labels a slice needs before its measured error counts


# --- data -------------------------------------------------------------------------------------


@dataclass
class Data:
    """``pool_x``, ``eval_x``: uint8 (N, 45, 45, 3) ``cache.CachedArray`` (indexing gathers
    from the memory-mapped cache); ``*_y`` class indices (N,); ``pool_groups`` (N,)."""

    classes: list[str]
    pool_x: object
    pool_y: np.ndarray
    pool_groups: np.ndarray
    eval_x: object
    eval_y: np.ndarray
    pool_bands: dict = field(default_factory=dict)  # annotator.core.slices bands of each file
    eval_bands: dict = field(default_factory=dict)


def load(opts: SimulateOptions) -> Data:
    from annotator.core.dataset import dhash, group_ids

    pool_paths, pool_labels = images.read_image_folder(opts.pool)
    eval_paths, eval_labels = images.read_image_folder(opts.eval)
    classes = sorted(set(pool_labels))
    extra = sorted(set(eval_labels) - set(classes))
    if len(classes) < 2:
        raise InputError(f"{opts.pool} needs at least two label subfolders")
    if extra:
        raise InputError(f"{opts.eval} has labels the pool lacks: {', '.join(extra)}")
    pool_x, eval_x = cached(opts, pool_paths), cached(opts, eval_paths)
    index = {c: i for i, c in enumerate(classes)}
    # Near-duplicate photos form one group: the sampler takes at most one per batch.
    hashes = dhash(images.dhash_thumbnails(np.asarray(pool_x)))
    groups = group_ids([""] * len(pool_x), [None] * len(pool_x), [str(p) for p in pool_paths],
                       hashes=hashes)
    return Data(classes, pool_x, np.array([index[c] for c in pool_labels]), groups,
                 eval_x, np.array([index[c] for c in eval_labels]),
                 file_bands(pool_paths), file_bands(eval_paths))


def file_bands(paths: list[Path]) -> dict:
    """Slice bands of picture files (face = the picture's height; no source, no hour)."""
    from annotator.core import slices

    rows = []
    for p in paths:
        img = images.read_bgr(p)
        rows.append({} if img is None else {**slices.attributes(img), "source": "folder"})
    return slices.bands(rows)


def cached(opts: SimulateOptions, paths: list[Path]):
    """The pictures as a memory-mapped ``CachedArray`` (N, 45, 45, 3) from ``OUT/cache``."""
    from annotator.media.cache import TensorCache

    def digest(p: Path) -> str:
        try:
            return hashlib.sha256(Path(p).read_bytes()).hexdigest()
        except OSError:
            raise InputError(f"{p} cannot be read") from None

    return TensorCache(Path(opts.out) / "cache").view([(digest(p), p) for p in paths])


def new_model(classes: list[str], init: str):
    from models.ofm import OFMClassifier

    if init in ("", "none", None):
        return OFMClassifier(classes)
    from models.keras_import import load_keras_h5

    path = Path(init)
    if not path.is_file():
        raise InputError(f"--init {init}: no such file")
    return load_keras_h5(path, classes)


def evaluate(model, data: Data) -> dict:
    from annotator.core import metrics
    from models.inference import predict

    probs, _ = predict(model, data.eval_x)
    rep = metrics.report(data.eval_y, probs, data.classes)
    no_mask = "no_mask" if "no_mask" in data.classes else data.classes[-1]
    return {
        "balanced_accuracy": round(float(rep["balanced_accuracy"]), 4),
        "accuracy": round(float(rep["accuracy"]), 4),
        "no_mask_recall": round(float(rep["per_class"][no_mask]["recall"]), 4),
    }


def seed_set(data: Data, opts: SimulateOptions, repeat: int) -> np.ndarray:
    """The same random seed set for every strategy of one repeat: a fair start."""
    rng = np.random.default_rng(opts.seed + 1000 * repeat)
    return np.sort(rng.choice(len(data.pool_y), size=min(opts.seed_size, len(data.pool_y)),
                              replace=False))
