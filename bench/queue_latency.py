"""Claim-batch and submit-label latency on SQLite and PostgreSQL, 1 and 8 annotators at once.

Each backend gets one workspace of ``--crops`` crops (30% already labeled); then 1, and then 8,
annotator processes start together and each claims ``--claims`` batches of ``--batch`` crops
(queue order: priority, then id) and labels every crop it got, one transaction per operation,
with ``--think-ms`` between operations (0: back to back, the worst case). Latency is the wall
time of one transaction, commit included; each process's first claim (connecting) is not
counted. SQLite runs as the tool runs it (WAL, synchronous=NORMAL, BEGIN IMMEDIATE).
PostgreSQL is a throwaway server started here as the tests start theirs (``tests/pg.py``),
with fsync on, measured twice on the same data: ``postgresql`` with the server's default
``synchronous_commit = on`` (every commit waits for its WAL fsync), and ``postgresql-async``
with ``synchronous_commit = off``, the guarantee SQLite's synchronous=NORMAL gives (a crash
of the machine may lose the last commits, never corrupts) and a one-line choice for a team
(``ALTER DATABASE ... SET synchronous_commit = off``).

Prints a table and ends with one JSON line. Target: p95 under 20 ms for both at 8 annotators.
Usage (repository root): python -m bench.queue_latency [--crops 200000] [--annotators 1,8]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, text

from annotator.data import crop_queue
from annotator.service.auth import add_user
from annotator.data.db import Crop, Label, get_or_create_source, utcnow
from annotator.service.workspace import Workspace

CHUNK = 20_000


def build(root: Path, n: int, db_url: str | None, labeled_share: float = 0.3) -> Workspace:
    # Explicit SQLite URL: an ANNOTATOR_DB_URL in the environment must not redirect the bench.
    ws = Workspace.init(root, db_url=db_url or f"sqlite:///{(root / 'annotator.db').resolve()}")
    rng = random.Random(0)
    now = utcnow()
    with ws.session() as s:
        src = get_or_create_source(s, key="bench", kind="video", uri="bench.mp4", name="bench.mp4")
        bot = add_user(s, "bot", "secret-password").id
        for start in range(0, n, CHUNK):
            rows = [
                dict(source_id=src.id, origin=f"f{i:07d}", frame_index=i, sha256=f"{i:064x}",
                     path=f"00/{i}.png", width=40, height=40, track_id=i // 5, created_at=now,
                     status="labeled" if rng.random() < labeled_share else "unlabeled",
                     priority=rng.random(), votes_needed=1)
                for i in range(start, min(n, start + CHUNK))
            ]
            s.execute(insert(Crop), rows)
        labeled = [cid for (cid,) in s.query(Crop.id).filter(Crop.status == "labeled")]
        for start in range(0, len(labeled), CHUNK):
            s.execute(insert(Label), [dict(crop_id=c, annotator_id=bot, value="mask", created_at=now)
                                      for c in labeled[start : start + CHUNK]])
    if not ws.db_url.startswith("sqlite"):
        # A bulk load outruns autovacuum: plan with statistics, as a live database would.
        with ws.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    return ws


def annotator_worker(root: str, db_url: str, name: str, claims: int, batch: int, think_s: float,
                     start, results) -> None:
    ws = Workspace.open(Path(root), db_url=db_url)
    with ws.session() as s:
        me = add_user(s, name, "secret-password").id
    allowed = ws.config.label_values
    claim_t, submit_t, errors, labeled = [], [], [], []

    def one_claim(record: bool):
        t = time.perf_counter()
        with ws.session() as s:
            got = crop_queue.claim_batch(s, me, batch)
        if record:
            claim_t.append(time.perf_counter() - t)
        for c in got:
            time.sleep(think_s)
            t = time.perf_counter()
            with ws.session() as s:
                crop_queue.submit_label(s, me, c.crop_id, "mask", allowed=allowed, seconds=1.0)
            if record:
                submit_t.append(time.perf_counter() - t)
            labeled.append(c.crop_id)
        time.sleep(think_s)

    start.wait()
    try:
        one_claim(record=False)  # connects; not a latency an annotator sees twice
        for _ in range(claims):
            one_claim(record=True)
    except Exception as exc:  # a lost race or lock error is a failure of the queue
        errors.append(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
    ws.dispose()
    results.put((claim_t, submit_t, labeled, errors))


def run_annotators(ws: Workspace, n: int, tag: str, args) -> dict:
    ctx = mp.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=annotator_worker,
                         args=(str(ws.root), ws.db_url, f"{tag}-{i}", args.claims, args.batch,
                               args.think_ms / 1000, start, results)) for i in range(n)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    t = time.perf_counter()
    start.set()
    outs = [results.get(timeout=1800) for _ in procs]
    wall = time.perf_counter() - t
    for p in procs:
        p.join(60)
    claim = [x for o in outs for x in o[0]]
    submit = [x for o in outs for x in o[1]]
    labeled = [x for o in outs for x in o[2]]
    errors = [e for o in outs for e in o[3]]
    return {"claim_batch": summary(claim), "submit_label": summary(submit), "ops": len(claim) + len(submit),
            "wall_s": wall, "errors": errors, "double_labeled": len(labeled) - len(set(labeled))}


def summary(xs: list[float]) -> tuple[float, float, int]:
    if not xs:
        return float("nan"), float("nan"), 0
    xs = sorted(x * 1000 for x in xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))], len(xs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--crops", type=int, default=200_000)
    ap.add_argument("--annotators", default="1,8", help="comma-separated process counts")
    ap.add_argument("--claims", type=int, default=25, help="batches each annotator claims")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--think-ms", type=float, default=0.0, help="pause between operations")
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--pg-commit", default="on,off", help="synchronous_commit settings to run")
    args = ap.parse_args()
    counts = [int(x) for x in args.annotators.split(",")]
    backends = args.backends.split(",")
    load_before = os.getloadavg()
    results: dict = {}
    meta: dict = {}
    pg = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend in backends:
                url = None
                modes = [None]
                if backend == "postgresql":
                    from tests.pg import PgServer

                    pg = PgServer(durable=True).start()
                    url = pg.create_database("bench")
                    meta["postgresql"] = {"server_version": pg.admin().info.server_version,
                                          "start_s": round(pg.started_s, 2)}
                    modes = args.pg_commit.split(",")
                t = time.perf_counter()
                ws = build(Path(tmp) / backend, args.crops, url)
                meta.setdefault(backend, {})["build_s"] = round(time.perf_counter() - t, 1)
                ws.dispose()
                for mode in modes:
                    label = backend
                    if mode is not None:  # new connections (the annotator processes) take it
                        pg.admin().execute(f"ALTER DATABASE bench SET synchronous_commit = {mode}")
                        label = backend if mode == "on" else f"{backend}-async"
                    for n in counts:
                        results[(label, n)] = run_annotators(ws, n, f"{label}{n}", args)
                if pg is not None:
                    pg.stop()
                    pg = None
    finally:
        if pg is not None:
            pg.stop()
    load_after = os.getloadavg()

    print(f"crops {args.crops:,}, batch {args.batch}, {args.claims} claims per annotator, "
          f"think {args.think_ms:g} ms; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"({os.cpu_count()} CPUs)")
    print(f"{'backend':<16} {'annotators':>10} {'operation':<13} {'n':>6} {'median ms':>10} {'p95 ms':>8} {'ops/s':>7}")
    for (backend, n), r in results.items():
        for op in ("claim_batch", "submit_label"):
            med, p95, k = r[op]
            print(f"{backend:<16} {n:>10} {op:<13} {k:>6} {med:>10.2f} {p95:>8.2f} {r['ops'] / r['wall_s']:>7.0f}")
    problems = [f"{b}/{n}: {e}" for (b, n), r in results.items() for e in r["errors"]]
    problems += [f"{b}/{n}: {r['double_labeled']} crops labeled twice"
                 for (b, n), r in results.items() if r["double_labeled"]]
    for p in problems:
        print("problem:", p, file=sys.stderr)
    top = max(counts)
    at_top = [r for (b, n), r in results.items() if n == top]
    figures = {
        "bench": "queue_latency",
        "crops": args.crops,
        "batch": args.batch,
        "claims_per_annotator": args.claims,
        "think_ms": args.think_ms,
        "load_before": round(load_before[0], 2),
        "load_after": round(load_after[0], 2),
        "results": {
            f"{b}_{n}": {"claim_median_ms": round(r["claim_batch"][0], 2),
                         "claim_p95_ms": round(r["claim_batch"][1], 2),
                         "submit_median_ms": round(r["submit_label"][0], 2),
                         "submit_p95_ms": round(r["submit_label"][1], 2),
                         "ops_per_s": round(r["ops"] / r["wall_s"], 1)}
            for (b, n), r in results.items()},
        "backends": meta,
        "errors": problems,
        "target_p95_ms": 20,
        "meets_target": not problems and all(
            max(r["claim_batch"][1], r["submit_label"][1]) < 20 for r in at_top),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
