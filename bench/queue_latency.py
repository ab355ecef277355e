"""Claim-batch and submit-label latency on a 200,000-crop workspace vs a 2,000-crop baseline.

Prints a table and ends with one JSON line. Target: p95 under 20 ms at 200,000 crops.
Usage: python bench/queue.py [--crops 200000] [--baseline 2000] [--ops 300]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The repo root replaces bench/ on the path: bench/queue.py must not shadow the stdlib queue.

from sqlalchemy import insert

from annotator import queue
from annotator.auth import add_user
from annotator.db import Crop, Label, get_or_create_source, utcnow
from annotator.workspace import Workspace


def build(root: Path, n: int, labeled_share: float = 0.3) -> Workspace:
    ws = Workspace.init(root)
    rng = random.Random(0)
    now = utcnow()
    with ws.session() as s:
        src = get_or_create_source(s, key="bench", kind="video", uri="bench.mp4", name="bench.mp4")
        bot = add_user(s, "bot", "secret-password").id
        for start in range(0, n, 20_000):
            rows = [
                dict(source_id=src.id, origin=f"f{i:07d}", frame_index=i, sha256=f"{i:064x}",
                     path=f"00/{i}.png", width=40, height=40, track_id=i // 5, created_at=now,
                     status="labeled" if rng.random() < labeled_share else "unlabeled",
                     priority=rng.random(), votes_needed=1)
                for i in range(start, min(n, start + 20_000))
            ]
            s.execute(insert(Crop), rows)
        labeled = [cid for (cid,) in s.query(Crop.id).filter(Crop.status == "labeled")]
        for start in range(0, len(labeled), 20_000):
            s.execute(insert(Label), [dict(crop_id=c, annotator_id=bot, value="mask", created_at=now)
                                      for c in labeled[start : start + 20_000]])
    return ws


def measure(ws: Workspace, ops: int, batch: int = 10) -> dict[str, list[float]]:
    with ws.session() as s:
        me = [add_user(s, f"a{i}", "secret-password").id for i in range(2)]
    claim, submit = [], []
    allowed = ws.config.label_values
    for op in range(ops // batch):
        who = me[op % 2]
        t = time.perf_counter()
        with ws.session() as s:
            got = queue.claim_batch(s, who, batch)
        claim.append(time.perf_counter() - t)
        for c in got:
            t = time.perf_counter()
            with ws.session() as s:
                queue.submit_label(s, who, c.crop_id, "mask", allowed=allowed, seconds=1.0)
            submit.append(time.perf_counter() - t)
    return {"claim_batch": claim, "submit_label": submit}


def summary(xs: list[float]) -> tuple[float, float]:
    xs = sorted(x * 1000 for x in xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crops", type=int, default=200_000)
    ap.add_argument("--baseline", type=int, default=2_000)
    ap.add_argument("--ops", type=int, default=300)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.baseline, args.crops):
            t = time.perf_counter()
            ws = build(Path(tmp) / f"ws{n}", n)
            build_s = time.perf_counter() - t
            results[n] = {k: summary(v) for k, v in measure(ws, args.ops).items()}
            results[n]["build_s"] = build_s
            ws.dispose()
    print(f"{'crops':>8} {'operation':<13} {'median ms':>10} {'p95 ms':>8}")
    for n, r in results.items():
        for op in ("claim_batch", "submit_label"):
            print(f"{n:>8} {op:<13} {r[op][0]:>10.2f} {r[op][1]:>8.2f}")
    big, base = results[args.crops], results[args.baseline]
    figures = {
        "bench": "queue",
        "crops": args.crops,
        "baseline_crops": args.baseline,
        "claim_median_ms": round(big["claim_batch"][0], 2),
        "claim_p95_ms": round(big["claim_batch"][1], 2),
        "submit_median_ms": round(big["submit_label"][0], 2),
        "submit_p95_ms": round(big["submit_label"][1], 2),
        "baseline_claim_p95_ms": round(base["claim_batch"][1], 2),
        "baseline_submit_p95_ms": round(base["submit_label"][1], 2),
        "target_p95_ms": 20,
        "meets_target": max(big["claim_batch"][1], big["submit_label"][1]) < 20,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
