"""Job: export the current labels as an ImageFolder or a CSV table."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from annotator import reports
from annotator.errors import InputError
from annotator.files import atomic_file, output_path
from annotator.progress import ProgressFn, silent
from annotator.workspace import Workspace

FORMATS = ("imagefolder", "csv")


@dataclass(kw_only=True)
class ExportOptions:
    out: Path
    format: str = "imagefolder"
    force: bool = False  # replace an existing CSV file / write into a non-empty folder


@dataclass
class ExportReport:
    format: str
    out: str
    crops: int
    labels: dict[str, int]


def run(ws: Workspace, opts: ExportOptions, progress: ProgressFn = silent) -> ExportReport:
    if opts.format not in FORMATS:
        raise InputError(f"unknown format {opts.format!r}; expected {' or '.join(FORMATS)}")
    out = Path(opts.out)
    if opts.format == "csv" and out.is_dir():
        out = out / "labels.csv"
    _check_destination(ws, out, csv=opts.format == "csv", force=opts.force)
    with ws.read_session() as s:
        table = reports.current_labels(s, ws.config.labels)
        details = reports.crop_details(s, table["crop_id"].tolist())
    table = table.merge(details, on="crop_id", how="left")
    try:
        if opts.format == "csv":
            out.parent.mkdir(parents=True, exist_ok=True)
            table = table.assign(file=[str(ws.store.path(p).resolve()) for p in table["path"]])
            with atomic_file(out) as tmp:  # never a half-written file under OUT
                table.to_csv(tmp, index=False)
        else:
            for i, row in enumerate(table.itertuples()):
                dest = out / row.label / f"{row.crop_id:08d}{Path(row.path).suffix}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ws.store.path(row.path), dest)
                if i % 500 == 0:
                    progress(i, len(table), "copying", stage="export")
            progress(len(table), len(table), "done", stage="export")
    except (NotADirectoryError, FileExistsError) as exc:
        raise InputError(f"cannot write {out}: a part of that path is a file ({exc.filename})") from None
    except PermissionError:
        raise InputError(f"cannot write {out}: permission denied") from None
    except OSError as exc:
        raise InputError(f"cannot write {out}: {exc.strerror or exc}") from None
    counts = table["label"].value_counts().to_dict() if len(table) else {}
    return ExportReport(opts.format, str(out), len(table), {k: int(v) for k, v in counts.items()})




def _check_destination(ws: Workspace, out: Path, *, csv: bool, force: bool) -> None:
    output_path(out, owned=ws.owns, force=force, folder=not csv)
