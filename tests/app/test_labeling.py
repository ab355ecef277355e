"""The labeling service and background jobs against real workspaces (no Streamlit)."""
from __future__ import annotations


import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from annotator.data import crop_queue, db, job_rows, model_reports, reports
from annotator.service import crop_cards, dashboard, jobs, labeling, review
from pipelines.cli import app
from annotator.core.errors import InputError
from tests.app import factory


pytestmark = pytest.mark.backends  # tests on `ws` (claims from the sampler, jobs) run on both


@pytest.fixture
def ws(tmp_path, db_url):
    # A hybrid pool smaller than the queue, as on a real project (3000 of 100,000).
    ws = factory.build(tmp_path / "ws", 400, per_track=4, config="[sampling]\nhybrid_pool = 100\n",
                       db_url=db_url)
    yield ws
    ws.dispose()


def tracks(ws, crop_ids):
    with ws.read_session() as s:
        return dict(s.execute(select(db.Crop.id, db.Crop.track_id)
                              .where(db.Crop.id.in_(list(crop_ids)))).all())


def test_claim_hybrid_one_per_track_random_share_recorded(ws):
    alice = factory.user_id(ws, "alice")
    cards = labeling.claim(ws, alice, 20, seed=1)
    assert len(cards) == 20
    t = tracks(ws, [c.crop_id for c in cards])
    assert len(set(t.values())) == 20  # never two crops of one track in a batch
    reasons = [c.sampling for c in cards]
    assert reasons.count("random") == 2 and reasons.count("hybrid") == 18
    assert all(c.guess in ("mask", "no_mask") and 0.5 <= c.confidence <= 1 for c in cards)
    assert all(c.image.startswith(b"\x89PNG") for c in cards)  # prefetched bytes
    # The hybrid picks come from the most uncertain crops.
    with ws.read_session() as s:
        pri = dict(s.execute(select(db.Crop.id, db.Crop.priority)).all())
    top100 = sorted(pri.values())[-100]
    assert all(pri[c.crop_id] >= top100 for c in cards if c.sampling == "hybrid")
    # The reason travels with the label.
    labeling.submit(ws, alice, cards[0].crop_id, "mask", seconds=1.5)
    with ws.read_session() as s:
        lab = s.scalar(select(db.Label).where(db.Label.crop_id == cards[0].crop_id))
        assert (lab.sampling, lab.seconds) == (cards[0].sampling, 1.5)


def test_claims_of_two_annotators_never_overlap(ws):
    alice, bob = factory.user_id(ws, "alice"), factory.user_id(ws, "bob")
    a = {c.crop_id for c in labeling.claim(ws, alice, 30)}
    b = {c.crop_id for c in labeling.claim(ws, bob, 30)}
    assert len(a) == 30 and len(b) == 30 and not a & b
    # Claiming again returns what is held (a reload), in the same order.
    again = labeling.claim(ws, alice, 30)
    assert {c.crop_id for c in again} == a


def test_cold_start_without_model(tmp_path):
    ws = factory.build(tmp_path / "cold", 200, per_track=5, model=False)
    cards = labeling.claim(ws, factory.user_id(ws, "alice"), 20, seed=3)
    assert len(cards) == 20
    assert {c.sampling for c in cards} == {"cold_start", "random"}
    assert [c.sampling for c in cards].count("random") == 2
    assert len(set(tracks(ws, [c.crop_id for c in cards]).values())) == 20
    assert all(c.guess is None for c in cards)
    ws.dispose()


def test_unscored_crops_wait_for_scoring_but_stay_in_the_random_share(ws):
    # New crops arrive after scoring: no prediction yet, priority 0.
    with ws.session() as s:
        src = s.scalar(select(db.Source.id))
        f = s.scalar(select(db.Crop).limit(1))
        crop_queue.add_crops(s, src, [crop_queue.NewCrop(origin=f"new{i}", sha256=f.sha256, path=f.path,
                                               width=48, height=48) for i in range(50)])
    cards = labeling.claim(ws, factory.user_id(ws, "alice"), 20, seed=0)
    assert len(cards) == 20
    assert all(c.probs is not None for c in cards if c.sampling != "random")


