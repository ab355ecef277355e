"""Erasing a source, one tracked person, or crops from everywhere in the workspace (the ``erase``
job, and ``retention`` for crops nobody labeled in time).

What goes (``--dry-run`` lists exactly this, then a real run removes it):

* rows: the crops, their labels, predictions and leases; the source row (``--source``);
  the trail's events about the crops are kept but flagged "erased" (they hold no image);
* ``crops/``: each erased crop's file, unless a crop that stays has the same bytes;
* ``cache/``: their tensors (the cache is rewritten without them; the old generation goes);
* ``datasets/``: their files in every version, and the rows of its manifest; the
  version's ``erasures.csv`` records the erasure, and models trained on it are listed as
  "trained on erased data";
* ``detections/``: rows of detect runs about the erased person (matched by frame and box) or
  source, their hard crops, and the annotated video of that source (it shows them);
* ``uploads/``: the uploaded video of an erased source.

Crash safety: the plan is written to ``erasures/<id>.json`` first; the rows go in ONE
transaction (the switch: before it nothing is erased, after it nothing is visible); then the
files. A run killed anywhere is completed by the next ``annotator erase`` (any target, or
``--resume``), which finishes every pending journal first. The journal is removed at the end.
SQLite: ``secure_delete`` (db) zeroes freed rows, and the WAL is checkpointed and truncated
so the old page images do not linger there.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, select

from annotator.media import cache as tensor_cache
from annotator.data import db, model_versions, trail
from annotator.core.errors import InputError
from annotator.core.failpoints import failpoint
from annotator.core.geometry import box_iou as iou
from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace
from pipelines.common.datasets import manifest_rows

JOURNALS = "erasures"  # under the workspace: plans of erasures not finished yet
RUNS = "detections"
UPLOADS = "uploads"
DATASET_RECORD = "erasures.csv"  # in a dataset version: which crops were erased from it, when
MATCH_IOU = 0.5  # a detect row is the erased person when its box overlaps this much, same frame


@dataclass(frozen=True)
class Target:
    """What to erase: exactly one of a source (NAME or ID), a track (SOURCE:TRACK), a crop, or
    several crops by id (retention)."""

    source: str | None = None
    track: str | None = None
    crop: int | None = None
    crops: tuple[int, ...] | list[int] | None = None


@dataclass
class EraseReport:
    target: str = ""
    dry_run: bool = False
    crops: list[int] = field(default_factory=list)
    sources: list[int] = field(default_factory=list)
    labels: int = 0
    predictions: int = 0
    leases: int = 0
    trail_events: int = 0  # kept, flagged "(erased)"
    store_files: list[str] = field(default_factory=list)  # relative to the workspace
    cache_entries: int = 0
    dataset_files: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # now "trained on erased data"
    detect_files: list[str] = field(default_factory=list)  # removed or rewritten
    uploads: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # journals of killed runs completed first

    def removes(self) -> dict:
        """What the erasure removes (the dry run's and the real run's must be equal)."""
        d = dataclasses.asdict(self)
        for k in ("dry_run", "resumed"):
            d.pop(k)
        return d


def erase(ws: Workspace, target: Target, *, dry_run: bool = False, actor: str = "cli",
          progress: ProgressFn = silent) -> EraseReport:
    """Erase ``target`` everywhere (``dry_run``: list what would go), after completing the
    erasures a killed run left half done. An empty target only completes those."""
    resumed = [] if dry_run else resume(ws, progress)
    given = [x is not None for x in (target.source, target.track, target.crop, target.crops)]
    if not any(given):
        return EraseReport(target="", resumed=resumed)
    if sum(given) != 1:
        raise InputError("erase one thing at a time: --source, --track or --crop")
    plan, secret = _plan(ws, target)
    plan.dry_run, plan.resumed = dry_run, resumed
    if dry_run or not plan.crops and not plan.sources:
        return plan
    journal = _journal_dir(ws) / f"{db.utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.json"
    _write_atomic(journal, json.dumps({"id": journal.stem, "actor": actor,
                                       "plan": plan.removes(), **secret}))
    failpoint("erase_after_journal")
    _complete(ws, journal, progress)
    return plan


def resume(ws: Workspace, progress: ProgressFn = silent) -> list[str]:
    """Complete every erasure a killed run left half done; returns their journal ids."""
    folder = ws.root / JOURNALS
    done = []
    for journal in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        _complete(ws, journal, progress)
        done.append(journal.stem)
    return done


# --- planning ---------------------------------------------------------------------------------


def _resolve_source(s, ref: str) -> db.Source:
    ref = ref.strip()
    if ref.isdigit():
        src = s.get(db.Source, int(ref))
    else:
        found = list(s.scalars(select(db.Source).where(
            (db.Source.name == ref) | (db.Source.key == ref))))
        if len(found) > 1:
            raise InputError(f"{len(found)} sources are called {ref!r}: give an id "
                             f"({', '.join(str(x.id) for x in found)})")
        src = found[0] if found else None
    if src is None:
        raise InputError(f"no source {ref!r} (see `annotator stats` or the Footage page)")
    return src


def _targets(s, target: Target) -> tuple[str, list[db.Crop], list[db.Source]]:
    if target.crops is not None:
        crops = [c for part in db.chunks(sorted(set(target.crops)))
                 for c in s.scalars(select(db.Crop).where(db.Crop.id.in_(part)).order_by(db.Crop.id))]
        return f"{len(crops)} crops", crops, []
    if target.crop is not None:
        crop = s.get(db.Crop, int(target.crop))
        if crop is None:
            raise InputError(f"no crop {target.crop}")
        return f"crop {crop.id}", [crop], []
    if target.track is not None:
        ref, _, tid = target.track.rpartition(":")
        if not ref or not tid.strip().lstrip("-").isdigit():
            raise InputError(f"--track must be SOURCE:TRACK (e.g. cam1.mp4:12), got {target.track!r}")
        src = _resolve_source(s, ref)
        crops = list(s.scalars(select(db.Crop).where(
            db.Crop.source_id == src.id, db.Crop.track_id == int(tid)).order_by(db.Crop.id)))
        if not crops:
            raise InputError(f"source {src.name!r} has no track {tid}")
        return f"track {src.id}:{int(tid)}", crops, []
    src = _resolve_source(s, target.source)
    crops = list(s.scalars(select(db.Crop).where(db.Crop.source_id == src.id)
                           .order_by(db.Crop.id)))
    return f"source {src.id}", crops, [src]


def _count(s, model, col, ids) -> int:
    return sum(db.count(s, model, col.in_(part)) for part in db.chunks(ids))


def _plan(ws: Workspace, target: Target) -> tuple[EraseReport, dict]:
    """The report of what goes, and what the journal needs to find it again (sha256s, boxes)."""
    with ws.read_session() as s:
        target, crops, sources = _targets(s, target)
        ids = [c.id for c in crops]
        rep = EraseReport(target=target, crops=ids, sources=[x.id for x in sources])
        rep.labels = _count(s, db.Label, db.Label.crop_id, ids)
        rep.predictions = _count(s, db.Prediction, db.Prediction.crop_id, ids)
        rep.leases = _count(s, db.Lease, db.Lease.crop_id, ids)
        rep.trail_events = _count(s, db.TrailEvent, db.TrailEvent.crop_id, ids)
        erased = set(ids)
        shas = sorted({c.sha256 for c in crops})
        shared = set()
        for part in db.chunks(shas):
            for cid, h in s.execute(select(db.Crop.id, db.Crop.sha256)
                                    .where(db.Crop.sha256.in_(part))):
                if cid not in erased:
                    shared.add(h)
        private = [h for h in shas if h not in shared]
        paths = sorted({c.path for c in crops if c.sha256 in set(private)})
        rep.store_files = [f"crops/{p}" for p in paths if ws.store.path(p).exists()]
        datasets = [(d.name, d.path, d.manifest, d.id) for d in db.list_datasets(s)]
        by_dataset = [(mv.name, mv.dataset_id) for mv in model_versions.list_model_versions(s)]
        keys = {x.id: x.key for x in s.scalars(select(db.Source).where(
            db.Source.id.in_({c.source_id for c in crops} or {0})))}
        boxes = [[keys[c.source_id], c.frame_index, c.x1, c.y1, c.x2, c.y2, c.origin]
                 for c in crops if c.frame_index is not None and c.x1 is not None]
        source_keys = [x.key for x in sources]
        uploads = [x.uri for x in sources]
    rep.cache_entries = sum(len(set(private) & set(_cache_entries(c)))
                            for c in _caches(ws))
    for name, path, manifest, ds_id in datasets:
        files = [f"{path}/{r['file']}" for r in _manifest_rows(ws.root / manifest)
                 if int(r["crop_id"]) in erased]
        if files:
            rep.datasets.append(name)
            rep.dataset_files += [f for f in files if (ws.root / f).exists()]
            rep.models += [m for m, d in by_dataset if d == ds_id]
    rep.models = sorted(set(rep.models))
    edits = _run_edits(ws, source_keys, boxes)
    rep.detect_files = sorted({f for e in edits for f in e["files"]})
    for e in edits:  # the Footage page's uploads that a detect run read this source from
        report = json.loads((e["dir"] / "report.json").read_text())
        uploads += [x.get("uri") or "" for x in report.get("per_source", [])
                    if x.get("name") in e["names"]]
    up = (ws.root / UPLOADS).resolve()
    rep.uploads = sorted({os.path.relpath(Path(u).resolve(), ws.root.resolve()) for u in uploads
                          if u and up in Path(u).resolve().parents and Path(u).is_file()})
    secret = {"sha256s": private, "source_keys": source_keys, "boxes": boxes}
    return rep, secret


def _caches(ws) -> list[tensor_cache.TensorCache]:
    return [tensor_cache.TensorCache(ws.root / tensor_cache.DIRNAME, n)
            for n in tensor_cache._sizes(ws)]


def _cache_entries(c: tensor_cache.TensorCache) -> set[str]:
    c.refresh()
    return set(c._gen.entries)


def _manifest_rows(path: Path) -> list[dict]:
    return manifest_rows(path) if path.is_file() else []


# --- detect runs --------------------------------------------------------------------------------


def _csv(path: Path) -> tuple[list[str], list[dict]]:
    try:
        with open(path, newline="") as fh:
            r = csv.DictReader(fh)
            return list(r.fieldnames or []), list(r)
    except FileNotFoundError:
        return [], []


def _run_edits(ws: Workspace, source_keys: list[str], boxes: list[list]) -> list[dict]:
    """Per detect run under ``detections/`` that shows an erased source or person: which
    sources' rows go (``names``), which tracks per source (``tracks``), and the files touched."""
    root = ws.root / RUNS
    edits = []
    for run_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else ():
        try:
            report = json.loads((run_dir / "report.json").read_text())
        except (OSError, ValueError):
            continue
        per_source = [x for x in report.get("per_source", []) if isinstance(x, dict)]
        names = {x["name"] for x in per_source if x.get("key") in set(source_keys)}
        key_name = {x.get("key"): x["name"] for x in per_source}
        tracks: dict[str, set[str]] = {}
        origins = {b[6] for b in boxes}
        if boxes:
            _, dets = _csv(run_dir / "detections.csv")
            wanted: dict[tuple[str, int], list] = {}
            for key, frame, *box, _origin in boxes:
                if key in key_name:
                    wanted.setdefault((key_name[key], int(frame)), []).append(box)
            for r in dets:
                for box in wanted.get((r["source"], int(r["frame"])), ()):
                    if iou(box, [float(r[k]) for k in ("x1", "y1", "x2", "y2")]) >= MATCH_IOU:
                        tracks.setdefault(r["source"], set()).add(r["track"])
            _, hard = _csv(run_dir / "hard_crops.csv")
            for r in hard:
                if r["origin"] in origins and r["source_key"] in {b[0] for b in boxes}:
                    tracks.setdefault(r["source"], set()).add(r["track"])
        if not names and not tracks:
            continue
        edit = {"dir": run_dir, "names": names, "tracks": tracks, "files": []}
        rel = lambda p: os.path.relpath(p, ws.root)  # noqa: E731
        for table in ("detections", "tracks", "summary", "hard_crops"):
            if table == "summary" and not names:
                continue  # per-minute counts name nobody
            _, rows = _csv(run_dir / f"{table}.csv")
            if any(_drops(edit, r) for r in rows):
                edit["files"].append(rel(run_dir / f"{table}.csv"))
                if table == "hard_crops":
                    edit["files"] += [rel(run_dir / r["file"]) for r in rows
                                      if _drops(edit, r) and (run_dir / r["file"]).is_file()]
                    if (run_dir / "hard_crops.npz").is_file():
                        edit["files"].append(rel(run_dir / "hard_crops.npz"))
        for x in per_source:
            if (x["name"] in names or x["name"] in tracks) and x.get("video") \
                    and (run_dir / x["video"]).is_file():
                edit["files"].append(rel(run_dir / x["video"]))
        if names:
            edit["files"].append(rel(run_dir / "report.json"))
        edits.append(edit)
    return edits


