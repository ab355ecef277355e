"""Promotion and rollback: the queue always follows the active model, crashes included."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from annotator.data import db, model_versions
from annotator.core.failpoints import ENV as FAILPOINT
from annotator.service.workspace import Workspace
from pipelines import build_dataset, import_folder, promote, train
from pipelines.common import registry
from tests.conftest import write_image_folder

ANNOTATOR = str(Path(sys.executable).with_name("annotator"))
# The kill -9 runs the real CLI: ANNOTATOR_DB_URL reaches it. Crash healing is a security item.
pytestmark = [pytest.mark.backends, pytest.mark.security]


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory, module_db_env):
    """A workspace with labeled and unlabeled crops, v001 active, v002 trained (inactive)."""
    tmp = tmp_path_factory.mktemp("versions")
    ws = Workspace.init(tmp / "ws")
    labeled = write_image_folder(tmp / "labeled", {"mask": 20, "no_mask": 20}, seed=1)
    unlabeled = write_image_folder(tmp / "unlabeled", {"x": 30}, seed=2)
    import_folder.run(ws, import_folder.ImportOptions(folder=labeled, labeled=True))
    import_folder.run(ws, import_folder.ImportOptions(folder=unlabeled))
    build_dataset.run(ws, build_dataset.BuildOptions())
    for seed in (1, 2):
        train.run(ws, train.TrainOptions(epochs=1, init="none", seed=seed))
    promote.promote(ws, promote.PromoteOptions(version="v001"))
    ws.dispose()
    return tmp / "ws"


def priorities_and_uncertainties(ws: Workspace, version: str):
    with ws.read_session() as s:
        vid = model_versions.get_model_version(s, version).id
        prio = dict(s.execute(select(db.Crop.id, db.Crop.priority)
                              .where(db.Crop.status == db.CropStatus.UNLABELED)).all())
        unc = dict(s.execute(select(db.Prediction.crop_id, db.Prediction.uncertainty)
                             .where(db.Prediction.model_version_id == vid)).all())
    return prio, unc


def assert_queue_follows(ws: Workspace, version: str) -> None:
    prio, unc = priorities_and_uncertainties(ws, version)
    assert len(prio) == 30 and set(prio) <= set(unc)
    assert all(prio[c] == pytest.approx(unc[c]) for c in prio)
    with ws.read_session() as s:
        assert model_versions.active_model(s).name == version


def test_promote_then_rollback_moves_the_queue_both_ways(two_versions):
    ws = Workspace.open(two_versions)
    assert_queue_follows(ws, "v001")
    rep = promote.promote(ws, promote.PromoteOptions(version="v002", force=True))
    assert rep.promoted and rep.scored == 30 and rep.priorities_set == 30
    assert_queue_follows(ws, "v002")
    prio1, unc1 = priorities_and_uncertainties(ws, "v001")
    assert any(prio1[c] != pytest.approx(unc1[c]) for c in prio1)  # the two models differ
    back = promote.rollback(ws)
    assert (back.rolled_back_from, back.to, back.scored) == ("v002", "v001", 0)
    assert_queue_follows(ws, "v001")  # the bug this guards: the queue kept following v002
    ws.dispose()


def _promote_and_crash(ws_path: Path, point: str) -> int:
    env = {**os.environ, FAILPOINT: point}
    proc = subprocess.run([ANNOTATOR, "models", "promote", "v002", "--force", "--project",
                           str(ws_path)], env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode


def test_kill_9_around_the_promotion_leaves_a_consistent_queue(two_versions):
    ws = Workspace.open(two_versions)
    if registry.get(ws).name != "v001":
        promote.rollback(ws)
    assert_queue_follows(ws, "v001")
    # Killed after scoring but before the activation commit: nothing changed.
    assert _promote_and_crash(two_versions, "before_activate") == -signal.SIGKILL
    ws.dispose()
    ws = Workspace.open(two_versions)
    assert_queue_follows(ws, "v001")
    # Killed right after the commit: re-opened, the new model's priorities are in place.
    assert _promote_and_crash(two_versions, "after_activate") == -signal.SIGKILL
    ws.dispose()
    ws = Workspace.open(two_versions)
    assert_queue_follows(ws, "v002")
    ws.dispose()


def test_retrain_scores_the_queue_once(tmp_path, workspace):
    """The promotion's scoring pass covers labeled crops too, so retrain has nothing left to
    score after it (it used to score twice: the promotion, then the unscored labeled crops)."""
    from pipelines import retrain, score

    ws = workspace
    labeled = write_image_folder(tmp_path / "labeled", {"mask": 20, "no_mask": 20}, seed=1)
    unlabeled = write_image_folder(tmp_path / "unlabeled", {"x": 30}, seed=2)
    import_folder.run(ws, import_folder.ImportOptions(folder=labeled, labeled=True))
    import_folder.run(ws, import_folder.ImportOptions(folder=unlabeled))
    rep = retrain.run(ws, retrain.RetrainOptions(epochs=1, init="none", force=True))
    assert rep.promote["promoted"] and rep.active == rep.train["version"]
    # one pass, reported twice: 30 unlabeled + 40 labeled crops, before the activation
    assert rep.promote["scored"] == rep.score["scored"] == 70
    assert rep.score["model"] == rep.active and rep.promote["priorities_set"] == 30
    assert score.run(ws, score.ScoreOptions(labeled=True)).scored == 0
    from pipelines.cli.train import retrain_summary

    assert "; 70 crops scored (queue and labeled)" in retrain_summary(rep)  # the pass counted once
