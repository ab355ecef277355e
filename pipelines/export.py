"""Job: export the current labels as an ImageFolder or a CSV table."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from annotator import reports
from annotator.errors import InputError
from annotator.progress import ProgressFn, silent
from annotator.workspace import Workspace

FORMATS = ("imagefolder", "csv")


@dataclass(kw_only=True)
class ExportOptions:
    out: Path
    format: str = "imagefolder"


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
    with ws.read_session() as s:
        table = reports.current_labels(s, ws.config.labels)
        details = reports.crop_details(s, table["crop_id"].tolist())
    table = table.merge(details, on="crop_id", how="left")
    if opts.format == "csv":
        if out.is_dir():
            out = out / "labels.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        table = table.assign(file=[str(ws.store.path(p).resolve()) for p in table["path"]])
        table.to_csv(out, index=False)
    else:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"{out} exists and is not an empty folder")
        for i, row in enumerate(table.itertuples()):
            dest = out / row.label / f"{row.crop_id:08d}{Path(row.path).suffix}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ws.store.path(row.path), dest)
            if i % 500 == 0:
                progress(i, len(table), "copying")
        progress(len(table), len(table), "done")
    counts = table["label"].value_counts().to_dict() if len(table) else {}
    return ExportReport(opts.format, str(out), len(table), {k: int(v) for k, v in counts.items()})


