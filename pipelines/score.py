"""Job: score every unlabeled crop (``labeled``: and every labeled one) with a model version
(the active one by default).

The loop (chunks read from the tensor cache on a reader thread, one short transaction each,
resumable, priorities follow the active version) is :func:`pipelines.common.scoring.score_unscored`;
this job adds its options and report. A version that becomes active later gets its priorities
from ``pipelines.promote``.

The network runs in ONNX Runtime (CUDA provider when the onnxruntime build has one, else
the CPU; same outputs as PyTorch to 1e-6), or in PyTorch on a CUDA GPU when ONNX Runtime has
no CUDA provider. ``quantize`` scores with an int8 graph, only after checking on a validation
split that it keeps balanced accuracy within ``MAX_INT8_DELTA`` of fp32.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent
from annotator.service.workspace import Workspace
from annotator.data.model_versions import Version
from pipelines.common import registry
from pipelines.common.scoring import backend_choice, inference_backend, score_unscored

MAX_INT8_DELTA = 0.005  # balanced accuracy an int8 graph may lose (or gain) against fp32
CALIBRATION_CROPS = 512


@dataclass(kw_only=True)
class ScoreOptions:
    model: str | None = None  # None = the active model
    batch_size: int = 256
    chunk: int = 2048  # crops per transaction
    limit: int | None = None  # score at most this many (tests, trial runs)
    backend: str = "auto"  # auto (ONNX Runtime, or PyTorch on CUDA without ORT's) | torch | onnx
    cache: bool = True  # False: decode every file again and leave the cache alone
    quantize: bool = False  # int8 ONNX graph, if it passes the validation check
    labeled: bool = False  # labeled crops too (Review checks every label against the model)


@dataclass
class ScoreReport:
    model: str
    active: bool
    backend: str = "torch"
    provider: str = ""  # ONNX Runtime provider or torch device
    scored: int = 0
    unreadable: int = 0
    priorities_set: int = 0
    cache_hits: int = 0
    cache_filled: int = 0
    quantized: bool = False
    quantize_check: dict | None = None  # validation balanced accuracy, fp32 vs int8
    seconds: float = 0.0
    crops_per_s: float = 0.0


def run(ws: Workspace, opts: ScoreOptions, progress: ProgressFn = silent) -> ScoreReport:
    if opts.backend not in ("auto", "torch", "onnx"):
        raise InputError(f"--backend must be auto, torch or onnx, got {opts.backend!r}")
    if opts.batch_size < 1 or opts.chunk < 1:
        raise InputError("--batch-size and the chunk must be >= 1")
    t0 = time.perf_counter()
    model, mv = registry.load(ws, opts.model)
    report = ScoreReport(model=mv.name, active=bool(mv.active))
    check_on = _check_dataset(ws, mv, opts) if opts.quantize else None  # refuse before reading

    def make_infer(first: np.ndarray):
        report.backend, report.provider = backend_choice(opts.backend)
        if opts.quantize:
            return _int8(ws, model, check_on, first[:CALIBRATION_CROPS], report)
        return inference_backend(model, opts.backend)[1]

    tally = score_unscored(ws, mv.id, make_infer, batch_size=opts.batch_size, chunk=opts.chunk,
                           limit=opts.limit, cache=opts.cache, labeled=opts.labeled,
                           progress=progress)
    if not tally.built:
        report.backend, report.provider = backend_choice(opts.backend)
    report.scored, report.unreadable = tally.scored, tally.unreadable
    report.priorities_set = tally.priorities_set
    report.cache_hits, report.cache_filled = tally.cache_hits, tally.cache_filled
    report.seconds = round(time.perf_counter() - t0, 2)
    report.crops_per_s = round(report.scored / max(report.seconds, 1e-9), 1)
    return report


def _check_dataset(ws, mv: Version, opts: ScoreOptions) -> str:
    """The dataset whose validation split the int8 graph is checked on (the version's, else
    the latest); InputError when --quantize cannot run."""
    if backend_choice(opts.backend)[0] != "onnx":
        raise InputError("--quantize needs ONNX Runtime (--backend onnx or auto)")
    ds_name = registry.dataset_of(ws, mv)
    if ds_name is None:
        raise InputError("--quantize checks the int8 model on a validation split: build a "
                         "dataset first (`annotator build-dataset`)")
    return ds_name


def _int8(ws, model, ds_name: str, calibration: np.ndarray, report: ScoreReport):
    """An int8 predictor calibrated on the first crops to score, refused unless its balanced
    accuracy on ``ds_name``'s validation split is within MAX_INT8_DELTA of fp32's."""
    from annotator.core.metrics import balanced_accuracy
    from models.inference import OnnxPredictor
    from pipelines.common.datasets import load_split

    val = load_split(ws, ds_name, "val", list(model.classes))
    if not len(val.y):
        raise InputError(f"--quantize: dataset {ds_name} has an empty validation split")
    fp32, int8 = OnnxPredictor(model), OnnxPredictor(model, int8_calibration=calibration)
    k = len(model.classes)
    ba32 = balanced_accuracy(val.y, fp32(val.x)[0].argmax(1), k)
    ba8 = balanced_accuracy(val.y, int8(val.x)[0].argmax(1), k)
    delta = round(float(ba8 - ba32), 4)
    report.quantize_check = {"dataset": ds_name, "n_val": int(len(val.y)),
                             "fp32_balanced_accuracy": round(float(ba32), 4),
                             "int8_balanced_accuracy": round(float(ba8), 4), "delta": delta}
    if abs(ba8 - ba32) > MAX_INT8_DELTA:
        raise InputError(f"int8 model's validation balanced accuracy {ba8:.4f} is {delta:+.4f} "
                         f"from fp32's {ba32:.4f} on {ds_name} (limit {MAX_INT8_DELTA}); "
                         "score without --quantize")
    report.quantized = True
    return int8
