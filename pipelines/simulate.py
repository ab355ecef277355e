"""Job: replay the active-learning loop with a labeled folder as the oracle.

Each round scores the unlabeled pool with the current model, lets a strategy from
``annotator.core.sample`` pick a batch, reveals its labels, retrains (warm start) and evaluates on a
separate folder that is never sampled from. The same sampling, training and metric code as the
product runs here, so the curves say what the product would do on this data.

Resumable: every finished round of every (strategy, repeat) run is checkpointed under
``OUT/runs/``; a second call with the same OUT picks up where the first stopped. The pool and
EVAL pictures are decoded once into a tensor cache under ``OUT/cache/`` (keyed by each file's
sha256): worker processes and resumed runs read the memory-mapped tensors instead of decoding
the folders again, and training gathers its batches from there. Options, data loading, models
and evaluation are shared with ``pipelines.simulate_policies`` (``pipelines.common.simulation``).
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from annotator.core.config import check_options
from annotator.core.errors import InputError
from annotator.core.files import output_path
from annotator.core.progress import ProgressFn, silent
from annotator.core.sample import STRATEGIES
from annotator.service.workspace import workspace_above
from pipelines.common import simulation

CURVE_FIELDS = ["strategy", "repeat", "round", "labels", "balanced_accuracy", "accuracy",
                "no_mask_recall"]


@dataclass
class StrategySummary:
    strategy: str
    labels_to_95: int | None  # labels needed for 95% of the full-pool model's balanced accuracy
    labels_to_98: int | None
    auc: float  # mean balanced accuracy over the labeling budget (area under the curve)
    auc_vs_random: float | None
    final_balanced_accuracy: float
    # Labels needed to reach random's balanced accuracy at the full budget: the labels saved,
    # read without the full-pool model (which can sit below a well-chosen subset).
    labels_to_random_final: int | None = None
    # Repeats in which this strategy's AUC beats random's AUC of the same repeat (same seed set,
    # same starting weights): how steady the gain is, not just its mean.
    repeats_ahead_of_random: int | None = None
    repeats: int = 0


@dataclass
class SimulateReport:
    out: str
    classes: list[str]
    pool_size: int
    eval_size: int
    full_pool_balanced_accuracy: float
    summary: list[StrategySummary] = field(default_factory=list)
    seconds: float = 0.0
    # Per strategy and slice band of EVAL: mean balanced accuracy over repeats at the last round
    # (annotator.core.slices bands of the files); per-round values in slice_curves.csv.
    slices: list[dict] = field(default_factory=list)


# --- one run ----------------------------------------------------------------------------------


def run_one(data: simulation.Data, opts: simulation.SimulateOptions, strategy: str, repeat: int,
            progress: ProgressFn | None = None) -> list[dict]:
    """Play one strategy for ``opts.rounds`` rounds; resume from its checkpoint if any."""
    import torch

    from annotator.core.sample import select_batch
    from models.inference import predict
    from models.training import fit

    ckpt = Path(opts.out) / "runs" / f"{strategy}-{repeat}.pt"
    # One thread per run: float sums depend on the thread count, and strategies compared in one
    # repeat must train identically until their picks differ, whatever --jobs was.
    torch.set_num_threads(1)
    torch.manual_seed(opts.seed + repeat)  # every strategy of a repeat starts from the same weights
    model = simulation.new_model(data.classes, opts.init)
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        labeled, rows, start = state["labeled"], state["rows"], state["round"] + 1
        model.load_state_dict(state["model"])
        seen = state.get("seen", {})
    else:
        labeled, rows, start = simulation.seed_set(data, opts, repeat), [], 0
        seen = {}  # row -> probs of the model that picked it, before its label was revealed
    for rnd in range(start, opts.rounds + 1):
        if rnd > 0:  # pick a batch with the model of the previous round
            rest = np.setdiff1d(np.arange(len(data.pool_y)), labeled)
            if rest.size == 0:
                break
            probs, emb = predict(model, data.pool_x[rest])
            targeted = {} if strategy != "slices" else _slice_targeting(data, opts, rest, probs, seen)
            picks = select_batch(strategy, opts.batch, probs=probs, emb=emb,
                                 groups=data.pool_groups[rest], random_share=opts.random_share,
                                 pool=opts.hybrid_pool, seed=opts.seed + 7919 * repeat + rnd,
                                 **targeted)
            seen.update({int(rest[i]): probs[i] for i, _ in picks})
            labeled = np.sort(np.concatenate([labeled, rest[[i for i, _ in picks]]]))
        epochs = max(opts.epochs, math.ceil(opts.min_steps * opts.batch_size / labeled.size))
        fit(model, data.pool_x[labeled], data.pool_y[labeled], None, None, epochs=epochs,
            batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed + repeat * 100 + rnd)
        rows.append({"strategy": strategy, "repeat": repeat, "round": rnd,
                     "labels": int(labeled.size), **simulation.evaluate(model, data),
                     "slices": _evaluate_slices(model, data)})
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".part")
        torch.save({"labeled": labeled, "rows": rows, "round": rnd,
                    "model": model.state_dict(), "seen": seen}, tmp)
        os.replace(tmp, ckpt)  # atomic: a kill never leaves a half-written checkpoint
        if progress is not None:
            progress(1, None, f"{strategy} #{repeat} round {rnd}")
    return rows


def _slice_targeting(data: simulation.Data, opts: simulation.SimulateOptions, rest: np.ndarray,
                     probs, seen: dict) -> dict:
    """``select_batch`` arguments of the ``slices`` strategy: bands measured on the labels the
    model had not seen when it scored them (as the product measures the random share), else its
    uncertainty on the unlabeled rows."""
    from annotator.core import slices

    rows = np.array(sorted(seen), dtype=np.int64)
    measured = []
    if rows.size:
        b = {a: v[rows] for a, v in data.pool_bands.items()}
        measured = slices.slice_report(b, data.pool_y[rows], np.array([seen[int(r)] for r in rows]),
                                       n_classes=len(data.classes))
    cand = {a: v[rest] for a, v in data.pool_bands.items()}
    scores = slices.band_scores(measured, slices.band_uncertainty(cand, probs),
                                min_n=opts.slice_min_n)
    return {"slice_score": slices.row_scores(cand, scores), "slice_share": opts.slice_share}


def _evaluate_slices(model, data: simulation.Data) -> list[dict]:
    """Per band of EVAL: ``attribute``, ``band``, ``n``, ``balanced_accuracy``."""
    from annotator.core import slices
    from models.inference import predict

    if not data.eval_bands:
        return []
    probs, _ = predict(model, data.eval_x)
    rep = slices.slice_report(data.eval_bands, data.eval_y, probs, n_classes=len(data.classes))
    return [{k: r[k] for k in ("attribute", "band", "n", "balanced_accuracy", "error")} for r in rep]


def full_pool_score(data: simulation.Data, opts: simulation.SimulateOptions,
                    progress: ProgressFn | None = None) -> float:
    """Balanced accuracy of a model trained on the whole pool: the ceiling the curves aim at."""
    from models.training import fit

    cache = Path(opts.out) / "runs" / "full_pool.json"
    if cache.exists():
        return json.loads(cache.read_text())["balanced_accuracy"]
    model = simulation.new_model(data.classes, opts.init)
    fit(model, data.pool_x, data.pool_y, None, None, epochs=opts.full_epochs,
        batch_size=opts.batch_size, lr=opts.lr, seed=opts.seed, progress=progress)
    score = simulation.evaluate(model, data)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(score))
    return score["balanced_accuracy"]


def _worker(opts: simulation.SimulateOptions, strategy: str, repeat: int) -> list[dict]:
    return run_one(simulation.load(opts), opts, strategy, repeat)


# --- the job ----------------------------------------------------------------------------------


def run(opts: simulation.SimulateOptions, progress: ProgressFn = silent) -> SimulateReport:
    bad = [s for s in opts.strategies if s not in STRATEGIES]
    if bad or not opts.strategies:
        raise InputError(f"unknown strategy {', '.join(bad) or '(none)'}; expected {', '.join(STRATEGIES)}")
    if min(opts.seed_size, opts.batch, opts.repeats, opts.epochs, opts.jobs) < 1 or opts.rounds < 0:
        raise InputError("seed size, batch, repeats, epochs and jobs must be >= 1; rounds >= 0")
    check_options(batch_size=opts.batch_size, lr=opts.lr, random_share=opts.random_share,
                  hybrid_pool=opts.hybrid_pool, min_steps=opts.min_steps,
                  full_epochs=opts.full_epochs, seed_size=opts.seed_size, batch=opts.batch,
                  repeats=opts.repeats, epochs=opts.epochs, jobs=opts.jobs)
    t0 = time.perf_counter()
    out = Path(opts.out)
    if workspace_above(out) is not None:
        raise InputError(f"--out {out} is inside the workspace {workspace_above(out)}; "
                         "write the simulation somewhere else")
    output_path(out, owned=None, force=True, folder=True)  # resumes into its own folder
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    _check_resume(out, opts)
    data = simulation.load(opts)
    tasks = [(s, r) for r in range(opts.repeats) for s in opts.strategies]
    total = len(tasks) * (opts.rounds + 1)
    done = 0

    def tick(_d, _t, msg="", **_kw):
        nonlocal done
        done += 1
        progress(done, total, msg, stage="simulate")

    full = full_pool_score(data, opts, lambda d, t, msg="", **_kw: progress(
        0, total, f"full-pool reference model: epoch {d}/{t} {msg}", stage="simulate"))
    rows: list[dict] = []
    if opts.jobs == 1:
        import torch

        threads = torch.get_num_threads()
        try:
            for s, r in tasks:
                rows += run_one(data, opts, s, r, tick)
        finally:
            torch.set_num_threads(threads)  # run_one trains on one thread; give the caller its own back
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(opts.jobs, mp_context=mp.get_context("spawn")) as ex:
            futures = [ex.submit(_worker, opts, s, r) for s, r in tasks]
            for fut in as_completed(futures):
                got = fut.result()
                rows += got
                done += len(got)
                progress(done, total, f"{got[-1]['strategy']} #{got[-1]['repeat']} finished",
                         stage="simulate")
    rows.sort(key=lambda r: (r["strategy"], r["repeat"], r["round"]))
    _write_curves(out / "curves.csv", rows)
    slice_rows = _write_slice_curves(out / "slice_curves.csv", rows)
    summary = summarize(rows, full)
    plot_curves(rows, full, out / "curves.png")
    report = SimulateReport(str(out), data.classes, len(data.pool_y), len(data.eval_y), full,
                            summary, round(time.perf_counter() - t0, 1),
                            slices=summarize_slices(slice_rows))
    if slice_rows:
        plot_slice_curves(slice_rows, report.slices, out / "slice_curves.png")
    (out / "summary.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def _check_resume(out: Path, opts: simulation.SimulateOptions) -> None:
    """Resuming is only meaningful with the same settings: refuse a mismatch in one line."""
    keep = {k: str(v) for k, v in asdict(opts).items() if k not in ("jobs", "strategies", "repeats", "out")}
    path = out / "options.json"
    if path.exists():
        before = json.loads(path.read_text())
        changed = sorted(k for k in keep if before.get(k) != keep[k])
        if changed:
            raise InputError(f"{out} holds a simulation with other settings ({', '.join(changed)}); "
                             "use another --out")
    path.write_text(json.dumps(keep, indent=1))


def _write_curves(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CURVE_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


SLICE_FIELDS = ["strategy", "repeat", "round", "labels", "attribute", "band", "n",
                "balanced_accuracy", "error"]


def _write_slice_curves(path: Path, rows: list[dict]) -> list[dict]:
    flat = [{**{k: r[k] for k in ("strategy", "repeat", "round", "labels")}, **b}
            for r in rows for b in r.get("slices") or ()]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=SLICE_FIELDS)
        w.writeheader()
        w.writerows(flat)
    return flat


# --- summaries (pure) -------------------------------------------------------------------------


def mean_curve(rows: list[dict], strategy: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels (R,) and balanced accuracy averaged over repeats (R,) for one strategy."""
    by_labels: dict[int, list[float]] = {}
    for r in rows:
        if r["strategy"] == strategy:
            by_labels.setdefault(int(r["labels"]), []).append(float(r["balanced_accuracy"]))
    labels = np.array(sorted(by_labels))
    return labels, np.array([np.mean(by_labels[n]) for n in labels])


