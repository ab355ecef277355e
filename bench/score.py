"""Benchmark: scoring unlabeled crops end to end (the `annotator score` job) against pure
inference on the same arrays, in the same run.

End to end is one ``pipelines.score.run`` call over all ``--crops``: unscored crop ids from the
database, their tensors from the memory-mapped tensor cache (read on a background thread),
ONNX Runtime at batch 256, and predictions (probabilities, uncertainty, embedding) plus queue
priorities written with one bulk insert and one bulk update per 2,048-crop transaction. Pure
inference is the same ``OnnxPredictor`` on the same tensors already in memory. The two are
interleaved chunk by chunk: the job's progress callback, called after each chunk is written,
runs pure inference on that chunk's tensors; the job's time is its wall time minus the time
spent in the callback. So a busy shared machine slows both alike.

The workspace: ``--crops`` unlabeled crops. The first ``--file-crops`` are image files in the
crop store (the faces at their own size, each made distinct): they measure the cold
path (decode, fill the cache, score) and ``--no-cache`` (decode every file, the old pipeline).
The rest exist as database rows plus cache entries (real face tensors, each made distinct):
what a filled cache holds.

``--quantize`` also scores with the int8 graph: balanced accuracy against fp32 on the faces'
validation split (the check ``score --quantize`` makes) and on all 4,065 faces, with Neuralet's
weights (``../shared/data/peer/OFMClassifier.h5``); the int8 / fp32 speed-up of pure inference
(interleaved in the fp32 job's chunks) and end to end (a second job).

Prints a table, then one JSON line (the last line).

    python -m bench.score [--crops 100000] [--file-crops 4065] [--quantize]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from annotator.media import cache as tensor_cache
from annotator.data import crop_queue, db, model_versions
from annotator.media import images
from annotator.service.workspace import Workspace
from models.ofm import OFMClassifier
from models.inference import OnnxPredictor
from pipelines import build_dataset, import_folder, score
from pipelines.common import registry

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANNOTATOR_SHARED_DATA") or REPO.parent / "shared" / "data")


def faces() -> tuple[np.ndarray, np.ndarray, list[Path], str]:
    """Model-input tensors (N, 45, 45, 3), labels (N,) and files of the real faces (or random)."""
    root = SHARED / "faces"
    if root.is_dir():
        paths, labels = images.read_image_folder(root)
        y = np.array([0 if label == "mask" else 1 for label in labels])
        return images.load_images(paths), y, paths, "faces"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (512, 45, 45, 3), dtype=np.uint8), np.arange(512) % 2, [], "random"


def distinct(x: np.ndarray, i: int) -> np.ndarray:
    """Image ``x`` with one corner pixel set from ``i``: another image, the same face."""
    t = x.copy()
    t[0, 0] = (i % 256, (i // 256) % 256, (i // 65536) % 256)
    return t


def write_files(folder: Path, paths: list[Path], x: np.ndarray, n: int) -> None:
    """``n`` distinct crop files: the faces at their own size (PNG: a lossy re-encode could
    make two copies of one face byte-identical again), else PNGs of ``x``."""
    import cv2

    folder.mkdir()
    for k in range(n):
        if paths:
            bgr = distinct(cv2.imread(str(paths[k % len(paths)]), cv2.IMREAD_COLOR), 10_000_000 + k)
            cv2.imwrite(str(folder / f"{k:06d}.png"), bgr)
        else:
            cv2.imwrite(str(folder / f"{k:06d}.png"), distinct(x[k % len(x)], k)[:, :, ::-1])


class Interleaved:
    """A progress callback that, after each chunk the job wrote, runs ``fns`` (pure inference)
    on that chunk's tensors and times them; ``inside`` is the time spent here."""

    def __init__(self, arrays: np.ndarray, fns: dict, batch_size: int):
        self.arrays, self.fns, self.bs = arrays, fns, batch_size
        self.done, self.inside = 0, 0.0
        self.secs = dict.fromkeys(fns, 0.0)

    def __call__(self, done, total, message="", **_kw):
        t_in = time.perf_counter()
        blk = self.arrays[self.done: done]
        for name, fn in self.fns.items():
            t0 = time.perf_counter()
            fn(blk, batch_size=self.bs)
            self.secs[name] += time.perf_counter() - t0
        self.done = done
        self.inside += time.perf_counter() - t_in


