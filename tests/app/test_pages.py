"""AppTest: the pages' logic, run in-process against a real workspace (no browser)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from annotator.data import db, model_reports
from annotator.service import crop_cards, labeling
from tests.app import factory

PAGES = Path(__file__).resolve().parents[2] / "pages"
T = 60  # seconds: the first run imports pandas, sqlalchemy, ...


@pytest.fixture
def ws(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 300) as ws:
        yield ws


def signed_in(ws, name: str, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(PAGES / "app.py"), default_timeout=T)
    with ws.read_session() as s:
        u = db.get_annotator(s, name)
        at.session_state["user"] = {"id": u.id, "name": u.name, "role": u.role}
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def page_titles(at: AppTest) -> list[str]:
    # AppTest keeps the pages st.navigation registered on the last run.
    return [info["page_name"] for info in at._registered_pages.values()]


def active_labels(ws, name=None):
    with ws.read_session() as s:
        q = select(db.Label.crop_id, db.Label.value).join(db.Annotator).where(
            db.Label.undone_at.is_(None), db.Label.superseded_by_id.is_(None))
        if name:
            q = q.where(db.Annotator.name == name)
        return dict(s.execute(q).all())


def panel(at: AppTest) -> str:
    """The label page's one HTML block: counters, the crop, what it is, the model's guess."""
    return next(h.value for h in at.get("html") if 'class="label-panel"' in h.value)


def caption_crop(at: AppTest) -> int:
    return int(panel(at).split('data-crop-id="')[1].split('"')[0])


def test_sign_in_first_then_exact_page_list(ws):
    at = AppTest.from_file(str(PAGES / "app.py"), default_timeout=T).run()
    assert not at.exception
    assert page_titles(at) == ["Sign in"]
    at.text_input[0].input("root")
    at.text_input[1].input("wrong")
    at.button[0].click().run()
    assert "wrong user name or password" in at.error[0].value
    assert "user" not in at.session_state
    at.text_input[1].input("root-password")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state["user"]["role"] == "admin"
    assert page_titles(at) == ["Label", "Grid", "Review", "Browse", "Dashboard", "Footage",
                               "Models", "Extract", "Users", "Personal data", "Sign out"]


def test_annotator_sees_no_admin_pages_and_admin_pages_check_the_role(ws):
    at = signed_in(ws, "alice")
    assert page_titles(at) == ["Label", "Grid", "Review", "Browse", "Dashboard", "Footage",
                               "Sign out"]
    for page in ("admin_models.py", "admin_extract.py", "admin_users.py", "admin_privacy.py"):
        direct = AppTest.from_file(str(PAGES / page), default_timeout=T)
        direct.session_state["user"] = at.session_state["user"]
        direct.run()
        assert [e.value for e in direct.error] == ["This page is for admins."]
        assert not direct.button and not direct.get("form")  # nothing to start or add


def test_label_page_keys_label_skip_undo(ws):
    at = signed_in(ws, "alice", "label.py")
    assert {b.key for b in at.button} >= {"btn_mask", "btn_no_mask", "btn_not_a_face",
                                          "btn_skip", "btn_undo"}
    first = caption_crop(at)
    at.button(key="btn_mask").click().run()
    second = caption_crop(at)
    assert second != first
    at.button(key="btn_no_mask").click().run()
    at.button(key="btn_not_a_face").click().run()
    at.button(key="btn_skip").click().run()
    labels = active_labels(ws, "alice")
    assert labels[first] == "mask" and labels[second] == "no_mask"
    assert sorted(labels.values()) == ["mask", "no_mask", "not_a_face", "skip"]
    assert "<b>4</b> labeled this session" in panel(at)
    # Undo brings the last crop back, in front.
    last = caption_crop(at)
    at.button(key="btn_undo").click().run()
    undone = caption_crop(at)
    assert "skip" not in active_labels(ws, "alice").values()
    at.button(key="btn_mask").click().run()
    assert active_labels(ws, "alice")[undone] == "mask"
    assert caption_crop(at) == last or last not in active_labels(ws, "alice")


def test_label_page_prefetches_and_keeps_going_past_a_batch(ws):
    at = signed_in(ws, "alice", "label.py")
    seen = []
    for _ in range(ws.config.sampling.claim_size + 5):
        seen.append(caption_crop(at))
        at.button(key="btn_mask").click().run()
        assert not at.exception
    assert len(set(seen)) == len(seen)  # never the same crop twice
    assert len(active_labels(ws, "alice")) == len(seen)


def test_label_page_hides_guess_and_says_when_queue_is_empty(tmp_path, monkeypatch):
    ws = factory.build(tmp_path / "small", 3)
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    at = signed_in(ws, "alice", "label.py")
    assert "<b>model: " in panel(at)
    at.toggle(key="opt_guess").set_value(False).run()
    assert "model:" not in panel(at)
    for _ in range(3):
        at.button(key="btn_no_mask").click().run()
    assert "Nothing left to label" in at.success[0].value


def grid_data(at: AppTest) -> dict:
    import json

    (el,) = [e for e in at.main if type(e).__name__ == "UnknownElement"
             and e.proto.component_name == "fma_label_grid"]
    return json.loads(el.proto.json)


def test_grid_page_sends_a_page_preset_to_the_model_to_the_browser(ws):
    at = signed_in(ws, "bob", "grid.py")
    data = grid_data(at)
    ids = [it["id"] for it in data["items"]]
    assert len(ids) == 40 and len(set(ids)) == 40
    guesses = {c.crop_id: c.guess for c in crop_cards.cards(ws, [(i, None) for i in ids])}
    assert [it["value"] for it in data["items"]] == [guesses[i] for i in ids]
    assert data["keys"] == {"m": "mask", "n": "no_mask", "x": "not_a_face"}
    assert len(set(data["colours"].values())) == 3  # one colour per class
    assert data["submit_key"] == "g"
    with ws.read_session() as s:  # the page is held for bob while he decides it
        held = set(s.scalars(select(db.Lease.crop_id).where(
            db.Lease.annotator_id == factory.user_id(ws, "bob"))))
    assert set(ids) <= held


def test_grid_submit_is_all_or_nothing(ws):
    bob = factory.user_id(ws, "bob")
    ids = [c.crop_id for c in labeling.claim(ws, bob, 10)]
    root = factory.user_id(ws, "root")
    with ws.session() as s:  # someone relabels one of bob's crops meanwhile (an admin in review)
        from annotator.data import crop_queue
        crop_queue.relabel(s, root, ids[5], "mask", allowed=ws.config.label_values)
    with pytest.raises(Exception, match="already labeled"):
        labeling.submit_page(ws, bob, {i: "no_mask" for i in ids})
    assert active_labels(ws, "bob") == {}


def test_grid_without_a_model_sends_undecided_crops_and_one_undo_takes_a_page_back(
        tmp_path, monkeypatch):
    with factory.served(tmp_path / "bare", monkeypatch, 60, model=False) as bare:
        at = signed_in(bare, "bob", "grid.py")
        items = grid_data(at)["items"]
        assert {it["value"] for it in items} == {None}  # no default class to save unseen
        assert grid_data(at)["undo_key"] == "z"
        bob = factory.user_id(bare, "bob")
        page = {it["id"]: "mask" for it in items[:5]}
        assert labeling.submit_page(bare, bob, page) == 5
        back = labeling.undo(bare, bob)
        assert sorted(c.crop_id for c in back) == sorted(page)  # the whole page, one undo
        assert active_labels(bare, "bob") == {}


def test_review_lists_disagreements_and_contradictions_and_relabels(ws):
    alice, bob = factory.user_id(ws, "alice"), factory.user_id(ws, "bob")
    from sqlalchemy import update

    with ws.session() as s:
        s.execute(update(db.Crop).where(db.Crop.id.in_([1, 2])).values(votes_needed=2))
    factory.label_some(ws, "alice", [1, 2], "mask")
    factory.label_some(ws, "bob", [1], "no_mask")
    factory.label_some(ws, "bob", [2], "mask")
    # A crop labeled against a confident model.
    with ws.read_session() as s:
        ids, probs, _ = model_reports.prediction_arrays(s, crop_cards.active_model(ws).id, range(3, 300))
    sure_no_mask = int(ids[probs[:, 1].argmax()])
    factory.label_some(ws, "alice", [sure_no_mask], "mask")

    at = signed_in(ws, "root", "review.py")
    keys = {b.key for b in at.button}
    assert "dis_1_mask" in keys and "dis_2_mask" not in keys  # crop 2 has agreeing votes
    assert f"con_{sure_no_mask}_no_mask" in keys
    at.button(key="dis_1_no_mask").click().run()
    assert active_labels(ws)[1] == "no_mask"
    assert "dis_1_mask" not in {b.key for b in at.button}
    # Alice reviews only her own crops: crop 1 was hers too, bob's are not shown to her.
    mine = signed_in(ws, "alice", "review.py")
    assert f"con_{sure_no_mask}_mask" in {b.key for b in mine.button}


def test_dashboard_renders_counts_kappa_and_plots(ws):
    from sqlalchemy import update
    with ws.session() as s:
        s.execute(update(db.Crop).where(db.Crop.id <= 20).values(votes_needed=2))
    factory.label_some(ws, "alice", range(1, 21), "mask")
    factory.label_some(ws, "bob", range(1, 16), "mask")
    factory.label_some(ws, "bob", range(16, 21), "no_mask")
    factory.add_model(ws, "v2", metrics={"balanced_accuracy": 0.9, "n_train": 170, "n_val": 30})
    at = signed_in(ws, "alice", "dashboard.py")
    assert not at.exception
    assert at.metric[0].value == "300"
    kappa = next(d.value for d in at.dataframe if "kappa" in d.value)
    assert list(kappa["crops"]) == [20] and abs(kappa["agree"][0] - 0.75) < 1e-9
    labels = next(d.value for d in at.dataframe if "By people" in d.value)
    assert int(labels.loc["mask", "By people"]) == 35 and int(labels.loc["no_mask", "By people"]) == 5
    titles = chart_titles(at)
    assert {"Validation scores by version", "Balanced accuracy vs labels"} <= titles
    # the count charts are HTML bars (their rendered widths: tests/e2e/test_dashboard_charts.py)
    bars = " ".join(h.proto.body for h in at.get("html"))
    assert "Crops by status" in bars and "Labels given by people" in bars
    assert any("scored by the active model" in t for t in titles)


def chart_titles(at: AppTest) -> set[str]:
    import json

    out = set()
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        for part in [spec, *spec.get("layer", []), *spec.get("hconcat", [])]:
            title = part.get("title")
            if title:
                out.add(title if isinstance(title, str) else title.get("text", ""))
    return out


@pytest.mark.parametrize("versions", [0, 1, 5])
def test_dashboard_with_zero_one_and_several_models(tmp_path, monkeypatch, versions):
    ws = factory.build(tmp_path / f"dash{versions}", 60, model=False)
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    for k in range(versions):
        factory.add_model(ws, f"v{k + 1}", seed=k, labels=100 * (k + 1),
                          metrics={"balanced_accuracy": 0.6 + 0.05 * k, "accuracy": 0.62 + 0.05 * k,
                                   "n_train": 85 * (k + 1), "n_val": 15 * (k + 1)})
    at = signed_in(ws, "alice", "dashboard.py")
    assert not at.exception
    titles = chart_titles(at)
    if versions == 0:
        assert "no model yet: train one on the Models page" in [c.value for c in at.caption]
        assert not any("scored by the active model" in t for t in titles)
        return
    assert {"Validation scores by version", "Balanced accuracy vs labels"} <= titles
    import json

    scores = next(json.loads(c.proto.spec) for c in at.get("vega_lite_chart")
                  if json.loads(c.proto.spec).get("title") == "Validation scores by version")
    assert scores["mark"]["point"]  # one version is a visible dot, not an invisible line
    by_labels = next(json.loads(c.proto.spec) for c in at.get("vega_lite_chart")
                     if json.loads(c.proto.spec).get("title") == "Balanced accuracy vs labels")
    assert by_labels["encoding"]["x"]["axis"]["format"] == "d"  # 4,065 labels, not 4,065.000000
    assert any("scored by the active model" in t for t in titles)  # a model scored the queue


def _newest_job(ws):
    """The job the page started last, once its process has ended (see below)."""
    from annotator.service import jobs

    return jobs.wait(ws, jobs.list_jobs(ws, limit=1)[0].id, timeout=60)


def test_models_page_starts_jobs_for_admin(ws, monkeypatch):
    from annotator.core.failpoints import ENV as FAILPOINT_ENV
    from pipelines.cli import runner

    # Every job the page starts is recorded and launched for real; its process stops at the
    # runner's first line (a failpoint), so nothing trains here and the outcome is known.
    monkeypatch.setenv(FAILPOINT_ENV, runner.BEFORE_JOB)
    factory.add_model(ws, "v2")
    at = signed_in(ws, "root", "admin_models.py")
    at.number_input(key="rt_epochs").set_value(3)
    at.selectbox(key="rt_init").set_value("none")
    at.button[0].click().run()  # the form's "Retrain now"
    job = _newest_job(ws)
    assert (job.kind, job.started_by) == ("retrain", "root")
    assert (job.args["epochs"], job.args["init"], job.args["force"]) == (3, "none", False)
    assert f"started job {job.id}" in at.info[0].value
    assert job.status == "failed" and "ended without a report" in job.message
    at.run()  # the page enables its buttons again once no job is active
    # Promote is offered only for versions that are not active (v2 is).
    assert at.selectbox(key="promote_version").options == ["v1"]
    at.button(key="promote").click().run()
    job = _newest_job(ws)
    at.run()
    assert (job.kind, job.args, job.started_by) == ("promote", {"version": "v1", "force": False},
                                                    "root")
    at.checkbox(key="promote_force").check().run()
    at.button(key="promote").click().run()
    job = _newest_job(ws)
    assert (job.kind, job.args) == ("promote", {"version": "v1", "force": True})
    assert len(jobs_rows(ws)) == 3  # one row per click, no more


def jobs_rows(ws):
    with ws.read_session() as s:
        return s.execute(select(db.Job.id)).all()


def test_models_page_runs_a_real_rollback_job_and_shows_it(ws):
    from annotator.service import jobs

    factory.add_model(ws, "v2")
    at = signed_in(ws, "root", "admin_models.py")
    at.button(key="rollback").click().run()
    job_id = int(at.info[0].value.split("started job ")[1].split(":")[0])
    job = jobs.wait(ws, job_id, timeout=120)
    assert job.status == "done", jobs.log_tail(job)
    assert (job.result["rolled_back_from"], job.result["to"]) == ("v2", "v1")
    at.run()
    assert crop_cards.active_model(ws).name == "v1"
    assert any(f"job {job_id}" in s.value and "done" in s.value for s in at.success)


def test_db_counts_match_after_page_use(ws):
    at = signed_in(ws, "alice", "label.py")
    at.button(key="btn_mask").click().run()
    with ws.read_session() as s:
        n = s.scalar(select(func.count()).select_from(db.Label))
        held = s.scalar(select(func.count()).select_from(db.Lease))
    assert n == 1 and held >= 1
    assert labeling.release(ws, factory.user_id(ws, "alice")) == held  # what sign-out does


def test_users_page_adds_an_account_that_can_sign_in(ws):
    at = signed_in(ws, "root", "admin_users.py")
    assert set(at.dataframe[0].value["name"]) == {"alice", "bob", "root"}
    at.text_input(key="new_name").input("carol")
    at.text_input(key="new_password").input("carol-password")
    at.button[0].click().run()
    assert not at.exception
    assert "carol" in set(at.dataframe[0].value["name"])
    from annotator.service import auth
    with ws.read_session() as s:
        assert auth.authenticate(s, "carol", "carol-password").role == "annotator"


def test_users_page_keeps_the_name_after_a_refused_password_and_reads_in_words(ws):
    at = signed_in(ws, "root", "admin_users.py")
    at.text_input(key="new_name").input("dave")
    at.text_input(key="new_password").input("x")
    at.button[0].click().run()
    assert at.error and at.text_input(key="new_name").value == "dave"  # type only the password
    at.text_input(key="new_password").input("dave-password-1")
    at.button[0].click().run()
    assert at.success and at.text_input(key="new_name").value == ""
    shown = at.dataframe[0]
    assert "dave" in set(shown.value["name"])
    config = shown.proto.columns  # the headers the browser shows, not the frame's names
    assert "Last label (UTC)" in config and "Labels given" in config


def test_label_page_cold_start_without_model(tmp_path, monkeypatch):
    ws = factory.build(tmp_path / "cold", 120, model=False)
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    at = signed_in(ws, "alice", "label.py")
    reasons = set()
    for _ in range(ws.config.sampling.claim_size):
        reasons.add(panel(at).split("picked by ", 1)[1].split("<")[0].split(" ·")[0])
        at.button(key="btn_mask").click().run()
    assert reasons == {"cold_start", "random"}
    assert "<b>model: no prediction</b>" in panel(at)


def test_label_page_shows_context_and_the_track_strip(tmp_path, monkeypatch):
    ws = factory.build(tmp_path / "ctx", 80, footage=True, per_track=4)
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    at = signed_in(ws, "alice", "label.py")
    html_ = panel(at)
    assert 'class="context-view"' in html_  # 48-px crops: the frame is on by default
    assert html_.count("data-strip-id=") == 3  # the 3 other crops of its track
    at.radio(key="opt_context").set_value("never").run()
    assert 'class="context-view"' not in panel(at)
    # Shift+M: the crop and its open track mates get one label row each, one decision id.
    first = caption_crop(at)
    at.button(key="trk_mask").click().run()
    labels = active_labels(ws, "alice")
    assert len(labels) == 4 and set(labels.values()) == {"mask"} and first in labels
    with ws.read_session() as s:
        rows = s.execute(select(db.Label.method, db.Label.decision_id)).all()
    assert {m for m, _ in rows} == {"track"} and len({d for _, d in rows}) == 1
    assert "<b>4</b> labeled this session" in panel(at)
    at.button(key="btn_undo").click().run()  # one undo reverts the whole track decision
    assert active_labels(ws, "alice") == {} and caption_crop(at) == first
    (ws.root / "footage.avi").unlink()  # footage deleted: the crop alone is still labelable
    at.radio(key="opt_context").set_value("always").run()
    at.button(key="btn_mask").click().run()
    assert not at.exception


def test_end_of_queue_says_what_to_do_next(tmp_path, monkeypatch):
    ws = factory.build(tmp_path / "tiny", 2, per_track=1)
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    for who in ("alice", "root"):
        at = signed_in(ws, who, "label.py")
        while "Nothing left to label" not in "".join(s.value for s in at.success):
            at.button(key="btn_mask").click().run()
        text = "".join(m.value for m in at.markdown)
        if who == "root":
            assert "retrain" in text and "extract" in text
            assert {p.proto.page for p in at.get("page_link")} >= {"admin_models", "admin_extract"}
        else:
            assert "ask an admin" in text
        assert "browse" in {p.proto.page for p in at.get("page_link")}


def test_users_page_disables_changes_role_and_resets_password(ws):
    from annotator.service import auth
    from annotator.core.errors import AuthError

    at = signed_in(ws, "root", "admin_users.py")
    at.selectbox(key="edit_user").set_value("alice").run()
    at.button(key="user_disable").click().run()
    assert not at.exception and "disabled alice" in at.success[0].value
    with pytest.raises(AuthError):
        auth.sign_in(ws, "alice", "alice-password")
    at.button(key="user_enable").click().run()
    at.button(key="user_role").click().run()
    assert auth.sign_in(ws, "alice", "alice-password").role == "admin"
    at.text_input(key="reset_password").input("short")
    next(b for b in at.button if b.label == "Set password").click().run()
    assert "at least 10 characters" in at.error[0].value
    at.text_input(key="reset_password").input("alice-new-password")
    next(b for b in at.button if b.label == "Set password").click().run()
    assert auth.sign_in(ws, "alice", "alice-new-password").name == "alice"
    at.selectbox(key="edit_user").set_value("root").run()
    at.button(key="user_role").click().run()  # root makes itself an annotator (alice is admin)
    assert at.session_state["user"]["role"] == "annotator"  # at once: the admin pages are gone
    assert "Users" not in [t.value for t in at.title] and "Users" not in page_titles(at)


def test_browse_page_fixes_my_recent_label_and_filters_by_track(ws):
    factory.label_some(ws, "alice", [5, 6, 7], "mask")
    at = signed_in(ws, "alice", "browse.py")
    assert not at.exception
    assert {b.key for b in at.button} >= {"mine_7_no_mask", "mine_7_not_a_face"}
    assert "mine_7_mask" not in {b.key for b in at.button}  # its current label
    at.button(key="mine_7_no_mask").click().run()
    assert active_labels(ws, "alice")[7] == "no_mask"
    at.radio(key="browse_view").set_value("All crops").run()
    at.number_input(key="browse_track").set_value(1).run()  # crops 5..8 are track 1
    shown = {int(h.value.split('data-crop-id="')[1].split('"')[0]) for h in at.get("html")
             if 'data-crop-id="' in h.value}
    assert {5, 6, 7, 8} <= shown
    assert not any(b.key.startswith("all_") for b in at.button)  # annotators: own labels only


def test_browse_pages_filters_and_relabels_a_selection(ws):
    at = signed_in(ws, "root", "browse.py")
    at.radio(key="browse_view").set_value("All crops").run()
    assert not at.exception

    def shown():
        return [int(h.value.split('data-crop-id="')[1].split('"')[0]) for h in at.get("html")
                if 'data-crop-id="' in h.value]

    first = shown()
    assert len(first) == 60  # 300 crops: a page of 60
    at.button(key="browse_next").click().run()
    second = shown()
    assert len(second) == 60 and not set(first) & set(second)
    at.checkbox(key=f"sel_{second[0]}").check().run()
    at.checkbox(key=f"sel_{second[1]}").check().run()
    at.button(key="bulk_not_a_face").click().run()
    assert not at.exception
    assert {c: v for c, v in active_labels(ws, "root").items()} == {
        second[0]: "not_a_face", second[1]: "not_a_face"}
    assert at.radio(key="browse_view").value == "All crops"  # the view stays where it was
    at.selectbox(key="browse_label").set_value("not_a_face").run()
    assert sorted(shown()) == sorted(second[:2])  # filtered (and back to page 1)
    at.selectbox(key="browse_label").set_value("any").run()
    at.slider(key="browse_unsure").set_value(0.9).run()
    unsure = shown()
    ids, probs, _ = factory_probs(ws, unsure)
    assert unsure and len(unsure) < 60 and (probs.max(axis=1) <= 0.75).all()


def factory_probs(ws, crop_ids):
    with ws.read_session() as s:
        return model_reports.prediction_arrays(s, crop_cards.active_model(ws).id, crop_ids)


def test_admin_edits_the_instructions_that_annotators_read(ws):
    at = signed_in(ws, "root", "admin_users.py")
    at.text_area(key="instructions_text").input("**Chin masks** count as no_mask.\n\n<b>x</b>")
    at.button(key="instructions_save").click().run()
    assert not at.exception and "instructions saved" in at.success[0].value
    assert (ws.root / "instructions.md").read_text().startswith("**Chin masks**")
    alice = signed_in(ws, "alice", "label.py")
    shown = [m.value for m in alice.markdown if "Chin masks" in m.value]
    assert shown and not any(m.allow_html for m in alice.markdown if "Chin masks" in m.value)
    from annotator.service import instructions
    with pytest.raises(Exception, match="at most"):
        instructions.save_instructions(ws, "x" * (instructions.MAX_INSTRUCTIONS + 1))
