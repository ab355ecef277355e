"""Audited auto-labels on a real database (SQLite and PostgreSQL): provenance, the audit share,
refusal, and withdrawal on promotion and when the audit's bound rises."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from annotator.data import crop_queue, db, label_cost, model_versions, reports
from annotator.service import labeling
from annotator.service.auth import add_user
from annotator.core.errors import InputError
from pipelines import autolabel, promote
from pipelines.cli import app
from tests.integration.test_queue import add_fake_crops

pytestmark = pytest.mark.backends

SURE, UNSURE = 400, 200  # crops v1 is 0.999 sure of (class i % 2), and 0.6 sure of
RANDOM = 200  # random-share labels (all right) on the first sure crops: 100 per class


def probs_of(i: int, *, flip: bool = False) -> list[float]:
    p = 0.999 if i < SURE else 0.6
    c = (i % 2) ^ flip
    return [p, 1 - p] if c == 0 else [1 - p, p]


def add_version(ws, name: str, crop_ids, *, flip=lambda i: False) -> int:
    """A model version row with a prediction for every crop (no file: nothing loads it, since
    it has scored everything already)."""
    with ws.session() as s:
        mv = db.ModelVersion(name=name, path=f"models/{name}", classes=["mask", "no_mask"])
        s.add(mv)
        s.flush()
        model_versions.add_predictions(s, [
            dict(crop_id=cid, model_version_id=mv.id, probs=probs_of(i, flip=flip(i)),
                 uncertainty=1 - max(probs_of(i)), embedding=None)
            for i, cid in enumerate(crop_ids)], set_priority=False)
        return mv.id


def label_random(ws, who: int, crop_ids, value_of) -> None:
    """People label these crops as the random share served them."""
    with ws.session() as s:
        crop_queue.claim_batch(s, who, len(crop_ids), candidates=[(c, "random") for c in crop_ids])
    for cid in crop_ids:
        labeling.submit(ws, who, cid, value_of(cid))


@pytest.fixture
def loop(workspace):
    """600 crops, v1 active, 200 random-share labels (all right) on crops v1 is sure of."""
    ws = workspace
    ws.config.autolabel.max_error = 0.1  # 100 clean audited crops per class prove 10%
    ids = add_fake_crops(ws, SURE + UNSURE)
    v1 = add_version(ws, "v001", ids)
    with ws.session() as s:
        model_versions.activate_model(s, v1)
        (alice,) = [add_user(s, "alice", "secret-password", role="annotator").id]
    # v1 is right on every sure crop and wrong on 40% of the unsure ones.
    truth = {cid: ("mask", "no_mask")[(i % 2) ^ (i >= SURE and i % 5 < 2)]
             for i, cid in enumerate(ids)}
    # The random share: 200 sure crops, 100 unsure ones (the queue's mix, roughly).
    label_random(ws, alice, ids[:RANDOM] + ids[SURE:SURE + 100], truth.get)
    return ws, ids, truth, alice


def auto_labels(ws):
    with ws.read_session() as s:
        return dict(s.execute(select(db.Label.crop_id, db.Label.value).where(
            db.Label.method == db.LabelKind.AUTO, db.active_label())).all())


def test_autolabel_labels_the_audited_crops_with_provenance_and_leaves_audit_crops_queued(loop):
    ws, ids, truth, alice = loop
    dry = autolabel.run(ws, autolabel.AutolabelOptions(dry_run=True))
    assert dry.labeled == SURE - RANDOM and auto_labels(ws) == {}
    assert all(0.6 < c["threshold"] and c["bound"] <= 0.1 and c["errors"] == 0
               for c in dry.classes)
    rep = autolabel.run(ws, autolabel.AutolabelOptions())
    auto = auto_labels(ws)
    assert rep.labeled == len(auto) == SURE - RANDOM
    assert all(truth[c] == v for c, v in auto.items())  # v1 is right on these
    with ws.read_session() as s:
        row = s.scalar(select(db.Label).where(db.Label.method == "auto").limit(1))
        assert row.probability == pytest.approx(0.999)
        assert s.get(db.ModelVersion, row.model_version_id).name == "v001"
        st = reports.stats(s, ws.config.labels)
        queued = set(s.scalars(select(db.Crop.id).where(
            db.Crop.status == db.CropStatus.UNLABELED)))
    # The audit share stays in the queue like any crop; the rest left it.
    audit_crops = {c for c in auto if c in queued}
    assert 0 < len(audit_crops) == rep.audit_crops < 0.1 * len(auto)
    assert queued == audit_crops | set(ids[SURE + 100:])
    assert st["labels_by_kind"]["auto"] == SURE - RANDOM
    assert st["labels_by_kind"]["key"] == st["human_decisions"] == RANDOM + 100
    assert st["crops_labeled"] == SURE + 100 - len(audit_crops)
    assert st["human_decisions_per_labeled_crop"] == round(300 / st["crops_labeled"], 4)
    # A person labels an audit crop (wrongly, here): an `audit` label replaces the auto label,
    # and the disagreement is the auto labels' measured error.
    first = min(audit_crops)
    wrong = "mask" if truth[first] == "no_mask" else "no_mask"
    labeling.submit(ws, alice, first, wrong)
    with ws.read_session() as s:
        assert reports.current_values(s, [first]) == {first: wrong}
        assert s.scalar(select(db.Label.method).where(db.Label.crop_id == first,
                                                      db.active_label())) == "audit"
        from annotator.service.autolabels import measured_error
        m = measured_error(s)
    assert (m["audited"], m["disagreed"], m["error"]) == (1, 1, 1.0)
    assert m["interval"][0] > 0 and m["interval"][1] == 1.0


def test_too_small_an_audit_refuses_in_one_line_and_changes_nothing(workspace, db_url):
    ids = add_fake_crops(workspace, 50)
    v1 = add_version(workspace, "v001", ids)
    with workspace.session() as s:
        model_versions.activate_model(s, v1)
    with pytest.raises(InputError, match=r"needs at least \d+ more random-share labels"):
        autolabel.run(workspace, autolabel.AutolabelOptions(max_error=0.01))
    r = CliRunner().invoke(app, ["autolabel", "--max-error", "0.01", "--project",
                                 str(workspace.root)], env={"ANNOTATOR_DB_URL": db_url})
    assert r.exit_code == InputError.exit_code != 0 and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and "more random-share labels" in r.output
    assert auto_labels(workspace) == {}
    r = CliRunner().invoke(app, ["autolabel", "--dry-run", "--json", "--project",
                                 str(workspace.root)], env={"ANNOTATOR_DB_URL": db_url})
    assert r.exit_code == 0 and '"refused": "autolabel refused' in r.output


def test_a_promotion_withdraws_the_auto_labels_the_new_model_does_not_back(loop):
    ws, ids, truth, alice = loop
    autolabel.run(ws, autolabel.AutolabelOptions())
    before = auto_labels(ws)
    # v2 disagrees with v1 on every third crop.
    add_version(ws, "v002", ids, flip=lambda i: i % 3 == 0)
    rep = promote.promote(ws, promote.PromoteOptions(version="v002", force=True))
    assert rep.promoted and rep.scored == 0 and rep.autolabel is not None
    after = auto_labels(ws)
    index = {cid: i for i, cid in enumerate(ids)}
    assert set(after) == {c for c in before if index[c] % 3 != 0} and after
    with ws.read_session() as s:
        gone = [c for c in before if index[c] % 3 == 0]
        # Withdrawn, never deleted: the rows stay, undone, and the crops are back in the queue.
        rows = s.execute(select(db.Label.undone_at, db.Crop.status)
                         .join(db.Crop, db.Crop.id == db.Label.crop_id)
                         .where(db.Label.crop_id.in_(gone), db.Label.method == "auto")).all()
    assert len(rows) == len(gone) and all(u is not None and st == "unlabeled" for u, st in rows)
    # Rolling back re-runs it too: v1, audited, labels those crops again (new rows).
    back = promote.rollback(ws)
    assert back.to == "v001" and back.autolabel["labeled"] == len(gone)
    assert auto_labels(ws) == before


def test_random_share_errors_that_lift_a_band_above_max_error_withdraw_it_at_once(loop):
    ws, ids, truth, alice = loop
    # Bob holds 40 sure mask crops (so autolabel passes them over) before it runs.
    masks = [c for i, c in enumerate(ids[RANDOM:SURE], start=RANDOM) if i % 2 == 0][:40]
    with ws.session() as s:
        bob = add_user(s, "bob", "secret-password", role="annotator").id
        crop_queue.claim_batch(s, bob, 40, candidates=[(c, "random") for c in masks])
    autolabel.run(ws, autolabel.AutolabelOptions())
    auto = auto_labels(ws)
    assert any(v == "mask" for v in auto.values()) and not set(masks) & set(auto)
    for n, cid in enumerate(masks, start=1):  # v1 is wrong on every one of them
        labeling.submit(ws, bob, cid, "no_mask")
        if not any(v == "mask" for v in auto_labels(ws).values()):
            break
    left = auto_labels(ws)
    assert not any(v == "mask" for v in left.values())  # the mask band is withdrawn
    assert {c for c, v in auto.items() if v == "no_mask"} == set(left)  # no_mask untouched
    assert n <= 8  # at once: a few errors among 100 audited crops lift the bound over 10%


def test_human_decisions_count_grid_pages_and_track_gestures(workspace):
    ids = add_fake_crops(workspace, 9)
    with workspace.session() as s:
        alice = add_user(s, "alice", "secret-password", role="annotator").id
    labeling.submit_page(workspace, alice, {c: "mask" for c in ids[:3]})  # 3 crops + the page
    with workspace.session() as s:  # one Shift+key decision over a track of 3
        crop_queue.submit_decision(s, alice, ids[3:6], "no_mask", allowed=workspace.config.label_values)
    labeling.submit(workspace, alice, ids[6], "mask")
    labeling.submit(workspace, alice, ids[7], "skip")
    with workspace.session() as s:
        crop_queue.undo_last(s, alice)  # the skip is undone: it costs nothing
    with workspace.read_session() as s:
        st = reports.stats(s, workspace.config.labels)
    assert st["labels_by_kind"] | {} == {**st["labels_by_kind"], "grid": 3, "track": 3, "key": 1}
    assert st["human_decisions"] == 4 + 1 + 1 and st["crops_labeled"] == 7
    assert st["human_decisions_per_labeled_crop"] == round(6 / 7, 4)
    with workspace.read_session() as s:
        curve = label_cost.label_cost_over_time(s)
    assert curve["human decisions"].iloc[-1] == 6 and curve["labels by people"].iloc[-1] == 7
    assert curve["labels by the model"].iloc[-1] == 0 and curve.index.is_monotonic_increasing


def test_a_persons_label_propagates_to_agreeing_track_mates_and_ranks_disputed_ones_first(
        workspace):
    ws = workspace
    ws.config.autolabel.propagate = True
    ws.config.autolabel.audit_share = 0.0
    ids = add_fake_crops(ws, 40, track_of=lambda i: i // 10)  # 4 tracks of 10
    with ws.session() as s:
        model_versions.activate_model(s, add_version(ws, "v001", ids))  # predicts class i % 2
        alice = add_user(s, "alice", "secret-password", role="annotator").id
    labeling.submit(ws, alice, ids[0], "mask")  # track 0: v1 agrees on 2,4,6,8
    with ws.read_session() as s:
        prop = dict(s.execute(select(db.Label.crop_id, db.Label.probability).where(
            db.Label.method == "propagated", db.active_label())).all())
        prio = dict(s.execute(select(db.Crop.id, db.Crop.priority)).all())
        st = reports.stats(s, ws.config.labels)
    assert set(prop) == {ids[i] for i in (2, 4, 6, 8)}
    assert all(p == pytest.approx(0.999) for p in prop.values())
    assert {c for c, p in prio.items() if p == 2.0} == {ids[i] for i in (1, 3, 5, 7, 9)}
    assert st["labels_by_kind"]["propagated"] == 4 and st["human_decisions"] == 1
    assert st["crops_labeled"] == 5
    # Its own audit share: with every propagated label audited, one wrong one (the lower end
    # of its interval above max_error) stops propagation.
    ws.config.autolabel.audit_share = 1.0
    labeling.submit(ws, alice, ids[10], "mask")  # track 1: 12, 14, 16, 18 stay queued
    with ws.read_session() as s:
        assert s.scalar(select(db.Crop.status).where(db.Crop.id == ids[12])) == "unlabeled"
    labeling.submit(ws, alice, ids[12], "no_mask")  # the audit says the propagated one was wrong
    labeling.submit(ws, alice, ids[20], "mask")  # track 2: nothing propagates any more
    with ws.read_session() as s:
        from annotator.service.autolabels import measured_error
        assert measured_error(s, "propagated")["disagreed"] == 1
        assert not s.scalar(select(db.Label.id).where(
            db.Label.method == "propagated", db.Label.crop_id == ids[22]))


def test_datasets_take_audited_auto_labels_in_train_only_and_say_each_rows_kind(workspace,
                                                                                tmp_path):
    import csv
    import gzip

    from pipelines import build_dataset, import_folder
    from tests.conftest import write_image_folder

    ws = workspace
    ws.config.autolabel.max_error = 0.3  # 20 clean audited crops per class prove it
    import_folder.run(ws, import_folder.ImportOptions(
        folder=write_image_folder(tmp_path / "pool", {"x": 120})))
    with ws.read_session() as s:
        ids = sorted(s.scalars(select(db.Crop.id)))
    with ws.session() as s:
        model_versions.activate_model(s, add_version(ws, "v001", ids))  # sure of all: ids < SURE
        alice = add_user(s, "alice", "secret-password", role="annotator").id
    truth = {cid: ("mask", "no_mask")[i % 2] for i, cid in enumerate(ids)}
    label_random(ws, alice, ids[:40], truth.get)
    autolabel.run(ws, autolabel.AutolabelOptions())
    # val_fraction 0.5: the 40 random-share crops fill validation first, 20 more groups follow
    rep = build_dataset.run(ws, build_dataset.BuildOptions(val_fraction=0.5))
    with gzip.open(ws.root / "datasets" / rep.name / "manifest.csv.gz", "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    kinds = {r["kind"] for r in rows}
    assert kinds == {"human", "auto"} and rep.kinds["human"] == 40
    assert rep.kinds["auto"] + rep.machine_left_out == 80  # auto labels: in train or left out
    assert all(r["kind"] == "human" for r in rows if r["split"] == "val")
    assert any(r["split"] == "val" for r in rows) and rep.machine_left_out > 0
    # The audit's crops are in validation: no model trained on this dataset learns them.
    assert {int(r["crop_id"]) for r in rows if r["split"] == "val"} == set(ids[:40])
    human = build_dataset.run(ws, build_dataset.BuildOptions(labels="human"))
    assert human.crops == 40 and human.kinds == {"human": 40}
    with pytest.raises(InputError, match="--labels must be all or human"):
        build_dataset.run(ws, build_dataset.BuildOptions(labels="robots"))


def _give_dataset(ws, version: str, train_ids, *, write=True, manifest="manifest.csv") -> None:
    """Attach a dataset version to a model version whose manifest puts ``train_ids`` in train."""
    key = "video:1"  # add_fake_crops' source
    with ws.session() as s:
        ds = db.Dataset(name=f"d-{version}", path=f"datasets/d-{version}",
                        manifest=f"datasets/d-{version}/{manifest}", counts={})
        s.add(ds)
        s.flush()
        s.execute(update(db.ModelVersion).where(db.ModelVersion.name == version)
                  .values(dataset_id=ds.id))
    if write:
        folder = ws.root / "datasets" / f"d-{version}"
        folder.mkdir(parents=True)
        rows = ["crop_id,source,track,label,annotators,split,group,sha256,file,kind"]
        rows += [f"{cid},{key},,mask,alice,train,{cid},x,train/mask/{cid}.png,human"
                 for cid in train_ids]
        (folder / "manifest.csv").write_text("\n".join(rows) + "\n")


def test_the_audit_leaves_out_the_crops_the_model_trained_on(loop):
    """A model gets the crops it learnt right more often than the queue's: counting them would
    lower the bound falsely. Only random-share labels it never trained on audit it."""
    ws, ids, truth, alice = loop
    before = autolabel.run(ws, autolabel.AutolabelOptions(dry_run=True))
    _give_dataset(ws, "v001", ids[:150])  # 150 of the 300 random-share crops were its training
    after = autolabel.run(ws, autolabel.AutolabelOptions(dry_run=True))
    assert before.audited == 300 and after.audited == 150


def test_a_dataset_whose_manifest_is_gone_audits_nothing(loop):
    ws, ids, truth, alice = loop
    _give_dataset(ws, "v001", [], write=False)
    with pytest.raises(InputError, match="0 random-share labels so far"):
        autolabel.run(ws, autolabel.AutolabelOptions())


def test_a_damaged_manifest_audits_nothing_instead_of_failing(loop):
    """A gzip cut short raises EOFError, not OSError: it is read as "gone" too (the audit
    cannot tell what the model learnt, so it trusts nothing), and autolabel says so."""
    import gzip

    ws, ids, truth, alice = loop
    _give_dataset(ws, "v001", [], write=False, manifest="manifest.csv.gz")
    folder = ws.root / "datasets" / "d-v001"
    folder.mkdir(parents=True)
    whole = gzip.compress(("crop_id,source,track,split\n" + "1,video:1,,train\n" * 500).encode())
    (folder / "manifest.csv.gz").write_bytes(whole[:40])
    with pytest.raises(InputError, match="0 random-share labels so far"):
        autolabel.run(ws, autolabel.AutolabelOptions())


def test_a_track_mate_of_a_training_crop_is_no_fair_audit_either():
    from annotator.service.autolabels import Trained

    t = Trained(frozenset({1}), frozenset({("video:1", 7)}))
    assert t.saw(1, "video:9", None)  # the crop itself
    assert t.saw(2, "video:1", 7)  # the same person a second later
    assert not t.saw(3, "video:1", 8) and not t.saw(3, "video:2", 7) and not t.saw(3, "video:1", None)
    assert Trained(frozenset(), frozenset(), unknown=True).saw(3, "video:1", None)
