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
    python -m bench.train --with-load [--images 1024] [--rounds 2]

``--with-load`` trains the same network quiet and then beside the extract job running in another
process, for several thread policies (torch threads x the extraction's niceness), and prints
the share of its quiet images/s each keeps; the last row is the policy the product uses
(``models.training.train_threads`` and ``annotator.service.jobs.BACKGROUND_NICENESS``).
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

from annotator.media import images
from annotator.media.cache import TensorCache
from models.ofm import OFMClassifier
from annotator.service.jobs import BACKGROUND_NICENESS
from models.inference import to_tensor
from models.training import balanced_indices, fit

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


# --- --with-load: the same training quiet and beside a running extraction ------------------------

LOAD_VIDEO = "videos/pedestrians_eyelevel_640x360.mp4"


def load_worker(root: str, video_path: str) -> None:
    """The load: the extract job (YuNet, no gating: all detection) on one video, over and over
    (``--redo``), in a process of its own, until killed."""
    from annotator.service.workspace import Workspace
    from pipelines import extract

    ws = Workspace.init(Path(root))
    while True:
        extract.run(ws, extract.ExtractOptions(sources=[video_path], detector="yunet", fps=8,
                                               motion="off", redo=True, workers=1))


def start_load(tmp: Path, niceness: int):
    import subprocess
    import sys

    code = (f"import os; os.nice({niceness}); from bench.train import load_worker; "
            f"load_worker({str(tmp / 'load-ws')!r}, {str(SHARED / LOAD_VIDEO)!r})")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def fit_rate(model, x, y, bs: int, rounds: int, threads: int) -> float:
    """images/s of ``rounds`` epochs of the real fit on ``threads`` torch threads."""
    torch.set_num_threads(threads)
    seen, secs = 0, 0.0
    for r in range(rounds):
        h = fit(model, x, y, None, None, epochs=1, batch_size=bs, lr=2e-4, seed=r)
        n = len(y) - (len(y) % bs == 1)
        seen, secs = seen + n, secs + n / h.images_per_s
    return seen / secs


def with_load(args) -> None:
    """Quiet, then beside an extraction, for each policy: (torch threads, extraction niceness)."""
    from models.training import train_threads

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-load-"))
    cores = len(os.sched_getaffinity(0))
    policies = [("torch default", torch.get_num_threads(), 0),
                ("1 thread", 1, 0),
                ("extraction niced", torch.get_num_threads(), BACKGROUND_NICENESS),
                ("chosen: train_threads + niced", train_threads(busy=True), BACKGROUND_NICENESS)]
    rows = []
    try:
        paths, y, data = crop_files(args.images, tmp)
        x = images.load_images(paths)
        torch.manual_seed(0)
        model = OFMClassifier()
        fit_rate(model, x, y, args.batch_size, 1, torch.get_num_threads())  # warm-up
        print(f"OFMClassifier fit, {len(y)} {data} crops in memory, batch {args.batch_size}, "
              f"{args.rounds} epochs per figure, {cores} cores; the load is the extract job "
              f"(YuNet, gating off) on {LOAD_VIDEO} in a loop")
        print(f"{'policy':34}{'threads':>8}{'nice':>6}{'quiet/s':>9}{'loaded/s':>10}{'kept':>7}"
              f"{'load avg':>10}")
        for name, threads, nice in policies:
            quiet = fit_rate(model, x, y, args.batch_size, args.rounds, threads)
            proc = start_load(tmp, nice)
            try:
                time.sleep(args.load_warmup)  # the load is detecting by now
                loaded = fit_rate(model, x, y, args.batch_size, args.rounds, threads)
                load = os.getloadavg()[0]
            finally:
                proc.kill()
                proc.wait()
            rows.append({"policy": name, "threads": threads, "extraction_nice": nice,
                         "quiet_images_per_s": round(quiet, 1),
                         "loaded_images_per_s": round(loaded, 1),
                         "kept": round(loaded / quiet, 3), "load_avg": round(load, 2)})
            r = rows[-1]
            print(f"{name:34}{threads:>8}{nice:>6}{quiet:>9.1f}{loaded:>10.1f}{r['kept']:>7.0%}"
                  f"{load:>10.2f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    chosen = rows[-1]
    print(f"chosen policy keeps {chosen['kept']:.0%} of its quiet images/s beside an extraction "
          f"(target >= 50%: {'met' if chosen['kept'] >= 0.5 else 'NOT met'}); torch default "
          f"keeps {rows[0]['kept']:.0%}")
    print(json.dumps({"bench": "train_with_load", "data": data, "images": len(y),
                      "batch_size": args.batch_size, "rounds": args.rounds, "cores": cores,
                      "policies": rows, "chosen_kept": chosen["kept"],
                      "target_met": chosen["kept"] >= 0.5,
                      "load_avg": [round(v, 2) for v in os.getloadavg()],
                      "cpu": platform.machine()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=6, help="timed epochs per pipeline")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--with-load", action="store_true",
                    help="the same training quiet and beside a running extraction, per thread "
                    "policy (see with_load)")
    ap.add_argument("--load-warmup", type=float, default=8.0,
                    help="--with-load: seconds the extraction runs before training is timed")
    args = ap.parse_args()
    if args.with_load:
        args.rounds = min(args.rounds, 2)
        return with_load(args)
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