def job(ws, opts, arrays, fns, batch_size):
    """``(report, job seconds without the callback, Interleaved)``."""
    hook = Interleaved(arrays, fns, batch_size)
    t0 = time.perf_counter()
    rep = score.run(ws, opts, hook)
    return rep, time.perf_counter() - t0 - hook.inside, hook


def make_model(ws: Workspace):
    h5 = SHARED / "peer" / "OFMClassifier.h5"
    if h5.is_file():
        from models.keras_import import load_keras_h5

        return load_keras_h5(h5, ws.config.labels), "Neuralet OFMClassifier.h5"
    torch.manual_seed(0)
    return OFMClassifier(ws.config.labels), "random init"


def add_synthetic(ws: Workspace, x: np.ndarray, n: int, start: int) -> None:
    """``n`` crop rows with no file, their tensors in the cache (distinct real faces)."""
    c = tensor_cache.of(ws)
    with ws.session() as s:
        src = db.get_or_create_source(s, key="bench:synthetic", kind="folder", uri="bench",
                                      name="synthetic").id
    for lo in range(0, n, 8192):
        ks = range(start + lo, start + min(n, lo + 8192))
        shas = [hashlib.sha256(f"bench crop {k}".encode()).hexdigest() for k in ks]
        c.put(shas, np.stack([distinct(x[k % len(x)], k) for k in ks]))
        with ws.session() as s:
            crop_queue.add_crops(s, src, [crop_queue.NewCrop(origin=f"s{k}", sha256=h, path=f"none/{h}.png",
                                                   width=45, height=45) for k, h in zip(ks, shas)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=100_000)
    ap.add_argument("--file-crops", type=int, default=4065, help="crops backed by real files")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--quantize", action="store_true", help="also measure the int8 graph")
    ap.add_argument("--threads", type=int, default=0, help="torch / ORT threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n_files = min(args.file_crops, args.crops)
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    t_setup = time.perf_counter()
    try:
        x, y, paths, data = faces()
        ws = Workspace.init(tmp / "ws")
        ds_id = None
        if args.quantize:  # a validation split for the int8 check: the faces, labeled
            if data != "faces":
                raise SystemExit("--quantize needs the real faces in ../shared/data")
            import_folder.run(ws, import_folder.ImportOptions(folder=SHARED / "faces", labeled=True))
            ds_id = build_dataset.run(ws, build_dataset.BuildOptions()).name
            with ws.read_session() as s:
                ds_id = db.get_dataset(s, ds_id).id
        model, weights = make_model(ws)
        for name in ("fp32", "cold", "files", "int8"):
            registry.register(ws, model, metrics={"source": "bench"}, card="# bench", name=name,
                              dataset_id=ds_id)
        with ws.session() as s:  # active without scoring: the bench measures that
            model_versions.activate_model(s, model_versions.get_model_version(s, "fp32").id)
        # Real files first (lower ids), then rows whose tensors only the cache holds.
        write_files(tmp / "files", paths, x, n_files)
        import_folder.run(ws, import_folder.ImportOptions(folder=tmp / "files"))
        add_synthetic(ws, x, args.crops - n_files, n_files)
        with ws.read_session() as s:
            order = model_versions.unscored_crops(s, 0, limit=args.crops + 1)
        assert len(order) == args.crops
        setup_s = time.perf_counter() - t_setup

        # Cold (decode, fill the cache, score) and no cache (decode every file) on the files.
        cold = score.run(ws, score.ScoreOptions(model="cold", limit=n_files,
                                                batch_size=args.batch_size))
        files = score.run(ws, score.ScoreOptions(model="files", limit=n_files, cache=False,
                                                 batch_size=args.batch_size))
        assert cold.scored == files.scored == n_files and cold.cache_filled == n_files, (cold, files)

        # The same arrays in memory for pure inference (read once, untimed).
        arrays, ok = tensor_cache.of(ws).get([h for _, h, _ in order])
        assert ok.all()
        fp32 = OnnxPredictor(model)
        fp32(arrays[:512])  # warm-up
        fns = {"fp32": fp32}
        if args.quantize:
            fns["int8"] = OnnxPredictor(model, int8_calibration=arrays[:score.CALIBRATION_CROPS])
            fns["int8"](arrays[:512])
        rep, t_e2e, hook = job(ws, score.ScoreOptions(batch_size=args.batch_size), arrays, fns,
                               args.batch_size)
        assert rep.scored == rep.cache_hits == args.crops and rep.priorities_set == args.crops
        t_pure = hook.secs["fp32"]
        with ws.read_session() as s:
            n_prio = db.count(s, db.Crop, db.Crop.priority > 0)
        q = {}
        if args.quantize:
            from annotator.core.metrics import balanced_accuracy

            rep8, t_e2e8, hook8 = job(ws, score.ScoreOptions(
                model="int8", quantize=True, batch_size=args.batch_size), arrays,
                {"int8": fns["int8"]}, args.batch_size)
            assert rep8.quantized and rep8.scored == args.crops
            q = {"val": rep8.quantize_check,
                 "all_faces_fp32": round(balanced_accuracy(y, fp32(x)[0].argmax(1), 2), 4),
                 "all_faces_int8": round(balanced_accuracy(y, fns["int8"](x)[0].argmax(1), 2), 4),
                 "pure_int8": args.crops / hook.secs["int8"],
                 "pure_int8_again": args.crops / hook8.secs["int8"],
                 "e2e_int8": args.crops / t_e2e8, "e2e_int8_seconds": t_e2e8}
        backend = f"{rep.backend} {rep.provider}"
        ws.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    pure_rate, e2e_rate = args.crops / t_pure, args.crops / t_e2e
    ratio = e2e_rate / pure_rate
    load = os.getloadavg()
    print(f"Scoring {args.crops:,} {data} crops ({weights}), {torch.get_num_threads()} threads, "
          f"{backend}, batch {args.batch_size}, pure inference interleaved per 2,048-crop chunk; "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min); "
          f"setup {setup_s:.0f} s")
    rows = [
        ("pure inference, tensors in memory (fp32)", pure_rate, t_pure, args.crops),
        ("end to end: cache + infer + DB (score job)", e2e_rate, t_e2e, args.crops),
        ("cold: decode files + fill cache + score", cold.crops_per_s, cold.seconds, n_files),
        ("no cache: decode every file + score", files.crops_per_s, files.seconds, n_files),
    ]
    if q:
        rows += [("pure inference, int8 (in the fp32 job)", q["pure_int8"],
                  args.crops / q["pure_int8"], args.crops),
                 ("end to end, --quantize (check included)", q["e2e_int8"],
                  q["e2e_int8_seconds"], args.crops)]
    print(f"{'pipeline':46} {'crops/s':>8} {'seconds':>8} {'crops':>8} {'100K crops':>11}")
    for label, rate, secs, n in rows:
        print(f"{label:46} {rate:>8.0f} {secs:>8.1f} {n:>8,} {1e5 / rate:>9.0f} s")
    print(f"end to end / pure inference: {ratio:.1%} (target >= 75%); 100,000 crops end to end "
          f"in {1e5 / e2e_rate:.0f} s (target < 120 s); priorities set on {n_prio:,} crops")
    if q:
        v = q["val"]
        print(f"int8 vs fp32 balanced accuracy: {v['int8_balanced_accuracy']:.4f} vs "
              f"{v['fp32_balanced_accuracy']:.4f} on {v['dataset']} val ({v['n_val']} crops, "
              f"delta {v['delta']:+.4f}, limit 0.005); all 4,065 faces {q['all_faces_int8']:.4f} "
              f"vs {q['all_faces_fp32']:.4f}; speed-up: pure {q['pure_int8'] / pure_rate:.2f}x "
              f"(interleaved), end to end {q['e2e_int8'] / e2e_rate:.2f}x (consecutive jobs)")
    out = {
        "bench": "score", "data": data, "weights": weights, "crops": args.crops,
        "threads": torch.get_num_threads(), "backend": backend,
        "pure_crops_per_s": round(pure_rate, 1), "e2e_crops_per_s": round(e2e_rate, 1),
        "e2e_over_pure": round(ratio, 3), "e2e_seconds": round(t_e2e, 1),
        "e2e_seconds_per_100k": round(1e5 / e2e_rate, 1),
        "cold_crops_per_s": cold.crops_per_s, "no_cache_crops_per_s": files.crops_per_s,
        "file_crops": n_files, "load_avg": [round(v, 2) for v in load], "cpu": platform.machine(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    if q:
        out.update(int8_val=q["val"], int8_val_delta=q["val"]["delta"],
                   int8_all_faces_delta=round(q["all_faces_int8"] - q["all_faces_fp32"], 4),
                   int8_pure_speedup=round(q["pure_int8"] / pure_rate, 2),
                   int8_e2e_speedup=round(q["e2e_int8"] / e2e_rate, 2),
                   int8_e2e_over_pure=round(q["e2e_int8"] / q["pure_int8_again"], 3),
                   int8_e2e_crops_per_s=round(q["e2e_int8"], 1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
