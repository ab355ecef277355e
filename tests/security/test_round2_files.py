"""Second round, files: export-model never overwrites the workspace (item 1), detect --force
keeps what is not its own and killed runs leave nothing for good (item 7), and the workspace is
never imported into itself (item 11). Real CLI, real SQLite, a real (random) model."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from annotator.service import jobs
from annotator.service.workspace import Workspace
from pipelines.cli import app
from tests.conftest import write_image_folder


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(r, *needles):
    assert r.exit_code != 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    assert "Traceback" not in r.output, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for n in needles:
        assert n in lines[0], r.output


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def ws(tmp_path):
    import torch

    from models.ofm import OFMClassifier
    from pipelines import import_folder
    from pipelines.common import registry

    ws = Workspace.init(tmp_path / "ws")
    folder = write_image_folder(tmp_path / "faces", {"mask": 4, "no_mask": 4})
    import_folder.run(ws, import_folder.ImportOptions(folder=folder, labeled=True))
    torch.manual_seed(0)
    registry.register(ws, OFMClassifier(ws.config.labels), metrics={"source": "test"},
                      card="# test", name="v001")
    with ws.session() as s:  # make it the active one
        from sqlalchemy import update

        from annotator.data import db

        s.execute(update(db.ModelVersion).values(active=True))
    yield ws
    ws.dispose()


def db_intact(ws) -> None:
    con = sqlite3.connect(ws.root / "annotator.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT count(*) FROM crops").fetchone()[0] == 8
    finally:
        con.close()
    assert cli("stats", "-p", ws.root, "--json").exit_code == 0


# --- item 1 -------------------------------------------------------------------------------------


def test_item01_export_model_never_overwrites_the_database_or_any_file(ws, tmp_path):
    p = ("-p", ws.root)
    # The harmless payload first: an ordinary file of ours, outside the workspace.
    decoy = tmp_path / "decoy.onnx"
    decoy.write_bytes(b"keep me")
    one_line_error(cli("export-model", "active", decoy, *p), "exists", "--force")
    assert decoy.read_bytes() == b"keep me"  # the hole: this used to be replaced silently
    assert cli("export-model", "active", decoy, "--force", *p).exit_code == 0
    assert decoy.read_bytes() != b"keep me"  # --force is how to replace it, and it works
    # The workspace's own files: refused even with --force, directly and through links.
    before = digest(ws.root / "annotator.db")
    crop = next((ws.root / "crops").rglob("*.png"))
    os.symlink(ws.root / "annotator.db", tmp_path / "link.onnx")
    os.link(ws.root / "annotator.db", tmp_path / "hard.onnx")
    os.link(ws.root / "config.toml", tmp_path / "hard-config.onnx")
    targets = [ws.root / "annotator.db", tmp_path / "link.onnx", tmp_path / "hard.onnx",
               tmp_path / "hard-config.onnx", ws.root / "config.toml", crop,
               ws.root / "models" / "v001" / "model.pt", ws.root / "models" / "new.onnx"]
    for target in targets:
        for force in ((), ("--force",)):
            one_line_error(cli("export-model", "active", target, *force, *p),
                           "part of the workspace")
    assert digest(ws.root / "annotator.db") == before
    db_intact(ws)
    assert (ws.root / "config.toml").read_text().startswith("# facemask-annotator")
    # A folder, or a path under a file: one line too.
    one_line_error(cli("export-model", "active", tmp_path, *p), "folder")
    one_line_error(cli("export-model", "active", decoy / "x.onnx", *p), "is a file")


def test_item01_export_uses_the_same_helper(ws, tmp_path):
    os.link(ws.root / "annotator.db", tmp_path / "hard.csv")
    one_line_error(cli("export", tmp_path / "hard.csv", "--format", "csv", "--force", "-p",
                       ws.root), "part of the workspace")
    db_intact(ws)


# --- item 7 -------------------------------------------------------------------------------------


@pytest.fixture
def blank_image(tmp_path):
    path = tmp_path / "src" / "empty_room.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), np.full((120, 160, 3), 90, np.uint8))
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_item07_detect_force_keeps_what_is_not_its_own(ws, blank_image, tmp_path):
    out = tmp_path / "out"
    assert cli("detect", blank_image, "--out", out, "-p", ws.root).exit_code == 0
    assert (out / "report.json").is_file()
    # A user's own hard/ folder (not only detect's crop files): --force leaves it alone.
    (out / "hard").mkdir()
    (out / "hard" / "notes.txt").write_text("mine")
    r = cli("detect", blank_image, "--out", out, "--force", "-p", ws.root)
    assert r.exit_code == 0, r.output
    assert (out / "hard" / "notes.txt").read_text() == "mine"  # was deleted with the folder
    # hard/ as a symlink to a user's folder: the link goes, never what it points to.
    (out / "hard" / "notes.txt").unlink()
    (out / "hard").rmdir()
    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "000001.png").write_bytes(b"mine")
    os.symlink(mine, out / "hard")
    # A planted report.json naming files to delete.
    (tmp_path / "victim.txt").write_text("victim")
    (out / "cam.mp4").write_text("a user's file the planted report names")
    (out / "report.json").write_text('{"per_source": [{"video": "empty_room.jpg"}, '
                                     '{"video": "../victim.txt"}, {"video": "/etc/hostname"}, '
                                     '{"video": "hard"}]}')
    r = cli("detect", blank_image, "--out", out, "--force", "-p", ws.root)
    assert r.exit_code == 0, r.output
    assert (mine / "000001.png").read_bytes() == b"mine"
    assert (tmp_path / "victim.txt").read_text() == "victim"
    assert (out / "cam.mp4").exists()
    assert not (out / "hard").is_symlink()


def test_item07_a_killed_detect_leaves_no_hidden_folder_for_good(ws, blank_image, tmp_path):
    out = tmp_path / "runs" / "r1"
    out.parent.mkdir()
    killed = out.parent / ".r0.abc123"  # what a kill -9 left: our owner file, a dead pid
    killed.mkdir()
    (killed / ".owner").write_text(f"{jobs.host()} {dead_pid()}")
    (killed / "detections.csv").write_text("half")
    live = out.parent / ".r9.def456"  # a run still going (this process)
    live.mkdir()
    (live / ".owner").write_text(f"{jobs.host()} {os.getpid()}")
    users = out.parent / ".git"  # not ours at all
    users.mkdir()
    assert cli("detect", blank_image, "--out", out, "-p", ws.root).exit_code == 0
    assert not killed.exists() and live.exists() and users.exists()
    assert not (out / ".owner").exists()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".r1")] == []


# --- item 11 ------------------------------------------------------------------------------------


def test_item11_the_workspace_is_never_imported_into_itself(ws, tmp_path):
    before = cli("stats", "-p", ws.root, "--json").stdout
    for folder in (ws.root / "crops", ws.root, ws.root / "models"):
        one_line_error(cli("import-folder", folder, "-p", ws.root), "workspace")
    assert cli("stats", "-p", ws.root, "--json").stdout == before
    pool = write_image_folder(tmp_path / "pool", {"mask": 3, "no_mask": 3})
    for out in (ws.root, ws.root / "sim", ws.root / "crops" / "x"):
        one_line_error(cli("simulate", "--pool", pool, "--eval", pool, "--out", out),
                       "inside the workspace")
    assert not (ws.root / "sim").exists()
    assert cli("stats", "-p", ws.root, "--json").stdout == before


def test_item07_force_checks_everything_before_moving_anything(tmp_path):
    from annotator.core.errors import InputError
    from pipelines.detect.outputs import move_into_place as _move_into_place

    def new_run():
        tmp = tmp_path / ".out.x"
        (tmp / "hard").mkdir(parents=True)
        (tmp / "hard" / "000000.png").write_bytes(b"new crop")
        (tmp / "report.json").write_text("new")
        return tmp

    out = tmp_path / "out"
    (out / "hard").mkdir(parents=True)
    (out / "hard" / "notes.txt").write_text("mine")
    (out / "report.json").write_text("{}")
    with pytest.raises(InputError, match="hard is there and is not a file of an earlier"):
        _move_into_place(new_run(), out)
    assert (out / "hard" / "notes.txt").read_text() == "mine"
    assert (out / "report.json").read_text() == "{}"  # nothing half-moved
    # hard/ a symlink to someone's folder: the link is replaced, the folder untouched.
    for p in (out / "hard" / "notes.txt", tmp_path / ".out.x" / "hard" / "000000.png",
              tmp_path / ".out.x" / "report.json"):
        p.unlink()
    (out / "hard").rmdir()
    (tmp_path / ".out.x" / "hard").rmdir()
    (tmp_path / ".out.x").rmdir()
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "000000.png").write_bytes(b"theirs")
    os.symlink(theirs, out / "hard")
    _move_into_place(new_run(), out)
    assert (out / "hard" / "000000.png").read_bytes() == b"new crop"
    assert not (out / "hard").is_symlink() and (theirs / "000000.png").read_bytes() == b"theirs"
