"""Benchmark: a training epoch read from the tensor cache, against the same epoch read from
files and against the bare network on tensors already in memory, in one run.

- cache: ``models.training.fit`` on a ``cache.CachedArray`` (what ``annotator train`` passes
  it): each batch gathered from the memory-mapped cache and checksummed on fit's background
  thread while the previous batch trains, then converted and augmented as one tensor, then
  the Adam step.
- files: the same ``fit``, but each batch decoded from the crop files (the images adapter's
  threaded decode + area resize) on that thread: what training costs without the cache.
- memory: the same ``fit`` on a uint8 ndarray in memory (the cache's own cost, isolated).
- bare network: forward, backward and Adam step on float tensors prepared beforehand: no
  reading, no conversion, no augmentation. The ceiling.

All four train identical networks from the same weights on the same batches (batch 16,
augmentation on except for the bare network). They take turns epoch by epoch for
``--rounds`` rounds after an uncounted warm-up, so a busy shared machine slows them alike.
Prints a table, then one JSON line (the last line).

    python -m bench.train [--images 512] [--batch-size 16] [--rounds 3] [--threads 0]
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from annotator import images
from annotator.cache import TensorCache
from models.ofm import OFMClassifier
from models.training import balanced_indices, fit, to_tensor

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANNOTATOR_SHARED_DATA") or REPO.parent / "shared" / "data")


class FileArray:
    """Crops read from their files on every index: ``x[idx]`` decodes ``paths[idx]``."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, idx) -> np.ndarray:
        return images.load_images([self.paths[i] for i in np.asarray(idx).tolist()])


def crop_files(n: int, tmp: Path) -> tuple[list[Path], np.ndarray, str]:
    root = SHARED / "faces"
    if root.is_dir():
        paths, labels = [], []
        for i, c in enumerate(("mask", "no_mask")):
            files = sorted((root / c).iterdir())[: n // 2]
            paths += files
            labels += [i] * len(files)
        return paths, np.array(labels), "faces"
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        paths.append(tmp / f"{i:05d}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
    return paths, np.arange(n) % 2, "random"


def bare_epoch(model, opt, xf: torch.Tensor, y: np.ndarray, bs: int, seed: int) -> tuple[int, float]:
    """The network alone on prepared float tensors, on the batches ``fit`` would draw."""
    g = torch.Generator().manual_seed(seed)
    order = balanced_indices(y, len(y), g)
    ys = torch.from_numpy(np.asarray(y, dtype=np.int64))
    model.train()
    seen, t0 = 0, time.perf_counter()
    for s in range(0, len(y), bs):
        idx = order[s: s + bs]
        if idx.numel() < 2:
            continue
        loss = F.cross_entropy(model(xf[idx]), ys[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += idx.numel()
    return seen, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=6, help="timed epochs per pipeline")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    try:
        paths, y, data = crop_files(args.images, tmp)
        cache = TensorCache(tmp / "cache")
        items = [(hashlib.sha256(p.read_bytes()).hexdigest(), p) for p in paths]
        t0 = time.perf_counter()
        cached = cache.view(items)  # decodes and fills once (what build-dataset does)
        fill_s = time.perf_counter() - t0
        memory = np.asarray(cached)
        assert np.array_equal(memory, images.load_images(paths))
        xf = to_tensor(memory)
        bs = args.batch_size

        torch.manual_seed(0)
        base = OFMClassifier()
        names = ("cache", "files", "memory", "bare")
        nets = {k: copy.deepcopy(base) for k in names}
        bare_opt = torch.optim.Adam(nets["bare"].parameters(), lr=2e-4, eps=1e-7)
        sources = {"cache": cached, "files": FileArray(paths), "memory": memory}
        seen = dict.fromkeys(names, 0)
        secs = dict.fromkeys(names, 0.0)
        for r in range(args.rounds + 1):  # round 0 warms oneDNN up and is not counted
            for k in (names if r % 2 else names[::-1]):
                if k == "bare":
                    n, dt = bare_epoch(nets[k], bare_opt, xf, y, bs, seed=r)
                else:  # one epoch of the real fit (a fresh Adam each call: not timed apart)
                    t0 = time.perf_counter()
                    h = fit(nets[k], sources[k], y, None, None, epochs=1, batch_size=bs,
                            lr=2e-4, seed=r)
                    n = len(y) - (len(y) % bs == 1)
                    dt = n / h.images_per_s if h.images_per_s else time.perf_counter() - t0
                if r:
                    seen[k] += n
                    secs[k] += dt
        rate = {k: seen[k] / secs[k] for k in names}
        repaired = cache.repaired
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    load = os.getloadavg()
    print(f"OFMClassifier training, {args.images} {data} crops, batch {bs}, {args.rounds} rounds "
          f"after a warm-up, {torch.get_num_threads()} torch threads, epochs interleaved; load "
          f"average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")
    print(f"{'pipeline':56} {'images/s':>9} {'vs bare':>8} {'min/100K':>9}")
    labels = {"cache": "fit from the tensor cache (memmap, augmentation on)",
              "files": "fit from files (decode each batch, augmentation on)",
              "memory": "fit from uint8 in memory (augmentation on)",
              "bare": "bare network: prepared float tensors, no augmentation"}
    for k in names:
        print(f"{labels[k]:56} {rate[k]:>9.1f} {rate[k] / rate['bare']:>8.1%} "
              f"{1e5 / rate[k] / 60:>9.1f}")
    print(f"filling the cache: {len(paths)} crops decoded in {fill_s:.2f} s "
          f"({len(paths) / fill_s:.0f} crops/s), once")
    print(json.dumps({
        "bench": "train", "data": data, "images": len(paths), "batch_size": bs,
        "rounds": args.rounds, "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        **{f"{k}_images_per_s": round(rate[k], 1) for k in names},
        "cache_over_bare": round(rate["cache"] / rate["bare"], 3),
        "files_over_bare": round(rate["files"] / rate["bare"], 3),
        "cache_over_files": round(rate["cache"] / rate["files"], 3),
        "memory_over_bare": round(rate["memory"] / rate["bare"], 3),
        "epoch_100k_minutes_cache": round(1e5 / rate["cache"] / 60, 1),
        "cache_fill_crops_per_s": round(len(paths) / fill_s, 1), "repaired": repaired,
        "load_avg": [round(v, 2) for v in load], "cpu": platform.machine(),
    }))


if __name__ == "__main__":
    main()
