"""The model file: half-precision weights that load back to exactly the model that was
evaluated, float32 files of earlier versions that still load, and files that are not ours."""
import torch

from models import registry
from models.ofm import OFMClassifier


def _trained_like(seed: int) -> OFMClassifier:
    """Weights and BatchNorm statistics off their initial values, as after training."""
    torch.manual_seed(seed)
    m = OFMClassifier(["mask", "no_mask"])
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)
                if name.endswith("running_var"):
                    t.abs_()
    return m.eval()


def test_the_saved_model_predicts_exactly_what_was_evaluated(tmp_path):
    model = _trained_like(0)
    x = torch.rand(16, 3, 45, 45)
    with torch.no_grad():
        full = torch.softmax(model(x), 1)
        registry.as_stored(model)  # what train.run does before it measures the model
        evaluated = torch.softmax(model(x), 1)
    registry.write_version(tmp_path / "v001", model, metrics={}, card="")
    loaded = registry.load_model_file(tmp_path / "v001")
    with torch.no_grad():
        assert torch.equal(torch.softmax(loaded(x), 1), evaluated)
    assert (full - evaluated).abs().max() < 5e-3  # rounding the weights moves little
    blob = torch.load(tmp_path / "v001" / registry.MODEL_FILE, weights_only=True)
    assert {t.dtype for t in blob["state_dict"].values() if t.is_floating_point()} == {torch.float16}
    assert (tmp_path / "v001" / registry.MODEL_FILE).stat().st_size < 700_000


def test_a_float32_file_of_an_earlier_version_still_loads(tmp_path):
    model = _trained_like(1)
    (tmp_path / "v0").mkdir()
    torch.save({"format": registry.FORMAT, "arch": "OFMClassifier", "classes": ["mask", "no_mask"],
                "input_size": 45, "state_dict": model.state_dict()}, tmp_path / "v0" / "model.pt")
    loaded = registry.load_model_file(tmp_path / "v0")
    x = torch.rand(4, 3, 45, 45)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
