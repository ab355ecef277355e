"""The `annotator` command: thin commands that open the workspace, call one job and print.

A surface, like the pages and the background-job runner: it parses arguments into a job's
keyword-only options, calls the job with a rich progress bar, and prints a short text or
``--json``. Heavy libraries (torch, openpifpaf, streamlit) are imported inside command bodies so
that ``annotator --help`` stays fast.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from annotator.core.errors import AnnotatorError
from annotator.service.workspace import DEFAULT_PROJECT

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Turn CCTV footage into a labeled mask / no-mask dataset and a better classifier.",
)
user_app = typer.Typer(no_args_is_help=True, help="Manage annotator accounts.")
app.add_typer(user_app, name="user")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

ProjectOpt = Annotated[
    Path,
    typer.Option("--project", "-p", envvar="ANNOTATOR_PROJECT", help="Workspace folder.",
                 show_default=True),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def command(typer_app: typer.Typer, name: str | None = None, **kw):
    """Register a command whose AnnotatorErrors become one line on stderr and a non-zero exit."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except AnnotatorError as exc:
                print(f"error: {exc}", file=sys.stderr)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                print("interrupted: work done so far is saved; run the command again to resume",
                      file=sys.stderr)
                raise typer.Exit(130) from None

        return typer_app.command(name, **kw)(wrapper)

    return deco


def open_ws(project: Path):
    from annotator.service.workspace import Workspace

    return Workspace.open(project)


def emit(data, as_json: bool, human: str | None = None) -> None:
    """Print a report as JSON (machine) or as a short human text."""
    if dataclasses.is_dataclass(data):
        data = dataclasses.asdict(data)
    if as_json:
        print(json.dumps(data, default=str))
    elif human is not None:
        out.print(human, markup=False, soft_wrap=True)


@contextmanager
def progress_bar(description: str, *, enabled: bool = True):
    """A rich progress bar per stage on stderr, handed to jobs as their ``ProgressFn``.

    The bar appears on the first update, so a job that fails its input checks prints only
    its one-line error.
    """
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[msg]}"), TimeElapsedColumn(), console=err, disable=not enabled,
    )
    tasks: dict[str, int] = {}

    def update(done: int, total: Optional[int], message: str = "", *, stage: str | None = None,
               data: dict | None = None):
        key = stage or description
        if not tasks:
            bar.start()
        if key not in tasks:
            tasks[key] = bar.add_task(key, total=None, msg="")
        bar.update(tasks[key], completed=done, total=total, msg=message)

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


# --- workspace ------------------------------------------------------------------------------


@command(app, "init")
def init_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Create a workspace (database, crops/, datasets/, models/, config.toml)."""
    from annotator.service.workspace import Workspace

    existed = (project / "config.toml").exists()
    ws = Workspace.init(project)
    where = f" --project {ws.root.resolve()}"
    steps = [f"annotator user add NAME --role admin{where}",  # the first admin (asks a password)
             f"annotator extract VIDEO_OR_FOLDER{where}",  # crops to label (or import-folder)
             f"annotator app{where}"]  # then open http://127.0.0.1:8501 and sign in
    emit({"project": str(ws.root), "created": not existed, "next": steps}, as_json,
         f"{'workspace ready' if existed else 'created workspace'} at {ws.root}\nnext:\n"
         + "\n".join(f"  {c}" for c in steps))


@command(app, "import-folder")
def import_folder_cmd(
    folder: Annotated[Path, typer.Argument(help="ImageFolder of crops.")],
    labeled: Annotated[bool, typer.Option("--labeled", help="Subfolder names are labels.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Import crops from a folder; re-running adds nothing; unreadable files are counted."""
    from pipelines import import_folder

    ws = open_ws(project)
    with progress_bar("import", enabled=not as_json) as progress:
        report = import_folder.run(ws, import_folder.ImportOptions(folder=folder, labeled=labeled),
                                   progress)
    human = (f"{report.added} crops added, {report.existing} already known, "
             f"{report.unreadable} unreadable files skipped; labels {report.labels}")
    emit(report, as_json, human)
    for line in report.unreadable_files if not as_json else ():
        err.print(f"  unreadable: {line}", markup=False)


