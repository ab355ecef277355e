"""AppTest of the Footage page with a real detect job (Neuralet's weights, a real video)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from annotator.data import reports
from annotator.service import jobs
from pipelines.detect import tiles, view
from tests.app import factory

PAGES = Path(__file__).resolve().parents[2] / "pages"
T = 90


@pytest.fixture
def ws(tmp_path, monkeypatch, shared_data):
    from pipelines import promote

    ws = factory.build(tmp_path / "ws", 0, model=False)
    promote.import_keras(ws, promote.KerasImportOptions(
        path=shared_data / "peer" / "OFMClassifier.h5"))
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    yield ws
    ws.dispose()


def signed_in(ws, name: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / "app.py"), default_timeout=T)
    uid = factory.user_id(ws, name)
    role = "admin" if name == "root" else "annotator"
    at.session_state["user"] = {"id": uid, "name": name, "role": role}
    at.run()
    at.switch_page("footage.py").run()
    assert not at.exception, at.exception
    return at


def test_admin_runs_detect_and_the_page_shows_video_chart_and_tracks(ws, shared_data):
    video = shared_data / "videos" / "pedestrians_eyelevel_640x360.mp4"
    at = signed_in(ws, "root")
    assert "no finished runs yet" in [c.value for c in at.caption]
    at.radio(key="footage_from").set_value("a path on the server").run()
    at.text_input(key="footage_path").input(str(video)).run()
    at.number_input(key="footage_fps").set_value(3.0)
    at.number_input(key="footage_seconds").set_value(4.0).run()
    at.button(key="footage_start").click().run()
    assert not at.exception, at.exception
    job_id = int(at.info[0].value.split("started job ")[1].split(":")[0])
    job = jobs.wait(ws, job_id, timeout=300)
    assert job.status == "done", jobs.log_tail(job)
    assert job.result["out"] == str(ws.root / "detections" / f"job-{job_id}")
    assert job.args["max_seconds"] == 4.0 and job.result["frames"] == 12
    assert job.args["codec"] == job.result["codec"] == "vp09"  # what st.video can play
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("video")) == 1
    assert len(at.get("vega_lite_chart")) == 1
    tracks = at.dataframe[0].value
    assert len(tracks) == job.result["tracks"] and {"voted", "flicker_voted"} <= set(tracks.columns)
    # Each track shows its picture and plays the video from its first second.
    shown_tracks = sorted(tracks["track"])[:tiles.PER_PAGE]
    assert {f"footage_play_{t}" for t in shown_tracks} <= {b.key for b in at.button}
    images = at.get("image")
    assert len(images) == len(shown_tracks)
    assert all(len(i.value) == 1 and "/media/" in i.value[0] for i in images)  # served files
    run = view.run_at(ws, job.result["out"])
    src = run.report["per_source"][0]
    cut = tiles.tiles(run.path, run.report, src, view.table(run, "tracks").sort_values("track"))
    assert [t.track for t in cut] == shown_tracks
    for t in cut:  # the page's pictures: real PNGs of a head, never empty
        img = cv2.imdecode(np.frombuffer(t.png, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and 0 < img.shape[0] <= tiles.THUMB and img.shape[1] > 0
    assert at.get("video")[0].proto.start_time == 0 and not at.get("video")[0].proto.autoplay
    last = max(cut, key=lambda t: (t.first_s, t.track))
    assert last.start_s == int(last.first_s) and last.start_s >= 1  # the clip is 4 s long
    at.button(key=f"footage_play_{last.track}").click().run()
    assert not at.exception, at.exception
    (player,) = at.get("video")
    assert player.proto.start_time == last.start_s and player.proto.autoplay
    assert f"playing from track #{last.track} at 0:0{last.start_s}" in [c.value for c in at.caption]
    # The hard tracks go to the queue once.
    assert job.result["hard_crops"] >= 1
    def sent() -> str:  # said under the button that did it, not at the top of the page
        (msg,) = [i.value for i in at.info if "uncertain tracks added" in i.value]
        return msg

    at.button(key="footage_queue").click().run()
    assert f"{job.result['hard_crops']} crops of uncertain tracks added" in sent()
    at.button(key="footage_queue").click().run()
    assert "0 crops of uncertain tracks added" in sent()
    with ws.read_session() as s:
        assert reports.stats(s, ws.config.labels)["crops_by_origin"] == {
            "detect": job.result["hard_crops"]}

    # An annotator sees the same results but can start nothing and send nothing.
    alice = signed_in(ws, "alice")
    keys = {b.key for b in alice.button}
    assert not {"footage_start", "footage_queue"} & keys
    assert not alice.text_input and not alice.get("file_uploader")
    assert len(alice.get("video")) == 1 and len(alice.dataframe) == 1


def test_annotator_cannot_start_a_run(ws):
    at = signed_in(ws, "alice")
    assert "An admin starts runs; every finished run shows here." in [c.value for c in at.caption]
    assert not at.button and not at.radio and not at.text_input
    with pytest.raises(Exception):
        at.button(key="footage_start")


def test_tracks_page_by_page_with_names_as_text_and_no_picture_without_the_source(ws):
    """A run of 30 tracks whose source is gone (and a hostile label): 24 tiles, then 6; the
    names are text; no picture and no play button without a video, and nothing breaks."""
    import json

    import pandas as pd

    run = ws.root / "detections" / "run-1"
    run.mkdir(parents=True)
    name, label = "cam.mp4", "**x**[y](http://example.com)"
    (run / "report.json").write_text(json.dumps({
        "model": "v001", "frames": 3, "classes": ["mask", "no_mask"], "per_source": [{
            "name": name, "uri": str(ws.root / "gone.mp4"), "kind": "video", "frames": 3,
            "detections": 30, "tracks": 30, "video": "cam.mp4"}]}))
    pd.DataFrame({"source": name, "track": range(1, 31), "first_s": [i * 2.5 for i in range(30)],
                  "last_s": [i * 2.5 + 1 for i in range(30)], "frames": 2, "voted": label}
                 ).to_csv(run / "tracks.csv", index=False)
    pd.DataFrame({"source": [name], "minute": [0], "start_s": [0], "faces": [30], "mask": [0],
                  "no_mask": [0], "unknown": [30], "tracks": [30]}).to_csv(run / "summary.csv",
                                                                           index=False)
    pd.DataFrame({"source": name, "frame": range(30), "time_s": 0.0, "track": range(1, 31),
                  "x1": 0, "y1": 0, "x2": 10, "y2": 10, "det_score": 0.9}
                 ).to_csv(run / "detections.csv", index=False)
    at = signed_in(ws, "alice")
    plays = [b for b in at.button if (b.key or "").startswith("footage_play_")]
    assert [b.key for b in plays] == [f"footage_play_{t}" for t in range(1, 25)]
    assert all(b.disabled for b in plays) and not at.get("video") and not at.get("image")
    captions = [c.value for c in at.caption]
    assert captions.count("no picture (the source is not on this server)") == 24
    tile = next(c for c in captions if c.startswith("\\#1 "))
    assert "**x**" not in tile and "[y](" not in tile and "\\*\\*x\\*\\*" in tile
    at.number_input(key="footage_page_run-1").set_value(2).run()
    assert not at.exception, at.exception
    assert [b.key for b in at.button if (b.key or "").startswith("footage_play_")] == [
        f"footage_play_{t}" for t in range(25, 31)]
    assert "▶ 1:12" in [b.label for b in at.button]  # track 30 starts at 72.5 s
