"""Array-level training API on tiny in-memory data (no workspace, no real images)."""
import numpy as np
import pytest
import torch

from annotator.core.errors import InputError
from annotator.media.images import load_images, load_images_checked
from models.ofm import OFMClassifier
from models.inference import predict, to_tensor
from models.training import (
    augment_batch,
    balanced_indices,
    fit,
    load_mask_overlays,
)


def _toy(n, seed):
    """Class 0 = dark lower half (a 'mask'), class 1 = bright lower half: learnable in 1-2 epochs."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.integers(90, 170, (n, 45, 45, 3)).astype(np.uint8)
    x[y == 0, 25:, 8:37] = rng.integers(0, 40, ((y == 0).sum(), 20, 29, 3))
    x[y == 1, 25:, 8:37] = rng.integers(200, 255, ((y == 1).sum(), 20, 29, 3))
    return x, y


def test_fit_learns_and_keeps_best_epoch():
    tx, ty = _toy(192, 0)
    vx, vy = _toy(64, 1)
    torch.manual_seed(0)
    m = OFMClassifier()
    seen = []
    h = fit(m, tx, ty, vx, vy, epochs=3, batch_size=32, lr=2e-3, seed=0,
            progress=lambda d, t, msg, **kw: seen.append((d, t, msg, kw.get("data"))))
    # 192 crops in batches of 32: 6 batches an epoch, counted as they go; one row per epoch.
    assert [s[0] for s in seen] == list(range(1, 19)) and {s[1] for s in seen} == {18}
    epochs = [s for s in seen if s[3] is not None]
    assert [s[0] for s in epochs] == [6, 12, 18] and "val bal.acc" in seen[-1][2]
    assert seen[0][2] == "epoch 1/3 · batch 1/6"
    assert len(h.epochs) == 3 and 1 <= h.best_epoch <= 3
    best = max(e["val_balanced_accuracy"] for e in h.epochs)
    assert h.best_val_balanced_accuracy == best
    probs, emb = predict(m, vx, batch_size=16)
    assert probs.shape == (64, 2) and emb.shape == (64, 10)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    from annotator.core.metrics import balanced_accuracy

    # The model holds the best epoch's weights, and they beat chance clearly.
    assert balanced_accuracy(vy, probs.argmax(1)) == pytest.approx(best, abs=1e-4)
    assert best >= 0.8


def test_fit_is_reproducible_with_a_seed():
    tx, ty = _toy(48, 0)
    m1, m2, m3 = OFMClassifier(), OFMClassifier(), OFMClassifier()
    m2.load_state_dict(m1.state_dict())
    m3.load_state_dict(m1.state_dict())
    for m, seed in ((m1, 7), (m2, 7), (m3, 8)):
        fit(m, tx, ty, None, None, epochs=1, batch_size=16, lr=1e-3, seed=seed)
    p1, p2, p3 = (predict(m, tx[:8])[0] for m in (m1, m2, m3))
    np.testing.assert_allclose(p1, p2, atol=1e-6)
    assert not np.allclose(p1, p3, atol=1e-6)  # the seed drives sampling and augmentation


def test_init_state_is_loaded():
    tx, ty = _toy(32, 0)
    src = OFMClassifier()
    m = OFMClassifier()
    fit(m, tx, ty, None, None, epochs=1, batch_size=16, lr=1e-12, seed=0, augment=False,
        init_state=src.state_dict())
    assert torch.allclose(m.fc_out.weight, src.fc_out.weight, atol=1e-6)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError):
        fit(OFMClassifier(), np.zeros((0, 45, 45, 3), np.uint8), np.zeros(0), None, None,
            epochs=1, batch_size=4, lr=1e-3)
    with pytest.raises(InputError):
        fit(OFMClassifier(), *_toy(4, 0), None, None, epochs=0, batch_size=4, lr=1e-3)


def test_augment_batch_shapes_range_and_determinism():
    x = to_tensor(_toy(16, 0)[0])
    a = augment_batch(x, torch.Generator().manual_seed(3))
    b = augment_batch(x, torch.Generator().manual_seed(3))
    c = augment_batch(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, x)


def test_balanced_indices_even_out_classes():
    labels = np.array([0] * 900 + [1] * 100)
    idx = balanced_indices(labels, 4000, torch.Generator().manual_seed(0)).numpy()
    share = labels[idx].mean()
    assert 0.45 < share < 0.55  # 10% in the data, ~50% in what the model sees


def test_synthetic_masks_turn_no_mask_into_mask(tmp_path):
    import cv2

    rgba = np.zeros((40, 80, 4), np.uint8)
    rgba[5:35, 5:75] = (255, 0, 0, 255)  # an opaque blue (BGR) rectangle
    cv2.imwrite(str(tmp_path / "m.png"), rgba)
    sm = load_mask_overlays(tmp_path, source_class=1, target_class=0, p=1.0)
    assert sm.canvases.shape[1:] == (4, 45, 45) and len(sm.canvases) == 12
    x = torch.full((6, 3, 45, 45), 0.5)
    y = torch.tensor([0, 1, 1, 0, 1, 1])
    x2, y2 = sm.apply(x, y, torch.Generator().manual_seed(0))
    assert y2.tolist() == [0, 0, 0, 0, 0, 0]
    assert torch.equal(x2[0], x[0])  # mask-class samples untouched
    assert (x2[1, 2, 30:40, 15:30] > 0.9).all()  # blue pasted over the lower face
    assert torch.equal(x2[1, :, :10], x[1, :, :10])  # eyes and forehead untouched
    with pytest.raises(InputError):
        load_mask_overlays(tmp_path / "nothing", source_class=1, target_class=0)


def test_load_images(tmp_path):
    import cv2

    img = np.zeros((90, 60, 3), np.uint8)
    img[:, :, 2] = 255  # red in BGR
    cv2.imwrite(str(tmp_path / "a.png"), img)
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    x = load_images([tmp_path / "a.png"])
    assert x.shape == (1, 45, 45, 3) and x.dtype == np.uint8
    assert (x[0, :, :, 0] == 255).all() and (x[0, :, :, 2] == 0).all()  # RGB order
    x, ok = load_images_checked([tmp_path / "a.png", tmp_path / "bad.jpg"])
    assert ok.tolist() == [True, False]
    with pytest.raises(InputError):
        load_images([tmp_path / "bad.jpg"])


def test_onnx_predictor_matches_predict():
    from models.inference import OnnxPredictor

    m = OFMClassifier().eval()
    with torch.no_grad():
        for bn in (x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    x = _toy(37, 0)[0]
    p1, e1 = predict(m, x, batch_size=16)
    p2, e2 = OnnxPredictor(m)(x, batch_size=16)
    np.testing.assert_allclose(p2, p1, atol=1e-5)
    np.testing.assert_allclose(e2, e1, atol=1e-4)
