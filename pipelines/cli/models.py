"""Model versions and their use: score, export-model, and `annotator models ...`."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, command, given, open_ws, run_job
from pipelines.cli.render import emit, progress_bar

commands = typer.Typer()
models_app = typer.Typer(no_args_is_help=True, help="Model versions: list, promote, roll back, import.")


@command(commands, "score")
def score_cmd(
    model: Annotated[Optional[str], typer.Option("--model", help="Version; default: the active.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="auto (the default), torch or onnx.")] = None,
    quantize: Annotated[Optional[bool], typer.Option("--quantize", help="int8 ONNX graph; refused unless its validation balanced accuracy is within 0.005 of fp32.")] = None,
    use_cache: Annotated[Optional[bool], typer.Option("--cache/--no-cache", help="Read crops from the tensor cache (default) or decode every file.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Score unlabeled crops (resumable); the active model also sets queue priorities."""
    from pipelines import score

    ws = open_ws(project)
    with progress_bar("score", enabled=not as_json) as progress:
        rep = run_job(ws, "score", score.ScoreOptions(**given(
            model=model, batch_size=batch_size, backend=backend, quantize=quantize,
            cache=use_cache)), progress)
    q = rep.quantize_check
    emit(rep, as_json, f"{rep.model}: {rep.scored} crops scored ({rep.crops_per_s}/s, "
                       f"{rep.backend} {rep.provider}{', int8' if rep.quantized else ''}), "
                       f"{rep.priorities_set} priorities set, {rep.unreadable} unreadable, "
                       f"{rep.cache_hits} from the cache, {rep.cache_filled} added to it"
                       + (f"; int8 check on {q['dataset']} val: balanced accuracy "
                          f"{q['int8_balanced_accuracy']} vs fp32 {q['fp32_balanced_accuracy']}"
                          if q else ""))


@command(commands, "export-model")
def export_model_cmd(
    version: Annotated[str, typer.Argument(help="Model version (or 'active').")],
    out: Annotated[Path, typer.Argument(metavar="OUT")],
    fmt: Annotated[Optional[str], typer.Option("--format", help="onnx (the default) or torchscript.")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Replace an existing file (never one of the workspace's own).")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Export a version for edge use: float32 (N,45,45,3) RGB in [0,1] -> probabilities."""
    from pipelines import export_model

    ws = open_ws(project)
    rep = export_model.run(ws, export_model.ExportOptions(version=version, out=out,
                                                          **given(format=fmt, force=force)))
    emit(rep, as_json, f"exported {rep.version} as {rep.format} to {rep.out} ({rep.bytes} bytes)")


@command(models_app, "list")
def models_list_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Model versions, newest last; * marks the active one."""
    from pipelines.common import registry

    rows = registry.list_versions(open_ws(project))
    emit([dataclasses.asdict(r) for r in rows], as_json, "\n".join(
        f"{'*' if r.active else ' '} {r.name}\tdataset {r.dataset or '-'}\tval bal.acc "
        f"{r.val_balanced_accuracy}\t{r.source or ''}"
        f"{chr(9) + 'trained on erased data' if r.trained_on_erased else ''}" for r in rows)
        or "no models")


@command(models_app, "promote")
def models_promote_cmd(
    version: str,
    force: Annotated[Optional[bool], typer.Option("--force", help="Promote even if worse.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Make VERSION active if it is at least as good on the same validation set."""
    from pipelines import promote

    with progress_bar("promote", enabled=not as_json) as progress:
        rep = run_job(open_ws(project), "promote", promote.PromoteOptions(
            version=version, **given(force=force)), progress)
    emit(rep, as_json, f"{'promoted' if rep.promoted else 'not promoted'} {version}: {rep.reason}")
    if not rep.promoted and rep.reason != "already the active model":
        raise typer.Exit(1)


@command(models_app, "rollback")
def models_rollback_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Re-activate the version promoted before the active one."""
    from pipelines import promote

    with progress_bar("rollback", enabled=not as_json) as progress:
        rep = run_job(open_ws(project), "rollback", promote.RollbackOptions(), progress)
    emit(rep, as_json, f"rolled back from {rep.rolled_back_from} to {rep.to}; "
                       f"{rep.priorities_set} queue priorities follow {rep.to}")


@command(models_app, "import-keras")
def models_import_keras_cmd(
    path: Annotated[Path, typer.Argument(metavar="PATH.h5", help="Neuralet's OFMClassifier.h5.")],
    name: Annotated[Optional[str], typer.Option("--name")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Register Neuralet's released Keras weights (active if no model is yet)."""
    from pipelines import promote

    with progress_bar("import", enabled=not as_json) as progress:
        rep = promote.import_keras(open_ws(project), promote.KerasImportOptions(path=path,
                                                                                  name=name),
                                    progress)
    emit(rep, as_json, f"imported {rep.version}{' (active)' if rep.active else ''}")
