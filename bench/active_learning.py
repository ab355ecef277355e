"""Active-learning comparison on real data: faces as the labeled pool, scene crops as EVAL.

EVAL crops are cut from ../shared/data/scenes with the product's own face-box -> head-box rule
(the same as MTCNN extraction), so they look like what the tool puts in the queue: other people,
other cameras, smaller and blurrier faces than the pool. Prints the strategy table (random is the
reference) and ends with one JSON line. Writes curves.csv / curves.png to --out.

Usage: python bench/active_learning.py [--rounds 8] [--repeats 3] [--epochs 4] [--out bench/out/al]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

# The repo root replaces bench/ on the path: bench/queue.py must not shadow the stdlib queue.

import cv2

from annotator.core.geometry import head_box_from_face
from pipelines import simulate
from pipelines.common.simulation import SimulateOptions

SHARED = Path(os.environ.get("ANNOTATOR_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")


def cut_scene_crops(scenes: Path, out: Path, *, min_face: int = 16, margin: float = 0.15) -> dict[str, int]:
    """Head crops of the labeled faces in scenes/boxes.csv into an ImageFolder (mask / no_mask)."""
    counts: dict[str, int] = {}
    with open(scenes / "boxes.csv") as fh:
        rows = list(csv.DictReader(fh))
    for i, r in enumerate(rows):
        if r["label"] not in ("mask", "no_mask"):
            continue  # mask_incorrect is neither class
        x1, y1, x2, y2 = (float(r[k]) for k in ("x1", "y1", "x2", "y2"))
        if min(x2 - x1, y2 - y1) < min_face:
            continue
        img = cv2.imread(str(scenes / "images" / r["image"]))
        if img is None:
            continue
        box = head_box_from_face((x1, y1, x2, y2), (img.shape[1], img.shape[0]), margin=margin)
        if box.reason:
            continue
        bx1, by1, bx2, by2 = box.box
        dest = out / r["label"] / f"{i:05d}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest), img[by1:by2, bx1:bx2])
        counts[r["label"]] = counts.get(r["label"], 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("bench/out/active_learning"))
    ap.add_argument("--strategies", default="random,uncertainty,diverse,hybrid")
    ap.add_argument("--seed-size", type=int, default=100)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--full-epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32, help="training batch size")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()
    eval_dir = args.out / "eval_scenes"
    if not eval_dir.exists():
        counts = cut_scene_crops(SHARED / "scenes", eval_dir)
        print(f"EVAL: {counts} head crops cut from scenes/boxes.csv")
    opts = SimulateOptions(
        pool=SHARED / "faces", eval=eval_dir, out=args.out / "run",
        strategies=tuple(args.strategies.split(",")), seed_size=args.seed_size, batch=args.batch,
        rounds=args.rounds, repeats=args.repeats, epochs=args.epochs, full_epochs=args.full_epochs,
        batch_size=args.batch_size, lr=args.lr, jobs=args.jobs,
    )
    from tqdm import tqdm

    bar = tqdm(desc="rounds", file=sys.stderr)

    def progress(done, total, msg=""):
        bar.total = total
        bar.n = done
        bar.set_postfix_str(msg)
        bar.refresh()

    report = simulate.run(opts, progress)
    bar.close()
    print(f"pool {report.pool_size} faces, EVAL {report.eval_size} scene crops; "
          f"full-pool model balanced accuracy {report.full_pool_balanced_accuracy:.3f}")
    print(f"{'strategy':<12} {'labels->95%':>12} {'labels->98%':>12} {'AUC':>7} {'vs random':>10} {'final':>7} {'->random final':>15} {'ahead':>6}")
    for s in report.summary:
        vs = "" if s.auc_vs_random is None else f"{s.auc_vs_random:+.3f}"
        print(f"{s.strategy:<12} {str(s.labels_to_95 or '-'):>12} {str(s.labels_to_98 or '-'):>12} "
              f"{s.auc:>7.3f} {vs:>10} {s.final_balanced_accuracy:>7.3f} {str(s.labels_to_random_final or '-'):>15} "
              f"{'' if s.repeats_ahead_of_random is None else f'{s.repeats_ahead_of_random}/{s.repeats}':>6}")
    print(json.dumps({
        "bench": "active_learning", "pool": report.pool_size, "eval": report.eval_size,
        "full_pool_balanced_accuracy": report.full_pool_balanced_accuracy,
        "seconds": report.seconds,
        "strategies": {s.strategy: {"labels_to_95": s.labels_to_95, "labels_to_98": s.labels_to_98,
                                    "auc": s.auc, "auc_vs_random": s.auc_vs_random,
                                    "final": s.final_balanced_accuracy,
                                    "labels_to_random_final": s.labels_to_random_final,
                                    "repeats_ahead_of_random": s.repeats_ahead_of_random}
                       for s in report.summary},
    }))


if __name__ == "__main__":
    main()
