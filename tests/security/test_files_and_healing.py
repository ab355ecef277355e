"""Files, config, secrets and crash healing (items 4, 5, 6, 7, 11, 12)."""
from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from annotator.data import db, job_rows
from annotator.service import jobs
from annotator.core.config import parse_config
from annotator.core.errors import InputError, WorkspaceError
from annotator.core.failpoints import ENV as FAILPOINT_ENV
from annotator.core.urls import redact
from annotator.service.workspace import Workspace
from pipelines import build_dataset, import_folder, train
from pipelines.cli import runner
from pipelines.cli import app
from tests.conftest import write_image_folder


def cli(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def one_line_error(r, *needles):
    assert r.exit_code != 0, r.output
    assert "Traceback" not in r.output, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for n in needles:
        assert n in lines[0], r.output


@pytest.fixture
def labeled(workspace, tmp_path):
    folder = write_image_folder(tmp_path / "faces", {"mask": 12, "no_mask": 12})
    import_folder.run(workspace, import_folder.ImportOptions(folder=folder, labeled=True))
    return workspace


# --- item 5 and 12: export ----------------------------------------------------------------------


def test_export_never_overwrites_silently(labeled, tmp_path):
    p = ("--project", labeled.root)
    out = tmp_path / "labels.csv"
    assert cli("export", out, "--format", "csv", *p).exit_code == 0
    one_line_error(cli("export", out, "--format", "csv", *p), "exists", "--force")
    assert cli("export", out, "--format", "csv", "--force", *p).exit_code == 0
    for own in ("annotator.db", "config.toml", "crops/x.csv", "models/m.csv"):
        one_line_error(cli("export", labeled.root / own, "--format", "csv", "--force", *p),
                       "part of the workspace")
    assert cli("stats", *p, "--json").exit_code == 0  # the database is intact


def test_export_into_impossible_places_is_one_line(labeled, tmp_path):
    p = ("--project", labeled.root)
    (tmp_path / "a_file").write_text("x")
    one_line_error(cli("export", tmp_path / "a_file" / "out.csv", "--format", "csv", *p),
                   "cannot write")
    one_line_error(cli("export", tmp_path / "a_file" / "dir", *p), "cannot write")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.geteuid() != 0:  # root ignores permissions; the path under a file covers it then
            one_line_error(cli("export", locked / "out", *p), "cannot write")
    finally:
        locked.chmod(0o700)


def test_a_database_with_tables_but_no_schema_version_is_one_line(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    ws.dispose()
    con = sqlite3.connect(tmp_path / "ws" / "annotator.db")
    con.execute("DROP TABLE alembic_version")
    con.commit()
    con.close()
    one_line_error(cli("stats", "--project", tmp_path / "ws"), "no schema version")


# --- item 6 and 7: crash healing ----------------------------------------------------------------


def test_leftover_folders_without_rows_do_not_block_the_next_version(labeled):
    (labeled.datasets_dir / "d001").mkdir()  # what a crash between rename and insert leaves
    (labeled.models_dir / "v001").mkdir()
    built = build_dataset.run(labeled, build_dataset.BuildOptions())
    assert built.name == "d002"
    trained = train.run(labeled, train.TrainOptions(epochs=1, init="none"))
    assert trained.version == "v002"


def test_a_job_killed_before_it_ran_is_failed_and_frees_the_models_page(workspace):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with workspace.session() as s:  # queued, its process gone before it reached "running"
        job_id = job_rows.create_job(s, kind="retrain", args={})
        job_rows.update_job(s, job_id, pid=dead.pid, host=jobs.host())
    listed = {j.id: j for j in jobs.list_jobs(workspace)}
    assert listed[job_id].status == "failed" and not listed[job_id].active
    assert "ended without a report" in listed[job_id].message
    assert not any(j.active for j in jobs.list_jobs(workspace, kinds=["retrain"]))


def test_a_job_with_a_stale_heartbeat_on_another_host_is_failed(workspace):
    with workspace.session() as s:
        job_id = job_rows.create_job(s, kind="retrain", args={})
        old = db.utcnow() - dt.timedelta(minutes=10)
        job_rows.update_job(s, job_id, status="running", pid=1, host="another-box", heartbeat_at=old,
                      started_at=old)
    job = jobs.get(workspace, job_id)
    assert job.status == "failed" and "no heartbeat" in job.message


# --- item 11: images, uploads, config -------------------------------------------------------------


def _huge_png(path: Path, side: int = 12000) -> None:
    """A valid 12000x12000 grey PNG of ~170 KB (all zeros compress to almost nothing)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (len(data).to_bytes(4, "big") + kind + data
                + zlib.crc32(kind + data).to_bytes(4, "big"))

    row = b"\x00" + bytes(side)
    raw = zlib.compress(row * side, 9)
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw)
                     + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_counted_unreadable_not_decoded(workspace, tmp_path):
    import resource

    folder = tmp_path / "imgs" / "mask"
    folder.mkdir(parents=True)
    _huge_png(folder / "bomb.png")
    assert (folder / "bomb.png").stat().st_size < 400_000
    write_image_folder(tmp_path / "imgs", {"mask": 2})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rep = import_folder.run(workspace, import_folder.ImportOptions(folder=tmp_path / "imgs",
                                                                   labeled=True))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert rep.added == 2 and rep.unreadable == 1
    assert "pixel limit" in rep.unreadable_files[0]
    assert grown_mb < 100  # decoding it would take 144 MB (grey) to 432 MB (RGB)


@pytest.mark.parametrize("text, message", [
    ('labels = "ab"', "labels must be a list"),
    ('labels = ["mask", "../../outside"]', "labels must be up to 40 letters"),
    ('labels = ["mask", "<b>no</b>"]', "labels must be up to 40 letters"),
    (f'labels = ["mask", "{"n" * 41}"]', "labels must be up to 40 letters"),
    ("[sampling]\nbatch_size = \"x\"", "sampling.batch_size must be an integer"),  # old key
    ("[sampling]\nclaim_size = 0", "sampling.claim_size must be an integer between 1"),
    ("[sampling]\nlease_seconds = -5", "sampling.lease_seconds must be an integer between 10"),
    ("[sampling]\nstrategy = \"best\"", "sampling.strategy must be one of hybrid"),
    ("[training]\nlr = nan", "training.lr must be a finite number"),
    ("[auth]\nmin_password_length = 3", "auth.min_password_length must be an integer between 8"),
    ("[sampling]\ncolour = 1", "unknown setting sampling.colour"),
    ("[extract]\ndetector = \"magic\"", "extract.detector must be one of auto"),
])
def test_config_values_are_checked_with_one_line(tmp_path, text, message):
    import tomllib

    with pytest.raises(WorkspaceError, match=message):
        parse_config(tomllib.loads(text))
    ws = Workspace.init(tmp_path / "ws")
    ws.dispose()
    (tmp_path / "ws" / "config.toml").write_text(text + "\n")
    one_line_error(cli("stats", "--project", tmp_path / "ws"), message.split(" must")[0])


# --- item 4: stream credentials ------------------------------------------------------------------


def test_stream_passwords_are_never_stored_with_a_job(workspace, monkeypatch):
    from pipelines import extract

    # The job is recorded and launched for real; its process stops at the runner's first line
    # (a failpoint), so no stream is opened.
    monkeypatch.setenv(FAILPOINT_ENV, runner.BEFORE_JOB)
    url = "rtsp://cam:s3cret@10.1.2.3:554/live?token=abc"
    job_id = runner.submit(workspace, "extract", extract.ExtractOptions(sources=[url]))
    job = jobs.wait(workspace, job_id, timeout=60)
    assert job.kind == "extract" and job.status == "failed"  # stopped before it began
    assert job.args["sources"] == [redact(url)] == ["rtsp://cam:***@10.1.2.3:554/live?token=***"]
    with workspace.read_session() as s:  # nowhere in the job's row, whatever the column
        row = json.dumps(job_rows.get_job(s, job_id), default=str)
    assert "s3cret" not in row and "token=abc" not in row
    # Only the job's process environment holds it: what submit hands to jobs.start there.
    args, secrets = runner._split_secrets({**job.args, "sources": [url]})
    assert args == job.args and secrets == {redact(url): url}
    monkeypatch.setenv(runner.SECRETS_ENV, json.dumps(secrets))
    assert runner._restore_secrets(job.args)["sources"] == [url]


def test_redact_handles_odd_urls():
    assert redact("http://user@host/x") == "http://user@host/x"
    assert redact("http://u:p@h:1/a?x=1&password=2") == "http://u:***@h:1/a?x=1&password=***"
    assert redact("rtsp://[::1]:554/s") == "rtsp://[::1]:554/s"
    assert "p@ss" not in redact("rtsp://u:p@ss@host/s")
    assert redact("not a url:p@x") == "not a url:p@x"
    with pytest.raises(InputError):
        runner._check_server_path("--checkpoint=/tmp/evil.pt")