def labels_to_reach(labels: np.ndarray, score: np.ndarray, target: float) -> int | None:
    hit = np.flatnonzero(score >= target)
    return int(labels[hit[0]]) if hit.size else None


def curve_auc(labels: np.ndarray, score: np.ndarray) -> float:
    """Mean balanced accuracy over the labeling budget (trapezoid area / budget)."""
    if labels.size < 2:
        return float(score[0]) if score.size else 0.0
    area = float(np.sum((score[1:] + score[:-1]) / 2 * np.diff(labels)))
    return area / float(labels[-1] - labels[0])


def repeat_aucs(rows: list[dict], strategy: str) -> dict[int, float]:
    """AUC of each repeat's curve for one strategy."""
    runs: dict[int, list[tuple[int, float]]] = {}
    for r in rows:
        if r["strategy"] == strategy:
            runs.setdefault(int(r["repeat"]), []).append((int(r["labels"]), float(r["balanced_accuracy"])))
    return {k: curve_auc(*map(np.array, zip(*sorted(v)))) for k, v in runs.items()}


def summarize(rows: list[dict], full_pool: float) -> list[StrategySummary]:
    strategies = sorted({r["strategy"] for r in rows}, key=lambda s: (s != "random", s))
    out, random_auc, random_final = [], None, None
    random_runs = repeat_aucs(rows, "random")
    for s in strategies:
        labels, score = mean_curve(rows, s)
        auc = curve_auc(labels, score)
        runs = repeat_aucs(rows, s)
        if s == "random":
            random_auc, random_final = auc, float(score[-1])
        ahead = None if s == "random" or not random_runs else sum(
            runs[k] > random_runs[k] for k in runs if k in random_runs)
        out.append(StrategySummary(
            s, labels_to_reach(labels, score, 0.95 * full_pool),
            labels_to_reach(labels, score, 0.98 * full_pool), round(auc, 4),
            None if random_auc is None or s == "random" else round(auc - random_auc, 4),
            round(float(score[-1]), 4),
            None if random_final is None else labels_to_reach(labels, score, random_final),
            ahead, len(runs),
        ))
    return out