def _drops(edit: dict, row: dict) -> bool:
    return row["source"] in edit["names"] or row.get("track") in edit["tracks"].get(row["source"], ())


def _apply_run_edit(ws: Workspace, edit: dict) -> None:
    run_dir = edit["dir"]
    for table in ("detections", "tracks", "summary", "hard_crops"):
        if f"{os.path.relpath(run_dir, ws.root)}/{table}.csv" not in edit["files"]:
            continue
        header, rows = _csv(run_dir / f"{table}.csv")
        keep = [not _drops(edit, r) for r in rows]
        if table == "hard_crops":
            for r, k in zip(rows, keep):
                if not k:
                    (run_dir / r["file"]).unlink(missing_ok=True)
            npz = run_dir / "hard_crops.npz"
            if npz.is_file():
                arrays = dict(np.load(npz))
                mask = np.array(keep, bool)
                out = {k: (v[mask] if len(v) == len(mask) else v) for k, v in arrays.items()}
                tmp = run_dir / ".hard_crops.part.npz"
                np.savez(tmp, **out)
                os.replace(tmp, npz)
        _write_atomic(run_dir / f"{table}.csv", _csv_text(header, [r for r, k in zip(rows, keep) if k]))
    report_path = run_dir / "report.json"
    report = json.loads(report_path.read_text())
    for x in report.get("per_source", []):
        if (x.get("name") in edit["names"] or x.get("name") in edit["tracks"]) and x.get("video"):
            (run_dir / x["video"]).unlink(missing_ok=True)
    if edit["names"]:
        report["per_source"] = [x for x in report.get("per_source", [])
                                if x.get("name") not in edit["names"]]
        report["erased_sources"] = report.get("erased_sources", 0) + len(edit["names"])
        _write_atomic(report_path, json.dumps(report, indent=1, default=str))


