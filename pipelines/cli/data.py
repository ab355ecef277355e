"""Crops and labels in and out: import-folder, export, import-labelstudio, import-predictions."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, cli_actor, command, given, open_ws, run_job
from pipelines.cli.render import emit, err, progress_bar

commands = typer.Typer()


@command(commands, "import-folder")
def import_folder_cmd(
    folder: Annotated[Path, typer.Argument(help="ImageFolder of crops.")],
    labeled: Annotated[Optional[bool], typer.Option("--labeled", help="Subfolder names are labels.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Import crops from a folder; re-running adds nothing; unreadable files are counted."""
    from pipelines import import_folder

    ws = open_ws(project)
    with progress_bar("import", enabled=not as_json) as progress:
        report = run_job(ws, "import", import_folder.ImportOptions(
            folder=folder, **given(labeled=labeled)), progress)
    human = (f"{report.added} crops added, {report.existing} already known, "
             f"{report.unreadable} unreadable files skipped; labels {report.labels}")
    emit(report, as_json, human)
    for line in report.unreadable_files if not as_json else ():
        err.print(f"  unreadable: {line}", markup=False)


@command(commands, "export")
def export_cmd(
    dest: Annotated[Path, typer.Argument(metavar="OUT", help="Folder, or a file for csv.")],
    fmt: Annotated[Optional[str], typer.Option("--format", help="imagefolder, csv, hf (Hugging Face "
                                     "datasets), coco or yolo (whole frames: admins only), "
                                     "labelstudio, fiftyone.")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Replace an existing CSV file, or add "
                                                        "to a non-empty folder.")] = None,
    with_provenance: Annotated[Optional[bool], typer.Option(
        "--with-provenance", help="Also write source names, frame numbers, times and boxes "
                                  "(off: where and when a person was stays here).")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Export crops with their current (majority) label, and a datasheet."""
    from pipelines import export

    ws = open_ws(project)
    opts = export.ExportOptions(out=dest, **given(format=fmt, force=force,
                                                  with_provenance=with_provenance))
    with progress_bar("export", enabled=not as_json) as progress:
        report = run_job(ws, "export", opts, progress)
    from annotator.data import trail  # privacy: who exported what (the audit trail)

    trail.record_in(ws, cli_actor(), trail.EXPORT, page="cli",
                    detail={"format": opts.format, "out": str(dest), "crops": report.crops,
                            "with_provenance": opts.with_provenance})
    emit(report, as_json, f"exported {report.crops} crops to {report.out}: {report.labels}"
         + (f"; {report.frames} frames, boxes {report.boxes}" if report.frames else "")
         + f"; datasheet {report.datasheet}" + (f"\nnote: {report.note}" if report.note else ""))


@command(commands, "import-labelstudio")
def import_labelstudio_cmd(
    file: Annotated[Path, typer.Argument(help="A Label Studio export (JSON or JSON-MIN) of "
                                              "tasks from `export --format labelstudio`.")],
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Add the labels made in Label Studio that are new here; report conflicts, overwrite none."""
    from pipelines import import_labelstudio as ils

    with progress_bar("import", enabled=not as_json) as progress:
        rep = ils.run(open_ws(project), ils.ImportLSOptions(file=file), progress)
    emit(rep, as_json, f"{rep.format}: {rep.added} labels added, {rep.unchanged} unchanged, "
         f"{len(rep.conflicts)} conflicts, skipped {rep.skipped or 0}")
    for c in rep.conflicts[:20] if not as_json else ():
        err.print(f"  conflict: crop {c['crop_id']} is {c['current']} here, {c['annotator']} "
                  f"says {c['proposed']}", markup=False)


@command(commands, "import-predictions")
def import_predictions_cmd(
    file: Annotated[Path, typer.Argument(help="CSV or JSON: crop_id or sha256, and a column per "
                                              "class or label [+ score].")],
    name: Annotated[str, typer.Option("--name", help="Name of the new model version.")],
    activate: Annotated[Optional[bool], typer.Option("--activate", help="Make it the active model "
                                           "(sampling, Review).")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Store another model's predictions as a model version without weights."""
    from pipelines import import_predictions as ip

    with progress_bar("import", enabled=not as_json) as progress:
        rep = ip.run(open_ws(project), ip.ImportPredictionsOptions(
            file=file, name=name, **given(activate=activate)), progress)
    emit(rep, as_json, f"{rep.name}: predictions for {rep.crops} crops ({rep.unknown} rows "
         f"unknown here){'; active' if rep.active else ''}")
