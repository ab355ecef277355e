"""Job: the labeling-cost simulator (``annotator simulate --policies keys,auto``).

Replays the loop on a labeled ImageFolder pool, the truth standing in for people, and counts
what a FaceMask100K-style set costs in human decisions under each policy:

* ``keys``: every labeled crop is a person's decision (the product's sampler picks each batch,
  its random share included; all of it trains the model).
* ``auto``: the same batches, but the random share is kept out of training as the audit: every
  round's model is scored on all of it, ``annotator.core.audit.choose_thresholds`` picks per class
  the lowest threshold whose 95% bound is <= ``max_error``, the auto labels the new model no
  longer backs are withdrawn and the pool's crops above the thresholds are labeled ``auto``
  (and train the next model, as ``build-dataset`` would use them).

Per round: human decisions, crops labeled by kind, the auto labels' error against the truth
with its 95% interval, the bound the product believed (the largest chosen class bound), and the
model's balanced accuracy on EVAL. ``OUT/policies/curves.png`` has human decisions on x.
Reuses the strategy simulator's data loading (tensor cache, near-duplicate groups), models and
evaluation (``pipelines.common.simulation``), so both replay the same product code.
"""
from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from annotator.core import audit
from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent
from pipelines.common import simulation

POLICIES = ("keys", "auto")
FIELDS = ["policy", "repeat", "round", "human_decisions", "labeled_human", "labeled_auto",
          "labeled_share", "auto_error", "auto_error_lo", "auto_error_hi", "believed_bound",
          "balanced_accuracy"]


@dataclass(kw_only=True)
class PolicyOptions:
    max_error: float = 0.01
    audit_share: float | None = None  # share of each batch drawn at random; None: random_share


@dataclass
class PolicySummary:
    policy: str
    repeats: int
    human_decisions: float  # mean over repeats, at the last round
    labeled_share: float  # of the pool
    human_share: float  # human decisions / pool
    auto_labels: float
    auto_error: float | None  # pooled over repeats, against the truth
    auto_error_interval: list[float] | None
    believed_bound: float | None
    balanced_accuracy: float
    # keys' balanced accuracy at auto's number of human decisions (interpolated), and the gap
    keys_at_same_decisions: float | None = None


@dataclass
class PolicyReport:
    out: str
    pool_size: int
    eval_size: int
    max_error: float
    summary: list[PolicySummary] = field(default_factory=list)
    curves: str = ""
    seconds: float = 0.0