@command(app, "stats")
def stats_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Counts of sources, crops by status, labels, annotators, models and datasets."""
    from annotator.data import reports
    from annotator.media import cache

    ws = open_ws(project)
    with ws.read_session() as s:
        st = reports.stats(s, ws.config.labels)
    cst = cache.status(ws)
    st["cache"] = {k: cst[k] for k in ("entries", "bytes", "cached_crops", "missing", "hit_share")}
    if as_json:
        emit(st, True)
        return
    table = Table("what", "count", title=f"workspace {ws.root}")
    table.add_row("sources", str(st["sources"]))
    for k, v in st["crops"].items():
        table.add_row(f"crops {k}", str(v))
    for k, v in st["labels"].items():
        table.add_row(f"label {k}", str(v))
    for k in ("annotators", "leases", "models", "datasets"):
        table.add_row(k, str(st[k]))
    for k, v in st["labels_by_kind"].items():  # provenance: how each active label was decided
        if v:
            table.add_row(f"labels by {k}", str(v))
    per = st["human_decisions_per_labeled_crop"]
    table.add_row("human decisions", f"{st['human_decisions']} ({'-' if per is None else per} "
                                     "per labeled crop)")
    table.add_row("cached tensors", f"{cst['entries']} ({cst['bytes'] / 1e6:.1f} MB, "
                                    f"{cst['missing']} crops missing)")
    out.print(table)


@command(app, "autolabel")
def autolabel_cmd(
    max_error: Annotated[Optional[float], typer.Option(
        "--max-error", help="Audited 95% error bound per class (default: autolabel.max_error).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what it would label.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Label the crops the active model is sure of, where the audit bounds its error."""
    from pipelines import autolabel

    with progress_bar("autolabel", enabled=not as_json) as progress:
        rep = autolabel.run(open_ws(project), autolabel.AutolabelOptions(
            max_error=max_error, dry_run=dry_run), progress)
    emit(rep, as_json, autolabel.summary(rep))


