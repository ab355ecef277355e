"""The datasheet written with every export (Gebru et al., "Datasheets for Datasets"): what the
data is, how it was collected and labeled, how much of what, where it is weak, and its licence.

``build`` gathers the figures as one JSON-able dict; ``markdown`` renders it for people. Counts of
the workspace are ``reports.stats`` itself (what ``annotator stats --json`` prints), so the two
cannot disagree. Without provenance the sources are described by kind, size and time span only.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from annotator.data import db, export_reads, model_versions, reports
from annotator.media import images
from annotator.service.workspace import Workspace

SMALL_FACE_PX = 32  # shorter side under this: hard to judge a mask
BLUR_SHARPNESS = 100.0  # variance of the Laplacian under this: blurry
DARK_MEAN = 60  # mean grey level under this: night or a dark scene
BRIGHTNESS_SAMPLE = 1000  # crops decoded to estimate the dark share
LICENCE_TODO = "TO FILL IN by the team (e.g. CC BY-NC 4.0), with the footage owner's consent"


def build(ws: Workspace, table: pd.DataFrame, report) -> dict:
    """The datasheet of one export: ``table`` is the export's crop table, ``report`` its
    ``ExportReport``."""
    with ws.read_session() as s:
        stats = reports.stats(s, ws.config.labels)
        sources = export_reads.source_summary(s)
        votes = reports.multi_voted(s)
        methods = reports.active_labels(s)["method"].fillna("key").value_counts().to_dict()
        models = [(m.name, m.active, (m.metrics or {}).get("imported_from"))
                  for m in model_versions.list_model_versions(s)]
    rep = dataclasses.asdict(report)
    per_split = (table.groupby(["split", "label"]).size().unstack(fill_value=0)
                 if len(table) else pd.DataFrame())
    prov = report.with_provenance
    return {
        "title": "Face mask head crops (facemask-annotator)",
        "format": report.format,
        "with_provenance": prov,
        "created_at": db.utcnow().isoformat(timespec="seconds") + "Z",
        "licence": LICENCE_TODO,
        "motivation": ("Mask / no-mask labels of heads seen by CCTV cameras, made with "
                       "facemask-annotator (human-in-the-loop labeling with active learning), "
                       "in the style of Neuralet's FaceMask100K."),
        "composition": {
            "workspace": {"crops": stats["crops"], "labels": stats["labels"],
                          "human_labels": stats["human_labels"],
                          "crops_by_origin": stats["crops_by_origin"]},
            "exported": {"crops": int(len(table)), "labels": rep["labels"],
                         "splits": rep["splits"],
                         "split_by_label": {str(k): {str(c): int(v) for c, v in row.items()}
                                            for k, row in per_split.iterrows()},
                         "frames": rep["frames"], "boxes": rep["boxes"]},
        },
        "collection": _collection(sources, table, prov),
        "labeling": _labeling(table, votes, methods, models, ws),
        "known_gaps": _gaps(ws, table),
        "privacy": ("Faces of people filmed by CCTV: personal data. " +
                    ("This export carries provenance (sources, frame numbers, times, boxes)."
                     if prov else "Source names, paths, frame numbers, times and boxes are left "
                     "out; files are named by content hash.") +
                    (" It holds whole frames with every face in them: for admins only."
                     if report.format in ("coco", "yolo") else "")),
    }


def _collection(sources: pd.DataFrame, table: pd.DataFrame, prov: bool) -> dict:
    video = sources[sources["kind"] == "video"]
    seconds = float(np.nansum(video["frame_count"].astype(float) /
                              video["fps"].astype(float).replace(0, np.nan))) if len(video) else 0.0
    settings = [s for s in sources["settings"] if s]
    out = {
        "sources": int(len(sources)),
        "sources_by_kind": {str(k): int(v) for k, v in sources["kind"].value_counts().items()},
        "added_between": [str(sources["created_at"].min()), str(sources["created_at"].max())]
        if len(sources) else [],
        "video_seconds": round(seconds, 1),
        "detectors": {str(k): int(v) for k, v in table["detector"].fillna("none (imported)")
                      .value_counts().items()} if len(table) else {},
        "extraction_settings": settings[-1] if settings else None,
        "extraction_settings_differ": len({json.dumps(s, sort_keys=True) for s in settings}) > 1,
    }
    if prov:
        out["source_names"] = sources["name"].tolist()
    return out


def agreement(votes: pd.DataFrame) -> dict:
    """Inter-annotator agreement on crops with two or more decisive votes: the share where all
    agree and the mean share of agreeing vote pairs."""
    if votes.empty:
        return {"crops": 0, "unanimous": None, "pairwise": None}
    unanimous, pairs = [], []
    for _, g in votes.groupby("crop_id"):
        v = list(g["value"])
        unanimous.append(len(set(v)) == 1)
        n = len(v)
        pairs.append(sum(v[i] == v[j] for i in range(n) for j in range(i + 1, n)) / (n * (n - 1) / 2))
    return {"crops": len(unanimous), "unanimous": round(float(np.mean(unanimous)), 4),
            "pairwise": round(float(np.mean(pairs)), 4)}


def _labeling(table, votes, methods, models, ws) -> dict:
    return {
        "decided_by": {str(k): int(v) for k, v in table["kind"].value_counts().items()}
        if len(table) else {},
        "methods": {str(k): int(v) for k, v in methods.items()},
        "rule": "majority of active votes; ties and skips are left out",
        "classes": list(ws.config.labels),
        "agreement": agreement(votes),
        "audited_error": None,  # no audit of labels against an expert is recorded in the tool
        "models": [{"name": n, "active": bool(a), "imported_from": f} for n, a, f in models],
    }


def _gaps(ws, table) -> dict:
    n = max(len(table), 1)
    short = np.minimum(table["width"].astype(float), table["height"].astype(float))
    sharp = table["sharpness"].astype(float)
    sample = table.sample(min(len(table), BRIGHTNESS_SAMPLE), random_state=0) if len(table) else table
    means = []
    for p in sample["path"]:
        bgr = images.read_bgr(ws.store.path(p))
        if bgr is not None:
            means.append(float(bgr.mean()))
    dark = float(np.mean(np.array(means) < DARK_MEAN)) if means else None
    return {
        "small_faces": {"rule": f"shorter side < {SMALL_FACE_PX} px",
                        "share": round(float((short < SMALL_FACE_PX).sum() / n), 4)},
        "blur": {"rule": f"sharpness (variance of the Laplacian) < {BLUR_SHARPNESS}",
                 "share": round(float((sharp < BLUR_SHARPNESS).sum() / n), 4),
                 "unmeasured": int(sharp.isna().sum())},
        "night": {"rule": f"mean grey level < {DARK_MEAN} (a sample of {len(means)} crops)",
                  "share": None if dark is None else round(dark, 4)},
        "notes": ["CCTV angles: heads from above and behind are common",
                  "masks worn below the nose are labeled by the team's own rule",
                  "cameras and sites are few: expect a domain shift elsewhere"],
    }


def markdown(sheet: dict) -> str:
    c, col, lab, gaps = (sheet["composition"], sheet["collection"], sheet["labeling"],
                         sheet["known_gaps"])
    ex = c["exported"]
    lines = [
        f"# Datasheet: {sheet['title']}", "",
        f"Export format `{sheet['format']}`, made {sheet['created_at']}. "
        f"**Licence:** {sheet['licence']}", "",
        "## Motivation", "", sheet["motivation"], "",
        "## Composition", "",
        f"- exported crops: {ex['crops']}; per label: {ex['labels']}; per split: {ex['splits']}",
    ]
    for split, row in ex["split_by_label"].items():
        lines.append(f"  - {split}: {row}")
    if ex["frames"]:
        lines.append(f"- frames: {ex['frames']}; boxes: {ex['boxes']}")
    w = c["workspace"]
    lines += [f"- in the workspace: crops {w['crops']}; votes per label {w['labels']}", "",
              "## Collection", "",
              f"- sources: {col['sources']} {col['sources_by_kind']}, added between "
              f"{' and '.join(col['added_between']) or '-'}; {col['video_seconds']} s of video",
              f"- detectors: {col['detectors']}",
              f"- extraction settings (last run): `{json.dumps(col['extraction_settings'])}`"
              + (" (they differ between sources)" if col["extraction_settings_differ"] else "")]
    if "source_names" in col:
        lines.append(f"- source names: {', '.join(map(str, col['source_names']))}")
    ag = lab["agreement"]
    lines += ["", "## Labeling", "",
              f"- decided by: {lab['decided_by']} (methods {lab['methods']}); rule: {lab['rule']}",
              f"- inter-annotator agreement on {ag['crops']} crops with 2+ votes: unanimous "
              f"{ag['unanimous']}, pairwise {ag['pairwise']}",
              f"- audited error: {lab['audited_error'] or 'not measured'}",
              f"- models: {', '.join(m['name'] + (' (active)' if m['active'] else '') for m in lab['models']) or 'none'}",
              "", "## Known gaps", ""]
    for k in ("small_faces", "blur", "night"):
        lines.append(f"- {k.replace('_', ' ')}: share {gaps[k]['share']} ({gaps[k]['rule']})")
    lines += [f"- {n}" for n in gaps["notes"]]
    lines += ["", "## Privacy", "", sheet["privacy"], ""]
    return "\n".join(lines)


def write(folder: Path, sheet: dict, *, stem: str = "datasheet") -> None:
    folder = Path(folder)
    (folder / f"{stem}.json").write_text(json.dumps(sheet, indent=1, default=str))
    (folder / f"{stem}.md").write_text(markdown(sheet))
