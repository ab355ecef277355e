"""Second round, the pages (AppTest on the real pages and a real database): a revoked admin's
click (item 2), Footage uploads under content-hash names (item 4), file names as text, not
Markdown (item 9), and an undo that leaves another annotator's hold alone (item 10)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from annotator.data import db, crop_queue
from annotator.media import video
from annotator.service import accounts, auth, jobs, labeling
from annotator.core.errors import AuthError, QueueError
from pages.common import md_escape
from tests.app import factory

PAGES = Path(__file__).resolve().parents[2] / "pages"
T = 90


@pytest.fixture
def ws(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 40) as ws:
        yield ws


def page_as(ws, name: str, page: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / page), default_timeout=T)
    role = "admin" if name in ("root", "bob") else "annotator"
    at.session_state["user"] = {"id": factory.user_id(ws, name), "name": name, "role": role}
    at.run()
    assert not at.exception, at.exception
    return at


def role_of(ws, name: str) -> str:
    return accounts.users(ws).set_index("name").loc[name, "role"]


# --- item 2: a disabled or demoted admin's open page -------------------------------------------


def test_item02_revoked_admin_click_on_users_page_changes_nothing(ws):
    accounts.set_role(ws, "bob", "admin")  # a second admin, so root may be disabled
    at = page_as(ws, "root", "admin_users.py")
    at.selectbox(key="edit_user").set_value("alice").run()
    # The harmless payload first: while root is an admin the click works ...
    at.button(key="user_role").click().run()
    assert role_of(ws, "alice") == "admin"
    at.button(key="user_role").click().run()
    assert role_of(ws, "alice") == "annotator"
    # ... then root is disabled from the CLI while the page stays open, and clicks again.
    accounts.set_disabled(ws, "root", True)
    at.button(key="user_role").click().run()
    assert role_of(ws, "alice") == "annotator"  # unchanged
    shown = [e.value for e in at.error] + [w.value for w in at.warning]
    assert any("nothing was changed" in m or "Please sign in" in m for m in shown), shown
    # Demoted (not disabled): the same.
    accounts.set_disabled(ws, "root", False)
    at = page_as(ws, "root", "admin_users.py")
    at.selectbox(key="edit_user").set_value("alice").run()
    accounts.set_role(ws, "root", "annotator")
    at.button(key="user_role").click().run()
    assert role_of(ws, "alice") == "annotator"
    assert "no longer" in " ".join(e.value for e in at.error) or \
        "This page is for admins." in [e.value for e in at.error]


def test_item02_revoked_admin_roll_back_starts_no_job(ws):
    factory.add_model(ws, "v002")  # two versions: Roll back is offered
    accounts.set_role(ws, "bob", "admin")
    at = page_as(ws, "root", "admin_models.py")
    assert not at.button(key="rollback").disabled
    accounts.set_disabled(ws, "root", True)
    at.button(key="rollback").click().run()
    assert jobs.list_jobs(ws) == []
    assert "nothing was changed" in at.session_state["models_msg"]


def test_item02_job_submission_checks_the_account_at_the_moment(ws):
    from pipelines import promote
    from pipelines.cli import runner

    root = factory.user_id(ws, "root")
    accounts.set_role(ws, "bob", "admin")
    accounts.set_role(ws, "root", "annotator")
    with pytest.raises(AuthError, match="no longer"):
        runner.submit(ws, "rollback", promote.RollbackOptions(), started_by="root",
                      account_id=root)
    assert jobs.list_jobs(ws) == []
    with pytest.raises(AuthError):
        auth.require_admin(ws, root)


# --- item 4: Footage uploads ------------------------------------------------------------------


def _video_bytes(tmp_path: Path, name: str, shade: int) -> bytes:
    import cv2

    path = tmp_path / name
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for _ in range(5):
        out.write(np.full((48, 64, 3), shade, np.uint8))
    out.release()
    return path.read_bytes()


def test_item04_two_footage_uploads_with_one_name_both_survive(ws, tmp_path):
    first, second = _video_bytes(tmp_path, "a.avi", 30), _video_bytes(tmp_path, "b.avi", 220)
    at = page_as(ws, "root", "footage.py")
    stored = []
    for data in (first, second):
        at.radio(key="footage_from").set_value("an upload").run()
        at.file_uploader(key="footage_upload").upload("cam.avi", data, "video/x-msvideo").run()
        at.button(key="footage_start").click().run()
        assert not at.exception, at.exception
        files = sorted((ws.root / "uploads").glob("*-cam.avi"))
        stored = files
        for job in jobs.list_jobs(ws):  # the detect jobs (no model file here) end quickly
            jobs.wait(ws, job.id, timeout=120)
    assert len(stored) == 2, stored  # content-hash names, never uploads/cam.avi
    assert not (ws.root / "uploads" / "cam.avi").exists()
    assert {p.read_bytes() for p in stored} == {first, second}
    # A crop of the first video keeps its context frame: the first video's, not the second's.
    path_a = next(p for p in stored if p.read_bytes() == first)
    frame = video.read_frame(str(path_a), kind="video", index=2)
    assert frame is not None and abs(float(frame.mean()) - 30) < 10


# --- item 9: names are text ------------------------------------------------------------------


def test_item09_footage_shows_file_names_as_text_not_markdown(ws):
    run = ws.root / "detections" / "run-1"
    run.mkdir(parents=True)
    name = "**bold**[link](http://example.com).mp4"
    (run / "report.json").write_text(json.dumps({
        "model": "v001", "frames": 0, "errors": [f"{name}: no frame could be decoded"],
        "per_source": [{"name": name, "error": f"{name}: no frame could be decoded",
                        "frames": 0}]}))
    at = page_as(ws, "alice", "footage.py")
    shown = at.warning[0].value
    assert shown == md_escape(f"this run read no frames: {name}: no frame could be decoded")
    assert "**bold**" not in shown and "[link](" not in shown
    assert md_escape("a_b") == "a\\_b" and md_escape("[x](y)") == "\\[x\\]\\(y\\)"


# --- item 10: undo with double annotation ------------------------------------------------------


def test_item10_undo_never_takes_a_lease_another_annotator_holds(ws):
    alice, bob = factory.user_id(ws, "alice"), factory.user_id(ws, "bob")
    with ws.session() as s:
        crop = s.scalars(db.select(db.Crop.id).order_by(db.Crop.id).limit(1)).one()
        crop_queue.require_votes(s, [crop], 2)  # double annotation
    with ws.session() as s:
        crop_queue.claim_batch(s, alice, 1, candidates=[(crop, None)], lease_seconds=600)
        crop_queue.submit_label(s, alice, crop, "mask", allowed=ws.config.label_values)
    with ws.session() as s:  # back in the queue for a second vote: bob holds it now
        assert crop_queue.claim_batch(s, bob, 1, candidates=[(crop, None)], lease_seconds=600)
    with pytest.raises(QueueError, match="another annotator"):
        labeling.undo(ws, alice)
    with ws.read_session() as s:
        lease = s.get(db.Lease, crop)
        assert lease is not None and lease.annotator_id == bob  # bob keeps his hold
        labels = s.scalars(db.select(db.Label).where(db.Label.crop_id == crop,
                                                     db.active_label())).all()
        assert [lab.annotator_id for lab in labels] == [alice]  # alice's vote stays
    # Once bob's hold is gone, alice's undo works as before.
    labeling.release(ws, bob)
    assert [c.crop_id for c in labeling.undo(ws, alice)] == [crop]
