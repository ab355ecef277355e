"""Does targeted sampling (strategy ``slices``) help a slice made hard on purpose?

The shared faces, split into a pool and an EVAL folder (disjoint). In both, a third of each
class is darkened (x0.15) and shrunk to 20 px high: the hard slice ``light: dark``. Both classes,
not just no_mask: with one class only, "dark" would be a shortcut to the label and the slice
would not be hard. The simulator then runs ``hybrid`` and ``slices`` from the same seed sets
and weights; at the same number of labels we compare the balanced accuracy on the slice and
pooled, averaged over the repeats. Acceptance: slice higher with ``slices``, pooled not lower
by more than 0.01. Prints a table, then ONE JSON line.

    nice -n 5 python -m bench.slice_sampling [--per-class 600] [--rounds 8] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from pipelines import simulate
from pipelines.common.simulation import SimulateOptions


def shared_dir() -> Path:
    return Path(os.environ.get("ANNOTATOR_SHARED_DATA")
                or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def make_hard(img: np.ndarray, height: int = 20) -> np.ndarray:
    """Darker (x0.15: under 50 of 255 whatever the picture) and shrunk to ``height`` px: a
    night-time face far from the camera."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
    return (small.astype(np.float32) * 0.15).astype(np.uint8)


def build_folders(root: Path, out: Path, per_class: int, eval_per_class: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for label in ("mask", "no_mask"):
        files = sorted((root / "faces" / label).glob("*.jpg"))
        files = [files[i] for i in rng.permutation(len(files))]
        # Near-duplicates sit next to each other by name: split by sorted position blocks so a
        # pair rarely straddles pool and EVAL.
        ordered = sorted(files[: per_class + eval_per_class])
        parts = {"pool": ordered[:per_class], "eval": ordered[per_class:]}
        for name, chunk in parts.items():
            dest = out / name / label
            dest.mkdir(parents=True, exist_ok=True)
            hard = set(rng.choice(len(chunk), size=len(chunk) // 3, replace=False).tolist())
            for i, f in enumerate(chunk):
                img = cv2.imread(str(f))
                if i in hard:
                    cv2.imwrite(str(dest / f"hard_{f.stem}.png"), make_hard(img))
                else:
                    cv2.imwrite(str(dest / f"{f.stem}.png"), img)
    return out / "pool", out / "eval"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--eval-per-class", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--seed-size", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="keep the run here (resumable)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        pool, ev = build_folders(shared_dir(), work / "data", args.per_class, args.eval_per_class)
        out = args.out or work / "sim"
        rep = simulate.run(SimulateOptions(
            pool=pool, eval=ev, out=out, strategies=("hybrid", "slices"),
            seed_size=args.seed_size, batch=args.batch, rounds=args.rounds, repeats=args.repeats,
            epochs=args.epochs, min_steps=60, full_epochs=5, jobs=args.jobs, hybrid_pool=1000))
        rows = list(csv_rows(out / "curves.csv"))
        srows = list(csv_rows(out / "slice_curves.csv"))
    pooled = {s: final_mean(rows, s) for s in ("hybrid", "slices")}
    dark = {s: final_mean([r for r in srows if r["attribute"] == "light" and r["band"] == "dark"], s)
            for s in ("hybrid", "slices")}
    per_repeat = {s: [final_of(rows, s, k) for k in range(args.repeats)] for s in ("hybrid", "slices")}
    holds = dark["slices"] > dark["hybrid"] and pooled["slices"] >= pooled["hybrid"] - 0.01
    print(f"{'strategy':<10} {'pooled bal.acc':>15} {'slice light:dark':>17}   per repeat (pooled)")
    for s in ("hybrid", "slices"):
        print(f"{s:<10} {pooled[s]:>15.4f} {dark[s]:>17.4f}   {per_repeat[s]}")
    print(f"labels at the end: {max(int(r['labels']) for r in rows)}; acceptance (slice higher, "
          f"pooled within 0.01): {'HOLDS' if holds else 'DOES NOT HOLD'}")
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    print(json.dumps({"bench": "slice_sampling", "pool": rep.pool_size, "eval": rep.eval_size,
                      "repeats": args.repeats, "rounds": args.rounds, "batch": args.batch,
                      "labels": max(int(r["labels"]) for r in rows),
                      "pooled": pooled, "slice_dark": dark, "holds": bool(holds),
                      "load_1min": load, "seconds": round(time.perf_counter() - t0, 1)}))
    return 0


def csv_rows(path: Path):
    import csv

    with open(path, newline="") as fh:
        yield from csv.DictReader(fh)


def final_of(rows, strategy: str, repeat: int) -> float:
    mine = [r for r in rows if r["strategy"] == strategy and int(r["repeat"]) == repeat]
    last = max(int(r["round"]) for r in mine)
    return round(float(next(r["balanced_accuracy"] for r in mine if int(r["round"]) == last)), 4)


def final_mean(rows, strategy: str) -> float:
    """Balanced accuracy at the last round, averaged over repeats (same labels for both)."""
    mine = [r for r in rows if r["strategy"] == strategy]
    last = max(int(r["round"]) for r in mine)
    return round(float(np.mean([float(r["balanced_accuracy"]) for r in mine
                                if int(r["round"]) == last])), 4)


if __name__ == "__main__":
    raise SystemExit(main())
