"""`annotator simulate`: replay the labeling loop on a labeled pool (strategies or policies)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from pipelines.cli.common import JsonOpt, command, given
from pipelines.cli.render import emit, out, progress_bar

commands = typer.Typer()


@command(commands, "simulate")
def simulate_cmd(
    pool: Annotated[Path, typer.Option("--pool", help="ImageFolder of labeled crops to sample from.")],
    eval_dir: Annotated[Path, typer.Option("--eval", help="ImageFolder to evaluate on (never sampled).")],
    dest: Annotated[Path, typer.Option("--out", help="Output folder (resumable).")],
    strategies: Annotated[Optional[str], typer.Option(help="Comma-separated strategies (default: random,uncertainty,diverse,hybrid).")] = None,
    seed_size: Annotated[Optional[int], typer.Option(help="Random labels to start with.")] = None,
    batch: Annotated[Optional[int], typer.Option(help="Labels revealed per round.")] = None,
    rounds: Optional[int] = None,
    repeats: Optional[int] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs per round (warm start).")] = None,
    min_steps: Annotated[Optional[int], typer.Option(help="At least this many optimizer steps per round.")] = None,
    full_epochs: Annotated[Optional[int], typer.Option(help="Epochs of the full-pool reference model.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Training batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate.")] = None,
    init: Annotated[Optional[str], typer.Option(help="none or a Keras PATH.h5 to start from.")] = None,
    jobs: Annotated[Optional[int], typer.Option(help="Runs in parallel processes.")] = None,
    random_share: Optional[float] = None,
    hybrid_pool: Optional[int] = None,
    policies: Annotated[Optional[str], typer.Option(
        "--policies", help="Labeling-cost policies instead of strategies: keys,auto.")] = None,
    max_error: Annotated[Optional[float], typer.Option(
        "--max-error", help="--policies auto: audited error bound per class.")] = None,
    slice_share: Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Strategy slices: share of each batch on the worst slices.")] = None,
    as_json: JsonOpt = False,
):
    """Replay the labeling loop on a labeled pool: how many labels each strategy needs."""
    from pipelines import simulate
    from pipelines.common import simulation

    opts = simulation.SimulateOptions(pool=pool, eval=eval_dir, out=dest, **given(
        strategies=None if strategies is None else
        tuple(s.strip() for s in strategies.split(",") if s.strip()),
        seed_size=seed_size, batch=batch, rounds=rounds, repeats=repeats, epochs=epochs,
        min_steps=min_steps, full_epochs=full_epochs, batch_size=batch_size, lr=lr, init=init,
        jobs=jobs, random_share=random_share, hybrid_pool=hybrid_pool, slice_share=slice_share))
    if policies is not None:  # the labeling-cost simulator (pipelines/simulate_policies.py)
        return _simulate_policies(opts, policies, max_error, as_json)
    with progress_bar("simulate", enabled=not as_json) as progress:
        report = simulate.run(opts, progress)
    if as_json:
        emit(report, True)
        return
    table = Table("strategy", "to 95%", "to 98%", "AUC", "vs random", "final", "to random", "ahead",
                  title=f"full-pool model: balanced accuracy {report.full_pool_balanced_accuracy:.3f}",
                  caption="to 95% / 98% / random: labels to reach that share of the full-pool model's, "
                          "or random's final, balanced accuracy; ahead: repeats whose AUC beats random's")
    table.columns[0].no_wrap = True
    for r in report.summary:
        table.add_row(r.strategy, str(r.labels_to_95 or "not reached"), str(r.labels_to_98 or "not reached"),
                      f"{r.auc:.3f}", "" if r.auc_vs_random is None else f"{r.auc_vs_random:+.3f}",
                      f"{r.final_balanced_accuracy:.3f}", str(r.labels_to_random_final or "-"),
                      "" if r.repeats_ahead_of_random is None else f"{r.repeats_ahead_of_random}/{r.repeats}")
    out.print(table)
    out.print(f"curves: {dest / 'curves.csv'}, plot: {dest / 'curves.png'}", markup=False)
    worst = [r for r in report.slices if r["band"] != "unknown"][:3 * len(opts.strategies)]
    if worst:  # per-slice curves: the worst bands of EVAL at the last round
        out.print("worst slices of EVAL (final balanced accuracy): " + "; ".join(
            f"{r['attribute']} {r['band']} (n={r['n']}) {r['strategy']} {r['balanced_accuracy']:.3f}"
            for r in worst) + f"; per round: {dest / 'slice_curves.csv'}", markup=False)


def _simulate_policies(opts, policies: str, max_error: float | None, as_json: bool) -> None:
    from pipelines import simulate_policies as sp

    names = tuple(p.strip() for p in policies.split(",") if p.strip())
    with progress_bar("simulate", enabled=not as_json) as progress:
        rep = sp.run(opts, names, sp.PolicyOptions(**given(max_error=max_error)), progress)
    if as_json:
        emit(rep, True)
        return
    table = Table("policy", "human decisions", "of pool", "labeled", "auto labels",
                  "auto error (95% CI)", "believed bound", "bal. acc.", "keys at same decisions",
                  title=f"labeling cost on {rep.pool_size} crops (max error {rep.max_error:g})")
    for s in rep.summary:
        ci = ("-" if s.auto_error is None else
              f"{s.auto_error:.4f} ({s.auto_error_interval[0]:.4f}-{s.auto_error_interval[1]:.4f})")
        table.add_row(s.policy, f"{s.human_decisions:.0f}", f"{s.human_share:.1%}",
                      f"{s.labeled_share:.1%}", f"{s.auto_labels:.0f}", ci,
                      "-" if s.believed_bound is None else f"{s.believed_bound:.4f}",
                      f"{s.balanced_accuracy:.4f}",
                      "-" if s.keys_at_same_decisions is None else f"{s.keys_at_same_decisions:.4f}")
    out.print(table)
    out.print(f"curves: {rep.curves}", markup=False, soft_wrap=True)