@command(app, "export")
def export_cmd(
    dest: Annotated[Path, typer.Argument(metavar="OUT", help="Folder, or a file for csv.")],
    fmt: Annotated[str, typer.Option("--format", help="imagefolder, csv, hf (Hugging Face "
                                     "datasets), coco or yolo (whole frames: admins only), "
                                     "labelstudio, fiftyone.")] = "imagefolder",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing CSV file, or add "
                                                        "to a non-empty folder.")] = False,
    with_provenance: Annotated[bool, typer.Option(
        "--with-provenance", help="Also write source names, frame numbers, times and boxes "
                                  "(off: where and when a person was stays here).")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Export crops with their current (majority) label, and a datasheet."""
    from pipelines import export

    ws = open_ws(project)
    with progress_bar("export", enabled=not as_json) as progress:
        report = export.run(ws, export.ExportOptions(out=dest, format=fmt, force=force,
                                                     with_provenance=with_provenance), progress)
    from annotator.data import trail  # privacy: who exported what (the audit trail)

    trail.record_in(ws, _cli_actor(), trail.EXPORT, page="cli",
                    detail={"format": fmt, "out": str(dest), "crops": report.crops,
                            "with_provenance": with_provenance})
    emit(report, as_json, f"exported {report.crops} crops to {report.out}: {report.labels}"
         + (f"; {report.frames} frames, boxes {report.boxes}" if report.frames else "")
         + f"; datasheet {report.datasheet}" + (f"\nnote: {report.note}" if report.note else ""))


@command(app, "import-labelstudio")
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


@command(app, "import-predictions")
def import_predictions_cmd(
    file: Annotated[Path, typer.Argument(help="CSV or JSON: crop_id or sha256, and a column per "
                                              "class or label [+ score].")],
    name: Annotated[str, typer.Option("--name", help="Name of the new model version.")],
    activate: Annotated[bool, typer.Option("--activate", help="Make it the active model "
                                           "(sampling, Review).")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Store another model's predictions as a model version without weights."""
    from pipelines import import_predictions as ip

    with progress_bar("import", enabled=not as_json) as progress:
        rep = ip.run(open_ws(project), ip.ImportPredictionsOptions(
            file=file, name=name, activate=activate), progress)
    emit(rep, as_json, f"{rep.name}: predictions for {rep.crops} crops ({rep.unknown} rows "
         f"unknown here){'; active' if rep.active else ''}")


# --- users ----------------------------------------------------------------------------------


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


PasswordStdin = Annotated[bool, typer.Option("--password-stdin",
                                             help="Read the password from stdin.")]


@command(user_app, "add")
def user_add_cmd(
    name: str,
    role: Annotated[str, typer.Option("--role", help="admin or annotator.")] = "annotator",
    password_stdin: PasswordStdin = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Add an account (password from a prompt, or --password-stdin)."""
    from annotator.service import auth

    ws = open_ws(project)
    who = auth.create_account(ws, name, _read_password(password_stdin), role=role)
    emit({"name": who.name, "role": who.role, "id": who.id}, as_json, f"added {who.role} {who.name}")


@command(user_app, "list")
def user_list_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """List accounts with their role, whether they are disabled and their label counts."""
    from annotator.service import accounts

    rows = accounts.users(open_ws(project)).to_dict("records")
    emit(rows, as_json, "\n".join(
        f"{u['name']}\t{u['role']}{'  (disabled)' if u['disabled'] else ''}\t{u['labels']} labels"
        for u in rows) or "no users")


@command(user_app, "disable")
def user_disable_cmd(name: str, project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Stop an account from signing in; its open sessions end at once."""
    from annotator.service import accounts

    accounts.set_disabled(open_ws(project), name, True)
    emit({"name": name, "disabled": True}, as_json, f"disabled {name}")


@command(user_app, "enable")
def user_enable_cmd(name: str, project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Let a disabled account sign in again."""
    from annotator.service import accounts

    accounts.set_disabled(open_ws(project), name, False)
    emit({"name": name, "disabled": False}, as_json, f"enabled {name}")


@command(user_app, "set-role")
def user_set_role_cmd(
    name: str,
    role: Annotated[str, typer.Argument(help="admin or annotator.")],
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Change an account's role (a signed-in browser gets it on its next page action)."""
    from annotator.service import accounts

    accounts.set_role(open_ws(project), name, role, by=_cli_actor())
    emit({"name": name, "role": role}, as_json, f"{name} is now {role}")


@command(user_app, "set-password")
def user_set_password_cmd(
    name: str,
    password_stdin: PasswordStdin = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Reset an account's password; its open sessions end."""
    from annotator.service import accounts

    ws = open_ws(project)
    accounts.set_password(ws, name, _read_password(password_stdin))
    emit({"name": name, "password_changed": True}, as_json, f"new password set for {name}")


# --- extraction -------------------------------------------------------------------------------


@command(app, "extract")
def extract_cmd(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help="Video/image files, folders (recursive), rtsp:// or http(s):// streams.")],
    detector: Annotated[Optional[str], typer.Option("--detector", help="auto (OpenPifPaf when its checkpoint is here, else YuNet), yunet (faces, offline), mtcnn (faces, offline) or openpifpaf (keypoints). Default from config.toml (auto).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", metavar="NAME_OR_PATH", help="OpenPifPaf checkpoint name (downloaded once), file, or scratch:BASENET.")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frames per second of video to sample.")] = None,
    every: Annotated[Optional[int], typer.Option("--every", help="Sample every N-th frame instead of --fps.")] = None,
    min_size: Annotated[Optional[float], typer.Option("--min-size", metavar="PX", help="Drop heads smaller than this (head height, pixels).")] = None,
    margin: Annotated[Optional[float], typer.Option("--margin", help="Context around the head, share of its height.")] = None,
    per_track: Annotated[Optional[int], typer.Option("--per-track", metavar="K", help="Crops kept per tracked head.")] = None,
    min_sharpness: Annotated[Optional[float], typer.Option("--min-sharpness", help="Drop crops whose Laplacian variance is lower.")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Drop detections scoring below this (0..1; default: the detector's own, YuNet 0.5).")] = None,
    redo: Annotated[bool, typer.Option("--redo", help="Extract finished sources again with these settings: their unlabeled crops are replaced, labeled crops and labels kept.")] = False,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="Stop after this much video (streams: capture time).")] = None,
    long_edge: Annotated[Optional[int], typer.Option("--long-edge", help="OpenPifPaf input long edge in pixels (0: native).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Parallel processes for several sources (default: by cores).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="local (processes on this machine) or ray (video files cut into frame ranges, run as tasks on a Ray cluster; the crops are stored here).")] = "local",
    address: Annotated[Optional[str], typer.Option("--address", help="--engine ray: auto (the cluster `ray start` runs on this machine), HOST:PORT or ray://HOST:PORT; default: start Ray on this machine for this run.")] = None,
    range_seconds: Annotated[Optional[float], typer.Option("--range-seconds", help="--engine ray: seconds of video per task (default 300); a person in view across a range boundary becomes two tracks.")] = None,
    delete_source_after: Annotated[bool, typer.Option("--delete-source-after", help="Delete each video/image file once fully extracted (crops and labels stay; the frame context then says the frame is gone).")] = False,
    motion: Annotated[str, typer.Option("--motion", help="auto (on for videos and streams), on or off: run the detector only where something moved or a face was seen lately; still frames skip it.")] = "auto",
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Cut head crops out of CCTV footage into the labeling queue; re-running resumes or adds nothing."""
    from pipelines import extract

    ws = open_ws(project)
    opts = extract.ExtractOptions(
        sources=sources, detector=detector, checkpoint=checkpoint, fps=fps, every=every,
        min_size=min_size, margin=margin, per_track=per_track, min_sharpness=min_sharpness,
        min_score=min_score, redo=redo, max_seconds=max_seconds, long_edge=long_edge,
        workers=workers, engine=engine, address=address, range_seconds=range_seconds,
        delete_source_after=delete_source_after, motion=motion)
    with progress_bar("extract", enabled=not as_json) as progress:
        report = extract.run(ws, opts, progress)
    if report.sources:  # which detector ran and why (the bar named it while running)
        print(f"detector: {report.detector} ({report.detector_reason})", file=sys.stderr)
    emit(report, as_json, extract.summary(report))
    for line in report.errors if not as_json else ():
        err.print(f"error: {line}", markup=False, soft_wrap=True)
    if report.errors:
        raise typer.Exit(1)


@command(app, "detect")
def detect_cmd(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help="Video/image files, folders (recursive), rtsp:// or http(s):// streams (with --max-seconds).")],
    model: Annotated[Optional[str], typer.Option("--model", metavar="V", help="Model version; default: the active one.")] = None,
    detector: Annotated[str, typer.Option("--detector", help="auto, yunet, mtcnn or openpifpaf.")] = "auto",
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", metavar="NAME_OR_PATH", help="OpenPifPaf checkpoint.")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frames per second of video to run on (default from config.toml).")] = None,
    every: Annotated[Optional[int], typer.Option("--every", help="Every N-th frame instead of --fps.")] = None,
    min_score: Annotated[float, typer.Option("--min-score", help="A lower top class probability makes a frame's label unknown.")] = 0.75,
    vote: Annotated[str, typer.Option("--vote", help="debounce:K (a label changes after K identical frames) or majority.")] = "debounce:3",
    dest: Annotated[Optional[Path], typer.Option("--out", metavar="DIR", help="Output folder; default: <workspace>/detections/run-<time>.")] = None,
    write_video: Annotated[bool, typer.Option("--video/--no-video", help="Write the annotated video.")] = True,
    codec: Annotated[str, typer.Option("--codec", help="mp4v (fast; plays in VLC, mpv, QuickTime) or vp09 (plays in browsers, ~60x slower to encode).")] = "mp4v",
    to_queue: Annotated[bool, typer.Option("--to-queue", help="Add the crops of uncertain tracks to the labeling queue.")] = False,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="Stop after this much video (streams: capture time).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace the detect files of a non-empty --out.")] = False,
    blur_faces: Annotated[bool, typer.Option("--blur-faces", help="Blur every head in the annotated video (privacy).")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Run a model on footage: faces, one voted label per tracked person, an annotated video and CSVs."""
    from pipelines import detect

    ws = open_ws(project)
    opts = detect.DetectOptions(
        sources=sources, model=model, detector=detector, checkpoint=checkpoint, fps=fps,
        every=every, min_prob=min_score, vote=vote, out=None if dest is None else str(dest),
        video=write_video, codec=codec, to_queue=to_queue, max_seconds=max_seconds, force=force,
        blur_faces=blur_faces)
    with progress_bar("detect", enabled=not as_json) as progress:
        report = detect.run(ws, opts, progress)
    emit(report, as_json, detect.summary(report))
    for line in report.errors if not as_json else ():
        err.print(f"error: {line}", markup=False, soft_wrap=True)
    if report.errors:
        raise typer.Exit(1)

# --- training, models and scoring ---------------------------------------------------------------

models_app = typer.Typer(no_args_is_help=True, help="Model versions: list, promote, roll back, import.")
app.add_typer(models_app, name="models")


@command(app, "build-dataset")
def build_dataset_cmd(
    name: Annotated[Optional[str], typer.Option("--name", help="Default: d001, d002, ...")] = None,
    val_fraction: Annotated[Optional[float], typer.Option("--val-fraction", help="Share of new groups for validation.")] = None,
    group_by: Annotated[str, typer.Option("--group-by", help="track or source (whole videos).")] = "track",
    labels: Annotated[str, typer.Option("--labels", help="all (people's + audited machine labels) or human.")] = "all",
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Freeze the current labels into datasets/NAME (grouped, stratified, sticky split)."""
    from pipelines import build_dataset

    ws = open_ws(project)
    with progress_bar("dataset", enabled=not as_json) as progress:
        rep = build_dataset.run(ws, build_dataset.BuildOptions(
            name=name, val_fraction=val_fraction, group_by=group_by, labels=labels), progress)
    emit(rep, as_json, f"dataset {rep.name}: {rep.crops} crops, {rep.counts} in {rep.groups} groups")


@command(app, "train")
def train_cmd(
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Default: the latest.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr")] = None,
    init: Annotated[str, typer.Option("--init", help="active, none or a VERSION.")] = "active",
    synthetic_masks: Annotated[Optional[Path], typer.Option("--synthetic-masks", help="Folder of RGBA mask PNGs to paste on no_mask crops.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Default: v001, v002, ...")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Train a new model version (registered, not promoted)."""
    from pipelines import train

    ws = open_ws(project)
    opts = train.TrainOptions(dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr,
                              init=init, synthetic_masks=synthetic_masks, name=name)
    with progress_bar("train", enabled=not as_json) as progress:
        rep = train.run(ws, opts, progress)
    emit(rep, as_json, f"trained {rep.version} on {rep.dataset}: best epoch {rep.best_epoch}, "
                       f"val balanced accuracy {rep.val.get('balanced_accuracy')}")


@command(app, "evaluate")
def evaluate_cmd(
    model: Annotated[Optional[str], typer.Option("--model", help="Version; default: the active.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="ImageFolder; default: the dataset's val split.")] = None,
    plots: Annotated[Optional[Path], typer.Option("--plots", help="Write confusion/ROC/reliability PNGs here.")] = None,
    by_slice: Annotated[bool, typer.Option("--slices", help="Also per slice (size, blur, light, pose, colour, source, hour), worst first, on the data and on the queue's random-share labels.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Accuracy, balanced accuracy, per-class P/R/F1, confusion, ROC AUC, ECE."""
    from pipelines import evaluate

    ws = open_ws(project)
    rep = evaluate.run(ws, evaluate.EvalOptions(model=model, data=data, plots=plots, slices=by_slice))
    emit(rep, as_json, f"{rep['model']} on {rep['data']}: accuracy {rep['accuracy']}, balanced "
                       f"{rep['balanced_accuracy']}, ROC AUC {rep['roc_auc']}, ECE {rep['ece']}")
    if by_slice and not as_json:
        out.print("\n".join(evaluate.slice_lines(rep)), markup=False, soft_wrap=True)


@command(app, "slices")
def slices_cmd(
    backfill: Annotated[bool, typer.Option("--backfill", help="Compute the attributes of crops that have none (resumable).")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="At most this many crops.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Slice attributes of the crops: counts per band, or --backfill the missing ones."""
    ws = open_ws(project)
    if backfill:
        from pipelines import slices as slices_job

        with progress_bar("slices", enabled=not as_json) as progress:
            rep = slices_job.run(ws, slices_job.BackfillOptions(limit=limit), progress)
        emit(rep, as_json, f"{rep.filled} crops given slice attributes ({rep.unreadable} "
                           f"unreadable) in {rep.seconds} s; {rep.missing_after} still without")
        return
    import numpy as np

    from annotator.core import slices
    from annotator.data import slice_store

    with ws.read_session() as s:
        df = slice_store.frame(s)
        missing = slice_store.missing_count(s)
    bands = slices.bands(df.to_dict("records"))
    counts = {a: dict(sorted(zip(*np.unique(b.astype(str), return_counts=True)))) if len(b) else {}
              for a, b in bands.items()}
    counts = {a: {k: int(v) for k, v in c.items()} for a, c in counts.items()}
    emit({"crops": int(len(df)), "without_attributes": int(missing), "bands": counts}, as_json,
         "\n".join([f"{len(df)} crops, {missing} without attributes "
                    "(run `annotator slices --backfill`)" if missing else f"{len(df)} crops"]
                   + [f"  {a}: " + ", ".join(f"{k} {v}" for k, v in c.items())
                      for a, c in counts.items()]))


@command(app, "score")
def score_cmd(
    model: Annotated[Optional[str], typer.Option("--model", help="Version; default: the active.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 256,
    backend: Annotated[str, typer.Option("--backend", help="auto, torch or onnx.")] = "auto",
    quantize: Annotated[bool, typer.Option("--quantize", help="int8 ONNX graph; refused unless its validation balanced accuracy is within 0.005 of fp32.")] = False,
    use_cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Read crops from the tensor cache (default) or decode every file.")] = True,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Score unlabeled crops (resumable); the active model also sets queue priorities."""
    from pipelines import score

    ws = open_ws(project)
    with progress_bar("score", enabled=not as_json) as progress:
        rep = score.run(ws, score.ScoreOptions(model=model, batch_size=batch_size, backend=backend,
                                               quantize=quantize, cache=use_cache), progress)
    q = rep.quantize_check
    emit(rep, as_json, f"{rep.model}: {rep.scored} crops scored ({rep.crops_per_s}/s, "
                       f"{rep.backend} {rep.provider}{', int8' if rep.quantized else ''}), "
                       f"{rep.priorities_set} priorities set, {rep.unreadable} unreadable, "
                       f"{rep.cache_hits} from the cache, {rep.cache_filled} added to it"
                       + (f"; int8 check on {q['dataset']} val: balanced accuracy "
                          f"{q['int8_balanced_accuracy']} vs fp32 {q['fp32_balanced_accuracy']}"
                          if q else ""))


# --- tensor cache ---------------------------------------------------------------------------

cache_app = typer.Typer(no_args_is_help=True, help="The tensor cache: crops decoded once at the model's input size.")
app.add_typer(cache_app, name="cache")


@command(cache_app, "status")
def cache_status_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Entries, bytes, and how many of the workspace's crops are cached."""
    from annotator.media import cache

    ws = open_ws(project)
    st = cache.status(ws)
    share = "n/a" if st["hit_share"] is None else f"{st['hit_share']:.1%}"
    emit(st, as_json, f"{st['entries']} tensors ({st['bytes'] / 1e6:.1f} MB) in {st['path']}: "
                      f"{st['cached_crops']} of {st['crops']} crop images cached ({share}), "
                      f"{st['missing']} missing, {st['unused_entries']} unused, "
                      f"{st['dead_records']} dead records ({st['dead_bytes'] / 1e6:.1f} MB)")


@command(cache_app, "rebuild")
def cache_rebuild_cmd(
    fill: Annotated[bool, typer.Option("--fill/--no-fill", help="Also decode and add every crop that is missing.")] = True,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Compact the cache to the crops the database has (dropping forgotten, damaged and
    unused tensors), then fill what is missing."""
    from pipelines import rebuild_cache

    ws = open_ws(project)
    with progress_bar("cache", enabled=not as_json) as progress:
        rep = rebuild_cache.rebuild(ws, rebuild_cache.RebuildOptions(fill=fill), progress)
    emit(rep, as_json, f"kept {rep.kept}, dropped {rep.dropped_unused} unused and "
                       f"{rep.dropped_damaged} damaged ({rep.reclaimed_bytes / 1e6:.1f} MB freed), "
                       f"filled {rep.filled} ({rep.crops_per_s}/s, {rep.unreadable} unreadable): "
                       f"{rep.entries} tensors, {rep.bytes / 1e6:.1f} MB")


@command(app, "export-model")
def export_model_cmd(
    version: Annotated[str, typer.Argument(help="Model version (or 'active').")],
    out: Annotated[Path, typer.Argument(metavar="OUT")],
    fmt: Annotated[str, typer.Option("--format", help="onnx or torchscript.")] = "onnx",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file (never one of the workspace's own).")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Export a version for edge use: float32 (N,45,45,3) RGB in [0,1] -> probabilities."""
    from pipelines import export_model

    ws = open_ws(project)
    rep = export_model.run(ws, export_model.ExportOptions(version=version, format=fmt, out=out,
                                                          force=force))
    emit(rep, as_json, f"exported {rep.version} as {rep.format} to {rep.out} ({rep.bytes} bytes)")


@command(app, "retrain")
def retrain_cmd(
    epochs: Annotated[Optional[int], typer.Option("--epochs")] = None,
    init: Annotated[str, typer.Option("--init", help="active, none or a VERSION.")] = "active",
    synthetic_masks: Annotated[Optional[Path], typer.Option("--synthetic-masks", help="Folder of RGBA mask PNGs to paste on no_mask crops.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if worse.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """build-dataset + train + evaluate + promote-if-better + score, in one go."""
    from pipelines import retrain

    ws = open_ws(project)
    opts = retrain.RetrainOptions(epochs=epochs, init=init, force=force,
                                  synthetic_masks=synthetic_masks)
    with progress_bar("retrain", enabled=not as_json) as progress:
        rep = retrain.run(ws, opts, progress)
    emit(rep, as_json, retrain_summary(rep))


def retrain_summary(rep) -> str:
    """Three lines: what was trained, how it did on the frozen validation set, what changed."""
    d, t, p = rep.dataset, rep.train, rep.promote
    val = t.get("val") or {}

    def num(key):
        v = val.get(key)
        return "-" if v is None else f"{v:.3f}"

    scored = (rep.score or {}).get("scored", 0) + p.get("scored", 0)
    outcome = (f"promoted {t['version']}: {p['reason']}" if p["promoted"]
               else f"kept {rep.active}: {p['reason']}")
    return (f"dataset {d['name']} ({d['crops']:,} crops), model {t['version']}: {t['n_train']:,} "
            f"training crops, best epoch {t['best_epoch']}, {rep.seconds:.0f} s\n"
            f"validation ({t['n_val']:,} crops): balanced accuracy {num('balanced_accuracy')}, "
            f"accuracy {num('accuracy')}, ROC AUC {num('roc_auc')}, ECE {num('ece')}\n"
            f"{outcome}; {scored:,} queue crops scored, active model {rep.active}")


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
    force: Annotated[bool, typer.Option("--force", help="Promote even if worse.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Make VERSION active if it is at least as good on the same validation set."""
    from pipelines import promote

    with progress_bar("promote", enabled=not as_json) as progress:
        rep = promote.promote(open_ws(project), promote.PromoteOptions(version=version,
                                                                         force=force), progress)
    emit(rep, as_json, f"{'promoted' if rep.promoted else 'not promoted'} {version}: {rep.reason}")
    if not rep.promoted and rep.reason != "already the active model":
        raise typer.Exit(1)


@command(models_app, "rollback")
def models_rollback_cmd(project: ProjectOpt = DEFAULT_PROJECT, as_json: JsonOpt = False):
    """Re-activate the version promoted before the active one."""
    from pipelines import promote

    with progress_bar("rollback", enabled=not as_json) as progress:
        rep = promote.rollback(open_ws(project), promote.RollbackOptions(), progress)
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


# --- labeling app ------------------------------------------------------------------------------


APP_SERVER_OPTIONS = (
    "--server.headless", "true", "--browser.gatherUsageStats", "false",
    "--client.toolbarMode", "minimal",
    "--server.fileWatcherType", "none",  # no polling of the source files
    # Streamlit runs a full gc.collect(2) after every rerun: ~150 ms of CPU per key press with
    # pandas and SQLAlchemy loaded. Python's own generational GC is enough.
    "--runner.postScriptGC", "false",
    # A traceback would show server paths and code to any browser: errors show a line only.
    "--client.showErrorDetails", "none",
)


def app_entry() -> Path:
    """The Streamlit entry script, found through the installed ``pages`` package."""
    import pages

    return Path(pages.__file__).resolve().parent / "app.py"


@command(app, "app")
def app_cmd(
    project: ProjectOpt = DEFAULT_PROJECT,
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 for the LAN.")] = "127.0.0.1",
):
    """Start the labeling app (Streamlit) for the team; stop it with Ctrl-C or SIGTERM."""
    import os
    import signal
    import subprocess

    from annotator.service import auth
    from annotator.core.config import check_options

    check_options(port=port)
    ws = open_ws(project)  # fails here, in one line, when there is no workspace
    # Through app_server: Streamlit's upload endpoint refuses sessions that are not signed in.
    cmd = [sys.executable, "-m", "annotator.service.app_server", "run", str(app_entry()),
           "--server.address", host,
           "--server.port", str(port), "--server.maxUploadSize",
           str(ws.config.limits.max_upload_mb), *APP_SERVER_OPTIONS]
    err.print(f"labeling app for {ws.root} at http://{host}:{port}", markup=False)
    if not auth.has_admin(ws):
        err.print("no admin yet: create one with `annotator user add NAME --role admin "
                  f"--project {ws.root.resolve()}`", markup=False)
    env = {**os.environ, "ANNOTATOR_PROJECT": str(ws.root.resolve()),
           # uvicorn believes X-Forwarded-For only from these ([auth] trusted_proxies; none)
           "FORWARDED_ALLOW_IPS": ",".join(ws.config.auth.trusted_proxies)}
    ws.dispose()
    server = subprocess.Popen(cmd, env=env, start_new_session=True)
    code = _serve_until_stopped(server)
    raise typer.Exit(0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code)


def _serve_until_stopped(server, grace_s: float = 10.0) -> int:
    """Wait for the Streamlit server (its own process group). SIGTERM, SIGINT or SIGHUP to
    this process go to the whole group; a server still alive ``grace_s`` later is killed, so no
    process and no bound port is left behind."""
    import os
    import signal
    import subprocess
    import time

    asked: list[float] = []

    def stop(signum, _frame):
        asked.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT,
                                                          signal.SIGHUP)}
    try:
        while True:
            try:
                return server.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if asked and time.monotonic() - asked[0] > grace_s:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(server.pid, signal.SIGKILL)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- simulation ---------------------------------------------------------------------------------


@command(app, "simulate")
def simulate_cmd(
    pool: Annotated[Path, typer.Option("--pool", help="ImageFolder of labeled crops to sample from.")],
    eval_dir: Annotated[Path, typer.Option("--eval", help="ImageFolder to evaluate on (never sampled).")],
    dest: Annotated[Path, typer.Option("--out", help="Output folder (resumable).")],
    strategies: Annotated[str, typer.Option(help="Comma-separated strategies.")] = "random,uncertainty,diverse,hybrid",
    seed_size: Annotated[int, typer.Option(help="Random labels to start with.")] = 100,
    batch: Annotated[int, typer.Option(help="Labels revealed per round.")] = 100,
    rounds: int = 15,
    repeats: int = 3,
    epochs: Annotated[int, typer.Option(help="Training epochs per round (warm start).")] = 5,
    min_steps: Annotated[int, typer.Option(help="At least this many optimizer steps per round.")] = 100,
    full_epochs: Annotated[int, typer.Option(help="Epochs of the full-pool reference model.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 16,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 2e-4,
    init: Annotated[str, typer.Option(help="none or a Keras PATH.h5 to start from.")] = "none",
    jobs: Annotated[int, typer.Option(help="Runs in parallel processes.")] = 1,
    random_share: float = 0.1,
    hybrid_pool: int = 1000,
    policies: Annotated[Optional[str], typer.Option(
        "--policies", help="Labeling-cost policies instead of strategies: keys,auto.")] = None,
    max_error: Annotated[float, typer.Option(
        "--max-error", help="--policies auto: audited error bound per class.")] = 0.01,
    slice_share: Annotated[float, typer.Option(min=0.0, max=1.0, help="Strategy slices: share of each batch on the worst slices.")] = 0.5,
    as_json: JsonOpt = False,
):
    """Replay the labeling loop on a labeled pool: how many labels each strategy needs."""
    from pipelines import simulate
    from pipelines.common import simulation

    opts = simulation.SimulateOptions(
        pool=pool, eval=eval_dir, out=dest,
        strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
        seed_size=seed_size, batch=batch, rounds=rounds, repeats=repeats, epochs=epochs,
        min_steps=min_steps, full_epochs=full_epochs, batch_size=batch_size, lr=lr, init=init,
        jobs=jobs, random_share=random_share, hybrid_pool=hybrid_pool, slice_share=slice_share)
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


# --- personal data: erasure, audit trail, retention (README "Personal data") -------------------


def _cli_actor() -> str:
    """Who the audit trail names for a CLI command: the operating-system user."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@command(app, "erase")
def erase_cmd(
    source: Annotated[Optional[str], typer.Option("--source", metavar="NAME|ID", help="A whole source: its crops, rows, files, uploads and detect rows.")] = None,
    track: Annotated[Optional[str], typer.Option("--track", metavar="SOURCE:TRACK", help="One tracked person of a source.")] = None,
    crop: Annotated[Optional[int], typer.Option("--crop", metavar="ID", help="One crop.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would go; change nothing.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Only complete erasures a killed run left half done.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Erase a source, a person (track) or a crop from every row and file of the workspace."""
    from annotator.core.errors import InputError
    from pipelines import erase

    if not resume and source is None and track is None and crop is None:
        raise InputError("give --source NAME|ID, --track SOURCE:TRACK, --crop ID or --resume")
    ws = open_ws(project)
    opts = erase.EraseOptions(source=source, track=track, crop=crop, dry_run=dry_run,
                              actor=_cli_actor())
    with progress_bar("erase", enabled=not as_json) as progress:
        rep = erase.run(ws, opts, progress)
    verb = "would erase" if rep.dry_run else "erased"
    emit(rep, as_json, (f"{verb} {rep.target}: {len(rep.crops)} crops, {rep.labels} labels, "
                        f"{rep.predictions} predictions, {len(rep.store_files)} crop files, "
                        f"{rep.cache_entries} cache entries, {len(rep.dataset_files)} dataset "
                        f"files in {', '.join(rep.datasets) or '-'}, {len(rep.detect_files)} detect files, "
                        f"{len(rep.uploads)} uploads; models marked: {', '.join(rep.models) or '-'}")
         + (f"\ncompleted interrupted erasures: {rep.resumed}" if rep.resumed else ""))


@command(app, "audit")
def audit_cmd(
    user: Annotated[Optional[str], typer.Option("--user", help="Only this account.")] = None,
    action: Annotated[Optional[str], typer.Option("--action", help="view, context, export, erase, role or retention.")] = None,
    crop: Annotated[Optional[int], typer.Option("--crop", metavar="ID")] = None,
    page: Annotated[Optional[str], typer.Option("--page", help="label, grid, review, browse, ...")] = None,
    since: Annotated[Optional[str], typer.Option("--since", metavar="YYYY-MM-DD[THH:MM]")] = None,
    until: Annotated[Optional[str], typer.Option("--until", metavar="YYYY-MM-DD[THH:MM]")] = None,
    limit: Annotated[int, typer.Option("--limit")] = 1000,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """The audit trail, newest first: who viewed which crop or frame, exported, erased, changed a role."""
    import datetime as _dt

    from annotator.data import trail
    from annotator.core.errors import InputError

    def when(v):
        try:
            return None if v is None else _dt.datetime.fromisoformat(v)
        except ValueError:
            raise InputError(f"not a date: {v!r} (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)") from None

    if action is not None and action not in trail.ACTIONS:
        raise InputError(f"--action must be one of {', '.join(trail.ACTIONS)}")
    if limit < 1:
        raise InputError("--limit must be >= 1")
    rows = trail.events(open_ws(project), actor=user, action=action, crop_id=crop, page=page,
                        since=when(since), until=when(until), limit=limit)
    emit(rows, as_json, "\n".join(f"{r['at']}  {r['actor']}  {r['action']}  {r['page'] or ''}  "
                                  f"{r['what'] or json.dumps(r['detail'] or {})}" for r in rows)
         or "no events")


@command(app, "retention")
def retention_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what is due; delete nothing.")] = False,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Apply [privacy] retention: old uploads, unlabeled crops and detect runs go."""
    from pipelines import retention

    ws = open_ws(project)
    with progress_bar("retention", enabled=not as_json) as progress:
        rep = retention.run(ws, retention.RetentionOptions(dry_run=dry_run), progress)
    emit(rep, as_json, retention.summary(rep))


def _simulate_policies(opts, policies: str, max_error: float, as_json: bool) -> None:
    from pipelines import simulate_policies as sp

    names = tuple(p.strip() for p in policies.split(",") if p.strip())
    with progress_bar("simulate", enabled=not as_json) as progress:
        rep = sp.run(opts, names, sp.PolicyOptions(max_error=max_error), progress)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()