def _junk_and_faces(ws):
    """Every other track scores 0.3 on the detector (what the team's x key says is junk), the
    rest 0.9; bob decided 12 of each kind with keys. Returns the low-scoring crop ids."""
    with ws.session() as s:
        rows = s.execute(select(db.Crop.id, db.Crop.track_id)).all()
        low = {cid for cid, track in rows if track % 2 == 0}
        for cid, _track in rows:
            c = s.get(db.Crop, cid)
            c.detector, c.det_score = "yunet", 0.3 if cid in low else 0.9
    ordered = sorted(low)
    factory.label_some(ws, "bob", ordered[:12], "not_a_face")
    factory.label_some(ws, "bob", sorted(set(dict(rows)) - low)[:12], "mask")
    return low


def test_likely_junk_is_served_last_but_stays_in_the_random_share(ws):
    low = _junk_and_faces(ws)
    alice = factory.user_id(ws, "alice")
    picks = labeling.choose(ws, alice, 40, seed=0)
    main = [c for c, why in picks if why != "random"]
    assert len(picks) == 40 and main and not set(main) & low
    # The random share still draws from every crop (of the tracks not in the batch): over many
    # draws of 10 (9 face tracks taken, 41 left beside 50 junk ones), junk is about half of it.
    drawn = [c for seed in range(40) for c, why in labeling.choose(ws, alice, 10, seed=seed)
             if why == "random"]
    assert len(drawn) == 40 and 0.3 < sum(c in low for c in drawn) / len(drawn) < 0.8
    # Off: the same queue serves the low scorers among the uncertain picks as it always did.
    ws.config.sampling.junk_last = False
    off = [c for c, why in labeling.choose(ws, alice, 40, seed=0) if why != "random"]
    assert sum(c in low for c in off) >= 10


def test_likely_junk_waits_for_the_teams_evidence_then_fills_an_empty_queue(tmp_path):
    ws = factory.build(tmp_path / "ws", 80, per_track=4)
    try:
        with ws.session() as s:
            for c in s.scalars(select(db.Crop)):
                c.detector, c.det_score = "yunet", 0.3 if c.track_id % 2 == 0 else 0.9
        alice = factory.user_id(ws, "alice")
        low = {c for c, t in tracks(ws, range(1, 81)).items() if t % 2 == 0}
        factory.label_some(ws, "bob", sorted(low)[:5], "not_a_face")  # under junk_min_each
        main = [c for c, why in labeling.choose(ws, alice, 16, seed=0) if why != "random"]
        assert set(main) & low  # too little evidence: nothing is held back
        factory.label_some(ws, "bob", sorted(low)[5:12], "not_a_face")
        with ws.session() as s:
            faces = s.scalars(select(db.Crop.id).where(db.Crop.det_score > 0.5).limit(12)).all()
        factory.label_some(ws, "bob", faces, "no_mask")
        # 14 open tracks (3 of each kind fully decided), half of them junk: a batch of 16 (14
        # picks, 2 random) takes one crop of every face track first, then fills up with junk
        with ws.read_session() as s:
            open_ = dict(s.execute(select(db.Crop.id, db.Crop.track_id)
                                   .where(db.Crop.status == db.CropStatus.UNLABELED)).all())
        first = [c for c, why in labeling.choose(ws, alice, 8, seed=0) if why != "random"]
        assert len(first) == 7 and not set(first) & low  # 7 face tracks: 7 picks, no junk
        main = [c for c, why in labeling.choose(ws, alice, 16, seed=0) if why != "random"]
        assert len(main) == 14
        assert {open_[c] for c in main if c not in low} == {t for c, t in open_.items()
                                                             if c not in low}
        assert sum(c in low for c in main) == 14 - len({t for c, t in open_.items() if c not in low})
    finally:
        ws.dispose()


