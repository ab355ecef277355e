"""Benchmark: OFMClassifier training throughput on CPU (CUDA when present), ours vs a per-image loop.

Ours is what ``models.training.fit`` runs per step: uint8 crops in memory, each batch converted
and augmented as one tensor on one thread (``prepare_batch``: flip/shift/zoom/rotation in one
sampling grid, low resolution, blur, brightness/contrast, grey, noise), then the Adam step. The
baseline, on the same crops and an identical network, is the usual Dataset-style loop: every
image augmented on its own with OpenCV/NumPy (the same kinds of augmentation), turned into a
tensor, stacked, then the same step. The network alone (no augmentation) is the ceiling. The
three alternate batch by batch, so a busy shared machine slows them alike. Also reports the
augmentation cost alone per batch, ``fit()``'s own figure, and an epoch of 100,000 crops.

Prints a table, then one JSON line. Default run: about 1-3 minutes on 2 CPU cores.

    python bench/train.py [--images 256] [--batch-size 16] [--rounds 2] [--threads 0]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np
import torch
import torch.nn.functional as F

from models.ofm import OFMClassifier
from annotator.images import load_images
from models.training import fit, prepare_batch


def crops(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    root = Path(os.environ.get("ANNOTATOR_SHARED_DATA") or REPO.parent / "shared" / "data") / "faces"
    if root.is_dir():
        paths, labels = [], []
        for i, c in enumerate(("mask", "no_mask")):
            files = sorted((root / c).iterdir())[: n // 2]
            paths += files
            labels += [i] * len(files)
        return load_images(paths), np.array(labels), "faces"
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, 45, 45, 3), dtype=np.uint8), np.arange(n) % 2, "random"


def augment_one(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The per-image equivalent of ``augment_batch`` (OpenCV/NumPy, one image at a time)."""
    import cv2

    h, w = img.shape[:2]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-10, 10), rng.uniform(0.9, 1.1))
    m[:, 2] += rng.uniform(-4, 4, 2)
    img = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.4:
        side = int(rng.integers(10, h - 4))
        img = cv2.resize(cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA), (w, h))
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.3))
    x = img.astype(np.float32) / 255.0
    mean = x.mean()
    x = (x - mean) * rng.uniform(0.6, 1.4) + mean + rng.uniform(-0.2, 0.2)
    if rng.random() < 0.1:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    x = x + rng.normal(0, rng.uniform(0, 0.06), x.shape).astype(np.float32)
    return np.clip(x, 0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=2, help="timed passes over the crops")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y, data = crops(args.images)
    bs = args.batch_size

    # Augmentation alone, per batch (ours = prepare_batch, exactly as fit uses it), at two
    # batch sizes, alternating batch by batch so that both see the same machine load.
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    aug = {}
    for size in (bs, 128):
        t_ours = t_base = 0.0
        reps = max(2, len(x) // size) * args.rounds
        for i in range(reps):
            sl = slice((i * size) % len(x), (i * size) % len(x) + size)
            t0 = time.perf_counter()
            prepare_batch(x[sl], y[sl], g)
            t1 = time.perf_counter()
            torch.stack([torch.from_numpy(augment_one(im, rng)).permute(2, 0, 1) for im in x[sl]])
            t2 = time.perf_counter()
            t_ours, t_base = t_ours + t1 - t0, t_base + t2 - t1
        aug[size] = (t_ours / reps * 1000, t_base / reps * 1000)

    # Training steps, interleaved batch by batch on identical networks: ours (prepare_batch +
    # step), the per-image loop (+ the same step), and the network alone (prepare_batch without
    # augmentation + step). Note: the per-image loop stacks HWC images permuted to CHW, which
    # gives a channels-last batch, as typical Dataset code does; ours is contiguous NCHW.
    torch.manual_seed(0)
    nets = [OFMClassifier() for _ in range(3)]
    for m in nets[1:]:
        m.load_state_dict(nets[0].state_dict())
    opts = [torch.optim.Adam(m.parameters(), lr=2e-4, eps=1e-7) for m in nets]

    def step(i, xb, yb):
        loss = F.cross_entropy(nets[i](xb), yb)
        opts[i].zero_grad()
        loss.backward()
        opts[i].step()

    times = [0.0, 0.0, 0.0]
    seen = 0
    for r in range(args.rounds + 1):  # round 0 warms up oneDNN and is not counted
        order = rng.permutation(len(x))
        for s0 in range(0, len(x) - bs + 1, bs):
            idx = order[s0: s0 + bs]
            yb = torch.as_tensor(y[idx])
            t0 = time.perf_counter()
            xb, _ = prepare_batch(x[idx], y[idx], g)
            step(0, xb, yb)
            t1 = time.perf_counter()
            xb = torch.stack([torch.from_numpy(augment_one(x[i], rng)).permute(2, 0, 1) for i in idx])
            step(1, xb, yb)
            t2 = time.perf_counter()
            step(2, prepare_batch(x[idx], y[idx], g, augment=False)[0], yb)
            t3 = time.perf_counter()
            if r:
                times = [times[0] + t1 - t0, times[1] + t2 - t1, times[2] + t3 - t2]
                seen += len(idx)
    rate = [seen / t for t in times]
    best = {"ours": rate[0], "base": rate[1], "net": rate[2]}
    fit_rate = fit(OFMClassifier(), x, y, None, None, epochs=1, batch_size=bs, lr=2e-4,
                   seed=0).images_per_s
    aug_ms, base_aug_ms = aug[bs]
    print(f"OFMClassifier training, {len(x)} {data} crops x {args.rounds} rounds, batch {bs}, "
          f"{torch.get_num_threads()} torch threads, batches interleaved, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'pipeline':46} {'images/s':>9} {'min per 100K':>13}")
    for label, key in (("ours: prepare_batch + step (what fit runs)", "ours"),
                       ("baseline: per-image augmentation loop + step", "base"),
                       ("network only: no augmentation + step", "net")):
        print(f"{label:46} {best[key]:>9.0f} {1e5 / best[key] / 60:>13.1f}")
    print(f"{'fit() itself, one epoch (after the above)':46} {fit_rate:>9.0f} {1e5 / fit_rate / 60:>13.1f}")
    for size, (o, b_) in aug.items():
        print(f"augmentation alone, batch of {size}: ours {o:.1f} ms, per-image loop {b_:.1f} ms "
              f"({b_ / o:.1f}x)")
    aug_big = aug[128]
    print(json.dumps({
        "bench": "train", "data": data, "images": len(x), "batch_size": bs,
        "threads": torch.get_num_threads(), "device": "cuda" if torch.cuda.is_available() else "cpu",
        "images_per_s": round(best["ours"], 1), "baseline_images_per_s": round(best["base"], 1),
        "speedup": round(best["ours"] / best["base"], 2),
        "network_only_images_per_s": round(best["net"], 1),
        "aug_ms_per_batch": round(aug_ms, 2), "baseline_aug_ms_per_batch": round(base_aug_ms, 2),
        "aug_speedup": round(base_aug_ms / aug_ms, 2), "fit_images_per_s": round(fit_rate, 1),
        "aug_ms_per_batch128": round(aug_big[0], 2),
        "baseline_aug_ms_per_batch128": round(aug_big[1], 2),
        "epoch_100k_minutes": round(1e5 / best["ours"] / 60, 1),
        "baseline_epoch_100k_minutes": round(1e5 / best["base"] / 60, 1),
        "load_avg_1min": round(os.getloadavg()[0], 2), "cpu": platform.machine(),
    }))


if __name__ == "__main__":
    main()
