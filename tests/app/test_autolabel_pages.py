"""The auto-label sections: the Models page's dry-run preview and button (a real job), and the
Dashboard's labeling cost and measured auto-label error."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from annotator.data import crop_queue, db, model_versions
from annotator.service import jobs, labeling
from tests.app import factory
from tests.app.test_pages import signed_in

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
