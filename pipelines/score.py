"""Job: score every unlabeled crop (``labeled``: and every labeled one) with a model version
(the active one by default).

Per chunk of crops: read their tensors from the workspace's tensor cache (``annotator.media.cache``:
decoded once, memory-mapped; a miss is decoded from its file and added), run the model in
batches, store class probabilities, uncertainty and the penultimate-layer embedding per
(crop, version) with one bulk insert, and, when the version is the active one, set
``Crop.priority = uncertainty`` so that the labeling queue serves the crops the model is
least sure about first. Each chunk is one short transaction, so scoring is resumable (crops
already scored by the version are skipped) and never blocks annotators for long. A version
that becomes active later gets its priorities from ``pipelines.versions``.

A reader thread fetches the next chunk's ids and tensors while the current one is on the
model. The network runs in ONNX Runtime (CUDA provider when the onnxruntime build has one, else
the CPU; same outputs as PyTorch to 1e-6), or in PyTorch on a CUDA GPU when ONNX Runtime has
no CUDA provider. ``quantize`` scores with an int8 graph, only after checking on a validation
split that it keeps balanced accuracy within ``MAX_INT8_DELTA`` of fp32.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from annotator.media import cache as tensor_cache
from annotator.data import db, model_versions
from annotator.media import images
from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent
from annotator.core.sample import uncertainty
from annotator.service.workspace import Workspace

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
    from pipelines import versions

    if opts.backend not in ("auto", "torch", "onnx"):
        raise InputError(f"--backend must be auto, torch or onnx, got {opts.backend!r}")
    if opts.batch_size < 1 or opts.chunk < 1:
        raise InputError("--batch-size and the chunk must be >= 1")
    t0 = time.perf_counter()
    model, mv = versions.load(ws, opts.model)
    report = ScoreReport(model=mv.name, active=bool(mv.active))
    check_on = _check_dataset(ws, mv, opts) if opts.quantize else None  # refuse before reading
    with ws.read_session() as s:
        statuses = [db.CropStatus.UNLABELED] + ([db.CropStatus.LABELED] if opts.labeled else [])
        total = db.count(s, db.Crop, db.Crop.status.in_(statuses))
    todo = total if opts.limit is None else min(total, opts.limit)
    reader = _Reader(ws, mv.id, opts)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(reader.next)
        infer = None
        done = 0
        while True:
            ids, x, ok = pending.result()
            if not len(ids):
                break
            done += len(ids)
            pending = pool.submit(reader.next)  # overlap reading with the model
            if infer is None:  # built once there is something to score (ORT export: ~1 s)
                infer = _backend(ws, model, check_on, opts, x[ok], report)
            _score_chunk(ws, infer, mv, ids[ok], x[ok], opts, report)
            report.unreadable += int((~ok).sum())
            rate = report.scored / max(time.perf_counter() - t0, 1e-9)
            progress(done, todo, f"{report.scored} scored, {rate:.0f} crops/s", stage="score")
    if infer is None:
        report.backend, report.provider = _choice(opts.backend)
    if reader.cache is not None:
        report.cache_hits, report.cache_filled = reader.cache.hits, reader.cache.filled
    report.seconds = round(time.perf_counter() - t0, 2)
    report.crops_per_s = round(report.scored / max(report.seconds, 1e-9), 1)
    return report


class _Reader:
    """Chunks of ``(ids (C,), tensors uint8 (C, 45, 45, 3), ok (C,))`` in id order, each read on
    the reader thread: the unscored ids from the database, the tensors from the cache."""

    def __init__(self, ws: Workspace, version_id: int, opts: ScoreOptions):
        self.ws, self.version_id, self.opts = ws, version_id, opts
        self.cache = tensor_cache.of(ws) if opts.cache else None
        self.after, self.done = 0, 0

    def next(self):
        opts = self.opts
        size = opts.chunk if opts.limit is None else max(0, min(opts.chunk, opts.limit - self.done))
        batch = []
        if size > 0:
            with self.ws.read_session() as s:
                batch = model_versions.unscored_crops(s, self.version_id, after_id=self.after, limit=size,
                                          labeled=opts.labeled)
        ids = np.array([cid for cid, _, _ in batch], dtype=np.int64)
        if not batch:
            return ids, np.zeros((0, images.MODEL_SIZE, images.MODEL_SIZE, 3), np.uint8), ids > 0
        self.after, self.done = int(ids[-1]), self.done + len(batch)
        root = str(self.ws.store.root)  # plain strings: Path objects cost 25 us a crop here
        if self.cache is None:
            x, ok = images.load_images_checked([f"{root}/{p}" for _, _, p in batch])
        else:
            x, ok = self.cache.load([(h, f"{root}/{p}") for _, h, p in batch])
        return ids, x, ok


def _choice(name: str) -> tuple[str, str]:
    """``(backend, provider or device)`` that ``--backend name`` runs on here."""
    from models.training import default_device, onnx_providers

    try:
        providers = onnx_providers()
    except ImportError:
        providers = []
    if name == "onnx" and not providers:
        raise InputError("--backend onnx needs the onnxruntime package")
    cuda_torch = default_device().type == "cuda"
    if name == "onnx" or (name == "auto" and providers and (
            providers[0] == "CUDAExecutionProvider" or not cuda_torch)):
        return "onnx", providers[0]
    return "torch", str(default_device())


def _backend(ws, model, check_on: str | None, opts: ScoreOptions, first: np.ndarray,
             report: ScoreReport):
    """``infer(images, batch_size=...) -> (probs, emb)`` for the options; fills the report's
    backend fields (and the int8 check, on dataset ``check_on``)."""
    backend, provider = _choice(opts.backend)
    report.backend, report.provider = backend, provider
    if opts.quantize:
        return _int8(ws, model, check_on, first[:CALIBRATION_CROPS], report)
    return inference_backend(model, opts.backend)[1]


def inference_backend(model, name: str = "auto"):
    """``(backend, infer(images, batch_size=...) -> (probs, emb))`` for ``--backend``: ONNX
    Runtime where it is the faster choice, else PyTorch (``annotator detect`` uses it too)."""
    from models.training import OnnxPredictor, predict

    backend, _provider = _choice(name)
    if backend == "onnx":
        return "onnx", OnnxPredictor(model)
    return "torch", lambda x, batch_size: predict(model, x, batch_size=batch_size)


def _check_dataset(ws, mv, opts: ScoreOptions) -> str:
    """The dataset whose validation split the int8 graph is checked on (the version's, else
    the latest); InputError when --quantize cannot run."""
    if _choice(opts.backend)[0] != "onnx":
        raise InputError("--quantize needs ONNX Runtime (--backend onnx or auto)")
    with ws.read_session() as s:
        ds = s.get(db.Dataset, mv.dataset_id) if mv.dataset_id else db.latest_dataset(s)
        ds_name = ds.name if ds is not None else None
    if ds_name is None:
        raise InputError("--quantize checks the int8 model on a validation split: build a "
                         "dataset first (`annotator build-dataset`)")
    return ds_name


def _int8(ws, model, ds_name: str, calibration: np.ndarray, report: ScoreReport):
    """An int8 predictor calibrated on the first crops to score, refused unless its balanced
    accuracy on ``ds_name``'s validation split is within MAX_INT8_DELTA of fp32's."""
    from annotator.core.metrics import balanced_accuracy
    from models.training import OnnxPredictor
    from pipelines.build_dataset import load_split

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


def _score_chunk(ws, infer, mv, ids, x, opts, report) -> None:
    if not len(ids):
        return
    probs, emb = infer(x, batch_size=opts.batch_size)
    unc = uncertainty(probs)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    rows = [
        {"crop_id": c, "model_version_id": mv.id, "probs": [round(v, 6) for v in p],
         "uncertainty": u, "embedding": e.tobytes()}
        for c, p, u, e in zip(ids.tolist(), probs.astype(np.float64).tolist(), unc.tolist(), emb)
    ]
    with ws.session() as s:  # one bulk insert (+ one bulk priority update) per chunk
        report.priorities_set += model_versions.add_predictions(s, rows, set_priority=True)
    report.scored += len(ids)


def score_new(ws: Workspace, progress: ProgressFn = silent) -> int:
    """Score what the active model has not scored yet, as the last step of a job that added
    crops (extract, import, detect ``--to-queue``), so new crops are ranked (and show the
    model's guess) when the job ends, not after the next promotion. Returns how many were
    scored: 0 with no active model, or one whose file is not on disk (a workspace made in code
    by the tests' factory)."""
    from annotator.core.progress import under

    with ws.read_session() as s:
        mv = model_versions.active_model(s)
        # an imported-predictions version has no weights (path ""): nothing to score with
        path = None if mv is None or not mv.path else ws.root / mv.path
    if path is None or not path.exists():
        return 0
    return run(ws, ScoreOptions(labeled=True), under(progress, "score")).scored
