"""Benchmark: scoring unlabeled crops (the `annotator score` job), ours vs a per-image loop.

Ours is ``pipelines.score.run`` end to end: crop ids from the database, files decoded by a
thread pool while the previous chunk is on the model, batched inference (256; ONNX Runtime on a
CPU by default, PyTorch with ``--backend torch``, both measured), predictions
(probabilities, uncertainty, embedding) and queue priorities written in one short transaction
per 2,048 crops. The baseline, measured in the same run on the same crops, is the plain loop:
for each crop read the file, run the network on it alone, and add its prediction row
(committed every 256 crops, so the database is not what is measured). Also reports the network
alone (``predict`` at batch 256 vs batch 1) and the time to score 100,000 crops, extrapolated.

Prints a table, then one JSON line. Default run: about 1-2 minutes on 2 CPU cores.

    python bench/score.py [--crops 2000] [--baseline-crops 300]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

import numpy as np
import torch

from annotator import db
from annotator.sample import uncertainty
from annotator.workspace import Workspace
from pipelines import versions
from models.ofm import OFMClassifier
from annotator.images import load_images
from models.training import predict
from pipelines import import_folder, score


def make_crops(folder: Path, n: int) -> str:
    """n crop files: real faces when the shared data is there, else random PNGs."""
    import cv2

    root = Path(os.environ.get("ANNOTATOR_SHARED_DATA") or REPO.parent / "shared" / "data") / "faces"
    folder.mkdir(parents=True)
    if root.is_dir():
        files = sorted(root.glob("*/*"))
        for i in range(n):
            src = files[i % len(files)]
            if i < len(files):
                shutil.copy(src, folder / f"{i:06d}{src.suffix}")
            else:  # more crops than files: make each one distinct
                img = cv2.imread(str(src))
                img[0, 0] = (i % 256, (i // 256) % 256, 7)
                cv2.imwrite(str(folder / f"{i:06d}.png"), img)
        return "faces"
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:06d}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return "random"


def baseline(ws: Workspace, model, version_id: int, crops: list[tuple[int, str]]) -> float:
    """Per-image loop: read, classify alone, add a prediction row. Returns crops/s."""
    import cv2

    model.eval()
    t0 = time.perf_counter()
    pending = []
    for n, (cid, path) in enumerate(crops, 1):
        bgr = cv2.imread(str(ws.store.path(path)))
        rgb = cv2.cvtColor(cv2.resize(bgr, (45, 45), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        x = torch.from_numpy(rgb).permute(2, 0, 1).float().div(255).unsqueeze(0)
        with torch.no_grad():
            logits, emb = model(x, return_embedding=True)
        p = torch.softmax(logits, 1)[0].numpy()
        pending.append(db.Prediction(crop_id=cid, model_version_id=version_id,
                                     probs=[float(v) for v in p],
                                     uncertainty=float(1 - abs(p[0] - p[1])),
                                     embedding=emb[0].numpy().astype(np.float32).tobytes()))
        if n % 256 == 0 or n == len(crops):
            with ws.session() as s:
                s.add_all(pending)
            pending = []
    return len(crops) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=2000)
    ap.add_argument("--baseline-crops", type=int, default=300)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-score-"))
    try:
        data = make_crops(tmp / "crops", args.crops)
        ws = Workspace.init(tmp / "ws")
        import_folder.run(ws, import_folder.ImportOptions(folder=tmp / "crops"))
        torch.manual_seed(0)
        model = OFMClassifier(ws.config.labels)
        versions.register(ws, model, metrics={"source": "bench"}, card="# bench", name="ours")
        versions.register(ws, model, metrics={"source": "bench"}, card="# bench", name="loop")
        versions.register(ws, model, metrics={"source": "bench"}, card="# bench", name="torch")
        with ws.session() as s:  # active without scoring: the bench measures that
            db.activate_model(s, db.get_model_version(s, "ours").id)

        # The network alone: batch 256 vs one crop at a time.
        with ws.read_session() as s:
            crops = db.unscored_crops(s, 0, limit=args.crops)
        x = load_images([ws.store.path(p) for _, p in crops[:1024]])
        predict(model, x[:256])  # warm-up
        t0 = time.perf_counter()
        probs, _ = predict(model, x)
        net = len(x) / (time.perf_counter() - t0)
        n1 = min(200, len(x))
        t0 = time.perf_counter()
        for i in range(n1):
            predict(model, x[i: i + 1], batch_size=1)
        net1 = n1 / (time.perf_counter() - t0)
        uncertainty(probs)

        rep = score.run(ws, score.ScoreOptions())  # the default: ONNX Runtime on a CPU
        ours = rep.scored / rep.seconds
        rep_t = score.run(ws, score.ScoreOptions(model="torch", backend="torch"))
        ours_torch = rep_t.scored / rep_t.seconds
        with ws.read_session() as s:
            loop_id = db.get_model_version(s, "loop").id
        base = baseline(ws, model, loop_id, crops[: args.baseline_crops])
        with ws.read_session() as s:
            n_pred = db.count(s, db.Prediction)
            n_prio = db.count(s, db.Crop, db.Crop.priority > 0)
        assert rep.scored == rep_t.scored == args.crops
        assert n_pred == 2 * args.crops + args.baseline_crops
        ws.dispose()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"Scoring {args.crops} {data} crops (baseline on {args.baseline_crops}), "
          f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}")
    print(f"{'pipeline':48} {'crops/s':>8} {'100K crops':>11}")
    for label, v in ((f"ours: score job ({rep.backend}; read, batch 256, DB)", ours),
                     ("ours: score job, --backend torch", ours_torch),
                     ("baseline: per-image loop (read, 1 crop, row)", base),
                     ("network only, predict() at batch 256", net),
                     ("network only, one crop at a time", net1)):
        print(f"{label:48} {v:>8.0f} {1e5 / v / 60:>9.1f} min")
    print(f"priorities set on {n_prio} unlabeled crops")
    print(json.dumps({
        "bench": "score", "data": data, "crops": args.crops, "threads": torch.get_num_threads(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "backend": rep.backend, "crops_per_s": round(ours, 1),
        "torch_backend_crops_per_s": round(ours_torch, 1), "baseline_crops_per_s": round(base, 1),
        "speedup": round(ours / base, 2), "network_crops_per_s": round(net, 1),
        "network_batch1_crops_per_s": round(net1, 1),
        "time_100k_s": round(1e5 / ours, 1), "baseline_time_100k_s": round(1e5 / base, 1),
        "time_100k_extrapolated": True, "load_avg_1min": round(os.getloadavg()[0], 2),
        "cpu": platform.machine(),
    }))


if __name__ == "__main__":
    main()