def _csv_text(header: list[str], rows: list[dict]) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, header, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


# --- doing it -----------------------------------------------------------------------------------


def _journal_dir(ws) -> Path:
    d = ws.root / JOURNALS
    d.mkdir(exist_ok=True)
    return d


def _write_atomic(path: Path, data: str) -> None:
    """Write ``data`` under a temporary name, then rename it over ``path`` (gzip when ``path``
    ends in ``.gz``, as a dataset manifest does)."""
    tmp = path.with_name(f".{path.name}.part")
    raw = data.encode("utf-8")
    with open(tmp, "wb") as fh:
        fh.write(gzip.compress(raw, mtime=0) if path.name.endswith(".gz") else raw)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _complete(ws: Workspace, journal: Path, progress: ProgressFn) -> None:
    """Rows (once: the erase event names the journal), then files; every step may run twice."""
    j = json.loads(journal.read_text())
    plan = j["plan"]
    steps = 6
    progress(0, steps, "rows", stage="erase")
    _erase_rows(ws, j)
    failpoint("erase_after_commit")
    progress(1, steps, "crop files", stage="erase")
    for rel in plan["store_files"]:
        (ws.root / rel).unlink(missing_ok=True)
    failpoint("erase_mid_files")
    progress(2, steps, "cache", stage="erase")
    gone = set(j["sha256s"])
    for c in _caches(ws):
        live = _cache_entries(c)
        if live & gone:
            c.compact(live - gone)
    progress(3, steps, "datasets", stage="erase")
    _erase_from_datasets(ws, j)
    progress(4, steps, "detect runs", stage="erase")
    for edit in _run_edits(ws, j["source_keys"], j["boxes"]):
        _apply_run_edit(ws, edit)
    for rel in plan["uploads"]:
        (ws.root / rel).unlink(missing_ok=True)
    progress(5, steps, "database files", stage="erase")
    _scrub_database(ws)
    journal.unlink()
    progress(steps, steps, "done", stage="erase")


