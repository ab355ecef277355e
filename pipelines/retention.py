"""Job: apply the workspace's ``[privacy]`` retention (config.toml; 0 days = keep).

* ``upload_days``: uploaded videos in ``uploads/`` older than this whose source is fully
  extracted go; their crops, labels and the source row stay (the context view then says the
  frame is gone).
* ``unlabeled_crop_days``: crops nobody labeled within this many days are erased the way
  ``annotator erase`` erases (``pipelines.common.erasure``: rows, files, cache, dataset
  copies, trail flagged).
* ``detect_run_days``: detect run folders in ``detections/`` older than this go.

Ages: a file's or folder's modification time, a crop's ``created_at``. ``dry_run`` lists what is
due and deletes nothing.
"""
from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from annotator.data import db, trail
from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace
from pipelines.common import erasure

DAY = 86_400.0


@dataclass(kw_only=True)
class RetentionOptions:
    dry_run: bool = False
    actor: str = "retention"


@dataclass
class RetentionReport:
    dry_run: bool = False
    upload_days: float = 0.0
    unlabeled_crop_days: float = 0.0
    detect_run_days: float = 0.0
    uploads: list[str] = field(default_factory=list)  # relative to the workspace
    crops: list[int] = field(default_factory=list)
    detect_runs: list[str] = field(default_factory=list)


def run(ws: Workspace, opts: RetentionOptions, progress: ProgressFn = silent) -> RetentionReport:
    cfg = ws.config.privacy
    rep = RetentionReport(dry_run=opts.dry_run, upload_days=cfg.upload_days,
                          unlabeled_crop_days=cfg.unlabeled_crop_days,
                          detect_run_days=cfg.detect_run_days)
    now = time.time()
    if cfg.upload_days > 0:
        with ws.read_session() as s:
            done = {Path(u).resolve() for u, st in s.execute(
                select(db.Source.uri, db.Source.status)) if st == "done"}
        folder = ws.root / erasure.UPLOADS
        for p in sorted(folder.iterdir()) if folder.is_dir() else ():
            old = p.is_file() and not p.name.startswith(".") and \
                now - p.stat().st_mtime > cfg.upload_days * DAY
            # Not (fully) extracted yet: still waiting for its run, so it stays.
            if old and p.resolve() in done:
                rep.uploads.append(os.path.relpath(p, ws.root))
    if cfg.unlabeled_crop_days > 0:
        cutoff = db.utcnow() - dt.timedelta(days=cfg.unlabeled_crop_days)
        with ws.read_session() as s:
            rep.crops = list(s.scalars(select(db.Crop.id).where(
                db.Crop.status == db.CropStatus.UNLABELED, db.Crop.created_at < cutoff)
                .order_by(db.Crop.id)))
    if cfg.detect_run_days > 0:
        runs = ws.root / erasure.RUNS
        for p in sorted(runs.iterdir()) if runs.is_dir() else ():
            if p.is_dir() and now - p.stat().st_mtime > cfg.detect_run_days * DAY:
                rep.detect_runs.append(os.path.relpath(p, ws.root))
    if opts.dry_run:
        return rep
    progress(0, 3, "uploads", stage="retention")
    for rel in rep.uploads:
        (ws.root / rel).unlink(missing_ok=True)
    progress(1, 3, "unlabeled crops", stage="retention")
    if rep.crops:
        erasure.erase(ws, erasure.Target(crops=rep.crops), actor=opts.actor)
    progress(2, 3, "detect runs", stage="retention")
    for rel in rep.detect_runs:
        shutil.rmtree(ws.root / rel, ignore_errors=True)
    if rep.uploads or rep.crops or rep.detect_runs:
        trail.record_in(ws, opts.actor, trail.RETENTION, detail={
            "uploads": len(rep.uploads), "crops": len(rep.crops),
            "detect_runs": len(rep.detect_runs)})
    progress(3, 3, "done", stage="retention")
    return rep


def summary(rep: RetentionReport) -> str:
    verb = "due" if rep.dry_run else "deleted"
    if not (rep.upload_days or rep.unlabeled_crop_days or rep.detect_run_days):
        return "no retention set ([privacy] in config.toml: upload_days, unlabeled_crop_days, detect_run_days)"
    return (f"{verb}: {len(rep.uploads)} uploads (> {rep.upload_days:g} days), {len(rep.crops)} "
            f"unlabeled crops (> {rep.unlabeled_crop_days:g} days), {len(rep.detect_runs)} detect "
            f"runs (> {rep.detect_run_days:g} days)")
