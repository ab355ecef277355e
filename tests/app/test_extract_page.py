"""The Extract page for real: an AppTest starts an extraction job with the page's default
detector (``auto``) on this machine, which has no network and no OpenPifPaf checkpoint, and the
job's own process runs it to the end; plus the upload store the page writes through."""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select

from annotator.data import db
from annotator.service import jobs
from annotator.core.errors import InputError
from pipelines.extract import uploads
from tests.app import factory
from tests.app.test_pages import signed_in

PEDESTRIANS = "videos/pedestrians_eyelevel_640x360.mp4"


@pytest.fixture
def ws(tmp_path, monkeypatch):
    ws = factory.build(tmp_path / "ws", 20)
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # empty: no cached checkpoint
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")  # and no network for the job's process
    yield ws
    ws.dispose()


def started_job(at) -> int:
    return int(at.info[0].value.split("started job ")[1].split(":")[0])


def crops_of(ws, name: str) -> int:
    with ws.read_session() as s:
        return s.scalar(select(func.count()).select_from(db.Crop).join(db.Source)
                        .where(db.Source.name == name)) or 0


def test_default_detector_extraction_from_the_page_completes_with_crops(ws, shared_data):
    at = signed_in(ws, "root", "admin_extract.py")
    assert at.selectbox(key="extract_detector").value == "auto"  # config.toml's default
    assert at.selectbox(key="extract_detector").options == ["auto", "yunet", "mtcnn", "openpifpaf"]
    at.text_area(key="extract_paths").input(f"{shared_data / PEDESTRIANS}\n\n").run()
    at.button(key="extract_start").click().run()
    assert not at.exception and not at.error
    job = jobs.wait(ws, started_job(at), timeout=240)
    assert job.status == "done", jobs.log_tail(job)
    assert job.args["detector"] == "auto" and job.result["detector"] == "yunet"
    assert "no OpenPifPaf checkpoint" in job.result["detector_reason"]
    assert job.result["errors"] == [] and job.result["crops_kept"] > 10  # measured 52
    assert crops_of(ws, Path(PEDESTRIANS).name) == job.result["crops_kept"]
    at.run()
    shown = " ".join(c.value for c in at.caption)
    assert f"job {job.id}: detector yunet (auto: no OpenPifPaf checkpoint" in shown
    assert any(f"job {job.id}" in s.value and "done" in s.value for s in at.success)


def test_page_settings_reach_the_job_and_redo_replaces_unlabeled_crops(ws, shared_data):
    video = str(shared_data / PEDESTRIANS)
    at = signed_in(ws, "root", "admin_extract.py")
    at.selectbox(key="extract_detector").select("yunet")
    at.radio(key="extract_sampling").set_value("every N-th frame").run()
    at.number_input(key="extract_every").set_value(24)
    at.number_input(key="extract_per_track").set_value(2)
    at.number_input(key="extract_min_size").set_value(20)
    at.number_input(key="extract_min_score").set_value(0.6)
    at.text_area(key="extract_paths").input(video).run()
    at.button(key="extract_start").click().run()
    first = jobs.wait(ws, started_job(at), timeout=240)
    assert first.status == "done", jobs.log_tail(first)
    assert {k: first.args[k] for k in ("detector", "fps", "every", "per_track", "min_size",
                                       "min_score", "redo")} == dict(
        detector="yunet", fps=None, every=24, per_track=2, min_size=20, min_score=0.6, redo=False)
    assert first.result["frames"] == 8  # 188 frames, every 24th
    n = crops_of(ws, Path(video).name)
    assert n == first.result["crops_kept"] > 0
    # the same source again, with redo and one crop per track
    at.number_input(key="extract_per_track").set_value(1)
    at.checkbox(key="extract_redo").check()
    at.button(key="extract_start").click().run()
    redo = jobs.wait(ws, started_job(at), timeout=240)
    assert redo.status == "done", jobs.log_tail(redo)
    assert redo.result["crops_removed"] == n and redo.result["frames"] == 8
    assert crops_of(ws, Path(video).name) == redo.result["crops_kept"] <= n


def test_motion_gating_off_from_the_page_reaches_the_job(ws, shared_data):
    at = signed_in(ws, "root", "admin_extract.py")
    assert at.selectbox(key="extract_motion").value == "auto"  # on for videos and streams
    assert at.selectbox(key="extract_motion").options == ["auto", "on", "off"]
    at.selectbox(key="extract_motion").select("off")
    at.radio(key="extract_sampling").set_value("every N-th frame").run()
    at.number_input(key="extract_every").set_value(47)  # 4 of the 188 frames: a short job
    at.text_area(key="extract_paths").input(str(shared_data / PEDESTRIANS)).run()
    at.button(key="extract_start").click().run()
    assert not at.exception and not at.error
    job = jobs.wait(ws, started_job(at), timeout=240)
    assert job.status == "done", jobs.log_tail(job)
    assert job.args["motion"] == "off"  # the job row's options, as the runner rebuilds them
    assert job.result["frames"] == 4 and job.result["frames_skipped"] == 0
    assert job.result["pixels_detected"] == job.result["pixels_total"] > 0  # every pixel, ungated


def test_a_failed_source_shows_its_reason(ws, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 20)
    at = signed_in(ws, "root", "admin_extract.py")
    at.text_area(key="extract_paths").input(str(bad)).run()
    at.button(key="extract_start").click().run()
    job = jobs.wait(ws, started_job(at), timeout=240)
    at.run()
    errors = [e.value for e in at.error]
    assert any(f"job {job.id}: notes.mp4: " in e and ("not a video" in e or "no frame" in e)
               for e in errors), errors


def test_save_upload_unique_names_never_overwrite_and_limits(workspace):
    ws = workspace
    a = uploads.save_upload(ws, "cam 1.mp4", b"first video bytes")
    assert a.parent == ws.root / "uploads" and a.name.endswith("-cam_1.mp4")
    assert a.read_bytes() == b"first video bytes"
    # the same bytes again: the same file; other bytes with the same name: another file
    assert uploads.save_upload(ws, "cam 1.mp4", io.BytesIO(b"first video bytes")) == a
    b = uploads.save_upload(ws, "cam 1.mp4", io.BytesIO(b"other video bytes"))
    assert b != a and a.read_bytes() == b"first video bytes"
    # a name with folders stays inside uploads/
    c = uploads.save_upload(ws, "../../../etc/passwd", b"x")
    assert c.parent == ws.root / "uploads" and c.name.endswith("-passwd")
    # too large, or empty: refused, and no half-written file is left behind
    big = io.BytesIO(os.urandom(1024 * 1024 + 1))
    with pytest.raises(InputError, match="larger than 1 MB"):
        uploads.save_upload(ws, "big.mp4", big, max_mb=1)
    with pytest.raises(InputError, match="empty"):
        uploads.save_upload(ws, "none.mp4", b"")
    assert sorted(p.name for p in (ws.root / "uploads").iterdir()) == sorted(
        [a.name, b.name, c.name])


def test_source_lines_are_only_sources(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "site").mkdir()
    text = f"  {tmp_path}/a.mp4 \n\n{tmp_path}/site\nrtsp://cam1/stream\n"
    assert uploads.source_lines(text) == [str(tmp_path / "a.mp4"), str(tmp_path / "site"),
                                          "rtsp://cam1/stream"]
    with pytest.raises(InputError) as exc:
        uploads.source_lines(f"{tmp_path}/a.mp4\n--redo\n{tmp_path}/missing.mp4")
    assert "'--redo'" in str(exc.value) and "missing.mp4" in str(exc.value)
    assert "\n" not in str(exc.value)