def plot_curves(rows: list[dict], full_pool: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for s in sorted({r["strategy"] for r in rows}):
        runs: dict[int, dict[int, float]] = {}
        for r in rows:
            if r["strategy"] == s:
                runs.setdefault(r["repeat"], {})[int(r["labels"])] = float(r["balanced_accuracy"])
        labels = sorted(set.intersection(*(set(v) for v in runs.values())))
        mat = np.array([[runs[k][n] for n in labels] for k in runs])
        line, = ax.plot(labels, mat.mean(0), marker="o", ms=3, label=s)
        ax.fill_between(labels, mat.min(0), mat.max(0), color=line.get_color(), alpha=0.15)
    for share, style in ((0.95, ":"), (0.98, "--")):
        ax.axhline(share * full_pool, color="grey", ls=style, lw=1,
                   label=f"{share:.0%} of full-pool model ({full_pool:.3f})")
    ax.set_xlabel("labels")
    ax.set_ylabel("balanced accuracy on EVAL")
    ax.set_title("Active learning: mean and spread over repeats")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def summarize_slices(slice_rows: list[dict]) -> list[dict]:
    """Per strategy and band: mean balanced accuracy over repeats at each repeat's last round,
    worst band (lowest mean over strategies) first."""
    last = {}
    for r in slice_rows:
        key = (r["strategy"], r["repeat"])
        last[key] = max(last.get(key, -1), int(r["round"]))
    acc: dict[tuple, list[float]] = {}
    size: dict[tuple, int] = {}
    for r in slice_rows:
        if int(r["round"]) == last[(r["strategy"], r["repeat"])]:
            key = (r["attribute"], r["band"], r["strategy"])
            acc.setdefault(key, []).append(float(r["balanced_accuracy"]))
            size[key[:2]] = int(r["n"])
    out = [{"attribute": a, "band": b, "n": size[(a, b)], "strategy": s,
            "balanced_accuracy": round(float(np.mean(v)), 4)} for (a, b, s), v in acc.items()]
    band_mean = {}
    for r in out:
        band_mean.setdefault((r["attribute"], r["band"]), []).append(r["balanced_accuracy"])
    out.sort(key=lambda r: (np.mean(band_mean[(r["attribute"], r["band"])]), r["attribute"],
                            r["band"], r["strategy"]))
    return out


def plot_slice_curves(slice_rows: list[dict], summary: list[dict], path: Path, *,
                      panels: int = 4) -> Path:
    """Balanced accuracy vs labels on the worst ``panels`` bands, one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst = []
    for r in summary:
        if (r["attribute"], r["band"]) not in worst and r["band"] != "unknown":
            worst.append((r["attribute"], r["band"]))
    worst = worst[:panels]
    fig, axes = plt.subplots(1, max(1, len(worst)), figsize=(4 * max(1, len(worst)), 3.5),
                             dpi=110, squeeze=False)
    for ax, (a, b) in zip(axes[0], worst):
        for s in sorted({r["strategy"] for r in slice_rows}):
            pts: dict[int, list[float]] = {}
            for r in slice_rows:
                if r["strategy"] == s and r["attribute"] == a and r["band"] == b:
                    pts.setdefault(int(r["labels"]), []).append(float(r["balanced_accuracy"]))
            xs = sorted(pts)
            ax.plot(xs, [np.mean(pts[x]) for x in xs], marker="o", ms=3, label=s)
        n = next(r["n"] for r in summary if (r["attribute"], r["band"]) == (a, b))
        ax.set_title(f"{a}: {b} (n={n})", fontsize=9)
        ax.set_xlabel("labels")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("balanced accuracy on the slice")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
