"""`annotator detect` on the real videos with Neuralet's released weights imported by the CLI:
the files agree with each other, the video decodes, voting lowers flicker, and uncertain tracks
reach the queue once and can be labeled on the Label page."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VIDEOS = ("putting_on_mask_1280x720.mp4", "pedestrians_eyelevel_640x360.mp4")
FAST = ["--fps", "3", "--max-seconds", "3"]  # 10 frames a video


def cli(*args, check=True):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", *map(str, args)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def project(shared_data, tmp_path_factory):
    ws = tmp_path_factory.mktemp("detect") / "ws"
    cli("init", "-p", ws)
    cli("models", "import-keras", shared_data / "peer" / "OFMClassifier.h5", "-p", ws)
    return ws


@pytest.fixture(scope="module")
def two_videos(project, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "both"
    proc = cli("detect", *[shared_data / "videos" / v for v in VIDEOS], *FAST, "--out", out,
               "--json", "-p", project)
    return out, json.loads(proc.stdout)


def test_files_agree_with_each_other_and_the_report(two_videos):
    out, rep = two_videos
    assert rep["sources"] == 2 and rep["errors"] == []
    for key in ("frames", "detections", "tracks", "by_label", "flicker", "seconds", "fps"):
        assert key in rep
    dets, tracks, summary = (rows(out / f"{n}.csv") for n in ("detections", "tracks", "summary"))
    assert len(dets) == rep["detections"] > 20
    assert len(tracks) == rep["tracks"] > 2
    assert sum(rep["by_label"].values()) == rep["detections"]
    # Rows per track: a track's frame count is its number of detection rows.
    per_track = Counter((d["source"], d["track"]) for d in dets)
    assert per_track == {(t["source"], t["track"]): int(t["frames"]) for t in tracks}
    # Per-minute sums are the detections, split by voted label.
    for s in summary:
        assert int(s["faces"]) == int(s["mask"]) + int(s["no_mask"]) + int(s["unknown"])
    for src in rep["per_source"]:
        mine = [d for d in dets if d["source"] == src["name"]]
        assert sum(int(s["faces"]) for s in summary if s["source"] == src["name"]) == len(mine)
        assert src["detections"] == len(mine)
        by_voted = Counter(d["voted"] for d in mine)
        assert {k: v for k, v in src["by_label"].items() if v} == dict(by_voted)
    # The voted label in tracks.csv is the last frame's voted label.
    last = {}
    for d in dets:
        last[(d["source"], d["track"])] = d["voted"]
    assert all(last[(t["source"], t["track"])] == t["voted"] for t in tracks)


def test_annotated_videos_decode_with_the_expected_frame_count(two_videos):
    import cv2

    from annotator.media.video import FrameReader, SourceSpec

    out, rep = two_videos
    for src in rep["per_source"]:
        sampled = sum(1 for _ in FrameReader(SourceSpec(src["uri"], "video", src["name"]),
                                             fps=3, max_seconds=3))
        assert src["frames"] == sampled >= 9
        path = out / src["video"]
        cap = cv2.VideoCapture(str(path))
        n = 0
        while cap.read()[0]:
            n += 1
        assert (n, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))) == (src["frames"], src["width"])
        assert src["codec"] == "mp4v"  # the default: fast; the Footage page asks for vp09


def test_voting_lowers_flicker(two_videos):
    _out, rep = two_videos
    f = rep["flicker"]
    assert f["per_frame"] > 0 and f["voted"] < f["per_frame"]
    assert f["voted_changes"] < f["per_frame_changes"]


def test_to_queue_adds_uncertain_crops_once_and_they_can_be_labeled(project, shared_data, tmp_path,
                                                                   monkeypatch):
    src = shared_data / "videos" / VIDEOS[1]
    first = json.loads(cli("detect", src, *FAST, "--no-video", "--to-queue", "--out",
                           tmp_path / "a", "--json", "-p", project).stdout)
    assert first["hard_tracks"] >= 1 and first["queued"] == first["hard_crops"] >= 1
    stats = json.loads(cli("stats", "--json", "-p", project).stdout)
    assert stats["crops_by_origin"]["detect"] == first["queued"]
    (tmp_path / "a" / "notes.txt").write_text("mine")  # --force replaces detect's files only
    again = json.loads(cli("detect", src, *FAST, "--no-video", "--to-queue", "--out",
                           tmp_path / "a", "--force", "--json", "-p", project).stdout)
    assert again["hard_crops"] == first["hard_crops"] and again["queued"] == 0
    assert (tmp_path / "a" / "notes.txt").read_text() == "mine"
    assert json.loads((tmp_path / "a" / "report.json").read_text())["queued"] == 0
    stats = json.loads(cli("stats", "--json", "-p", project).stdout)
    assert stats["crops_by_origin"]["detect"] == first["queued"] and stats["sources"] == 1

    from sqlalchemy import select
    from streamlit.testing.v1 import AppTest

    from annotator.data import db
    from annotator.service import auth
    from annotator.media.video import file_sha256
    from annotator.service.workspace import Workspace

    ws = Workspace.open(project)
    try:
        with ws.session() as s:
            auth.add_user(s, "dora", "dora-password")
        with ws.read_session() as s:
            source = s.scalar(select(db.Source))
            crops = s.scalars(select(db.Crop)).all()
            dora = db.get_annotator(s, "dora")
            user = {"id": dora.id, "name": dora.name, "role": dora.role}
            scored = s.scalar(select(db.func.count()).select_from(db.Prediction))
        assert source.key == file_sha256(src)  # the row extract would use
        assert {c.added_by for c in crops} == {"detect"}
        assert all(c.track_id >= 5_000_000 and c.frame_index is not None and c.x2 > c.x1
                   for c in crops)
        assert scored == len(crops)  # ranked by the run's model at once
        monkeypatch.setenv("ANNOTATOR_PROJECT", str(project))
        at = AppTest.from_file(str(REPO / "pages" / "app.py"), default_timeout=90)
        at.session_state["user"] = user
        at.run()
        at.switch_page("label.py").run()
        assert not at.exception, at.exception
        at.button(key="btn_mask").click().run()
        assert not at.exception, at.exception
        with ws.read_session() as s:
            labeled = s.execute(select(db.Label.value, db.Crop.added_by).join(db.Crop)).all()
        assert labeled == [("mask", "detect")]
    finally:
        ws.dispose()


def test_bad_input_is_one_line_and_a_non_zero_exit(project, shared_data, tmp_path):
    src = shared_data / "videos" / VIDEOS[1]
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    cases = [
        (["detect", tmp_path / "missing.mp4", "--out", tmp_path / "x"], "no such file"),
        (["detect", src, "--vote", "median", "--out", tmp_path / "y"], "--vote"),
        (["detect", src, "--min-score", "2", "--out", tmp_path / "z"], "--min-prob"),
        (["detect", src, "--out", full], "not empty"),
        (["detect", src, "--out", project / "crops"], "inside the workspace"),
    ]
    for args, expected in cases:
        proc = cli(*args, "-p", project, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0, args
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in proc.stderr, (
            args, proc.stderr[-2000:])
    assert (full / "notes.txt").read_text() == "mine" and len(list(full.iterdir())) == 1


def test_a_stream_runs_for_max_seconds_and_its_video_decodes(project, shared_data, tmp_path):
    import functools
    import http.server
    import threading

    import cv2

    from annotator.core.errors import InputError
    from annotator.service.workspace import Workspace
    from pipelines import detect

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(shared_data / "videos")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{VIDEOS[1]}"
    ws = Workspace.open(project)
    try:
        with pytest.raises(InputError, match="--max-seconds"):
            detect.run(ws, detect.DetectOptions(sources=[url], out=str(tmp_path / "never")))
        rep = detect.run(ws, detect.DetectOptions(sources=[url], fps=2, max_seconds=2,
                                                  codec="mp4v", out=str(tmp_path / "s")))
    finally:
        ws.dispose()
        server.shutdown()
    src = rep.per_source[0]
    assert src.kind == "stream" and src.error is None and rep.frames >= 1
    cap = cv2.VideoCapture(str(tmp_path / "s" / src.video))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == rep.frames and len(rows(tmp_path / "s" / "detections.csv")) == rep.detections
    assert not (tmp_path / "never").exists()


def test_an_image_without_faces_gives_empty_tables_and_queues_nothing(project, tmp_path):
    import cv2
    import numpy as np

    from annotator.service.workspace import Workspace
    from pipelines import detect

    cv2.imwrite(str(tmp_path / "wall.png"), np.full((240, 320, 3), 90, np.uint8))
    ws = Workspace.open(project)
    try:
        rep = detect.run(ws, detect.DetectOptions(sources=[str(tmp_path / "wall.png")],
                                                  out=str(tmp_path / "o"), to_queue=True))
    finally:
        ws.dispose()
    assert (rep.frames, rep.detections, rep.tracks, rep.queued, rep.errors) == (1, 0, 0, 0, [])
    assert rep.flicker["per_frame"] == rep.flicker["voted"] == 0.0
    assert len(rows(tmp_path / "o" / "tracks.csv")) == 0
    assert (tmp_path / "o" / rep.per_source[0].video).is_file()  # the annotated still
