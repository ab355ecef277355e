"""Network streams through OpenCV/FFmpeg from a local HTTP server: --max-seconds, reconnect on
drop, an unreachable stream, and frame numbering that continues across runs."""
from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from annotator.media import video
from annotator.service.workspace import Workspace
from pipelines import extract

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_extract import synthetic_video  # noqa: E402


class _Handler(http.server.SimpleHTTPRequestHandler):
    serve_times = 10**9  # requests answered before the "camera" goes away (404)
    served = 0

    def do_GET(self):
        cls = type(self)
        cls.served += 1
        if cls.served > cls.serve_times:
            self.send_error(404)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def camera(tmp_path):
    """``(url, handler_class)`` of a clip served over HTTP like a camera stream."""
    synthetic_video(tmp_path / "clip.avi", frames=30, fps=10)
    handler = type("Handler", (_Handler,), {"served": 0})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(handler, directory=str(tmp_path)))
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/clip.avi", handler
    srv.shutdown()
    srv.server_close()


def test_stream_reconnects_after_a_drop_until_max_seconds(camera):
    url, handler = camera
    (spec,), errors = video.expand_sources([url])
    assert spec.kind == "stream" and errors == []
    reader = video.FrameReader(spec, max_seconds=1.5, reconnect=3, retry_wait_s=0.05)
    idx = [f.index for f in reader]
    # the clip has 30 frames: getting more means the reader came back after each end-of-stream
    assert len(idx) > 30 and handler.served >= 2
    assert idx == list(range(len(idx)))
    assert reader.problem is None and reader.finished


def test_stream_that_does_not_come_back_is_reported(camera):
    url, handler = camera
    handler.serve_times = 1
    reader = video.FrameReader(video.SourceSpec(url, "stream", url), max_seconds=30, reconnect=2,
                               retry_wait_s=0.05)
    frames = list(reader)
    assert len(frames) == 30  # what was read before the drop is kept
    assert "did not come back after 2 reconnects" in reader.problem


def test_stream_extraction_continues_numbering_and_unreachable_is_one_error(camera, tmp_path, shared_data):
    url, _ = camera
    ws = Workspace.init(tmp_path / "ws")
    image = sorted((shared_data / "scenes" / "images").iterdir())[2]
    opts = extract.ExtractOptions(sources=["rtsp://127.0.0.1:9/cam", url, str(image)], detector="mtcnn",
                                  every=10, max_seconds=1.0)
    rep = extract.run(ws, opts)
    assert rep.errors == ["rtsp://127.0.0.1:9/cam: cannot open stream (unreachable, or not a video stream)"]
    kinds = {s.name: s for s in rep.per_source}
    assert kinds[url].kind == "stream" and kinds[url].frames > 0
    assert kinds[image.name].status == "done"
    con = sqlite3.connect(ws.root / "annotator.db")
    (first_done,) = con.execute("select frames_done from sources where kind = 'stream'").fetchone()
    assert first_done > 0
    again = extract.run(ws, extract.ExtractOptions(sources=[url], detector="mtcnn", every=10, max_seconds=1.0))
    assert again.errors == [] and again.skipped == 0 and again.frames > 0  # streams never "done"
    (second_done,) = con.execute("select frames_done from sources where kind = 'stream'").fetchone()
    runs = con.execute("select frame_index, track_id from crops join sources on "
                       "sources.id = crops.source_id where kind = 'stream'").fetchall()
    con.close()
    assert second_done > first_done  # frame numbers go on, so origins never collide
    first_ids = {t for f, t in runs if f < first_done}
    second_ids = {t for f, t in runs if f >= first_done}
    assert not first_ids & second_ids  # nor track ids: one id is one person


@pytest.mark.security
def test_a_cameras_password_reaches_no_row_log_or_report(camera, tmp_path):
    """Security: the stream's password is used to connect and is stored, logged and reported
    nowhere, from the CLI or from a page-started job."""
    from annotator.service import jobs
    from pipelines.cli import runner

    url, handler = camera
    secret_url = url.replace("http://", "http://cam:s3cret@") + "?token=t0ps3cret"
    ws = Workspace.init(tmp_path / "ws")
    rep = extract.run(ws, extract.ExtractOptions(sources=[secret_url], detector="yunet",
                                                 every=10, max_seconds=1.0))
    assert rep.errors == [] and rep.frames > 0  # the full URL was used to read the stream
    handler.serve_times = handler.served + 1  # the job's stream plays once, then is gone
    job_id = runner.submit(ws, "extract", extract.ExtractOptions(sources=[secret_url],
                                                                 detector="yunet", every=10))
    job = jobs.wait(ws, job_id, timeout=120)
    assert job.status == "done", jobs.log_tail(job)
    con = sqlite3.connect(ws.root / "annotator.db")
    dump = "\n".join(con.iterdump())
    con.close()
    log = Path(job.log_path).read_text()
    for where, text in (("database", dump), ("job log", log), ("report", json.dumps(
            dataclasses.asdict(rep), default=str)), ("job row", json.dumps(job.args) + json.dumps(job.result))):
        assert "s3cret" not in text and "t0ps3cret" not in text, where
    assert "cam:***@" in dump and "token=***" in dump
