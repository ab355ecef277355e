"""Job: export the current labels for use outside the tool, with a datasheet.

Formats: ``imagefolder`` and ``csv`` (crops), ``hf`` (a Hugging Face ``datasets`` Parquet folder),
``labelstudio`` (tasks JSON), ``fiftyone`` (FiftyOne's image classification layout), and
``coco`` / ``yolo`` (the whole frames that hold labeled heads, every head box in them). The
writers of the formats that need a library are in :mod:`pipelines.export.formats`, the
datasheet beside every export in :mod:`pipelines.export.datasheet`.

Provenance is off by default: crops are named by their content hash, and no source name, path,
frame number, time or box leaves the workspace unless ``with_provenance`` asks for it (a crop of
CCTV footage says where and when a person was). ``coco``/``yolo`` are frames by nature: they show
every face in a frame and the head boxes; the admin page offers them to admins only.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from annotator.data import db, reports
from annotator.core.config import SKIP
from annotator.core.errors import InputError
from annotator.core.files import atomic_file, atomic_folder, output_path
from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace
from pipelines.common.datasets import previous_splits
from pipelines.export import datasheet
from pipelines.export import formats as fmt

FORMATS = ("imagefolder", "csv", "hf", "coco", "yolo", "labelstudio", "fiftyone")
FRAME_FORMATS = ("coco", "yolo")
# Columns that say where and when a crop was taken: only with --with-provenance.
PROVENANCE = ["source", "origin", "frame_index", "timestamp_s", "x1", "y1", "x2", "y2", "file"]
FRAMES_NOTE = ("frames: whole CCTV frames with every face in them and their head boxes; "
               "for admins only, and share them only where the footage's policy allows")


@dataclass(kw_only=True)
class ExportOptions:
    out: Path
    format: str = "imagefolder"
    force: bool = False  # replace an existing CSV file / write into a non-empty folder
    with_provenance: bool = False  # source names, origins, frame numbers, times and boxes


@dataclass
class ExportReport:
    format: str
    out: str
    crops: int
    labels: dict[str, int]
    splits: dict[str, int] = field(default_factory=dict)
    frames: int = 0  # coco / yolo
    boxes: dict[str, int] = field(default_factory=dict)  # coco / yolo: per label, + "ignored"
    bytes: int = 0
    datasheet: str = ""
    with_provenance: bool = False
    note: str = ""


def run(ws: Workspace, opts: ExportOptions, progress: ProgressFn = silent) -> ExportReport:
    if opts.format not in FORMATS:
        raise InputError(f"unknown format {opts.format!r}; expected one of {', '.join(FORMATS)}")
    out = Path(opts.out)
    csv = opts.format == "csv"
    if csv and out.is_dir():
        out = out / "labels.csv"
    _check_destination(ws, out, csv=csv, force=opts.force)
    table = crop_table(ws)
    report = ExportReport(opts.format, str(out), len(table), _counts(table, "label"),
                          _counts(table, "split"), with_provenance=opts.with_provenance)
    try:
        if csv:
            _write_csv(ws, table, out, opts.with_provenance)
            sheet_dir, sheet_stem = out.parent, out.stem + ".datasheet"
        else:
            with _folder(out, opts.force) as tmp:
                _write_folder(ws, table, tmp, opts, report, progress)
                datasheet.write(tmp, datasheet.build(ws, table, report))
            sheet_dir, sheet_stem = out, None
        if sheet_stem is not None:
            datasheet.write(sheet_dir, datasheet.build(ws, table, report), stem=sheet_stem)
    except (NotADirectoryError, FileExistsError) as exc:
        raise InputError(f"cannot write {out}: a part of that path is a file ({exc.filename})") from None
    except PermissionError:
        raise InputError(f"cannot write {out}: permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    report.datasheet = str(sheet_dir / ((sheet_stem or "datasheet") + ".md"))
    report.bytes = _size(out)
    progress(1, 1, "done", stage="export")
    return report


def _write_folder(ws, table, root: Path, opts: ExportOptions, report: ExportReport, progress):
    prov = opts.with_provenance
    if opts.format == "imagefolder":
        for i, row in enumerate(table.itertuples()):
            dest = root / row.label / f"{row.sha256}{Path(row.path).suffix}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(ws.store.path(row.path), dest)
            if i % 500 == 0:
                progress(i, len(table), "copying", stage="export")
        if prov:  # where each file came from, beside the folders
            _provenance_table(table).to_csv(root / "provenance.csv", index=False)
    elif opts.format == "hf":
        fmt.write_hf(ws, table, root, with_provenance=prov, progress=progress)
    elif opts.format == "labelstudio":
        fmt.write_labelstudio(ws, table, root, with_provenance=prov, progress=progress)
    elif opts.format == "fiftyone":
        fmt.write_fiftyone(ws, table, root, with_provenance=prov, progress=progress)
    else:
        frames = fmt.write_frames(ws, table, root, opts.format, with_provenance=prov,
                                  progress=progress)
        report.frames, report.boxes, report.splits = frames.frames, frames.boxes, frames.splits
        report.note = FRAMES_NOTE + (f"; {frames.missing} frame(s) whose source is gone were "
                                     "left out" if frames.missing else "")


# --- the table every format starts from ---------------------------------------------------------


def crop_table(ws: Workspace) -> pd.DataFrame:
    """One row per crop with a current label: ids, file, label, split, how it was labeled, quality,
    and the provenance columns (``PROVENANCE``), which the writers drop unless asked.

    ``split`` is the crop's side in the frozen dataset versions (validation wins), or
    ``unassigned`` for crops labeled since the last ``build-dataset``.
    """
    with ws.read_session() as s:
        table = reports.current_labels(s, ws.config.labels)
        details = reports.crop_details(s, table["crop_id"].tolist())
        votes = reports.active_labels(s)
        manifests = [ws.root / d.manifest for d in db.list_datasets(s)]
    table = table.merge(details, on="crop_id", how="left").sort_values("crop_id")
    table = table.reset_index(drop=True)
    splits = previous_splits(manifests)
    table["split"] = [splits.get(int(c), "unassigned") for c in table["crop_id"]]
    table["n_annotators"] = [len(a.split(",")) if a else 0 for a in table["annotators"]]
    # Vectorised per crop (a Python loop over groups cost seconds per 10,000 crops).
    method = votes["method"].fillna("key")
    per = votes.assign(imp=method.eq("import"), trk=method.eq("track")).groupby("crop_id")
    kind = pd.Series(np.where(per["imp"].all(), "import",
                              np.where(per["trk"].any(), "track", "human")),
                     index=per["imp"].all().index)
    label_of = table.set_index("crop_id")["label"]
    decisive = votes[votes["crop_id"].isin(label_of.index) & (votes["value"] != SKIP)]
    agree = (decisive["value"] == decisive["crop_id"].map(label_of)).groupby(
        decisive["crop_id"]).mean()
    table["kind"] = table["crop_id"].map(kind).fillna("human").to_numpy()
    table["agreement"] = table["crop_id"].map(agree).fillna(1.0).astype(float).to_numpy()
    root = ws.store.root.resolve()  # once: resolving each path costs a syscall chain per crop
    table["file"] = [str(root / p) for p in table["path"]]
    return table


def public_columns(table: pd.DataFrame, with_provenance: bool) -> pd.DataFrame:
    """What a CSV shows: never the workspace's store paths or the annotators' names."""
    cols = ["crop_id", "sha256", "label", "split", "votes", "n_annotators", "agreement", "kind",
            "width", "height", "sharpness", "detector", "det_score", "added_by"]
    return table[cols + (PROVENANCE if with_provenance else [])]


def _provenance_table(table: pd.DataFrame) -> pd.DataFrame:
    return table[["crop_id", "sha256", "label"] + PROVENANCE]


def _counts(table: pd.DataFrame, col: str) -> dict[str, int]:
    return {str(k): int(v) for k, v in table[col].value_counts().sort_index().items()} \
        if len(table) else {}


def _write_csv(ws, table, out: Path, with_provenance: bool) -> None:
    with atomic_file(out) as tmp:  # never a half-written file under OUT, never through a link
        public_columns(table, with_provenance).to_csv(tmp, index=False)


def _link_or_copy(src: Path, dest: Path) -> None:
    if dest.exists():
        return
    try:
        os.link(src, dest)  # same bytes, no copy (the store never rewrites a file)
    except OSError:
        shutil.copyfile(src, dest)


@contextmanager
def _folder(out: Path, force: bool):
    """A new folder appears whole (written beside, renamed at the end); with ``--force`` an
    existing non-empty one is written into."""
    if out.is_dir() and any(out.iterdir()):
        yield out
        return
    if out.is_dir():
        out.rmdir()
    with atomic_folder(out) as tmp:
        yield tmp


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _check_destination(ws: Workspace, out: Path, *, csv: bool, force: bool) -> None:
    output_path(out, owned=ws.owns, force=force, folder=not csv)
