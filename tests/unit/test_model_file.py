"""The model file: half-precision weights that load back to exactly the model that was
evaluated, float32 files of earlier versions that still load, and files that are not ours."""
import torch

from models import registry
from models.ofm import OFMClassifier


def _trained_like(seed: int) -> OFMClassifier:
    """Weights and BatchNorm statistics off their initial values, as after training, with what
    Neuralet's model has: a conv bias of ~40 and a running mean just below it, a small variance
    (their difference is the signal; half precision rounds each by up to 0.016)."""
    torch.manual_seed(seed)
    m = OFMClassifier(["mask", "no_mask"])
    state = m.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.05)
        for block in range(3):
            bias, mean = state[f"features.{block}.2.bias"], state[f"features.{block}.3.running_mean"]
            bias.copy_(40 + torch.randn_like(bias))
            mean.copy_(bias - 0.1 * torch.randn_like(bias))
            state[f"features.{block}.3.running_var"].fill_(0.01)
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
    assert (full - evaluated).abs().max() < 0.01  # rounding the kernels moves little
    assert torch.equal(full.argmax(1), evaluated.argmax(1))
    blob = torch.load(tmp_path / "v001" / registry.MODEL_FILE, weights_only=True)
    dtypes = {k: t.dtype for k, t in blob["state_dict"].items() if t.is_floating_point()}
    assert {d for k, d in dtypes.items() if k.endswith(".weight") and "features" in k
            and not k.endswith(".3.weight")} == {torch.float16}  # conv kernels
    assert {d for k, d in dtypes.items() if "bias" in k or "running" in k} == {torch.float32}
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
