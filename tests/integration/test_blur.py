"""Blur on real multi-person scenes (../shared/data/scenes): the frame context shows the labeled
head as it is and every other face blurred; `detect --blur-faces` blurs the heads in its
annotated output."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from annotator.media import images
from annotator.service import crop_cards

REPO = Path(__file__).resolve().parents[2]
NAMED = ("01d0117fb990e00ac58348ba621975aa.jpg", "0697d656d0e607116947d81322f962a2.jpg")


def scene_boxes(shared_data: Path) -> dict[str, list[list[float]]]:
    out = defaultdict(list)
    with open(shared_data / "scenes" / "boxes.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            out[r["image"]].append([float(r[k]) for k in ("x1", "y1", "x2", "y2")])
    return out


def whole_frame(path: Path, box, blur: bool) -> np.ndarray:
    """The context view of a crop at ``box`` reaching over the whole frame, at native size."""
    card = crop_cards.Card(crop_id=1, image=b"", mime="image/png", width=int(box[2] - box[0]),
                         height=int(box[3] - box[1]), sampling=None, source_kind="image",
                         source_uri=str(path), box=tuple(box))
    view = crop_cards.frame_context(card, max_width=100_000, pad=1_000.0, blur=blur)
    assert view is not None
    return view.astype(np.int16)


def region(img, box):
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return img[y1 + 3:y2 - 2, x1 + 3:x2 - 2]  # inside the drawn rectangle


def blurred_faces(path: Path, boxes, keep: int) -> tuple[bool, list[bool]]:
    """(labeled head unchanged, per other face: changed) for the crop ``boxes[keep]``."""
    plain, blurred = whole_frame(path, boxes[keep], False), whole_frame(path, boxes[keep], True)
    assert plain.shape == blurred.shape == images.read_bgr(path).shape
    same = np.array_equal(region(plain, boxes[keep]), region(blurred, boxes[keep]))
    changed = [float(np.abs(region(plain, b) - region(blurred, b)).mean()) > 2.0
               for i, b in enumerate(boxes) if i != keep]
    return same, changed


@pytest.mark.parametrize("name", NAMED)
def test_context_view_blurs_every_other_face_and_not_the_labeled_head(shared_data, name):
    boxes = scene_boxes(shared_data)[name]
    assert len(boxes) >= 3
    path = shared_data / "scenes" / "images" / name
    for keep in range(len(boxes)):
        same, changed = blurred_faces(path, boxes, keep)
        assert same, f"the labeled head {keep} changed"
        assert all(changed), f"with head {keep} labeled, faces {changed} (False: not blurred)"


def test_blur_reaches_most_faces_across_scenes(shared_data):
    """The detector's recall bounds what is blurred: over the first 15 scenes with >= 3 faces
    of >= 30 px, at least 85% of the other faces are blurred and no labeled head changes."""
    scenes = [(n, b) for n, b in sorted(scene_boxes(shared_data).items())
              if len(b) >= 3 and min(x[3] - x[1] for x in b) >= 30][:15]
    total = hit = 0
    for name, boxes in scenes:
        same, changed = blurred_faces(shared_data / "scenes" / "images" / name, boxes, 0)
        assert same, name
        total, hit = total + len(changed), hit + sum(changed)
    assert total >= 30 and hit / total >= 0.85, (hit, total)


def test_blur_off_leaves_the_frame_as_it_is(shared_data):
    boxes = scene_boxes(shared_data)[NAMED[0]]
    path = shared_data / "scenes" / "images" / NAMED[0]
    plain = whole_frame(path, boxes[0], False)
    raw = images.read_bgr(path)[:, :, ::-1].astype(np.int16)
    for b in boxes[1:]:
        assert np.array_equal(region(plain, b), region(raw, b))


def test_detect_blur_faces_blurs_the_heads_in_the_annotated_output(shared_data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def cli(*args):
        p = subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        return p

    ws = tmp_path / "ws"
    cli("init", "-p", ws)
    cli("models", "import-keras", shared_data / "peer" / "OFMClassifier.h5", "-p", ws)
    scene = shared_data / "scenes" / "images" / NAMED[0]
    outs = {}
    for flag in ("--blur-faces", None):
        out = tmp_path / ("blurred" if flag else "plain")
        cli("detect", scene, "--detector", "yunet", "--out", out, "--json", "-p", ws,
            *([flag] if flag else []))
        rep = json.loads((out / "report.json").read_text())
        assert rep["blur_faces"] is bool(flag)  # the Footage page blurs its track pictures too
        outs[flag] = (images.read_bgr(out / rep["per_source"][0]["video"]).astype(np.int16), out)
    with open(outs[None][1] / "detections.csv", newline="") as fh:
        heads = [[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in csv.DictReader(fh)]
    assert len(heads) >= 3
    blurred, plain = outs["--blur-faces"][0], outs[None][0]
    assert all(float(np.abs(region(blurred, h) - region(plain, h)).mean()) > 2.0 for h in heads)
