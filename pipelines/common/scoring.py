"""Scoring crops with a model version: which runtime, the chunked loop, "score what is new".

Per chunk of crops (ids by id order, unscored by the version): read their tensors from the
workspace's tensor cache (``annotator.media.cache``: decoded once, memory-mapped; a miss is
decoded from its file and added), run the model in batches, store class probabilities,
uncertainty and the penultimate-layer embedding per (crop, version) with one bulk insert, and,
when the version is the active one, set ``Crop.priority = uncertainty`` so that the labeling
queue serves the crops the model is least sure about first. Each chunk is one short
transaction, so scoring is resumable and never blocks annotators for long. A reader thread
fetches the next chunk while the current one is on the model.

The ``score`` job adds its options (backend, int8) and report around :func:`score_unscored`;
jobs that add crops (extract, import, detect ``--to-queue``) end with :func:`score_new`.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent, under
from annotator.core.sample import uncertainty
from annotator.data import db, model_versions
from annotator.media import cache as tensor_cache
from annotator.media import images
from annotator.service.workspace import Workspace

Infer = Callable[..., tuple[np.ndarray, np.ndarray]]  # infer(images, batch_size=) -> (probs, emb)


def backend_choice(name: str) -> tuple[str, str]:
    """``(backend, provider or device)`` that ``--backend name`` runs on here: ONNX Runtime
    (its CUDA provider when the build has one, else the CPU), or PyTorch on a CUDA GPU when
    ONNX Runtime has no CUDA provider."""
    from models.inference import default_device, onnx_providers

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


def inference_backend(model, name: str = "auto") -> tuple[str, Infer]:
    """``(backend, infer(images, batch_size=...) -> (probs, emb))`` for ``--backend``: ONNX
    Runtime where it is the faster choice, else PyTorch (``annotator detect`` uses it too)."""
    from models.inference import OnnxPredictor, predict

    backend, _provider = backend_choice(name)
    if backend == "onnx":
        return "onnx", OnnxPredictor(model)
    return "torch", lambda x, batch_size: predict(model, x, batch_size=batch_size)


@dataclass
class Tally:
    """What one pass of :func:`score_unscored` did."""

    scored: int = 0
    unreadable: int = 0
    priorities_set: int = 0
    cache_hits: int = 0
    cache_filled: int = 0
    built: bool = False  # whether there was anything to score (the runtime was built)


class ChunkReader:
    """Chunks of ``(ids (C,), tensors uint8 (C, 45, 45, 3), ok (C,))`` in id order, each read on
    the reader thread: the unscored ids from the database, the tensors from the cache."""

    def __init__(self, ws: Workspace, version_id: int, *, chunk: int, limit: int | None,
                 cache: bool, labeled: bool):
        self.ws, self.version_id = ws, version_id
        self.chunk, self.limit, self.labeled = chunk, limit, labeled
        self.cache = tensor_cache.of(ws) if cache else None
        self.after, self.done = 0, 0

    def next(self):
        size = self.chunk if self.limit is None else max(0, min(self.chunk,
                                                                self.limit - self.done))
        batch = []
        if size > 0:
            with self.ws.read_session() as s:
                batch = model_versions.unscored_crops(s, self.version_id, after_id=self.after, limit=size,
                                          labeled=self.labeled)
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


def score_unscored(ws: Workspace, version_id: int, make_infer: Callable[[np.ndarray], Infer], *,
                   batch_size: int = 256, chunk: int = 2048, limit: int | None = None,
                   cache: bool = True, labeled: bool = False,
                   progress: ProgressFn = silent) -> Tally:
    """Score every crop the version has not scored (unlabeled ones; ``labeled``: labeled ones
    too), at most ``limit``. ``make_infer(first readable chunk)`` builds the runtime once there
    is something to score (an ONNX export costs about a second; int8 calibrates on it)."""
    t0 = time.perf_counter()
    with ws.read_session() as s:
        statuses = [db.CropStatus.UNLABELED] + ([db.CropStatus.LABELED] if labeled else [])
        total = db.count(s, db.Crop, db.Crop.status.in_(statuses))
    todo = total if limit is None else min(total, limit)
    reader = ChunkReader(ws, version_id, chunk=chunk, limit=limit, cache=cache, labeled=labeled)
    tally = Tally()
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
            if infer is None:
                infer = make_infer(x[ok])
            tally.priorities_set += _store_chunk(ws, infer, version_id, ids[ok], x[ok],
                                                 batch_size)
            tally.scored += int(ok.sum())
            tally.unreadable += int((~ok).sum())
            rate = tally.scored / max(time.perf_counter() - t0, 1e-9)
            progress(done, todo, f"{tally.scored} scored, {rate:.0f} crops/s", stage="score")
    tally.built = infer is not None
    if reader.cache is not None:
        tally.cache_hits, tally.cache_filled = reader.cache.hits, reader.cache.filled
    return tally


def _store_chunk(ws: Workspace, infer: Infer, version_id: int, ids: np.ndarray, x: np.ndarray,
                 batch_size: int) -> int:
    """Score one chunk and store it; returns the priorities set (active version only)."""
    if not len(ids):
        return 0
    probs, emb = infer(x, batch_size=batch_size)
    unc = uncertainty(probs)
    emb = np.ascontiguousarray(emb, dtype=np.float32)
    rows = [
        {"crop_id": c, "model_version_id": version_id, "probs": [round(v, 6) for v in p],
         "uncertainty": u, "embedding": e.tobytes()}
        for c, p, u, e in zip(ids.tolist(), probs.astype(np.float64).tolist(), unc.tolist(), emb)
    ]
    with ws.session() as s:  # one bulk insert (+ one bulk priority update) per chunk
        return model_versions.add_predictions(s, rows, set_priority=True)


def score_new(ws: Workspace, progress: ProgressFn = silent) -> int:
    """Score what the active model has not scored yet, as the last step of a job that added
    crops (extract, import, detect ``--to-queue``), so new crops are ranked (and show the
    model's guess) when the job ends, not after the next promotion. Returns how many were
    scored: 0 with no active model, or one whose file is not on disk (a workspace made in code
    by the tests' factory). Torch is imported only when there is a model to score with: a first
    extraction (no model yet) skips its ~2 CPU-s import."""
    with ws.read_session() as s:
        mv = model_versions.active_model(s)
        # an imported-predictions version has no weights (path ""): nothing to score with
        path = None if mv is None or not mv.path else ws.root / mv.path
        version_id = None if mv is None else mv.id
    if path is None or not path.exists():
        return 0
    from models import registry as model_files

    model = model_files.load_model_file(path)
    return score_unscored(ws, version_id, lambda first: inference_backend(model)[1],
                          labeled=True, progress=under(progress, "score")).scored
