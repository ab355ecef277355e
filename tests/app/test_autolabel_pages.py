"""The auto-label sections: the Models page's dry-run preview and button (a real job), and the
Dashboard's labeling cost and measured auto-label error."""
from __future__ import annotations

import html
import re

import numpy as np
import pytest
from sqlalchemy import select

from annotator.core import sample
from annotator.data import crop_queue, db, machine_labels, model_versions, reports
from annotator.service import crop_cards, jobs, labeling
from tests.app import factory
from tests.app.test_pages import panel, signed_in

CONFIG = 'labels = ["mask", "no_mask"]\n\n[autolabel]\nmax_error = 0.2\naudit_share = 0.1\n'


@pytest.fixture
def ws(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 300, config=CONFIG) as ws:
        yield ws


def audit_by_people(ws, n: int) -> None:
    """alice labels ``n`` crops from the random share as the active model predicts them."""
    alice = factory.user_id(ws, "alice")
    with ws.session() as s:
        mv = model_versions.active_model(s)
        probs = dict(s.execute(select(db.Prediction.crop_id, db.Prediction.probs).where(
            db.Prediction.model_version_id == mv.id)).all())
        crop_queue.release(s, alice)
        got = crop_queue.claim_batch(s, alice, n, candidates=[(c, "random") for c in sorted(probs)])
    assert len(got) == n
    for c in got:
        labeling.submit(ws, alice, c.crop_id, ws.config.labels[int(np.argmax(probs[c.crop_id]))])


def auto_count(ws) -> int:
    with ws.read_session() as s:
        return db.count(s, db.Label, db.Label.method == "auto", db.active_label())


def test_models_page_previews_the_dry_run_and_labels_on_click(ws):
    at = signed_in(ws, "root", "admin_models.py")
    # No audit yet: the preview says why it refuses and how many labels it needs.
    assert any("more random-share labels" in w.value for w in at.warning)
    assert at.button(key="autolabel_go").disabled
    audit_by_people(ws, 150)
    at.run()
    preview = next(d.value for d in at.dataframe if "threshold" in d.value.columns)
    assert list(preview["class"]) == ["mask", "no_mask"]
    assert preview["threshold"].notna().all() and (preview["bound"] <= 0.2).all()
    would = int(preview["crops"].sum())
    assert would > 0 and auto_count(ws) == 0  # a preview changes nothing
    at.button(key="autolabel_go").click().run()
    job_id = int(at.info[0].value.split("started job ")[1].split(":")[0])
    job = jobs.wait(ws, job_id, timeout=120)
    assert job.status == "done", jobs.log_tail(job)
    assert auto_count(ws) == would == job.result["labeled"]


def test_dashboard_shows_decisions_per_labeled_crop_and_the_measured_auto_error(ws):
    from pipelines import autolabel

    audit_by_people(ws, 150)
    rep = autolabel.run(ws, autolabel.AutolabelOptions())
    assert rep.labeled > 0 and rep.audit_crops > 0
    with ws.read_session() as s:  # an audit crop: auto-labeled, still in the queue
        crop = s.scalar(select(db.Label.crop_id).join(db.Crop, db.Crop.id == db.Label.crop_id)
                        .where(db.Label.method == "auto", db.Crop.status == "unlabeled").limit(1))
        value = s.scalar(select(db.Label.value).where(db.Label.crop_id == crop))
    bob = factory.user_id(ws, "bob")
    labeling.submit(ws, bob, crop, "mask" if value == "no_mask" else "no_mask")
    at = signed_in(ws, "alice", "dashboard.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Human decisions"] == "151"
    with ws.read_session() as s:
        labeled = db.count(s, db.Crop, db.Crop.status == db.CropStatus.LABELED)
    assert metrics["Crops labeled"] == f"{labeled:,}"
    assert metrics["Decisions per labeled crop"] == f"{151 / labeled:.2f}"
    assert metrics["Auto-label error (measured)"] == "100.00%"  # 1 of 1 audited crops
    assert any("1 of 1 audited crops" in c.value and "95% interval" in c.value
               for c in at.caption)


# --- audit crops look like any other crop ---------------------------------------------------

WORDS = re.compile(r"\b(audit\w*|auto\w*|machine\w*|propagat\w*|second vote)\b", re.I)
ABOUT = re.compile(r"crop #\d+ · 48x48px · cam1\.mp4 · picked by (\w+)")
REASONS = {*sample.STRATEGIES, sample.COLD_START}  # what the sampler says it picked a crop for
GUESS = re.compile(r"model: (mask|no_mask) \(\d+%\)")


def audit_queue(ws, ordinary: int = 4) -> tuple[dict[int, str], set[int]]:
    """Auto-labels with their audit share; then the auto labels of ``ordinary`` track mates of
    audit crops are withdrawn (as a promotion does), which puts them back in the queue as
    ordinary crops, each with an audit crop in its track strip. Returns the audit crops
    (``{crop_id: auto value}``, found by the machine labels still active on queued crops)
    and the ordinary ones: together, the whole queue."""
    from pipelines import autolabel

    audit_by_people(ws, 150)
    assert autolabel.run(ws, autolabel.AutolabelOptions()).audit_crops > 0
    with ws.session() as s:
        machine = (db.Label.method.in_(db.LabelKind.MACHINE), db.active_label())
        queued = db.Crop.status == db.CropStatus.UNLABELED
        audit = dict(s.execute(select(db.Label.crop_id, db.Label.value).join(
            db.Crop, db.Crop.id == db.Label.crop_id).where(queued, *machine)).all())
        tracks = set(s.scalars(select(db.Crop.track_id).where(db.Crop.id.in_(audit))))
        mates = s.execute(select(db.Label.id, db.Crop.id, db.Crop.track_id).join(
            db.Crop, db.Crop.id == db.Label.crop_id).where(
            ~queued, db.Crop.track_id.in_(tracks), *machine).order_by(db.Crop.id)).all()
        one_per_track = {t: (lid, cid) for lid, cid, t in reversed(mates)}
        picked = list(one_per_track.values())[:ordinary]
        machine_labels.withdraw_labels(s, [lid for lid, _ in picked])
        rest = set(s.scalars(select(db.Crop.id).where(queued))) - set(audit)
    assert len(audit) >= 2 and rest == {cid for _, cid in picked} and len(rest) >= 2
    return audit, rest