def test_double_annotation_share_gets_a_second_vote_from_someone_else(tmp_path):
    cfg = '[sampling]\ndouble_annotation = 1.0\nbatch_size = 10\n'
    ws = factory.build(tmp_path / "dbl", 100, config=cfg)
    alice, bob = factory.user_id(ws, "alice"), factory.user_id(ws, "bob")
    first = labeling.claim(ws, alice, 10, seed=0)
    ids = [c.crop_id for c in first]
    labeling.submit_page(ws, alice, {i: "mask" for i in ids})
    with ws.read_session() as s:
        rows = s.execute(select(db.Crop.votes_needed, db.Crop.status)
                         .where(db.Crop.id.in_(ids))).all()
    assert set(rows) == {(2, db.CropStatus.UNLABELED)}  # waiting for a second vote
    assert not {c.crop_id for c in labeling.claim(ws, alice, 10)} & set(ids)  # not to alice
    second = labeling.claim(ws, bob, 10)
    assert {c.crop_id for c in second} == set(ids)
    assert {c.sampling for c in second} == {"double"}
    labeling.submit_page(ws, bob, {i: ("mask" if i % 2 else "no_mask") for i in ids})
    kappa = dashboard.agreement(ws)
    assert kappa.loc[0, "crops"] == 10
    assert len(review.disagreements(ws)) == sum(1 for i in ids if i % 2 == 0)
    ws.dispose()


def test_double_annotation_share_is_about_the_configured_share():
    share = sum(labeling._double(i, 0.1) for i in range(1, 20001)) / 20000
    assert 0.09 < share < 0.11


def test_submit_page_is_one_transaction(ws):
    alice = factory.user_id(ws, "alice")
    ids = [c.crop_id for c in labeling.claim(ws, alice, 10)]
    with pytest.raises(InputError):
        labeling.submit_page(ws, alice, {**{i: "mask" for i in ids[:-1]}, ids[-1]: "banana"})
    with ws.read_session() as s:
        assert db.count(s, db.Label) == 0


def test_undo_returns_card_first_and_rate_counts(ws):
    alice = factory.user_id(ws, "alice")
    cards = labeling.claim(ws, alice, 5)
    for c in cards[:3]:
        labeling.submit(ws, alice, c.crop_id, "no_mask")
    (back,) = labeling.undo(ws, alice)
    assert back.crop_id == cards[2].crop_id and back.sampling == "undo"
    assert labeling.rate(ws, alice).last_hour == 2
    held = labeling.claim(ws, alice, 5)
    assert held[0].crop_id == cards[2].crop_id


def test_contradictions_rank_confident_model_disagreement(ws):
    model = crop_cards.active_model(ws)
    with ws.read_session() as s:
        ids, probs, _ = model_reports.prediction_arrays(s, model.id, range(1, 401))
    order = probs[:, 0].argsort()
    sure_no, sure_mask = int(ids[order[0]]), int(ids[order[-1]])
    factory.label_some(ws, "alice", [sure_no, sure_mask], "mask")
    con = review.contradictions(ws, threshold=0.9)
    assert con["crop_id"].tolist() == [sure_no]
    assert con.loc[0, "guess"] == "no_mask"
    assert review.contradictions(ws, annotator="bob").empty
    review.relabel(ws, factory.user_id(ws, "root"), sure_no, "no_mask")
    assert review.contradictions(ws).empty


def test_shortcuts_avoid_reserved_keys():
    assert labeling.shortcuts(["mask", "no_mask"]) == {
        "mask": "m", "no_mask": "n", "not_a_face": "x", "skip": "s", "undo": "z"}
    keys = labeling.shortcuts(["cap", "respirator", "mask"])
    assert keys["cap"] not in ("c", "r") and keys["respirator"] not in ("c", "r")
    assert len(set(keys.values())) == len(keys)


