"""A detect run's hard crops into the labeling queue, as ordinary crops (``added_by = detect``).

Same source row as extract (key: the file's sha256), same origins: crops the queue already has
are left alone, so a second call adds nothing. Track ids follow the source's one numbering rule
(``pipelines.common.footage_source.next_track_id``). When the run's model version is still
registered with the same classes, its probabilities and embeddings are stored as that
version's predictions, so the sampler can rank the new crops at once.

``--to-queue`` hands the crops over in memory (:func:`add_hard`); the Footage page's button
reads a finished run's folder (:func:`queue_hard`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.core.sample import uncertainty
from annotator.data import crop_queue, db, model_versions, reports
from annotator.service.workspace import Workspace
from pipelines.common.footage_source import next_track_id, source_row
from pipelines.detect.outputs import HardCrop, read_hard, source_spec


@dataclass
class QueueReport:
    added: int = 0
    known: int = 0  # crops whose origin the queue already had
    scored: int = 0  # predictions stored for the added crops (the run's model version)


def queue_hard(ws: Workspace, out: str | Path) -> QueueReport:
    """Add a finished run's hard crops (read from its folder ``out``) to the queue."""
    report, crops = read_hard(out)
    return add_hard(ws, report, crops, folder=Path(out))


def add_hard(ws: Workspace, report: dict, crops: list[HardCrop], *,
             folder: Path | None = None) -> QueueReport:
    """Add ``crops`` of a run whose report (``report.json``'s fields) is ``report``; a crop
    without its PNG bytes is read from ``folder``."""
    result = QueueReport()
    if not crops:
        return result
    classes = list(report.get("classes") or [])
    sources = {s["key"]: s for s in report.get("per_source", []) if s.get("key")}
    by_source: dict[str, list[HardCrop]] = {}
    for c in crops:
        by_source.setdefault(c.source_key, []).append(c)
    for key, group in by_source.items():
        s = sources.get(key)
        if s is None:
            continue
        spec, info = source_spec(s)
        with ws.session() as sess:
            src = source_row(sess, spec, key=key, sha256=s.get("sha256"), info=info)
            known = set(reports.crop_ids_by_origin(sess, src.id, [c.origin for c in group]))
            new = [c for c in group if c.origin not in known]
            result.known += len(group) - len(new)
            if not new:
                continue
            first = next_track_id(sess, src.id, by="detect")  # the run's track 1
            rows = []
            for c in new:
                png = c.png if c.png is not None else (folder / c.file).read_bytes()
                stored = ws.store.put_bytes(png, "png")
                rows.append(crop_queue.NewCrop(
                    origin=c.origin, sha256=stored.sha256, path=stored.relpath, width=c.width,
                    height=c.height, frame_index=c.frame_index, timestamp_s=c.time_s,
                    box=c.box, detector=report.get("detector"), det_score=c.det_score,
                    keypoints=c.keypoints, sharpness=c.sharpness, track_id=first + c.track - 1))
            ids = crop_queue.add_crops(sess, src.id, rows, added_by=db.AddedBy.DETECT)
            result.added += len(ids)
            result.scored += _store_predictions(
                sess, report.get("model"), classes, src.id, [c.origin for c in new],
                np.array([c.probs for c in new], np.float32), np.stack([c.emb for c in new]))
    return result


def _store_predictions(session, model_name, classes, source_id, origins, probs, emb) -> int:
    mv = model_versions.get_model_version(session, model_name) if model_name else None
    if mv is None or list(mv.classes or []) != classes or not len(origins):
        return 0
    ids = reports.crop_ids_by_origin(session, source_id, origins)
    unc = uncertainty(probs)
    rows = [{"crop_id": int(ids[o]), "model_version_id": mv.id,
             "probs": [round(float(v), 6) for v in p], "uncertainty": float(u),
             "embedding": e.astype(np.float32).tobytes()}
            for o, p, u, e in zip(origins, probs, unc, emb) if o in ids]
    model_versions.add_predictions(session, rows, set_priority=True)
    return len(rows)
