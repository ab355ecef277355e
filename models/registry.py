"""The model file format: a version folder ``VERSION/{model.pt, metrics.json, card.md}``.

Only files: which version is active, and the database rows, are the business of
``pipelines.common.registry`` (reads, registering) and ``pipelines.promote`` (activation). Folders are written under a hidden temporary name and renamed into
place, so a crash never leaves a half-written version under a valid name.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import torch

from annotator.core.errors import InputError
from annotator.core.files import atomic_folder
from models.ofm import INPUT_SIZE, OFMClassifier

__all__ = ["FORMAT", "NAME_RE", "check_name", "as_stored", "write_version", "load_model_file",
           "read_metrics", "model_card"]

FORMAT = "facemask-annotator/ofm/1"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
MODEL_FILE = "model.pt"
# Convolution kernels and linear matrices (all but ~1K of the 296K numbers) are kept at half
# precision: the file is 0.6 MB instead of 1.2 MB, and a retrain adds one every time. Biases and
# BatchNorm statistics stay float32: a conv bias and the running mean after it can be two large
# numbers (41.64 and 41.47 in Neuralet's model) whose small difference is the signal, and
# halving them flipped 67 of 2,033 of that model's predictions; kernels alone flip none (its
# probabilities move by at most 0.01). The files of float32 versions load the same.
STORED_DTYPE = torch.float16


def check_name(name: str, what: str = "version") -> str:
    if not NAME_RE.match(name or ""):
        raise InputError(f"invalid {what} name {name!r}: letters, digits, _ . - (max 100)")
    return name


def _halved(t: torch.Tensor) -> bool:
    """Whether the file keeps this tensor at half precision: kernels and matrices only."""
    return t.is_floating_point() and t.dim() > 1


def as_stored(model: OFMClassifier) -> OFMClassifier:
    """Round ``model``'s weights, in place, to what its file will hold: call it before a model
    is evaluated, so its figures are the stored model's (``write_version`` calls it too)."""
    with torch.no_grad():
        for t in model.state_dict().values():
            if _halved(t):
                t.copy_(t.to(STORED_DTYPE))
    return model


def write_version(folder: Path, model: OFMClassifier, *, metrics: dict, card: str) -> Path:
    """Write a version folder atomically; refuses to replace an existing folder. The in-memory
    ``model`` is rounded as stored, so it predicts exactly what the loaded file will."""
    folder = Path(folder)
    if folder.exists():
        raise InputError(f"{folder} already exists")
    as_stored(model)
    with atomic_folder(folder) as tmp:
        state = {k: (v.to(STORED_DTYPE) if _halved(v) else v).detach().cpu().contiguous()
                 for k, v in model.state_dict().items()}
        torch.save({"format": FORMAT, "arch": "OFMClassifier", "classes": list(model.classes),
                    "input_size": INPUT_SIZE, "state_dict": state}, tmp / MODEL_FILE)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        (tmp / "card.md").write_text(card)
    return folder


def load_model_file(folder: Path) -> OFMClassifier:
    """The model in a version folder, in eval mode. Only tensors are unpickled
    (``weights_only=True``): a model file cannot run code."""
    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise InputError(f"model file {path} is missing")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or one that needs arbitrary unpickling
        raise InputError(f"{path} is not a facemask-annotator model file ({type(exc).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"{path} is not a facemask-annotator model file")
    model = OFMClassifier(blob["classes"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def read_metrics(folder: Path) -> dict:
    path = Path(folder) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def model_card(*, name: str, classes: Sequence[str], dataset: str | None, metrics: dict,
               params: dict, source: str) -> str:
    """A short markdown model card."""
    val = metrics.get("val") or {}
    lines = [
        f"# Model {name}",
        "",
        f"- architecture: OFMClassifier (Neuralet), input {INPUT_SIZE}x{INPUT_SIZE} RGB in [0, 1]",
        f"- classes (output order): {', '.join(classes)}",
        f"- source: {source}",
        f"- dataset: {dataset or '-'} (train {metrics.get('n_train', '-')}, "
        f"val {metrics.get('n_val', '-')})",
        f"- training: {', '.join(f'{k}={v}' for k, v in params.items())}",
        "",
        "## Validation",
        "",
    ]
    if val:
        lines += ["| metric | value |", "|---|---|"]
        for k in ("accuracy", "balanced_accuracy", "roc_auc", "ece"):
            lines.append(f"| {k} | {val.get(k)} |")
        for c, pc in (val.get("per_class") or {}).items():
            lines.append(f"| recall {c} | {pc.get('recall'):.3f} |")
    else:
        lines.append("not evaluated")
    lines += [
        "",
        "## Intended use and limits",
        "",
        "Mask / no-mask decisions on head crops from CCTV (OpenPifPaf keypoint boxes). Known hard",
        "cases: night scenes, red masks, very blurry faces, overhead views. Validation figures",
        "come from the frozen validation split of the dataset above, grouped by source and track.",
        "",
    ]
    return "\n".join(lines)
