"""AppTest: the audit trail records what the Label, Grid, Review and Browse pages show (and the
frame context), the context view says when its frame is gone, and the Personal data page erases
only after a confirmation."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update
from streamlit.testing.v1 import AppTest

from annotator.data import db, trail
from tests.app import factory

PAGES = Path(__file__).resolve().parents[2] / "pages"
T = 60


@pytest.fixture
def ws(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 120, footage=True) as ws:
        yield ws


def signed_in(ws, name: str, page: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / "app.py"), default_timeout=T)
    with ws.read_session() as s:
        u = db.get_annotator(s, name)
        at.session_state["user"] = {"id": u.id, "name": u.name, "role": u.role}
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def shown_crop(at: AppTest) -> int:
    panel = next(h.value for h in at.get("html") if 'class="label-panel"' in h.value)
    return int(panel.split('data-crop-id="')[1].split('"')[0])


def events(ws, **kw) -> list[dict]:
    trail.flush()
    return trail.events(ws, **kw)


def test_label_page_records_each_crop_shown_and_its_frame_context(ws):
    at = signed_in(ws, "alice", "label.py")
    first = shown_crop(at)
    views = events(ws, actor="alice", action=trail.VIEW, page="label")
    assert [e["crop_id"] for e in views] == [first]
    ctx = events(ws, actor="alice", action=trail.CONTEXT)
    assert [e["crop_id"] for e in ctx] == [first] and ctx[0]["detail"]["frame"] is not None
    at.button(key="btn_mask").click().run()  # the next crop: one more view, not a repeat
    second = shown_crop(at)
    assert second != first
    views = events(ws, actor="alice", action=trail.VIEW, page="label")
    assert [e["crop_id"] for e in views] == [second, first]
    at.run()  # a rerun that shows the same crop records nothing new
    assert len(events(ws, actor="alice", action=trail.VIEW, page="label")) == 2


def test_grid_browse_and_review_record_the_crops_they_show(ws):
    at = signed_in(ws, "bob", "grid.py")
    held = {c.crop_id for c in at.session_state["grid_cards"]}
    grid = events(ws, actor="bob", page="grid")
    assert {e["crop_id"] for e in grid} == held and len(grid) == len(held)
    ids = sorted(held)[:2]
    with ws.session() as s:  # two crops that want two votes: a disagreement for Review
        s.execute(update(db.Crop).where(db.Crop.id.in_(ids)).values(votes_needed=2))
    factory.label_some(ws, "bob", ids, "no_mask")
    factory.label_some(ws, "alice", ids, "mask")
    signed_in(ws, "alice", "browse.py")
    assert set(ids) <= {e["crop_id"] for e in events(ws, actor="alice", page="browse")}
    signed_in(ws, "root", "review.py")
    assert set(ids) <= {e["crop_id"] for e in events(ws, actor="root", page="review")}


def test_trail_off_in_config_records_nothing(ws):
    cfg = ws.root / "config.toml"
    assert "trail = true" in cfg.read_text()  # `annotator init` writes the [privacy] defaults
    cfg.write_text(cfg.read_text().replace("trail = true", "trail = false"))
    signed_in(ws, "alice", "label.py")
    assert events(ws, actor="alice") == []


def test_context_view_says_the_frame_is_gone_when_the_source_was_deleted(ws):
    with ws.read_session() as s:
        uri = s.scalar(select(db.Source.uri).where(db.Source.kind == "video"))
    Path(uri).unlink()
    at = signed_in(ws, "alice", "label.py")
    panel = next(h.value for h in at.get("html") if 'class="label-panel"' in h.value)
    assert "frame is gone" in panel and "context-view" not in panel


def test_personal_data_page_erases_a_crop_only_after_confirmation(ws):
    at = signed_in(ws, "root", "admin_privacy.py")
    with ws.read_session() as s:
        cid = s.scalar(select(db.Crop.id).order_by(db.Crop.id.desc()).limit(1))
    at.radio(key="erase_kind").set_value("crop").run()
    at.text_input(key="erase_ref").input(str(cid)).run()
    at.button(key="erase_plan").click().run()
    assert not at.exception, at.exception
    assert any(f"crop {cid}" in m.value and "1 crops" in m.value for m in at.markdown)
    assert at.button(key="erase_go").disabled  # nothing happens before ERASE is typed
    at.text_input(key="erase_confirm").input("ERASE").run()
    at.button(key="erase_go").click().run()
    assert not at.exception, at.exception
    with ws.read_session() as s:
        assert s.get(db.Crop, cid) is None
    erased = events(ws, action=trail.ERASE)
    assert erased[0]["actor"] == "root" and erased[0]["detail"]["target"] == f"crop {cid}"


def test_personal_data_page_lists_due_retention_and_starts_it_as_a_job(ws):
    import datetime as dt

    cfg = ws.root / "config.toml"
    cfg.write_text(cfg.read_text().replace("unlabeled_crop_days = 0.0", "unlabeled_crop_days = 7.0"))
    with ws.session() as s:
        s.execute(update(db.Crop).where(db.Crop.id <= 5)
                  .values(created_at=db.utcnow() - dt.timedelta(days=10)))
    at = signed_in(ws, "root", "admin_privacy.py")
    assert any("due: 0 uploads" in m.value and "5 unlabeled crops" in m.value for m in at.markdown)
    at.button(key="retention_go").click().run()
    assert not at.exception, at.exception
    with ws.read_session() as s:
        job = s.scalar(select(db.Job).where(db.Job.kind == "retention"))
    assert job is not None and job.started_by == "root"
