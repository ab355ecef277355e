"""Writers of the export formats other tools read: Hugging Face ``datasets`` (Parquet), COCO and
YOLO (frames with head boxes), Label Studio tasks, FiftyOne's image classification layout.

Each takes the table of :func:`pipelines.export.crop_table` and a folder that the export job
creates whole. File names are content hashes (sha256 of the bytes written), never origins.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from annotator.data import db, export_reads, model_reports, model_versions, reports
from annotator.media import images, video
from annotator.core.config import NOT_A_FACE
from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn
from annotator.service.workspace import Workspace

HF_SPLITS = {"train": "train", "val": "validation", "unassigned": "unassigned"}
HF_SHARD = 5000  # rows per Parquet file: bounded memory whatever the export's size
LS_FROM, LS_TO = "label", "image"  # the names in labeling_config.xml, read back on import
LS_PREFIX = "/data/local-files/?d="  # Label Studio's local-files storage URL


# --- Hugging Face datasets ------------------------------------------------------------------------


def write_hf(ws: Workspace, table: pd.DataFrame, root: Path, *, with_provenance: bool,
             progress: ProgressFn) -> None:
    """``data/{split}-NNNNN-of-NNNNN.parquet`` + README.md (the dataset card, whose YAML header
    tells ``datasets.load_dataset(root)`` the splits). The Parquet schema carries the features
    (``image`` as Image, ``label`` as ClassLabel), so they load as such."""
    import datasets

    classes = list(ws.config.labels)
    feats = {"image": datasets.Image(), "label": datasets.ClassLabel(names=classes),
             "crop_id": datasets.Value("int64"), "sha256": datasets.Value("string"),
             "kind": datasets.Value("string"), "n_annotators": datasets.Value("int32"),
             "agreement": datasets.Value("float32"), "width": datasets.Value("int32"),
             "height": datasets.Value("int32"), "sharpness": datasets.Value("float32")}
    if with_provenance:
        feats |= {"source": datasets.Value("string"), "frame_index": datasets.Value("int64"),
                  "timestamp_s": datasets.Value("float64"), "box": datasets.Sequence(
                      datasets.Value("float32"), length=4)}
    features = datasets.Features(feats)
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the job reports its own progress
    try:
        _hf_shards(ws, table, root, features, classes, with_provenance, progress)
    finally:
        if bars:
            datasets.enable_progress_bars()


def _hf_shards(ws, table, root, features, classes, with_provenance, progress) -> None:
    import datasets

    (root / "data").mkdir()
    done, splits = 0, []
    for split, part in table.groupby("split", sort=True):
        name = HF_SPLITS.get(split, split)
        splits.append(name)
        shards = max(1, -(-len(part) // HF_SHARD))
        for k in range(shards):
            rows = part.iloc[k * HF_SHARD:(k + 1) * HF_SHARD]
            cols = {
                "image": [{"bytes": ws.store.read_bytes(p), "path": f"{h}{Path(p).suffix}"}
                          for h, p in zip(rows["sha256"], rows["path"])],
                "label": [classes.index(v) for v in rows["label"]],
                "crop_id": rows["crop_id"].astype(int).tolist(),
                "sha256": rows["sha256"].tolist(), "kind": rows["kind"].tolist(),
                "n_annotators": rows["n_annotators"].astype(int).tolist(),
                "agreement": rows["agreement"].astype(float).tolist(),
                "width": rows["width"].astype(int).tolist(),
                "height": rows["height"].astype(int).tolist(),
                "sharpness": [_num(v) for v in rows["sharpness"]],
            }
            if with_provenance:
                cols |= {"source": rows["source"].tolist(),
                         "frame_index": [None if _na(v) else int(v) for v in rows["frame_index"]],
                         "timestamp_s": [_num(v) for v in rows["timestamp_s"]],
                         "box": [None if _na(r.x1) else [r.x1, r.y1, r.x2, r.y2]
                                 for r in rows.itertuples()]}
            ds = datasets.Dataset.from_dict(cols, features=features)
            ds.to_parquet(str(root / "data" / f"{name}-{k:05d}-of-{shards:05d}.parquet"))
            done += len(rows)
            progress(done, len(table), f"{name} shard {k + 1}/{shards}", stage="export")
    (root / "README.md").write_text(_hf_card(ws, table, splits, classes, with_provenance))


def _hf_card(ws, table, splits, classes, with_provenance) -> str:
    configs = "\n".join(f"  - split: {s}\n    path: data/{s}-*" for s in splits)
    counts = table.groupby(["split", "label"]).size().unstack(fill_value=0)
    lines = [
        "---", "license: other  # the team fills this in (see datasheet.md)",
        "task_categories:", "- image-classification", "tags:", "- face-mask", "- cctv",
        "pretty_name: Face mask head crops", "configs:", "- config_name: default",
        "  data_files:", configs, "---", "",
        "# Face mask head crops",
        "",
        f"Head crops from CCTV footage labeled {' / '.join(classes)} with facemask-annotator: "
        "people at work, with an active-learning queue and majority votes.",
        "",
        "```python",
        "import datasets",
        "ds = datasets.load_dataset('path/to/this/folder')",
        "ds['train'].features['label'].names",
        "```",
        "",
        "## Splits and labels", "", counts.to_markdown() if _has_tabulate() else counts.to_string(),
        "",
        "Splits are the tool's frozen ones: grouped by person (track) and near-duplicate, so no "
        "person is on both sides; `unassigned` holds crops labeled since the last frozen version.",
        "",
        "## Fields", "",
        "- `image`, `label` (ClassLabel), `crop_id` (the tool's id), `sha256` (of the image bytes)",
        "- `kind`: how the label was decided: `human` (a person, per crop), `track` (a person, "
        "for a whole track), `import` (arrived with imported data)",
        "- `n_annotators`, `agreement` (share of votes for the label)",
        "- `width`, `height` (pixels), `sharpness` (variance of the Laplacian)",
    ]
    if with_provenance:
        lines.append("- provenance: `source`, `frame_index`, `timestamp_s`, `box` (x1, y1, x2, y2)")
    else:
        lines.append("- no provenance: sources, frame numbers, times and boxes are left out")
    lines += ["", "See `datasheet.md` for how the data was collected, its gaps and its licence.", ""]
    return "\n".join(lines)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


# --- COCO and YOLO: frames ------------------------------------------------------------------------


@dataclass
class FramesReport:
    frames: int = 0
    missing: int = 0  # frames whose source is gone or unreadable
    boxes: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)


def frame_split(splits) -> str:
    """A frame's side: validation if any of its labeled heads is there (no validation head ever
    reaches training), else training, else ``unassigned``."""
    s = set(splits)
    return "val" if "val" in s else "train" if "train" in s else "unassigned"


def clip_box(x1, y1, x2, y2, width: int, height: int):
    """A box cut to the image, or None when nothing of it is left."""
    x1, x2 = float(np.clip(x1, 0, width)), float(np.clip(x2, 0, width))
    y1, y2 = float(np.clip(y1, 0, height)), float(np.clip(y2, 0, height))
    return (x1, y1, x2, y2) if x2 - x1 >= 1 and y2 - y1 >= 1 else None


def write_frames(ws: Workspace, table: pd.DataFrame, root: Path, fmt: str, *,
                 with_provenance: bool, progress: ProgressFn) -> FramesReport:
    """COCO (``images/SPLIT/*.jpg`` + ``annotations/instances_SPLIT.json``) or YOLO
    (``images/SPLIT``, ``labels/SPLIT``, ``data.yaml``) of the frames holding labeled heads.

    Every head box of such a frame is there: labeled ones with their class, unlabeled ones
    (and ties) as ``ignore`` regions in ``ignore.json`` (a detector must not learn them as
    background); ``not_a_face`` boxes are not heads and are left out."""
    classes = list(ws.config.labels)
    framed = table[table["frame_index"].notna() & table["x1"].notna()]
    keys = sorted({(int(s), int(f)) for s, f in zip(framed["source_id"], framed["frame_index"])})
    with ws.read_session() as s:
        boxes = export_reads.frame_boxes(s, keys)
        value = reports.current_values(s, boxes["crop_id"].tolist())
    split_of = dict(zip(table["crop_id"], table["split"]))
    rep = FramesReport(boxes={c: 0 for c in classes} | {"ignored": 0})
    coco: dict[str, dict] = {}
    yolo_names: list[str] = []
    ignore: dict[str, list] = {}
    provenance = []
    for n, (idx, g, bgr) in enumerate(_frames(boxes)):
        progress(n, len(keys), "reading frames", stage="export")
        first = g.iloc[0]
        if bgr is None:
            rep.missing += 1
            continue
        h, w = bgr.shape[:2]
        jpeg = images.encode_jpeg(bgr[:, :, ::-1])
        name = hashlib.sha256(jpeg).hexdigest() + ".jpg"
        split = frame_split(split_of[c] for c in g["crop_id"] if c in split_of)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "images" / split / name).write_bytes(jpeg)
        rep.frames += 1
        rep.splits[split] = rep.splits.get(split, 0) + 1
        labeled, ignored = [], []
        for r in g.itertuples():
            box = clip_box(r.x1, r.y1, r.x2, r.y2, w, h)
            v = value.get(int(r.crop_id))
            if box is None or v == NOT_A_FACE:
                continue
            if v in classes:
                labeled.append((int(r.crop_id), classes.index(v), box))
                rep.boxes[v] += 1
            else:
                ignored.append([round(b, 2) for b in box])
                rep.boxes["ignored"] += 1
        if ignored:
            ignore[f"images/{split}/{name}"] = ignored
        if with_provenance:
            provenance.append({"file": f"images/{split}/{name}", "source": first.source_name,
                               "frame_index": int(idx), "timestamp_s": _num(first.timestamp_s)})
        if fmt == "coco":
            _coco_add(coco.setdefault(split, _coco_doc(classes)), name, w, h, labeled,
                      provenance[-1] if with_provenance else None)
        else:
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / (name[:-4] + ".txt")).write_text("".join(
                f"{k} {(b[0] + b[2]) / 2 / w:.6f} {(b[1] + b[3]) / 2 / h:.6f} "
                f"{(b[2] - b[0]) / w:.6f} {(b[3] - b[1]) / h:.6f}\n" for _, k, b in labeled))
            yolo_names.append(name)
    if fmt == "coco":
        (root / "annotations").mkdir(exist_ok=True)
        for split, doc in coco.items():
            (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(doc))
    else:
        lines = ["path: .", *(f"{s}: images/{s}" for s in sorted(rep.splits)),
                 f"nc: {len(classes)}", "names: [" + ", ".join(classes) + "]"]
        (root / "data.yaml").write_text("\n".join(lines) + "\n")
    (root / "ignore.json").write_text(json.dumps(ignore))
    if with_provenance:
        pd.DataFrame(provenance).to_csv(root / "provenance.csv", index=False)
    progress(len(keys), len(keys), f"{rep.frames} frames", stage="export")
    return rep


def _frames(boxes: pd.DataFrame):
    """``(frame index, its boxes, BGR frame or None)``, each source's video opened once."""
    frames = dict(list(boxes.groupby(["source_id", "frame_index"], sort=True)))
    for sid, src in boxes.groupby("source_id", sort=True):
        first = src.iloc[0]
        for idx, bgr in video.read_frames(first.source_uri, kind=first.source_kind,
                                          indices=src["frame_index"].unique()):
            yield idx, frames[(sid, idx)], bgr


def _coco_doc(classes) -> dict:
    return {"info": {"description": "Face mask head boxes (facemask-annotator)"},
            "licenses": [], "images": [], "annotations": [],
            "categories": [{"id": k + 1, "name": c, "supercategory": "head"}
                           for k, c in enumerate(classes)]}


def _coco_add(doc, name, w, h, labeled, prov) -> None:
    image_id = len(doc["images"]) + 1
    doc["images"].append({"id": image_id, "file_name": name, "width": w, "height": h,
                          **(prov or {})})
    for crop_id, k, (x1, y1, x2, y2) in labeled:
        doc["annotations"].append({
            "id": len(doc["annotations"]) + 1, "image_id": image_id, "category_id": k + 1,
            "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
            "area": round((x2 - x1) * (y2 - y1), 2), "iscrowd": 0, "crop_id": crop_id})


# --- Label Studio -------------------------------------------------------------------------------


def labeling_config(classes) -> str:
    choices = "\n".join(f'    <Choice value="{c}"/>' for c in classes)
    return (f'<View>\n  <Image name="{LS_TO}" value="$image"/>\n'
            f'  <Choices name="{LS_FROM}" toName="{LS_TO}" choice="single" showInLine="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def write_labelstudio(ws: Workspace, table: pd.DataFrame, root: Path, *, with_provenance: bool,
                      progress: ProgressFn) -> None:
    """``tasks.json`` (one task per crop, labeled and unlabeled), ``images/``, and the
    ``labeling_config.xml`` of the project to import them into. Each task carries the active
    model's guess as a prediction (``model_version``, ``score``) and the current label as an
    annotation; ``data.crop_id`` and ``data.sha256`` bring a Label Studio export back here."""
    classes = list(ws.config.labels)
    with ws.read_session() as s:
        unlabeled = export_reads.crop_ids_with_status(s, [db.CropStatus.UNLABELED])
        extra = reports.crop_details(s, unlabeled)
        files = export_reads.crop_files(s, unlabeled)
        model, pred = _active_predictions(s, table["crop_id"].astype(int).tolist() + unlabeled)
    extra = extra.merge(files, on="crop_id", how="left").assign(label=None)
    rows = pd.concat([table, extra], ignore_index=True)
    (root / "images").mkdir()
    tasks = []
    for i, r in enumerate(rows.itertuples()):
        fname = f"{r.sha256}{Path(r.path).suffix}"
        dest = root / "images" / fname
        if not dest.exists():
            dest.write_bytes(ws.store.read_bytes(r.path))
        data = {LS_TO: LS_PREFIX + "images/" + fname, "crop_id": int(r.crop_id),
                "sha256": r.sha256}
        if with_provenance:
            data |= {"source": r.source, "frame_index": None if _na(r.frame_index) else
                     int(r.frame_index), "timestamp_s": _num(r.timestamp_s)}
        task = {"data": data, "predictions": [], "annotations": []}
        p = pred.get(int(r.crop_id))
        if p is not None:
            k = int(np.argmax(p))
            task["predictions"].append({"model_version": model, "score": float(p[k]),
                                        "result": [_choice(classes[k])]})
        if isinstance(r.label, str):
            task["annotations"].append({"result": [_choice(r.label)], "ground_truth": False})
        tasks.append(task)
        if i % 500 == 0:
            progress(i, len(rows), "writing tasks", stage="export")
    (root / "tasks.json").write_text(json.dumps(tasks, indent=1))
    (root / "labeling_config.xml").write_text(labeling_config(classes))


def _choice(value: str) -> dict:
    return {"from_name": LS_FROM, "to_name": LS_TO, "type": "choices",
            "value": {"choices": [value]}}


# --- FiftyOne -------------------------------------------------------------------------------------


def write_fiftyone(ws: Workspace, table: pd.DataFrame, root: Path, *, with_provenance: bool,
                   progress: ProgressFn) -> None:
    """FiftyOne's ``FiftyOneImageClassificationDataset`` layout: ``data/<sha256>.<ext>`` and
    ``labels.json`` (``{"classes": [...], "labels": {uuid: index}}``), plus ``predictions.json``
    in the same schema with each label's ``confidence`` for a second field::

        ds = fo.Dataset.from_dir(dataset_dir=D, dataset_type=fo.types.FiftyOneImageClassificationDataset)
        ds.merge_dir(dataset_dir=D, dataset_type=..., labels_path="predictions.json",
                     label_field="predictions")
    """
    classes = list(ws.config.labels)
    with ws.read_session() as s:
        model, pred = _active_predictions(s, table["crop_id"].astype(int).tolist())
    (root / "data").mkdir()
    labels, predictions = {}, {}
    for i, r in enumerate(table.itertuples()):
        uuid = r.sha256
        dest = root / "data" / f"{uuid}{Path(r.path).suffix}"
        if not dest.exists():
            dest.write_bytes(ws.store.read_bytes(r.path))
        labels[uuid] = classes.index(r.label)
        p = pred.get(int(r.crop_id))
        if p is not None:
            k = int(np.argmax(p))
            predictions[uuid] = {"label": k, "confidence": float(p[k])}
        if i % 500 == 0:
            progress(i, len(table), "copying", stage="export")
    (root / "labels.json").write_text(json.dumps({"classes": classes, "labels": labels}))
    (root / "predictions.json").write_text(json.dumps({
        "classes": classes, "labels": predictions,
        "model_version": model}))
    if with_provenance:
        table.assign(uuid=table["sha256"])[["uuid", "crop_id", "source", "origin", "frame_index",
                                            "timestamp_s", "x1", "y1", "x2", "y2"]].to_csv(
            root / "provenance.csv", index=False)


def _active_predictions(s, crop_ids) -> tuple[str | None, dict]:
    """The active model's name and its class probabilities per crop id."""
    model = model_versions.active_model(s)
    if model is None:
        return None, {}
    ids, probs, _ = model_reports.prediction_arrays(s, model.id, crop_ids)
    return model.name, {int(i): p for i, p in zip(ids, probs)}


# --- helpers --------------------------------------------------------------------------------------


def _na(v) -> bool:
    try:
        return v is None or bool(np.isnan(float(v)))
    except (TypeError, ValueError):
        return True


def _num(v):
    return None if _na(v) else float(v)


__all__ = ["write_hf", "write_frames", "write_labelstudio", "write_fiftyone", "labeling_config",
           "frame_split", "clip_box", "InputError"]
