"""Training: build-dataset, train, evaluate, and retrain (all of them plus promote and score)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, command, given, open_ws, run_job
from pipelines.cli.render import emit, out, progress_bar

commands = typer.Typer()


@command(commands, "build-dataset")
def build_dataset_cmd(
    name: Annotated[Optional[str], typer.Option("--name", help="Default: d001, d002, ...")] = None,
    val_fraction: Annotated[Optional[float], typer.Option("--val-fraction", help="Share of new groups for validation.")] = None,
    group_by: Annotated[Optional[str], typer.Option("--group-by", help="track (the default) or source (whole videos).")] = None,
    labels: Annotated[Optional[str], typer.Option("--labels", help="all (the default: people's + audited machine labels) or human.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Freeze the current labels into datasets/NAME (grouped, stratified, sticky split)."""
    from pipelines import build_dataset

    ws = open_ws(project)
    with progress_bar("dataset", enabled=not as_json) as progress:
        rep = build_dataset.run(ws, build_dataset.BuildOptions(**given(
            name=name, val_fraction=val_fraction, group_by=group_by, labels=labels)), progress)
    emit(rep, as_json, f"dataset {rep.name}: {rep.crops} crops, {rep.counts} in {rep.groups} groups")


@command(commands, "train")
def train_cmd(
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Default: the latest.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr")] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="active (the default), none or a VERSION.")] = None,
    synthetic_masks: Annotated[Optional[Path], typer.Option("--synthetic-masks", help="Folder of RGBA mask PNGs to paste on no_mask crops.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Default: v001, v002, ...")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Train a new model version (registered, not promoted)."""
    from pipelines import train

    ws = open_ws(project)
    opts = train.TrainOptions(**given(dataset=dataset, epochs=epochs, batch_size=batch_size,
                                      lr=lr, init=init, synthetic_masks=synthetic_masks,
                                      name=name))
    with progress_bar("train", enabled=not as_json) as progress:
        rep = train.run(ws, opts, progress)
    emit(rep, as_json, f"trained {rep.version} on {rep.dataset}: best epoch {rep.best_epoch}, "
                       f"val balanced accuracy {rep.val.get('balanced_accuracy')}")


@command(commands, "evaluate")
def evaluate_cmd(
    model: Annotated[Optional[str], typer.Option("--model", help="Version; default: the active.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="ImageFolder; default: the dataset's val split.")] = None,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write confusion/ROC/reliability PNGs here.")] = None,
    by_slice: Annotated[Optional[bool], typer.Option("--slices", help="Also per slice (size, blur, light, pose, colour, source, hour), worst first, on the data and on the queue's random-share labels.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Accuracy, balanced accuracy, per-class P/R/F1, confusion, ROC AUC, ECE."""
    from pipelines import evaluate

    ws = open_ws(project)
    rep = evaluate.run(ws, evaluate.EvalOptions(**given(model=model, data=data, plots=plots,
                                                        slices=by_slice)))
    emit(rep, as_json, f"{rep['model']} on {rep['data']}: accuracy {rep['accuracy']}, balanced "
                       f"{rep['balanced_accuracy']}, ROC AUC {rep['roc_auc']}, ECE {rep['ece']}")
    if by_slice and not as_json:
        out.print("\n".join(evaluate.slice_lines(rep)), markup=False, soft_wrap=True)


@command(commands, "retrain")
def retrain_cmd(
    epochs: Annotated[Optional[int], typer.Option("--epochs")] = None,
    init: Annotated[Optional[str], typer.Option("--init", help="active (the default), none or a VERSION.")] = None,
    synthetic_masks: Annotated[Optional[Path], typer.Option("--synthetic-masks", help="Folder of RGBA mask PNGs to paste on no_mask crops.")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Promote even if worse.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """build-dataset + train + evaluate + promote-if-better + score, in one go."""
    from pipelines import retrain

    ws = open_ws(project)
    opts = retrain.RetrainOptions(**given(epochs=epochs, init=init, force=force,
                                          synthetic_masks=synthetic_masks))
    with progress_bar("retrain", enabled=not as_json) as progress:
        rep = run_job(ws, "retrain", opts, progress)
    emit(rep, as_json, retrain_summary(rep))


def retrain_summary(rep) -> str:
    """Three lines: what was trained, how it did on the frozen validation set, what changed."""
    d, t, p = rep.dataset, rep.train, rep.promote
    val = t.get("val") or {}

    def num(key):
        v = val.get(key)
        return "-" if v is None else f"{v:.3f}"

    # One scoring pass: the promotion's (rep.score is that same pass) or, without one, score's.
    scored = max((rep.score or {}).get("scored", 0), p.get("scored", 0))
    outcome = (f"promoted {t['version']}: {p['reason']}" if p["promoted"]
               else f"kept {rep.active}: {p['reason']}")
    return (f"dataset {d['name']} ({d['crops']:,} crops), model {t['version']}: {t['n_train']:,} "
            f"training crops, best epoch {t['best_epoch']}, {rep.seconds:.0f} s\n"
            f"validation ({t['n_val']:,} crops): balanced accuracy {num('balanced_accuracy')}, "
            f"accuracy {num('accuracy')}, ROC AUC {num('roc_auc')}, ECE {num('ece')}\n"
            f"{outcome}; {scored:,} crops scored (queue and labeled), active model {rep.active}")
