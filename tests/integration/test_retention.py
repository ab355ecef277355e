"""Retention ([privacy] in config.toml): old extracted uploads, unlabeled crops and detect runs
go (a dry run lists them first); `extract --delete-source-after` deletes footage once extracted;
the audit CLI filters what the trail recorded (exports, role changes, retention)."""
from __future__ import annotations

import datetime as dt
import json
import os
import time

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from annotator.data import db, trail
from annotator.service.workspace import Workspace
from pipelines.extract import uploads
from pipelines.cli import app
from tests.app import factory

runner = CliRunner()
pytestmark = pytest.mark.backends
OLD = time.time() - 40 * 86_400


def ok_json(*args):
    r = runner.invoke(app, [str(a) for a in args] + ["--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture
def ws(tmp_path, db_url):
    ws = factory.build(tmp_path / "ws", 40, per_track=4, model=False, images=40, db_url=db_url)
    cfg = ws.root / "config.toml"
    cfg.write_text(cfg.read_text().replace("upload_days = 0.0", "upload_days = 30.0")
                   .replace("unlabeled_crop_days = 0.0", "unlabeled_crop_days = 30.0")
                   .replace("detect_run_days = 0.0", "detect_run_days = 30.0"))
    ws.dispose()
    ws = Workspace.open(ws.root, db_url=db_url)
    yield ws
    ws.dispose()


def test_retention_dry_run_lists_then_the_run_deletes_only_what_is_due(ws, monkeypatch):
    if ws.db_url.startswith("postgresql"):
        monkeypatch.setenv("ANNOTATOR_DB_URL", ws.db_url)
    extracted = uploads.save_upload(ws, "old.mp4", b"old footage bytes")
    pending = uploads.save_upload(ws, "waiting.mp4", b"not extracted yet")
    fresh = uploads.save_upload(ws, "fresh.mp4", b"new footage bytes")
    with ws.session() as s:
        for path in (extracted, fresh):
            src = db.get_or_create_source(s, key=str(path), kind="video", uri=str(path), name=path.name)
            src.status = "done"
        ids = list(s.scalars(select(db.Crop.id).order_by(db.Crop.id)))
        old_ids = ids[:10]
        old_files = [ws.store.path(p) for p in s.scalars(
            select(db.Crop.path).where(db.Crop.id.in_(old_ids)))]
        s.execute(update(db.Crop).where(db.Crop.id.in_(ids[:12]))
                  .values(created_at=db.utcnow() - dt.timedelta(days=40)))
    factory.label_some(ws, "alice", ids[10:12], "mask")  # old but labeled: kept
    for p in (extracted, pending):
        os.utime(p, (OLD, OLD))
    old_run, new_run = ws.root / "detections" / "run-old", ws.root / "detections" / "run-new"
    for run in (old_run, new_run):
        run.mkdir(parents=True)
        (run / "report.json").write_text("{}")
    os.utime(old_run, (OLD, OLD))

    dry = ok_json("retention", "--dry-run", "-p", ws.root)
    assert dry["uploads"] == [f"uploads/{extracted.name}"]
    assert dry["crops"] == old_ids and dry["detect_runs"] == ["detections/run-old"]
    assert extracted.exists() and old_run.exists()  # a dry run deletes nothing
    rep = ok_json("retention", "-p", ws.root)
    assert {k: rep[k] for k in ("uploads", "crops", "detect_runs")} == \
        {k: dry[k] for k in ("uploads", "crops", "detect_runs")}
    assert not extracted.exists() and pending.exists() and fresh.exists()
    assert not old_run.exists() and new_run.exists()
    with ws.read_session() as s:
        assert set(s.scalars(select(db.Crop.id))) == set(ids) - set(old_ids)
    assert len(old_files) == 10 and not any(f.exists() for f in old_files)  # one image per crop
    assert ok_json("audit", "--action", "retention", "-p", ws.root)[0]["detail"]["crops"] == 10


def test_extract_delete_source_after_deletes_the_footage_and_keeps_the_source_row(ws, tmp_path,
                                                                                  monkeypatch):
    if ws.db_url.startswith("postgresql"):
        monkeypatch.setenv("ANNOTATOR_DB_URL", ws.db_url)
    video = factory.write_footage(tmp_path / "cam.avi", frames=12)
    rep = ok_json("extract", video, "--detector", "yunet", "--delete-source-after", "-p", ws.root)
    assert rep["deleted_sources"] == [str(video)] and not video.exists()
    with ws.read_session() as s:
        assert s.scalar(select(db.Source.status).where(db.Source.uri == str(video))) == "done"


def test_audit_cli_filters_exports_and_role_changes(ws, tmp_path, monkeypatch):
    if ws.db_url.startswith("postgresql"):
        monkeypatch.setenv("ANNOTATOR_DB_URL", ws.db_url)
    with ws.read_session() as s:
        ids = list(s.scalars(select(db.Crop.id).order_by(db.Crop.id).limit(3)))
    factory.label_some(ws, "alice", ids, "mask")
    with ws.session() as s:
        trail.record(s, "alice", trail.VIEW, page="label", crop_ids=ids)
    ok_json("export", tmp_path / "out", "-p", ws.root)
    ok_json("user", "set-role", "bob", "admin", "-p", ws.root)
    exports = ok_json("audit", "--action", "export", "-p", ws.root)
    assert len(exports) == 1 and exports[0]["detail"]["crops"] == 3
    roles = ok_json("audit", "--action", "role", "-p", ws.root)
    assert roles[0]["detail"] == {"account": "bob", "role": "admin"}
    assert roles[0]["actor"].startswith("cli:")
    views = ok_json("audit", "--user", "alice", "--page", "label", "-p", ws.root)
    assert sorted(e["crop_id"] for e in views) == ids
    assert ok_json("audit", "--crop", ids[0], "-p", ws.root)[0]["what"] == f"crop {ids[0]}"
    assert ok_json("audit", "--since", "2999-01-01", "-p", ws.root) == []
    bad = runner.invoke(app, ["audit", "--since", "yesterday", "-p", str(ws.root)])
    assert bad.exit_code != 0 and bad.output.startswith("error:")
