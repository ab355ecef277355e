"""``annotator score --quantize`` on the real faces with Neuralet's weights: the int8 graph is
used only after it matched fp32's balanced accuracy on the validation split within 0.005."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annotator.data import db, model_reports, model_versions
from annotator.service.workspace import Workspace

ANNOTATOR = str(Path(sys.executable).with_name("annotator"))
REPO = Path(__file__).resolve().parents[2]


def annotator(*args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([ANNOTATOR, *map(str, args), "--json"], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.shared
def test_quantized_scoring_keeps_balanced_accuracy(shared_data, tmp_path):
    h5 = shared_data / "peer" / "OFMClassifier.h5"
    if not h5.is_file():
        pytest.skip("Neuralet's OFMClassifier.h5 is not in the shared data")
    ws_path = tmp_path / "ws"
    annotator("init", "--project", ws_path)
    annotator("import-folder", shared_data / "faces", "--labeled", "--project", ws_path)
    annotator("build-dataset", "--project", ws_path)
    imported = annotator("models", "import-keras", h5, "--project", ws_path)
    assert imported["active"] and imported["val"]["balanced_accuracy"] > 0.7
    queue = tmp_path / "queue"  # unlabeled crops to score: 300 faces under new names
    queue.mkdir()
    for i, f in enumerate(sorted((shared_data / "faces" / "no_mask").iterdir())[:150]
                          + sorted((shared_data / "faces" / "mask").iterdir())[:150]):
        shutil.copy(f, queue / f"q{i:03d}{f.suffix}")
    added = annotator("import-folder", queue, "--project", ws_path)
    assert added["scored"] >= 300  # an import ends with the active model's scores (ranked at once)
    fp32 = annotator("score", "--project", ws_path)
    assert fp32["scored"] == 0  # nothing left for the active model
    ws = Workspace.open(ws_path)
    from pipelines.common import registry

    model, _ = registry.load(ws)
    with ws.read_session() as s:
        ds_id = db.latest_dataset(s).id
    for name in ("fp32", "int8"):  # two copies of the active weights, scored afresh
        registry.register(ws, model, metrics={"source": "test"}, card="# copy", name=name,
                          dataset_id=ds_id)
    fp32 = annotator("score", "--model", "fp32", "--project", ws_path)
    assert fp32["scored"] == 300 and not fp32["quantized"] and fp32["cache_hits"] == 300
    rep = annotator("score", "--model", "int8", "--quantize", "--project", ws_path)
    check = rep["quantize_check"]
    assert rep["quantized"] and rep["scored"] == 300 and check["n_val"] > 500
    assert abs(check["delta"]) <= 0.005
    assert check["fp32_balanced_accuracy"] == pytest.approx(imported["val"]["balanced_accuracy"],
                                                            abs=1e-3)
    with ws.read_session() as s:
        ids = [c.id for c in s.query(db.Crop).filter(db.Crop.status == db.CropStatus.UNLABELED)]
        active = model_versions.active_model(s).id
        int8 = model_versions.get_model_version(s, "int8").id
        a, p32, _ = model_reports.prediction_arrays(s, active, ids)
        b, p8, _ = model_reports.prediction_arrays(s, int8, ids)
    p32, p8 = p32[np.argsort(a)], p8[np.argsort(b)]
    assert (p32.argmax(1) == p8.argmax(1)).mean() > 0.95  # the same decisions, nearly always
    assert 0 < np.abs(p32 - p8).max() < 0.3  # really another graph, and a close one
    ws.dispose()