def visible_text(value: str) -> str:
    value = re.sub(r"<style>.*?</style>", " ", value, flags=re.S)
    value = re.sub(r"<[^>]+>", " ", value)
    return html.unescape(value)


def page_text(at) -> str:
    parts = [visible_text(h.value) for h in at.get("html")]
    for kind in ("markdown", "caption", "info", "warning", "success", "error", "title"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [str(b.label) for b in at.button]
    return "\n".join(parts)


def card_shape(at) -> tuple[int, str, str | None, dict[int, str]]:
    """The label panel of the current crop: its id, the about line, the model guess line
    (None when hidden) and the badge under each crop of its track strip."""
    value = panel(at)
    crop = int(value.split('data-crop-id="')[1].split('"')[0])
    about = visible_text(value.split('class="crop-about"')[1].split("</p>")[0].split(">", 1)[1])
    after = value.split('class="crop-about"')[1].split("</p>", 1)[1]
    guess = (visible_text(after.split("</b>")[0]).strip() if after.startswith("<p><b>")
             else None)
    badges = dict(re.findall(r'data-strip-id="(\d+)".*?<figcaption>([^<]*)</figcaption>',
                             value, flags=re.S))
    return crop, about.strip(), guess, {int(k): v for k, v in badges.items()}


def test_audit_crops_on_the_label_page_look_like_any_other_crop(ws):
    audit, ordinary = audit_queue(ws)
    at = signed_in(ws, "bob", "label.py")
    # The queue's order is random (audit crops first would leave (3) nothing to check): the
    # ordinary crops are claimed for bob as the queue claims them and put first in his batch,
    # so each is on screen while its audit mate is still queued.
    uid = factory.user_id(ws, "bob")
    held = list(at.session_state["label_cards"])
    first = sorted(ordinary - {c.crop_id for c in held})
    with ws.session() as s:
        crop_queue.claim_batch(s, uid, len(held) + len(first), candidates=[
            (c, sample.UNCERTAINTY) for c in first])
    at.session_state["label_cards"] = crop_cards.cards(
        ws, [(c, sample.UNCERTAINTY) for c in first], annotator_id=uid) + held
    at.run()
    seen: dict[int, tuple[str, str | None]] = {}
    strips: dict[int, str] = {}
    for _ in range(len(audit) + len(ordinary) + 5):
        if not at.session_state["label_cards"]:
            break
        crop, about, guess, badges = card_shape(at)
        assert not WORDS.search(page_text(at)), page_text(at)
        seen[crop] = (about, guess)
        strips.update({m: b for m, b in badges.items() if m in audit and m not in seen})
        # The model guess follows the sidebar toggle, audit crop or not.
        at.toggle(key="opt_guess").set_value(False).run()
        assert card_shape(at)[2] is None
        at.toggle(key="opt_guess").set_value(True).run()
        value = at.session_state["label_cards"][0].guess
        at.button(key=f"btn_{value}").click().run()  # as the model says: no band withdrawn
        assert not at.exception, at.exception
    assert set(audit) <= set(seen) and ordinary <= set(seen)  # (1) audit crops are served
    for crop, (about, guess) in seen.items():  # (2) the same text, in the same shape
        m = ABOUT.fullmatch(about)
        assert m and m.group(1) in REASONS, about
        assert guess is not None and GUESS.fullmatch(guess), guess
    # (3) a queued crop's auto label is never shown: in a strip it is open, like any open crop
    assert strips and all(b in ("open", "held") for b in strips.values()), strips


def test_audit_crops_on_the_grid_and_browse_pages_look_like_any_other_crop(ws):
    audit, ordinary = audit_queue(ws)
    with ws.read_session() as s:  # with double annotation on, no audit crop is a "double"
        assert not set(reports.awaiting_vote(s, factory.user_id(ws, "bob"), limit=100)) & set(audit)
    at = signed_in(ws, "bob", "grid.py")
    cards = at.session_state["grid_cards"]
    ids = {c.crop_id for c in cards}
    # (1) the queue on one page (one crop a track: an audit crop or its ordinary mate)
    assert ids <= set(audit) | ordinary and ids & set(audit)
    assert not WORDS.search(page_text(at)), page_text(at)
    # (2) every crop starts at the model's guess: the same rule for an audit crop
    assert {c.sampling for c in cards} <= REASONS
    assert all(c.votes_needed == 1 for c in cards)
    at.switch_page("browse.py").run()
    at.radio(key="browse_view").set_value("All crops").run()
    for crop in audit:  # (3) Browse shows a queued crop unlabeled, whatever its auto label
        with ws.read_session() as s:
            track = s.get(db.Crop, crop).track_id
        at.number_input(key="browse_track").set_value(track).run()
        assert not at.exception, at.exception
        caption = next(c.value for c in at.caption if c.value.startswith(f"#{crop} "))
        assert caption.split(" · ")[1] == "unlabeled", caption
        assert not WORDS.search(page_text(at)), page_text(at)
        at.selectbox(key="browse_label").set_value(audit[crop]).run()
        assert not any(c.value.startswith(f"#{crop} ") for c in at.caption)
        at.selectbox(key="browse_label").set_value("any").run()