def test_frame_context_reads_the_source_frame(tmp_path):
    import cv2
    import numpy as np

    video = tmp_path / "v.avi"
    out = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240))
    for i in range(10):
        out.write(np.full((240, 320, 3), i * 20, np.uint8))
    out.release()
    card = crop_cards.Card(crop_id=1, image=b"", mime="image/png", width=40, height=40,
                         sampling=None, source_kind="video", source_uri=str(video),
                         frame_index=5, box=(100.0, 100.0, 140.0, 140.0))
    view = crop_cards.frame_context(card)
    assert view is not None and view.ndim == 3
    gone = crop_cards.Card(**{**card.__dict__, "source_uri": str(tmp_path / "missing.avi")})
    assert not gone.has_frame and crop_cards.frame_context(gone) is None


# --- background jobs --------------------------------------------------------------------------


def test_job_runs_detached_and_records_result(ws, tmp_path):
    from pipelines import import_folder
    from pipelines.cli import runner
    from tests.conftest import write_image_folder

    folder = write_image_folder(tmp_path / "imgs", {"mask": 3, "no_mask": 2})
    opts = import_folder.ImportOptions(folder=folder, labeled=True)
    job_id = runner.submit(ws, "import", opts, started_by="root")
    job = jobs.wait(ws, job_id, timeout=90)
    assert job.status == "done", jobs.log_tail(job)
    assert job.result["added"] == 5 and job.progress == 1.0
    assert job.args == {"folder": str(folder), "labeled": True} and job.kind == "import"
    assert job.pid and job.started_by == "root" and job.started_at and job.heartbeat_at
    assert "[progress]" in jobs.log_tail(job)


def test_jobs_start_launches_the_command_line_its_caller_names(ws, tmp_path):
    """The service layer never names the runner: ``start`` runs ``command(root, job_id)``, and the
    runner's own command line is ``python -m pipelines.cli.runner --project ROOT ID``."""
    import sys
    import time

    from pipelines.cli import runner

    seen = tmp_path / "seen.txt"
    script = "import sys; open(sys.argv[1], 'w').write(' '.join(sys.argv[2:]))"
    job_id = jobs.start(ws, "import", {}, command=lambda root, jid: [
        sys.executable, "-c", script, str(seen), root, str(jid)])
    deadline = time.monotonic() + 30  # a detached process: its file is the only sign it ran
    while not (seen.exists() and seen.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen.read_text() == f"{ws.root.resolve()} {job_id}"
    assert runner.command_line("/w", 7) == [sys.executable, "-m", "pipelines.cli.runner",
                                            "--project", "/w", "7"]


def test_job_failure_is_recorded_with_the_reason(ws, tmp_path):
    from pipelines import import_folder
    from pipelines.cli import runner

    (tmp_path / "imgs" / "cats").mkdir(parents=True)
    job_id = runner.submit(ws, "import", import_folder.ImportOptions(folder=tmp_path / "imgs",
                                                                    labeled=True))
    job = jobs.wait(ws, job_id, timeout=90)
    assert job.status == "failed"
    assert job.message.startswith("folders cats are not labels")  # the reason, not a log line


def test_jobs_refuse_what_the_app_does_not_offer(ws, tmp_path):
    from pipelines import extract, import_folder
    from pipelines.cli import runner

    with pytest.raises(InputError, match="not a job"):
        runner.submit(ws, "user-add", import_folder.ImportOptions(folder=tmp_path))
    with pytest.raises(InputError, match="cannot set 'checkpoint'"):
        runner.submit(ws, "extract", extract.ExtractOptions(sources=[str(tmp_path)],
                                                            checkpoint="/tmp/evil.pt"))
    with pytest.raises(InputError, match="no such file"):
        runner.submit(ws, "import", import_folder.ImportOptions(folder=tmp_path / "nope"))


def test_dead_job_process_is_marked_failed(ws):
    with ws.session() as s:
        job_id = job_rows.create_job(s, kind="retrain", args={})
        job_rows.update_job(s, job_id, status="running", pid=2**22 + 12345)  # no such process
    job = jobs.get(ws, job_id)
    assert job.status == "failed" and "without a report" in job.message


# --- CLI --------------------------------------------------------------------------------------


def test_app_command_without_workspace_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["app", "--project", str(tmp_path / "none")])
    assert result.exit_code != 0
    assert "no workspace" in result.output and "Traceback" not in result.output


