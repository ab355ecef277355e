"""Read Neuralet's released Keras weights (``OFMClassifier.h5``) into an ``OFMClassifier``.

Only h5py is needed (no TensorFlow). The weights are not shipped with this project: the user
points at their own copy (``annotator models import-keras PATH.h5``).

Layout read: ``model_weights/model/{conv2d, conv2d_1..5, batch_normalization, _1, _2, dense}``
and ``model_weights/{fc_1/fc_1_1, fc_out/fc_out_1}``. Keras conv kernels are (3, 3, in, out)
channels-last, dense kernels (in, out). Neuralet's output order is 0 = mask, 1 = no mask.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from annotator.core.errors import InputError
from models.ofm import OFMClassifier

__all__ = ["KERAS_CLASSES", "load_keras_h5", "read_keras_weights"]

KERAS_CLASSES = ("mask", "no_mask")
_CONVS = ["conv2d"] + [f"conv2d_{i}" for i in range(1, 6)]
_BNS = ["batch_normalization", "batch_normalization_1", "batch_normalization_2"]


def read_keras_weights(path: Path) -> dict[str, np.ndarray]:
    """Every weight array under ``model_weights`` keyed by its h5 path (``layer/.../kernel:0``)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if "model_weights" not in f:
                raise InputError(f"{path} has no model_weights group: not a saved Keras model")
            out: dict[str, np.ndarray] = {}

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset):
                    out[name] = np.asarray(obj[()])

            f["model_weights"].visititems(visit)
            return out
    except OSError as exc:
        raise InputError(f"{path} is not an HDF5 file ({exc})") from None


def _find(weights: dict[str, np.ndarray], layer: str, name: str) -> np.ndarray:
    """The array ``name`` (kernel, bias, gamma, ...) of Keras layer ``layer``, wherever nested."""
    hits = [k for k, v in weights.items()
            if f"/{layer}/" in f"/{k}" and k.rsplit("/", 1)[-1] == f"{name}:0"]
    if len(hits) != 1:
        raise InputError(f"Keras weights: expected one {layer}/{name}, found {len(hits)}")
    return weights[hits[0]]


def load_keras_h5(path: Path, classes: Sequence[str] = KERAS_CLASSES) -> OFMClassifier:
    """An ``OFMClassifier`` holding Neuralet's weights, outputs ordered as ``classes``.

    ``classes`` must name the same two classes as Neuralet's (mask, no_mask) in any order; the
    output layer is permuted to match.
    """
    classes = list(classes)
    if sorted(classes) != sorted(KERAS_CLASSES):
        raise InputError(
            f"Neuralet's model predicts {list(KERAS_CLASSES)}; this workspace's classes are "
            f"{classes}"
        )
    w = read_keras_weights(path)
    model = OFMClassifier(classes)
    convs = [m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in model.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    state: dict[str, torch.Tensor] = {}
    names = {id(m): n for n, m in model.named_modules()}

    def put(module, attr, array):
        key = f"{names[id(module)]}.{attr}"
        target = model.state_dict()[key]
        t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        if t.shape != target.shape:
            raise InputError(f"Keras weights: {key} has shape {tuple(t.shape)}, "
                             f"expected {tuple(target.shape)}")
        state[key] = t

    for conv, layer in zip(convs, _CONVS):
        put(conv, "weight", _find(w, layer, "kernel").transpose(3, 2, 0, 1))
        put(conv, "bias", _find(w, layer, "bias"))
    for bn, layer in zip(bns, _BNS):
        put(bn, "weight", _find(w, layer, "gamma"))
        put(bn, "bias", _find(w, layer, "beta"))
        put(bn, "running_mean", _find(w, layer, "moving_mean"))
        put(bn, "running_var", _find(w, layer, "moving_variance"))
    put(model.fc, "weight", _find(w, "dense", "kernel").T)
    put(model.fc, "bias", _find(w, "dense", "bias"))
    put(model.fc_1, "weight", _find(w, "fc_1", "kernel").T)
    put(model.fc_1, "bias", _find(w, "fc_1", "bias"))
    order = [KERAS_CLASSES.index(c) for c in classes]
    put(model.fc_out, "weight", _find(w, "fc_out", "kernel").T[order])
    put(model.fc_out, "bias", _find(w, "fc_out", "bias")[order])
    missing = set(model.state_dict()) - set(state) - {
        k for k in model.state_dict() if k.endswith("num_batches_tracked")
    }
    if missing:
        raise InputError(f"Keras weights: nothing found for {sorted(missing)}")
    model.load_state_dict(state, strict=False)
    return model.eval()