def run_policy(data, opts: simulation.SimulateOptions, popts: PolicyOptions, policy: str,
               repeat: int, progress: ProgressFn | None = None) -> list[dict]:
    """One policy, one repeat: a row per round (see ``FIELDS``)."""
    import torch

    from annotator.core.sample import select_batch
    from models.inference import predict
    from models.training import fit

    torch.set_num_threads(1)
    torch.manual_seed(opts.seed + repeat)
    model = simulation.new_model(data.classes, opts.init)
    n = len(data.pool_y)
    share = opts.random_share if popts.audit_share is None else popts.audit_share
    rng = np.random.default_rng(opts.seed + 31 * repeat)
    human = list(simulation.seed_set(data, opts, repeat))  # trains the model
    audit_ids: list[int] = []  # auto: people's random share, never trained on
    auto: dict[int, int] = {}  # pool index -> auto label (class index)
    decisions = len(human)
    rows = []
    bound = None
    for rnd in range(opts.rounds + 1):
        if rnd > 0:
            taken = np.zeros(n, bool)
            taken[human + audit_ids + list(auto)] = True
            rest = np.flatnonzero(~taken)
            if rest.size == 0:
                break
            probs, emb = predict(model, data.pool_x[rest])
            if policy == "keys":
                picks = select_batch("hybrid", opts.batch, probs=probs, emb=emb,
                                     groups=data.pool_groups[rest], random_share=share,
                                     pool=opts.hybrid_pool, seed=opts.seed + 7919 * repeat + rnd)
                human += [int(rest[i]) for i, _ in picks]
                decisions += len(picks)
            else:
                k = min(rest.size, max(1, round(opts.batch * share)))
                audit_new = rng.choice(rest, size=k, replace=False)
                audit_ids += [int(i) for i in audit_new]
                keep = ~np.isin(rest, audit_new)
                picks = select_batch("hybrid", opts.batch - k, probs=probs[keep], emb=emb[keep],
                                     groups=data.pool_groups[rest[keep]], random_share=0.0,
                                     pool=opts.hybrid_pool, seed=opts.seed + 7919 * repeat + rnd)
                human += [int(rest[keep][i]) for i, _ in picks]
                decisions += k + len(picks)
        train = np.array(human + list(auto), np.int64)
        y = np.concatenate([data.pool_y[human], np.array(list(auto.values()), np.int64)])
        epochs = max(opts.epochs, math.ceil(opts.min_steps * opts.batch_size / train.size))
        fit(model, data.pool_x[train], y, None, None, epochs=epochs,
            batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed + repeat * 100 + rnd)
        if policy == "auto":
            auto, bound = _relabel(model, data, audit_ids, human, auto, popts.max_error)
        wrong = sum(int(data.pool_y[i] != v) for i, v in auto.items())
        lo, hi = audit.interval(wrong, len(auto)) if auto else (None, None)
        labeled_h = len(human) + len(audit_ids)
        rows.append({
            "policy": policy, "repeat": repeat, "round": rnd, "human_decisions": decisions,
            "labeled_human": labeled_h, "labeled_auto": len(auto),
            "labeled_share": round((labeled_h + len(auto)) / n, 4),
            "auto_error": round(wrong / len(auto), 5) if auto else None,
            "auto_error_lo": None if lo is None else round(lo, 5),
            "auto_error_hi": None if hi is None else round(hi, 5),
            "believed_bound": None if bound is None else round(bound, 5),
            **{"balanced_accuracy": simulation.evaluate(model, data)["balanced_accuracy"]}})
        if progress is not None:
            progress(1, None, f"{policy} #{repeat} round {rnd}: {decisions} decisions, "
                              f"{len(auto)} auto")
    return rows


def _relabel(model, data, audit_ids, human, auto, max_error):
    """The product's autolabel step on the pool: audit -> thresholds -> withdraw -> label."""
    from models.inference import predict

    if not audit_ids:
        return {}, None
    probs, _ = predict(model, data.pool_x[np.array(audit_ids)])
    pred, conf = probs.argmax(1), probs.max(1)
    chosen = audit.choose_thresholds(pred, conf, pred != data.pool_y[audit_ids],
                                     len(data.classes), max_error=max_error)
    cut = {t.cls: t.threshold for t in chosen if t.threshold is not None}
    if not cut:
        return {}, None  # refused: every auto label is withdrawn (none is backed)
    taken = np.zeros(len(data.pool_y), bool)
    taken[human + audit_ids] = True
    rest = np.flatnonzero(~taken)  # unlabeled and auto-labeled crops: the new model judges all
    probs, _ = predict(model, data.pool_x[rest])
    pred, conf = probs.argmax(1), probs.max(1)
    ok = np.array([c in cut and p >= cut[c] for c, p in zip(pred.tolist(), conf.tolist())], bool)
    bound = max(t.bound for t in chosen if t.threshold is not None)
    return {int(i): int(c) for i, c in zip(rest[ok], pred[ok])}, bound