def _erase_rows(ws: Workspace, j: dict) -> None:
    plan = j["plan"]
    ids = plan["crops"]
    with ws.session() as s:
        t = db.TrailEvent
        done = s.scalar(select(func.count()).select_from(t).where(
            t.action == trail.ERASE, t.detail["journal"].as_string() == j["id"]))
        if done:
            return
        for part in db.chunks(ids):
            # Labels point at labels (superseded_by) of the same crop: clear, then delete.
            s.execute(db.Label.__table__.update().where(db.Label.crop_id.in_(part))
                      .values(superseded_by_id=None))
            s.execute(delete(db.Label).where(db.Label.crop_id.in_(part)))
            s.execute(delete(db.Prediction).where(db.Prediction.crop_id.in_(part)))
            s.execute(delete(db.Lease).where(db.Lease.crop_id.in_(part)))
            s.execute(delete(db.Crop).where(db.Crop.id.in_(part)))
        for sid in plan["sources"]:
            s.execute(delete(db.Source).where(db.Source.id == sid))
        trail.mark_erased(s, ids)
        trail.record(s, j.get("actor") or "cli", trail.ERASE, detail={
            "journal": j["id"], "target": plan["target"], "crops": len(ids),
            "datasets": plan["datasets"], "models": plan["models"]})


