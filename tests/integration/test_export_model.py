"""export-model: ONNX Runtime and TorchScript give PyTorch's probabilities."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipelines.cli import app
from annotator.service.workspace import Workspace

runner = CliRunner()


@pytest.fixture
def ws_with_model(tmp_path):
    from pipelines.common import registry
    from models.ofm import OFMClassifier

    ws = Workspace.init(tmp_path / "ws")
    torch.manual_seed(0)
    m = OFMClassifier(ws.config.labels)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval-mode folding is exercised
        for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    registry.register(ws, m, metrics={"source": "test"}, card="# test", name="v001")
    yield ws, m.eval()
    ws.dispose()


def _reference(model, x_nhwc):
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2)), 1).numpy()


def test_onnx_matches_pytorch(ws_with_model, tmp_path):
    import onnx
    import onnxruntime as ort

    ws, model = ws_with_model
    out = tmp_path / "ofm.onnx"
    r = runner.invoke(app, ["export-model", "v001", str(out), "--format", "onnx",
                            "--project", str(ws.root), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["classes"] == ["mask", "no_mask"]
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["classes"]) == ["mask", "no_mask"] and meta["model_version"] == "v001"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((7, 45, 45, 3), dtype=np.float32)  # batch size not 2
    got = sess.run(["probs"], {"image": x})[0]
    np.testing.assert_allclose(got, _reference(model, x), atol=1e-5)


def test_torchscript_matches_pytorch(ws_with_model, tmp_path):
    ws, model = ws_with_model
    out = tmp_path / "ofm.pt"
    r = runner.invoke(app, ["export-model", "v001", str(out), "--format", "torchscript",
                            "--project", str(ws.root)])
    assert r.exit_code == 0, r.output
    extra = {"classes.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["classes.json"]) == ["mask", "no_mask"]
    x = np.random.default_rng(1).random((5, 45, 45, 3), dtype=np.float32)
    with torch.no_grad():
        got = loaded(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _reference(model, x), atol=1e-5)


def test_bad_format_is_one_line(ws_with_model, tmp_path):
    ws, _ = ws_with_model
    r = runner.invoke(app, ["export-model", "v001", str(tmp_path / "x"), "--format", "tflite",
                            "--project", str(ws.root)])
    assert r.exit_code != 0 and "error:" in r.output and "Traceback" not in r.output
