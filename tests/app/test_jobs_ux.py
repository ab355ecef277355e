"""Jobs that say what happened: a promotion the validation gate refused says why, in words, on
its job row (and what to tick on the page); options are read in words; the Models page keeps
the values it was given."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from annotator.data import db, job_rows
from annotator.service import jobs
from pages import common
from pipelines import promote, retrain
from tests.app import factory
from tests.app.test_pages import signed_in


@pytest.fixture
def ws(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 40) as ws:
        yield ws


def _finished_job(ws, kind: str, args: dict, result: dict) -> int:
    """A job row as the runner leaves it when the job returned ``result``."""
    with ws.session() as s:
        job_id = job_rows.create_job(s, kind=kind, args=args, started_by="root")
        now = db.utcnow()
        job_rows.update_job(s, job_id, status=db.JobStatus.DONE, progress=1.0, message="done",
                      result=result, started_at=now - dt.timedelta(seconds=90),
                      finished_at=now)
    return job_id


def _refused() -> dict:
    return dataclasses.asdict(promote.PromoteReport(
        version="v002", promoted=False, previous="v001", dataset="d002",
        candidate_balanced_accuracy=0.7651, active_balanced_accuracy=0.7749, forced=False,
        reason="balanced accuracy 0.7651 < active v001's 0.7749 on dataset d002 (val); use "
               "--force to promote anyway"))


def test_a_gated_promotion_says_why_in_words_on_the_job_row(ws):
    args = dataclasses.asdict(retrain.RetrainOptions(epochs=3, init="none"))
    job_id = _finished_job(ws, "retrain", {k: v for k, v in args.items() if v is not None},
                           {"promote": _refused(), "active": "v001"})
    at = signed_in(ws, "root", "admin_models.py")
    rows = [w.value for w in at.warning if f"job {job_id}" in w.value]
    assert rows, [w.value for w in at.warning]
    assert ("v002 not promoted: validation balanced accuracy 0.765 < active 0.775; tick "
            "'Skip the validation gate' to promote anyway") in rows[0]
    assert "--force" not in rows[0]  # a CLI flag means nothing on this page
    assert not [s.value for s in at.success if f"job {job_id}" in s.value]  # no green "done"
    assert "epochs 3, start from none" in rows[0] and "init=" not in rows[0]
    assert "Skip the validation gate" in [c.label for c in at.checkbox]


def test_a_promotion_that_happened_reads_done(ws):
    ok = {**_refused(), "promoted": True, "reason": "forced", "forced": True}
    job_id = _finished_job(ws, "promote", {"version": "v002", "force": True}, ok)
    at = signed_in(ws, "root", "admin_models.py")
    assert [s.value for s in at.success if f"job {job_id} · promote" in s.value]
    assert common.job_outcome(jobs.get(ws, job_id)) is None


def test_the_models_page_keeps_the_epochs_it_was_given(ws):
    at = signed_in(ws, "root", "admin_models.py")
    at.number_input(key="rt_epochs").set_value(7).run()
    at.switch_page("label.py").run()
    at.switch_page("admin_models.py").run()
    assert not at.exception
    assert at.number_input(key="rt_epochs").value == 7
    assert not jobs.list_jobs(ws)  # changing a field starts nothing


def test_a_cli_run_is_listed_on_the_models_page_with_who_ran_it(ws):
    from typer.testing import CliRunner

    from pipelines.cli import app

    r = CliRunner().invoke(app, ["models", "rollback", "--project", str(ws.root)])
    assert r.exit_code != 0  # nothing to roll back to: a failed run, recorded all the same
    at = signed_in(ws, "root", "admin_models.py")
    rows = [e.value for e in at.error if "roll back" in e.value]
    assert rows, [e.value for e in at.error]
    assert "by cli:" in rows[0] and "failed: " in rows[0]
