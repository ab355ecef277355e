"""AppTest: the pages' logic, run in-process against a real workspace (no browser)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from annotator import db, labeling, reports
from tests.app import factory

PAGES = Path(__file__).resolve().parents[2] / "pages"
T = 60  # seconds: the first run imports pandas, sqlalchemy, ...


@pytest.fixture
def ws(tmp_path, monkeypatch):
    ws = factory.build(tmp_path / "ws", 300)
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    yield ws
    ws.dispose()


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
    at.text_input[1].input("root-pw")
    at.button[0].click().run()
    assert not at.exception
    assert at.session_state["user"]["role"] == "admin"
    assert page_titles(at) == ["Label", "Grid", "Review", "Dashboard", "Footage", "Models",
                               "Extract", "Users", "Sign out"]


def test_annotator_sees_no_admin_pages_and_admin_pages_check_the_role(ws):
    at = signed_in(ws, "alice")
    assert page_titles(at) == ["Label", "Grid", "Review", "Dashboard", "Footage", "Sign out"]
    for page in ("admin_models.py", "admin_extract.py", "admin_users.py"):
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
    for _ in range(ws.config.sampling.batch_size + 5):
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


def test_grid_page_preset_flip_and_submit_in_one_go(ws):
    at = signed_in(ws, "bob", "grid.py")
    flips = [b for b in at.button if b.key and b.key.startswith("flip_")]
    assert len(flips) == 40
    card_ids = [int(b.key.split("_")[1]) for b in flips]
    guesses = {c.crop_id: c.guess for c in labeling.cards(ws, [(i, None) for i in card_ids])}
    assert [b.label for b in flips] == [guesses[i] for i in card_ids]  # pre-set to the model
    flipped = card_ids[3]
    at.button(key=f"flip_{flipped}").click().run()
    assert at.button(key=f"flip_{flipped}").label != guesses[flipped]
    at.button(key="grid_submit").click().run()
    assert not at.exception
    labels = active_labels(ws, "bob")
    assert set(labels) == set(card_ids)
    assert all(labels[i] == guesses[i] for i in card_ids if i != flipped)
    assert labels[flipped] != guesses[flipped]
    assert "saved 40 labels" in at.info[0].value
    # A new page was claimed, none of it already labeled.
    new = [int(b.key.split("_")[1]) for b in at.button if b.key and b.key.startswith("flip_")]
    assert new and not set(new) & set(card_ids)


def test_grid_submit_is_all_or_nothing(ws):
    at = signed_in(ws, "bob", "grid.py")
    ids = [int(b.key.split("_")[1]) for b in at.button if b.key and b.key.startswith("flip_")]
    factory.label_some(ws, "alice", [], "mask")
    # Someone relabels one of bob's crops meanwhile (an admin in review): the page fails whole.
    root = factory.user_id(ws, "root")
    with ws.session() as s:
        from annotator import queue
        queue.relabel(s, root, ids[5], "mask", allowed=ws.config.label_values)
    at.button(key="grid_submit").click().run()
    assert "nothing saved" in at.info[0].value
    assert active_labels(ws, "bob") == {}


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
        ids, probs, _ = reports.prediction_arrays(s, labeling.active_model(ws).id, range(3, 300))
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
    kappa = at.dataframe[0].value
    assert list(kappa["crops"]) == [20] and abs(kappa["agree"][0] - 0.75) < 1e-9
    charts = at.get("vega_lite_chart")
    # status, labels, per hour, model metrics over time, bacc vs labels, uncertainty histogram
    assert len(charts) == 6


def test_models_page_starts_jobs_for_admin(ws, monkeypatch):
    started = []
    monkeypatch.setattr("annotator.jobs.start", lambda ws_, kind, args, started_by=None, env=None:
                        started.append((kind, args, started_by)) or 7)
    at = signed_in(ws, "root", "admin_models.py")
    at.button(key="retrain").click().run()
    assert started[0][0] == "retrain" and started[0][2] == "root"
    assert "started job 7" in at.info[0].value
    at.button(key="promote").click().run()
    assert started[-1][:2] == ("promote", {"version": "v1", "force": False})
    at.checkbox(key="promote_force").check().run()
    at.button(key="promote").click().run()
    assert started[-1][:2] == ("promote", {"version": "v1", "force": True})


def test_models_page_runs_a_real_rollback_job_and_shows_it(ws):
    from annotator import jobs

    factory.add_model(ws, "v2")
    at = signed_in(ws, "root", "admin_models.py")
    at.button(key="rollback").click().run()
    job_id = int(at.info[0].value.split("started job ")[1].split(":")[0])
    job = jobs.wait(ws, job_id, timeout=120)
    assert job.status == "done", jobs.log_tail(job)
    assert (job.result["rolled_back_from"], job.result["to"]) == ("v2", "v1")
    at.run()
    assert labeling.active_model(ws).name == "v1"
    assert any(f"job {job_id}" in s.value and "done" in s.value for s in at.success)


def test_extract_page_starts_extraction_of_a_server_path(ws, monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr("annotator.jobs.start", lambda ws_, kind, args, started_by=None, env=None:
                        started.append((kind, args)) or 3)
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / name).write_bytes(b"")
    at = signed_in(ws, "root", "admin_extract.py")
    at.text_area(key="extract_paths").input(f"{tmp_path}/a.mp4\n\n{tmp_path}/b.mp4").run()
    at.button(key="extract_start").click().run()
    assert [(k, a["sources"]) for k, a in started] == [
        ("extract", [f"{tmp_path}/a.mp4", f"{tmp_path}/b.mp4"])]


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
    at.text_input(key="new_password").input("carol-pw")
    at.button[0].click().run()
    assert not at.exception
    assert "carol" in set(at.dataframe[0].value["name"])
    from annotator import auth
    with ws.read_session() as s:
        assert auth.authenticate(s, "carol", "carol-pw").role == "annotator"


def test_label_page_cold_start_without_model(tmp_path, monkeypatch):
    ws = factory.build(tmp_path / "cold", 120, model=False)
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    at = signed_in(ws, "alice", "label.py")
    reasons = set()
    for _ in range(ws.config.sampling.batch_size):
        reasons.add(panel(at).split("picked by ", 1)[1].split("<")[0].split(" ·")[0])
        at.button(key="btn_mask").click().run()
    assert reasons == {"cold_start", "random"}
    assert "<b>model: no prediction</b>" in panel(at)


def test_label_page_shows_the_frame_around_the_crop(ws, tmp_path):
    import cv2
    import numpy as np
    from sqlalchemy import update

    video = tmp_path / "cam.avi"
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    for i in range(400):
        out.write(np.full((240, 320, 3), i % 255, np.uint8))
    out.release()
    with ws.session() as s:
        s.execute(update(db.Source).values(uri=str(video)))
    at = signed_in(ws, "alice", "label.py")
    assert not at.get("image")
    at.toggle(key="opt_frame").set_value(True).run()
    assert not at.exception
    assert len(at.get("image")) == 1  # the frame, read from the source video
    video.unlink()  # footage deleted after extraction: the crop alone is still labelable
    at.button(key="btn_mask").click().run()
    assert not at.get("image")
    assert "no source video on disk for this crop" in [c.value for c in at.caption]
