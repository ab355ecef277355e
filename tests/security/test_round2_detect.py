"""Second round, detect and Ray: no secret of a stream URL in any row, log, report or JSON after
detect (item 3); ``--address`` at a port that is not Ray fails in one line at once (item 12)."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotator.service import jobs
from annotator.core.urls import redact_text
from annotator.service.workspace import Workspace
from pipelines.cli import app

REPO = Path(__file__).resolve().parents[2]
SECRET_URL = "rtsp://cam:S3CRETPW@127.0.0.1:9/x?token=T0KEN"  # port 9: nothing listens
SECRETS = ("S3CRETPW", "T0KEN")


@pytest.fixture
def ws(tmp_path):
    import torch
    from sqlalchemy import update

    from annotator.data import db
    from models.ofm import OFMClassifier
    from pipelines.common import registry

    ws = Workspace.init(tmp_path / "ws")
    torch.manual_seed(0)
    registry.register(ws, OFMClassifier(ws.config.labels), metrics={"source": "test"},
                      card="# test", name="v001")
    with ws.session() as s:
        s.execute(update(db.ModelVersion).values(active=True))
    yield ws
    ws.dispose()


def no_secret_in(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} in {where}: {text[:2000]}"


def all_files_text(folder: Path) -> str:
    return "\n".join(p.read_bytes().decode("utf-8", "replace")
                     for p in folder.rglob("*") if p.is_file())


def test_item03_detect_keeps_no_stream_secret_in_json_report_or_files(ws, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["detect", SECRET_URL, "--max-seconds", "2", "--out", str(out),
                                 "-p", str(ws.root), "--json"])
    assert r.exit_code == 1, r.output  # the stream cannot be opened: a per-source error
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["per_source"][0]["uri"] == "rtsp://cam:***@127.0.0.1:9/x?token=***"
    assert report["errors"], report  # the error names the source: redacted
    no_secret_in(r.output, "CLI output")
    no_secret_in(all_files_text(out), "the run's files")
    no_secret_in(all_files_text(ws.root), "the workspace")


def test_item03_a_detect_job_keeps_no_stream_secret_in_its_row_log_or_report(ws):
    from pipelines import detect
    from pipelines.cli import runner

    job_id = runner.submit(ws, "detect", detect.DetectOptions(sources=[SECRET_URL],
                                                              max_seconds=2.0))
    job = jobs.wait(ws, job_id, timeout=300)
    assert job.status in ("done", "failed"), job.status
    assert job.result is not None and job.result["errors"], (job.message, jobs.log_tail(job))
    no_secret_in(json.dumps([job.args, job.result, job.message, job.detail], default=str),
                 "the job row")
    no_secret_in(Path(job.log_path).read_text(), "the job log")
    no_secret_in(all_files_text(ws.root / "detections"), "detections/job-N")
    # The job's process did get the full URL (it tried to open it, and said which one).
    assert "rtsp://cam:***@127.0.0.1:9/x" in json.dumps(job.result)


def test_item03_one_redaction_function_for_urls_inside_messages():
    line = f"cannot open {SECRET_URL}: timeout; also http://u:pw@h/x?sig=abc."
    assert redact_text(line) == ("cannot open rtsp://cam:***@127.0.0.1:9/x?token=***: timeout; "
                                 "also http://u:***@h/x?sig=***.")
    assert redact_text("/videos/a.mp4: no such file") == "/videos/a.mp4: no such file"


# --- item 12 ------------------------------------------------------------------------------------


@pytest.fixture
def not_ray():
    """A TCP port with an HTTP/1 server on it (not Ray)."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Quiet(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_item12_address_of_a_port_that_is_not_ray_is_one_line(not_ray):
    from pipelines.extract.ray_cluster import _reachable

    from annotator.core.errors import InputError

    with pytest.raises(InputError, match="is not a Ray cluster"):
        _reachable(f"127.0.0.1:{not_ray}")
    with pytest.raises(InputError, match="is not a Ray cluster"):
        _reachable(f"ray://127.0.0.1:{not_ray}")
    silent = socket.socket()  # accepts, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        with pytest.raises(InputError, match="is not a Ray cluster"):
            _reachable(f"127.0.0.1:{silent.getsockname()[1]}")
    finally:
        silent.close()


def test_item12_a_grpc_server_passes_the_probe():
    """What Ray's GCS and Ray Client are: gRPC servers (grpcio comes with ray)."""
    from concurrent import futures

    import grpc

    from pipelines.extract.ray_cluster import _reachable

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        _reachable(f"127.0.0.1:{port}")  # no error
    finally:
        server.stop(0)


def test_item12_cli_extract_ray_at_a_port_that_is_not_ray(not_ray, ws, tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "clip.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for _ in range(5):
        out.write(np.full((48, 64, 3), 90, np.uint8))
    out.release()
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "extract", str(path), "--engine", "ray",
         "--address", f"127.0.0.1:{not_ray}", "-p", str(ws.root)],
        cwd=REPO, capture_output=True, text=True, timeout=140)  # Ray alone waited 150 s
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "is not a Ray cluster" in lines[0], proc.stderr