def run(opts: simulation.SimulateOptions, policies: tuple[str, ...], popts: PolicyOptions,
        progress: ProgressFn = silent) -> PolicyReport:
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise InputError(f"unknown policy {', '.join(bad) or '(none)'}; expected "
                         f"{', '.join(POLICIES)}")
    if not 0 < popts.max_error < 0.5:
        raise InputError(f"--max-error must be between 0 and 0.5, got {popts.max_error}")
    if min(opts.seed_size, opts.batch, opts.repeats, opts.epochs) < 1 or opts.rounds < 0:
        raise InputError("seed size, batch, repeats and epochs must be >= 1; rounds >= 0")
    t0 = time.perf_counter()
    out = Path(opts.out) / "policies"
    out.mkdir(parents=True, exist_ok=True)
    data = simulation.load(opts)
    tasks = [(p, r) for r in range(opts.repeats) for p in policies]
    total, done = len(tasks) * (opts.rounds + 1), 0

    def tick(_d, _t, msg="", **_kw):
        nonlocal done
        done += 1
        progress(done, total, msg, stage="simulate")

    import torch

    threads = torch.get_num_threads()
    rows: list[dict] = []
    try:
        for p, r in tasks:
            rows += run_policy(data, opts, popts, p, r, tick)
    finally:
        torch.set_num_threads(threads)
    with open(out / "curves.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    report = PolicyReport(str(out), len(data.pool_y), len(data.eval_y), popts.max_error,
                          summarize(rows, len(data.pool_y)),
                          str(plot(rows, out / "curves.png")),
                          round(time.perf_counter() - t0, 1))
    (out / "summary.json").write_text(json.dumps(asdict(report), indent=2))
    return report


# --- summaries (pure) -------------------------------------------------------------------------


def summarize(rows: list[dict], pool_size: int) -> list[PolicySummary]:
    out = []
    last = {}
    for r in rows:
        last[(r["policy"], r["repeat"])] = r
    for policy in [p for p in POLICIES if any(k[0] == p for k in last)]:
        ends = [r for (p, _), r in last.items() if p == policy]
        wrong = sum(round((r["auto_error"] or 0) * r["labeled_auto"]) for r in ends)
        n_auto = sum(r["labeled_auto"] for r in ends)
        bounds = [r["believed_bound"] for r in ends if r["believed_bound"] is not None]
        decisions = float(np.mean([r["human_decisions"] for r in ends]))
        out.append(PolicySummary(
            policy, len(ends), round(decisions, 1),
            round(float(np.mean([r["labeled_share"] for r in ends])), 4),
            round(decisions / pool_size, 4), round(n_auto / len(ends), 1),
            round(wrong / n_auto, 5) if n_auto else None,
            [round(v, 5) for v in audit.interval(wrong, n_auto)] if n_auto else None,
            max(bounds) if bounds else None,
            round(float(np.mean([r["balanced_accuracy"] for r in ends])), 4)))
    keys = [r for r in rows if r["policy"] == "keys"]
    if keys:
        xs, ys = _mean_curve(keys)
        for s in out:
            s.keys_at_same_decisions = round(float(np.interp(s.human_decisions, xs, ys)), 4)
    return out


def _mean_curve(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    by: dict[int, list[float]] = {}
    for r in rows:
        by.setdefault(int(r["round"]), []).append((r["human_decisions"], r["balanced_accuracy"]))
    pts = sorted((np.mean([a for a, _ in v]), np.mean([b for _, b in v])) for v in by.values())
    return np.array([a for a, _ in pts]), np.array([b for _, b in pts])


def plot(rows: list[dict], path: Path) -> Path:
    """Balanced accuracy and crops labeled against human decisions, per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    for policy in sorted({r["policy"] for r in rows}):
        mine = [r for r in rows if r["policy"] == policy]
        xs, ys = _mean_curve(mine)
        line, = a1.plot(xs, ys, marker="o", ms=3, label=policy)
        by: dict[int, list] = {}
        for r in mine:
            by.setdefault(int(r["round"]), []).append(r)
        pts = sorted((np.mean([r["human_decisions"] for r in v]),
                      np.mean([r["labeled_share"] for r in v])) for v in by.values())
        a2.plot([p for p, _ in pts], [q for _, q in pts], marker="o", ms=3, label=policy,
                color=line.get_color())
    a1.set_xlabel("human decisions")
    a1.set_ylabel("balanced accuracy on EVAL")
    a2.set_xlabel("human decisions")
    a2.set_ylabel("share of the pool labeled")
    for ax in (a1, a2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Labeling cost: mean over repeats")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