def _erase_from_datasets(ws: Workspace, j: dict) -> None:
    plan = j["plan"]
    erased = set(plan["crops"])
    with ws.read_session() as s:
        datasets = [(d.name, d.path, d.manifest) for d in db.list_datasets(s)
                    if d.name in plan["datasets"]]
    for name, path, manifest in datasets:
        rows = _manifest_rows(ws.root / manifest)
        gone = [r for r in rows if int(r["crop_id"]) in erased]
        for r in gone:
            (ws.root / path / r["file"]).unlink(missing_ok=True)
        if gone:
            header = list(rows[0].keys())
            _write_atomic(ws.root / manifest, _csv_text(header, [r for r in rows if r not in gone]))
        record = ws.root / path / DATASET_RECORD
        if j["id"] not in (record.read_text() if record.exists() else ""):
            with open(record, "a") as fh:
                if fh.tell() == 0:
                    fh.write("erased_at,erasure,target,crops\n")
                fh.write(f"{db.utcnow():%Y-%m-%d %H:%M:%S},{j['id']},{plan['target']},"
                         f"{len(gone) or len(erased)}\n")


def _scrub_database(ws: Workspace) -> None:
    """SQLite: fold the WAL into the database (secure_delete zeroed the freed rows there) and
    truncate it, so the old page images are gone too. PostgreSQL keeps dead tuples until its
    vacuum, which the server runs on its own schedule (see SECURITY.md)."""
    if not ws.db_url.startswith("sqlite"):
        return
    raw = ws.engine.raw_connection()  # autocommit: a checkpoint cannot run in a transaction
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        raw.close()


def trained_on_erased(ws: Workspace, dataset_path: str | None) -> bool:
    """Whether a dataset version lost crops to an erasure (its models are marked)."""
    return bool(dataset_path) and (ws.root / dataset_path / DATASET_RECORD).is_file()
