"""Crops that a job adds after a promotion are scored by the active model in that same job:
when extract, import or detect --to-queue ends, every new crop carries the active model's
prediction (so the queue ranks it and the Label page shows the model's guess at once)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from annotator.data import db, model_versions
from annotator.service.workspace import Workspace
from pipelines import detect, extract, import_folder, promote
from tests.conftest import write_image_folder

PEDESTRIANS = "videos/pedestrians_eyelevel_640x360.mp4"


@pytest.fixture
def ws(tmp_path, shared_data):
    ws = Workspace.init(tmp_path / "ws")
    promote.import_keras(ws, promote.KerasImportOptions(
        path=shared_data / "peer" / "OFMClassifier.h5"))  # a real active model, with weights
    yield ws
    ws.dispose()


def unscored(ws, origin: str) -> tuple[int, int]:
    """(crops added by ``origin``, how many of them have no prediction of the active model)."""
    with ws.read_session() as s:
        active = model_versions.active_model(s).id
        ids = set(s.scalars(select(db.Crop.id).where(db.Crop.added_by == origin)))
        have = set(s.scalars(select(db.Prediction.crop_id).where(
            db.Prediction.model_version_id == active, db.Prediction.crop_id.in_(ids))))
    return len(ids), len(ids - have)


def test_import_scores_what_it_adds(ws, tmp_path):
    folder = write_image_folder(tmp_path / "new", {"a": 6, "b": 5}, size=40)
    rep = import_folder.run(ws, import_folder.ImportOptions(folder=folder))
    assert rep.added == 11 and rep.scored == 11
    assert unscored(ws, "import") == (11, 0)


def test_extract_and_detect_to_queue_score_what_they_add(ws, shared_data, tmp_path):
    video = str(shared_data / PEDESTRIANS)
    rep = extract.run(ws, extract.ExtractOptions(sources=[video], detector="mtcnn", every=4,
                                                 max_seconds=4.0))
    assert rep.errors == [] and rep.crops_kept > 0 and rep.scored >= rep.crops_kept
    n, missing = unscored(ws, "extract")
    assert n == rep.crops_kept and missing == 0

    other = str(shared_data / "videos" / "putting_on_mask_1280x720.mp4")
    found = detect.run(ws, detect.DetectOptions(sources=[other], fps=3, max_seconds=4,
                                                codec="mp4v", out=str(tmp_path / "run"),
                                                to_queue=True))
    assert found.errors == [] and found.queued is not None
    n, missing = unscored(ws, "detect")
    assert n == found.queued and missing == 0
