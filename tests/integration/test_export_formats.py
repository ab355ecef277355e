"""Exports the field can load (issue 27) and exports that leak nothing by default (issue 26).

One module workspace goes through the real loop: extract (YuNet) from a shared video and shared
multi-person photos -> two people label through the queue -> retrain (1 epoch) -> every export
format, each opened by the library its users would open it with.
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from annotator.data import crop_queue, export_reads, reports
from annotator.service import auth, labeling, review
from annotator.service.workspace import Workspace
from pipelines import export, extract, retrain
from pipelines.cli import app

pytestmark = pytest.mark.shared
runner = CliRunner()
VIDEO = "videos/pedestrians_eyelevel_640x360.mp4"
SCENES = 8
LEFT_UNLABELED = 12


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok_json(*args):
    r = cli(*args, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def loop(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("export")
    ws = Workspace.init(tmp / "ws")
    scenes = sorted((shared_data / "scenes" / "images").iterdir())[:SCENES]
    rep = extract.run(ws, extract.ExtractOptions(
        sources=[str(shared_data / VIDEO), *map(str, scenes)], detector="yunet", fps=2.0))
    assert rep.errors == []
    with ws.session() as s:
        alice = auth.add_user(s, "alice", "alice-password-1").id
        bob = auth.add_user(s, "bob", "bob-password-12").id
    with ws.read_session() as s:
        total = reports.stats(s, ws.config.labels)["crops"]["total"]
    assert total >= 40
    cards = labeling.claim(ws, alice, total - LEFT_UNLABELED, seed=0)
    decisions = {c.crop_id: ("mask", "no_mask")[c.crop_id % 2] for c in cards}
    double = sorted(decisions)[:10]  # these wait for a second vote (agreement)
    with ws.session() as s:
        crop_queue.require_votes(s, double, 2)
    labeling.submit_page(ws, alice, decisions)
    labeling.submit_page(ws, bob, {c: decisions[c] if k >= 2 else
                                   ("no_mask" if decisions[c] == "mask" else "mask")
                                   for k, c in enumerate(double)})
    rt = retrain.run(ws, retrain.RetrainOptions(epochs=1, batch_size=16, val_fraction=0.3,
                                                force=True))
    assert rt.active
    names = [p.name for p in scenes] + [VIDEO.rsplit("/", 1)[1]]
    yield {"ws": ws, "tmp": tmp, "names": names, "shared": shared_data}
    ws.dispose()


@pytest.fixture(scope="module")
def exports(loop):
    """Every format exported once without provenance: format -> (report, folder)."""
    out = {}
    for fmt in export.FORMATS:
        dest = loop["tmp"] / f"out_{fmt}" / ("labels.csv" if fmt == "csv" else "")
        rep = ok_json("export", dest, "--format", fmt, "--project", loop["ws"].root)
        out[fmt] = (rep, dest.parent if fmt == "csv" else dest)
    return out


def _current(ws):
    with ws.read_session() as s:
        return reports.current_labels(s, ws.config.labels)


def test_hf_export_opens_with_datasets(loop, exports, tmp_path):
    import datasets

    rep, folder = exports["hf"]
    cur = _current(loop["ws"])
    ds = datasets.load_dataset(str(folder), cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds["train"].features["label"], datasets.ClassLabel)
    assert ds["train"].features["label"].names == list(loop["ws"].config.labels)
    assert isinstance(ds["train"].features["image"], datasets.Image)
    assert sum(len(d) for d in ds.values()) == len(cur) == rep["crops"]
    assert {"train": len(ds["train"]), "validation": len(ds["validation"])} == \
        {"train": rep["splits"]["train"], "validation": rep["splits"]["val"]}
    got = {}
    for d in ds.values():
        names = d.features["label"].names
        got.update({r["crop_id"]: names[r["label"]] for r in d.remove_columns("image")})
    assert got == dict(zip(cur["crop_id"].astype(int), cur["label"]))
    first = ds["train"][0]["image"]
    assert first.size[0] > 0  # a PIL image decoded from the Parquet bytes
    card = (folder / "README.md").read_text()
    assert card.startswith("---") and "configs:" in card


def _coco(folder, split):
    from pycocotools.coco import COCO

    return COCO(str(folder / "annotations" / f"instances_{split}.json"))


def test_coco_export_loads_in_pycocotools_and_supervision(loop, exports):
    import supervision as sv

    rep, folder = exports["coco"]
    assert rep["frames"] > 0 and "admins only" in rep["note"]
    n_boxes = 0
    for split in rep["splits"]:
        coco = _coco(folder, split)
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(loop["ws"].config.labels)
        for img in coco.loadImgs(coco.getImgIds()):
            assert (folder / "images" / split / img["file_name"]).is_file()
            assert re.fullmatch(r"[0-9a-f]{64}\.jpg", img["file_name"])
            for a in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
                x, y, w, h = a["bbox"]
                assert 0 <= x and 0 <= y and w > 0 and h > 0
                assert x + w <= img["width"] and y + h <= img["height"]
                n_boxes += 1
        ds = sv.DetectionDataset.from_coco(str(folder / "images" / split),
                                           str(folder / "annotations" / f"instances_{split}.json"))
        assert len(ds) == len(coco.getImgIds())
        for path, _, det in ds:
            img = next(i for i in coco.dataset["images"] if i["file_name"] == path.rsplit("/", 1)[1])
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            want = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
            assert np.allclose(np.sort(det.xyxy, axis=0), np.sort(want.reshape(-1, 4), axis=0),
                               atol=0.01)
    labeled = sum(v for k, v in rep["boxes"].items() if k != "ignored")
    assert n_boxes == labeled > 0
    assert rep["boxes"]["ignored"] > 0  # the heads left unlabeled are ignore regions
    ignore = json.loads((folder / "ignore.json").read_text())
    assert sum(len(v) for v in ignore.values()) == rep["boxes"]["ignored"]


def test_yolo_export_has_the_same_boxes_in_supervision(loop, exports):
    import supervision as sv

    rep, folder = exports["yolo"]
    crep, cfolder = exports["coco"]
    assert rep["boxes"] == crep["boxes"] and rep["splits"] == crep["splits"]
    for split in rep["splits"]:
        yolo = sv.DetectionDataset.from_yolo(str(folder / "images" / split),
                                             str(folder / "labels" / split),
                                             str(folder / "data.yaml"))
        assert yolo.classes == list(loop["ws"].config.labels)
        coco = _coco(cfolder, split)
        by_name = {i["file_name"]: i for i in coco.dataset["images"]}
        assert len(yolo) == len(by_name)
        for path, _, det in yolo:
            img = by_name[path.rsplit("/", 1)[1]]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
            want = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
            order = lambda b: b[np.lexsort(b.T[::-1])] if len(b) else b.reshape(0, 4)  # noqa: E731
            assert np.allclose(order(det.xyxy), order(want.reshape(-1, 4)), atol=0.05)
            assert sorted(det.class_id.tolist()) == sorted(a["category_id"] - 1 for a in anns)


def test_fiftyone_export_follows_the_documented_layout(loop, exports):
    """FiftyOneImageClassificationDataset: data/<uuid>.<ext> and labels.json with classes and
    uuid -> class index (docs.voxel51.com, 'FiftyOneImageClassificationDataset'); predictions in
    the same schema with confidences, for a second field."""
    rep, folder = exports["fiftyone"]
    labels = json.loads((folder / "labels.json").read_text())
    preds = json.loads((folder / "predictions.json").read_text())
    classes = list(loop["ws"].config.labels)
    assert labels["classes"] == preds["classes"] == classes
    files = {p.stem: p for p in (folder / "data").iterdir()}
    assert set(labels["labels"]) == set(files) and len(files) == rep["crops"]
    cur = _current(loop["ws"])
    assert sorted(classes[i] for i in labels["labels"].values()) == sorted(cur["label"])
    assert preds["model_version"] and set(preds["labels"]) <= set(files)
    for p in preds["labels"].values():
        assert p["label"] in range(len(classes)) and 0.0 <= p["confidence"] <= 1.0


def _ls_export(tasks, *, changed, new):
    """What Label Studio's JSON export of our imported tasks looks like after a person changed
    one annotation and added one: ids, completed_by as an id, created_username " e-mail, id"."""
    out = []
    for n, t in enumerate(tasks, 1):
        anns = []
        for k, a in enumerate(t["annotations"]):
            anns.append({"id": 100 * n + k, "completed_by": 1, "created_username":
                         " admin@example.com, 1", "result": a["result"], "was_cancelled": False,
                         "ground_truth": False, "lead_time": 3.2, "task": n})
        if n == changed:
            v = anns[0]["result"][0]["value"]["choices"]
            v[0] = "no_mask" if v[0] == "mask" else "mask"
        if n == new:
            anns.append({"id": 9999, "completed_by": 2, "created_username": " eve@lab.org, 2",
                         "result": [{"id": "x1", "from_name": "label", "to_name": "image",
                                     "type": "choices", "origin": "manual",
                                     "value": {"choices": ["mask"]}}],
                         "was_cancelled": False, "task": n})
        out.append({"id": n, "data": t["data"], "annotations": anns,
                    "predictions": [p | {"id": n, "task": n} for p in t["predictions"]],
                    "drafts": [], "meta": {}, "project": 1})
    return out


def test_labelstudio_round_trip(loop, exports, tmp_path):
    rep, folder = exports["labelstudio"]
    ws = loop["ws"]
    tasks = json.loads((folder / "tasks.json").read_text())
    assert all((folder / "images" / t["data"]["image"].rsplit("/", 1)[1]).is_file() for t in tasks)
    assert any(t["predictions"] and t["predictions"][0]["model_version"] for t in tasks)
    assert all(0 <= p["score"] <= 1 for t in tasks for p in t["predictions"])
    changed = next(n for n, t in enumerate(tasks, 1) if t["annotations"])
    new = next(n for n, t in enumerate(tasks, 1) if not t["annotations"])
    before = _current(ws)
    edited = tmp_path / "ls.json"
    edited.write_text(json.dumps(_ls_export(tasks, changed=changed, new=new)))
    r1 = ok_json("import-labelstudio", edited, "--project", ws.root)
    assert r1["format"] == "json" and r1["added"] == 1 and len(r1["conflicts"]) == 1
    assert r1["conflicts"][0]["crop_id"] == tasks[changed - 1]["data"]["crop_id"]
    after = _current(ws)
    new_id = tasks[new - 1]["data"]["crop_id"]
    assert after.set_index("crop_id").loc[new_id, "label"] == "mask"
    assert "eve@lab.org" in after.set_index("crop_id").loc[new_id, "annotators"]
    kept = after[after["crop_id"] != new_id].set_index("crop_id")["label"].to_dict()
    assert kept == before.set_index("crop_id")["label"].to_dict()  # nothing overwritten
    r2 = ok_json("import-labelstudio", edited, "--project", ws.root)
    assert r2["added"] == 0 and len(r2["conflicts"]) == 1
    # JSON-MIN: one flat row per annotation, the choice under the control's name
    mini = [{"image": t["data"]["image"], "crop_id": t["data"]["crop_id"],
             "sha256": t["data"]["sha256"], "id": n, "label": "no_mask",
             "annotator": "min@lab.org", "annotation_id": n, "lead_time": 1.0}
            for n, t in enumerate(tasks, 1) if not t["annotations"]][1:3]
    (tmp_path / "min.json").write_text(json.dumps(mini))
    r3 = ok_json("import-labelstudio", tmp_path / "min.json", "--project", ws.root)
    assert r3["format"] == "json-min" and r3["added"] == len(mini) and not r3["conflicts"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = cli("import-labelstudio", bad, "--project", ws.root)
    assert r.exit_code != 0 and "not JSON" in r.output and "Traceback" not in r.output


def test_datasheet_counts_equal_stats(loop, tmp_path):
    ws = loop["ws"]
    rep = ok_json("export", tmp_path / "ds", "--format", "imagefolder", "--project", ws.root)
    sheet = json.loads((tmp_path / "ds" / "datasheet.json").read_text())
    st = ok_json("stats", "--project", ws.root)
    w = sheet["composition"]["workspace"]
    assert (w["crops"], w["labels"], w["human_labels"]) == (st["crops"], st["labels"],
                                                            st["human_labels"])
    ex = sheet["composition"]["exported"]
    cur = _current(ws)
    assert ex["labels"] == cur["label"].value_counts().to_dict() == rep["labels"]
    assert sum(sum(r.values()) for r in ex["split_by_label"].values()) == len(cur)
    assert sheet["collection"]["sources"] == st["sources"] == SCENES + 1
    assert sheet["collection"]["detectors"] == {"yunet": len(cur)}
    assert sheet["labeling"]["agreement"] == {"crops": 10, "unanimous": 0.8, "pairwise": 0.8}
    assert {"small_faces", "blur", "night"} <= sheet["known_gaps"].keys()
    assert "TO FILL IN" in sheet["licence"]
    md = (tmp_path / "ds" / "datasheet.md").read_text()
    assert "## Known gaps" in md and str(len(cur)) in md


def _leaks(folder, needles):
    found = []
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            found += [(p.name, n) for n in needles if n.encode() in data]
        found += [(p.name, n) for n in needles if n in p.name]
    return found


def test_exports_leak_no_provenance_by_default(loop, exports, tmp_path):
    ws = loop["ws"]
    with ws.read_session() as s:
        origins = [o for o in reports.crop_origins(s, _current(ws)["crop_id"].tolist()).values()]
    stems = [n.rsplit(".", 1)[0] for n in loop["names"]]
    needles = [*loop["names"], *stems, str(loop["shared"]), "frame_index", "timestamp",
               *{o.split(":")[0] for o in origins}, *{o.split(":")[1] for o in origins if ":" in o}]
    for fmt, (_, folder) in exports.items():
        assert _leaks(folder, needles) == [], fmt
    # the same search finds them when provenance is asked for: it can fail
    ok_json("export", tmp_path / "p.csv", "--format", "csv", "--with-provenance",
            "--project", ws.root)
    hits = {n for _, n in _leaks(tmp_path, needles)}
    assert loop["names"][-1] in hits and "frame_index" in hits


def test_import_predictions_drives_sampling_and_review(loop, tmp_path):
    ws = loop["ws"]
    cur = _current(ws)
    with ws.read_session() as s:
        unl = export_reads.crop_ids_with_status(s, ["unlabeled"])
    # another model: sure of the opposite of every label, and sure about half the queue
    rows = ["crop_id,mask,no_mask"]
    rows += [f"{c},{0.02 if v == 'mask' else 0.98},{0.98 if v == 'mask' else 0.02}"
             for c, v in zip(cur["crop_id"], cur["label"])]
    rows += [f"{c},{0.5 if k % 2 else 0.99},{0.5 if k % 2 else 0.01}" for k, c in enumerate(unl)]
    rows.append("999999,0.5,0.5")
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    rep = ok_json("import-predictions", tmp_path / "p.csv", "--name", "peer1", "--activate",
                  "--project", ws.root)
    assert rep["crops"] == len(cur) + len(unl) and rep["unknown"] == 1 and rep["active"]
    assert rep["val"]["balanced_accuracy"] == 0.0  # agreement with the frozen labels: none
    listed = ok_json("models", "list", "--project", ws.root)
    assert next(v for v in listed if v["name"] == "peer1")["active"]
    # Review: every label is contradicted with confidence by the imported model
    contra = review.contradictions(ws, threshold=0.9, limit=1000)
    assert set(contra["crop_id"]) == set(cur["crop_id"].astype(int))
    # sampling: the queue's order follows the imported uncertainties (0.5/0.5 first)
    unsure = {c for k, c in enumerate(unl) if k % 2}
    with ws.read_session() as s:
        top = reports.claimable_top(s, annotator_id=0, limit=len(unsure))
    assert set(top["crop_id"].astype(int)) == unsure
    r = cli("import-predictions", tmp_path / "p.csv", "--name", "peer1", "--project", ws.root)
    assert r.exit_code != 0 and "already exists" in r.output and "Traceback" not in r.output
    # the loop goes on from it: a retrain measures it on the new frozen split from its stored
    # predictions (no weights to run), starts from scratch, and beats it
    rt = retrain.run(ws, retrain.RetrainOptions(epochs=1, batch_size=16))
    assert rt.train["init"] == "none (active peer1 has no weights)"
    assert rt.promote["active_balanced_accuracy"] is not None and rt.promote["promoted"]


def test_a_retrain_that_does_not_beat_imported_predictions_keeps_them_active(loop, tmp_path):
    """The imported version has no weights, so the retrain's last step (score what the active
    model has not scored) has nothing to run: it is left out, not failed."""
    ws = loop["ws"]
    cur = _current(ws)
    rows = ["crop_id,mask,no_mask"] + [
        f"{c},{0.99 if v == 'mask' else 0.01},{0.01 if v == 'mask' else 0.99}"
        for c, v in zip(cur["crop_id"], cur["label"])]  # agrees with every label: hard to beat
    (tmp_path / "agree.csv").write_text("\n".join(rows) + "\n")
    ok_json("import-predictions", tmp_path / "agree.csv", "--name", "peer2", "--activate",
            "--project", ws.root)
    rt = retrain.run(ws, retrain.RetrainOptions(epochs=1, batch_size=16, lr=1e-9))
    assert not rt.promote["promoted"] and rt.active == "peer2"
    assert rt.score is None