def test_app_entry_found_through_installed_package():
    from pipelines.cli.server import app_entry

    assert app_entry().name == "app.py" and app_entry().is_file()


def test_claim_works_on_a_large_queue(tmp_path):
    big = factory.build(tmp_path / "big", 30_000, per_track=5)
    alice = factory.user_id(big, "alice")
    labeling.claim(big, alice, 20)  # warms the prediction cache
    labeling.release(big, alice)
    cards = labeling.claim(big, alice, 20)  # speed: bench/queue_latency.py and bench/ui.py
    assert len(cards) == 20 and len({c.crop_id for c in cards}) == 20
    big.dispose()


def test_the_dashboard_says_what_junk_last_holds_back(tmp_path, monkeypatch):
    from tests.app.test_pages import signed_in

    with factory.served(tmp_path / "ws", monkeypatch, 200, per_track=4) as ws:
        def caption(at):
            return next(c.value for c in at.caption if "Junk last" in c.value)

        with ws.session() as s:
            for c in s.scalars(select(db.Crop)):
                c.detector, c.det_score = "yunet", 0.9
        assert "nothing is held back yet" in caption(signed_in(ws, "root", "dashboard.py"))
        low = _junk_and_faces(ws)
        junk = dashboard.junk_last(ws)
        assert junk["held_back"] == len(low) - 12 and junk["unlabeled"] == 200 - 24
        assert junk["evidence"] == {"yunet": {"faces": 12, "not_a_face": 12}}
        text = caption(signed_in(ws, "alice", "dashboard.py"))
        assert f"{len(low) - 12} of the 176 crops to label look like no face" in text
        assert "random-share" not in text  # nothing to check the rule on yet
        # Six x and six faces decided in the random share: the rule, fitted on the rest, is
        # checked on them.
        with ws.read_session() as s:
            open_ = s.scalars(select(db.Crop.id).where(
                db.Crop.status == db.CropStatus.UNLABELED).order_by(db.Crop.id)).all()
        junk_ids = [c for c in open_ if c in low][:6]
        face_ids = [c for c in open_ if c not in low][:6]
        factory.label_some(ws, "alice", junk_ids, "not_a_face")
        factory.label_some(ws, "alice", face_ids, "no_mask")
        with ws.session() as s:
            for lab in s.scalars(select(db.Label).where(db.Label.crop_id.in_(junk_ids + face_ids))):
                lab.sampling = "random"
        assert dashboard.junk_last(ws)["check"] == {
            "labels": 12, "not_a_face": 6, "not_a_face_held": 6, "faces": 6, "faces_held": 0}
        text = caption(signed_in(ws, "alice", "dashboard.py"))
        assert ("Checked on the 12 random-share decisions it did not learn from: it would hold "
                "back 6 of their 6 not-a-face crops and 0 of their 6 faces.") in text


def test_audit_crops_and_disputed_track_mates_are_never_held_back(ws):
    """Deferring a junk-looking audit crop would keep from the audit exactly the machine labels
    that not_a_face makes wrong; a disputed mate is ranked first on purpose."""
    from annotator.service import autolabels

    low = sorted(_junk_and_faces(ws))
    audit_crop, disputed, plain = low[20], low[21], low[22]
    with ws.session() as s:
        system = autolabels.system_annotator(s)
        s.add(db.Label(crop_id=audit_crop, annotator_id=system, value="mask", method="auto"))
        s.get(db.Crop, disputed).priority = autolabels.FIRST
    with ws.read_session() as s:
        cands = reports.claimable_top(s, factory.user_id(ws, "alice"), limit=1000)
        held = dict(zip(cands["crop_id"], labeling.likely_junk(s, cands, 10)))
    assert held[plain] and not held[audit_crop] and not held[disputed]
    assert dashboard.junk_last(ws)["held_back"] == len(low) - 12 - 2
