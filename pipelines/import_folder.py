"""Job: import an ImageFolder of crops (subfolders named after labels become labels)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from annotator.data import crop_queue, reports, slice_store
from annotator.media import images
from annotator.service.auth import system_user
from annotator.data.db import AddedBy, get_or_create_source
from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace
from pipelines.common.scoring import score_new

CHUNK = 500  # files per transaction: an interrupted import loses at most one chunk of work


@dataclass(kw_only=True)
class ImportOptions:
    folder: Path
    labeled: bool = False


@dataclass
class ImportReport:
    files: int = 0
    added: int = 0
    existing: int = 0
    unreadable: int = 0
    unreadable_files: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)
    scored: int = 0  # new crops the active model scored before the job ended
    seconds: float = 0.0


def run(ws: Workspace, opts: ImportOptions, progress: ProgressFn = silent) -> ImportReport:
    root = Path(opts.folder)
    if not root.exists():
        raise InputError(f"{root} does not exist")
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    if ws.holds(root):
        raise InputError(f"{root} is the workspace's own (its crops would be added to it "
                         "again); import a folder outside it")
    allowed = set(ws.config.label_values)
    if opts.labeled:
        unknown = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name not in allowed)
        if unknown:
            raise InputError(
                f"folders {', '.join(unknown)} are not labels of this workspace "
                f"({', '.join(ws.config.label_values)}); rename them or edit config.toml"
            )
    t0 = time.perf_counter()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    report = ImportReport(files=len(files))
    with ws.session() as s:
        source_id = get_or_create_source(
            s, key=f"folder:{root.resolve()}", kind="folder", uri=str(root.resolve()), name=root.name
        ).id
        importer_id = system_user(s, "import").id
    for start in range(0, len(files), CHUNK):
        _import_chunk(ws, root, files[start : start + CHUNK], source_id, importer_id, opts, report)
        progress(min(start + CHUNK, len(files)), len(files), f"{report.added} added",
                 stage="import")
    if report.added:  # ranked (and guessed) at once, not after the next promotion
        report.scored = score_new(ws, progress)
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


def _import_chunk(ws, root, paths, source_id, importer_id, opts, report):
    crops, label_of = [], {}
    for path in paths:
        rel = path.relative_to(root).as_posix()
        try:
            data = path.read_bytes()
            ext, w, h = images.probe_bytes(data, max_pixels=ws.config.limits.max_image_pixels)
        except (OSError, InputError) as exc:
            report.unreadable += 1
            if len(report.unreadable_files) < 20:
                report.unreadable_files.append(f"{rel}: {exc if isinstance(exc, InputError) else type(exc).__name__}")
            continue
        stored = ws.store.put_bytes(data, ext)
        crops.append(crop_queue.NewCrop(origin=rel, sha256=stored.sha256, path=stored.relpath, width=w,
                                   height=h))
        if opts.labeled and len(path.relative_to(root).parts) > 1:
            label_of[rel] = path.relative_to(root).parts[0]
    with ws.session() as s:
        new_ids = crop_queue.add_crops(s, source_id, crops, votes_needed=1, added_by=AddedBy.IMPORT)
        report.added += len(new_ids)
        report.existing += len(crops) - len(new_ids)
        if label_of and new_ids:
            origin_of = reports.crop_origins(s, new_ids)
            values = {cid: label_of[o] for cid, o in origin_of.items() if o in label_of}
            crop_queue.import_labels(s, importer_id, values)
            for v in values.values():
                report.labels[v] = report.labels.get(v, 0) + 1
    slice_store.fill(ws, new_ids)  # slice attributes (annotator slices --backfill heals a crash)
