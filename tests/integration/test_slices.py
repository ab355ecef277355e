"""Slice attributes end to end: stored at import, backfilled, and `evaluate --slices` on the
shared scenes and faces (labels known), on the validation split and on random-share labels."""
from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pytest
from sqlalchemy import delete, func, select
from typer.testing import CliRunner

from annotator.core import slices
from annotator.data import db, slice_store
from annotator.service import auth, labeling
from annotator.service.workspace import Workspace
from pipelines.cli import app
from tests.conftest import write_image_folder

runner = CliRunner()


def ok_json(*args):
    r = runner.invoke(app, [str(a) for a in args] + ["--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_import_stores_attributes_and_backfill_heals(tmp_path):
    folder = write_image_folder(tmp_path / "f", {"mask": 6, "no_mask": 5}, size=30)
    dark = (cv2.imread(str(next((folder / "mask").iterdir()))) * 0.1).astype(np.uint8)
    cv2.imwrite(str(folder / "mask" / "dark.png"), dark)
    ws_dir = tmp_path / "ws"
    ok_json("init", "--project", ws_dir)
    assert ok_json("import-folder", folder, "--labeled", "--project", ws_dir)["added"] == 12
    counts = ok_json("slices", "--project", ws_dir)
    assert counts["crops"] == 12 and counts["without_attributes"] == 0
    assert counts["bands"]["face"] == {"20-45": 12}  # 30-px pictures
    assert counts["bands"]["light"]["dark"] == 1
    assert all(sum(b.values()) == 12 for b in counts["bands"].values())
    # Crops stored before this version (or whose write was interrupted): the backfill fills them.
    ws = Workspace.open(ws_dir)
    with ws.session() as s:
        s.execute(delete(db.CropAttributes).where(db.CropAttributes.crop_id % 2 == 0))
    ws.dispose()
    assert ok_json("slices", "--project", ws_dir)["without_attributes"] == 6
    rep = ok_json("slices", "--backfill", "--project", ws_dir)
    assert (rep["missing_before"], rep["filled"], rep["missing_after"]) == (6, 6, 0)
    assert ok_json("slices", "--backfill", "--project", ws_dir)["filled"] == 0  # nothing twice
    assert ok_json("slices", "--project", ws_dir)["bands"] == counts["bands"]
    # A file gone from the store still gets a row (unknown), so the backfill does not loop.
    ws = Workspace.open(ws_dir)
    with ws.session() as s:
        s.execute(delete(db.CropAttributes))
        path = s.scalar(select(db.Crop.path).order_by(db.Crop.id).limit(1))
    ws.store.path(path).unlink()
    ws.dispose()
    rep = ok_json("slices", "--backfill", "--limit", "5", "--project", ws_dir)
    assert (rep["filled"], rep["unreadable"], rep["missing_after"]) == (5, 1, 7)


def test_bad_input_is_one_line(tmp_path):
    r = runner.invoke(app, ["slices", "--limit", "0", "--project", str(tmp_path / "none")])
    assert r.exit_code != 0 and "Traceback" not in r.output


# --- the shared scenes and faces ---------------------------------------------------------------

PER_CLASS = 120


def _scene_crops(shared, dest, per_class: int) -> int:
    """Face boxes cut from the scenes (small, varied faces), one folder per label."""
    n = {"mask": 0, "no_mask": 0}
    with open(shared / "scenes" / "boxes.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] in n]
    rows = rows[:: max(1, len(rows) // (3 * per_class))]
    cache = {}
    for r in rows:
        if n[r["label"]] >= per_class:
            continue
        img = cache.setdefault(r["image"], cv2.imread(str(shared / "scenes" / "images" / r["image"])))
        x1, y1, x2, y2 = (int(float(r[k])) for k in ("x1", "y1", "x2", "y2"))
        if img is None or x2 - x1 < 6 or y2 - y1 < 6:
            continue
        (dest / r["label"]).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(dest / r["label"] / f"scene_{n[r['label']]:04d}.png"), img[y1:y2, x1:x2])
        n[r["label"]] += 1
    return sum(n.values())


def _faces(shared, dest, per_class: int, *, skip: int = 0) -> None:
    for label in ("mask", "no_mask"):
        files = sorted((shared / "faces" / label).iterdir())[skip:]
        (dest / label).mkdir(parents=True, exist_ok=True)
        for f in files[:: max(1, len(files) // per_class)][:per_class]:
            shutil.copy(f, dest / label / f.name)


@pytest.mark.shared
def test_evaluate_slices_on_shared_scenes_and_faces(shared_data, tmp_path):
    labeled, unlabeled, ws_dir = tmp_path / "labeled", tmp_path / "unlabeled", tmp_path / "ws"
    _faces(shared_data, labeled, PER_CLASS)
    _scene_crops(shared_data, labeled, PER_CLASS)
    _faces(shared_data, unlabeled, 40, skip=7)
    ok_json("init", "--project", ws_dir)
    ok_json("import-folder", labeled, "--labeled", "--project", ws_dir)
    added = ok_json("import-folder", unlabeled, "--project", ws_dir)["added"]
    ok_json("build-dataset", "--val-fraction", "0.3", "--project", ws_dir)
    trained = ok_json("train", "--epochs", "2", "--batch-size", "32", "--lr", "1e-3", "--init",
                      "none", "--project", ws_dir)
    ok_json("models", "promote", trained["version"], "--project", ws_dir)
    # The random share of the queue, labeled after the model scored it (truth: the folder name).
    ws = Workspace.open(ws_dir)
    with ws.session() as s:
        uid = auth.add_user(s, "ann", "ann-password-1").id
    cards = labeling.claim(ws, uid, added, strategy="random")
    assert cards and {c.sampling for c in cards} == {"random"}
    with ws.read_session() as s:
        origin = dict(s.execute(select(db.Crop.id, db.Crop.origin)).all())
    for c in cards:
        labeling.submit(ws, uid, c.crop_id, origin[c.crop_id].split("/")[0])
    ws.dispose()

    ev = ok_json("evaluate", "--slices", "--project", ws_dir)
    val = ev["slices"]["data"]
    assert val["n"] == int(np.sum(ev["confusion"])) > 0
    for part, n in ((val, val["n"]), (ev["slices"]["queue"], len(cards))):
        assert part["n"] == n
        by_attr = {}
        for r in part["slices"]:
            by_attr.setdefault(r["attribute"], []).append(r)
        assert set(by_attr) == set(slices.ATTRIBUTES)  # every attribute, every band it has
        for attr, rows in by_attr.items():
            assert sum(r["n"] for r in rows) == n, attr
        worst = part["slices"][0]
        assert 0 <= worst["error_low"] <= worst["error"] <= worst["error_high"] <= 1
        assert worst["error_high"] > worst["error_low"]
        lows = [r["error_low"] for r in part["slices"]]
        assert lows == sorted(lows, reverse=True)  # worst first
    # Faces (up to 128 px) and scene boxes (often under 45 px) give several size bands.
    face = {r["band"] for r in val["slices"] if r["attribute"] == "face"}
    assert {">=45", "20-45"} <= face
    # Bands match the stored attributes of the validation crops.
    ws = Workspace.open(ws_dir)
    with ws.read_session() as s:
        assert slice_store.missing_count(s) == 0
        assert s.scalar(select(func.count()).select_from(db.CropAttributes)) == s.scalar(
            select(func.count()).select_from(db.Crop))
    ws.dispose()
    # Human output: the table of worst slices.
    r = runner.invoke(app, ["evaluate", "--slices", "--project", str(ws_dir)])
    assert r.exit_code == 0 and "worst slices on" in r.stdout and "95% interval" in r.stdout


@pytest.mark.shared
def test_extraction_stores_attributes_with_pose_from_mtcnn_points(shared_data, tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    video = shared_data / "videos" / "pedestrians_eyelevel_640x360.mp4"
    rep = ok_json("extract", video, "--detector", "mtcnn", "-p", ws.root)
    assert rep["crops_kept"] > 10
    with ws.read_session() as s:
        rows = s.execute(select(db.Crop.y1, db.Crop.y2, db.CropAttributes.face_px,
                                db.CropAttributes.pose)
                         .join(db.CropAttributes, db.CropAttributes.crop_id == db.Crop.id)).all()
    ws.dispose()
    assert len(rows) == rep["crops_kept"]  # every stored crop got its attributes
    assert all(abs(fp - (y2 - y1)) < 0.11 for y1, y2, fp, _ in rows)  # the head box's height
    poses = {p for *_, p in rows}
    assert poses <= {"frontal", "profile"} and "frontal" in poses  # MTCNN gives eyes and nose
