"""Benchmark: `annotator detect` speed per stage with YuNet on the shared videos.

For each video (first ``--max-seconds`` at ``--fps``), one pass times every stage on the same
frames and faces: decode, detect (YuNet), crop (head boxes, model inputs), classify batched per
frame (one ONNX Runtime call for all of a frame's faces, what the job does) against classify
crop by crop (one call per face: the baseline), track (tracker + vote), and write video (draw +
encode) in mp4v (detect's default) and VP9-in-MP4 (what browsers play: the Footage page's
runs). Then the real job runs on the same video for its end-to-end frames/s with its default
video (encoding runs in a thread beside detection).
Figures are frames per second of each stage alone (frames / seconds spent in it).

Prints a table, then one JSON line. About 1-3 minutes on 2 CPU cores.

    python -m bench.detect [--fps 2] [--max-seconds 8] [--videos a.mp4,b.mp4]
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from annotator.core import votes
from annotator.media import video
from annotator.media.detectors import load_detector
from annotator.core.track import Tracker
from annotator.service.workspace import Workspace
from annotator.core.footage import head_crops
from pipelines import detect, promote
from pipelines.common import registry
from pipelines.detect import frames as detect_frames
from pipelines.detect import rendering

STAGES = ("decode", "detect", "crop", "classify", "classify_per_crop", "track", "video_vp09",
          "video_mp4v")


def shared_root() -> Path:
    return Path(os.environ.get("ANNOTATOR_SHARED_DATA") or REPO.parent / "shared" / "data")


def staged(path: Path, infer, classes, cfg, args, tmp: Path) -> dict:
    """One pass over the video timing each stage on the same frames and faces."""
    spec = video.SourceSpec(str(path), "video", path.name)
    info = video.probe(spec)
    detector = load_detector("yunet")
    tracker = Tracker()
    voters: dict[int, votes.Voter] = {}
    sec = dict.fromkeys(STAGES, 0.0)
    writers = {}
    frames = faces = 0
    agree = True
    reader = video.FrameReader(spec, fps=args.fps, max_seconds=args.max_seconds)
    for (frame,) in video.batches(reader, 1, sec):  # adds the decode time to sec["decode"]
        frames += 1
        t = time.perf_counter()
        people = detector.people([frame.image])[0]
        sec["detect"] += time.perf_counter() - t
        t = time.perf_counter()
        found = head_crops(frame.image, people, margin=cfg.margin, min_size=cfg.min_size,
                                   min_sharpness=cfg.min_sharpness, dropped=Counter())
        x = detect_frames.model_inputs([c for _p, _hb, c, _s in found])
        sec["crop"] += time.perf_counter() - t
        faces += len(x)
        # Alternate which goes first, so neither gains from the other's warm caches.
        for way in (("batched", "per_crop") if frames % 2 else ("per_crop", "batched")):
            t = time.perf_counter()
            if way == "batched":
                probs, _emb = detect_frames.classify(infer, x)
                sec["classify"] += time.perf_counter() - t
            else:
                one = [infer(x[i:i + 1], batch_size=1)[0] for i in range(len(x))]
                sec["classify_per_crop"] += time.perf_counter() - t
        if one:
            agree &= bool(np.allclose(np.concatenate(one), probs, atol=1e-5))
        t = time.perf_counter()
        labels = votes.frame_labels(probs, classes, min_prob=0.75)
        ids, _ended = tracker.update(np.array([hb.box for _p, hb, _c, _s in found],
                                              dtype=float).reshape(-1, 4), frame.timestamp_s)
        drawn = []
        for i, tid in enumerate(ids.tolist()):
            state = voters.setdefault(tid, votes.Voter("debounce", 3)).add(labels[i])
            drawn.append((found[i][1], tid, state or votes.UNKNOWN, float(probs[i].max())))
        sec["track"] += time.perf_counter() - t
        for codec in ("vp09", "mp4v"):
            t = time.perf_counter()
            img = frame.image.copy()
            rendering.draw_boxes(img, drawn)
            if codec not in writers:
                writers[codec] = rendering.open_video(tmp / f"{path.stem}.{codec}.mp4", args.fps,
                                                   (img.shape[1], img.shape[0]), codec)[0]
            writers[codec].write(img)
            sec[f"video_{codec}"] += time.perf_counter() - t
    for codec, w in writers.items():
        t = time.perf_counter()
        w.release()
        sec[f"video_{codec}"] += time.perf_counter() - t
    return {"video": path.name, "size": f"{info.width}x{info.height}", "frames": frames,
            "faces": faces, "stage_s": {k: round(v, 3) for k, v in sec.items()},
            "fps": {k: round(frames / v, 2) if v > 0 else None for k, v in sec.items()},
            "batched_equals_per_crop": agree}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.detect", description=__doc__.split("\n")[0])
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=8.0)
    parser.add_argument("--videos", default="", help="comma-separated names (default: all)")
    args = parser.parse_args(argv)
    root = shared_root()
    videos = sorted((root / "videos").glob("*.mp4"))
    if args.videos:
        wanted = set(args.videos.split(","))
        videos = [v for v in videos if v.name in wanted]
    if not videos:
        raise SystemExit(f"no videos found in {root / 'videos'}")
    load0 = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        ws = Workspace.init(tmp / "ws")
        promote.import_keras(ws, promote.KerasImportOptions(path=root / "peer" / "OFMClassifier.h5"))
        model, _v = registry.load(ws)
        backend, infer = detect._classifier(model)
        warm = np.zeros((8, 45, 45, 3), np.uint8)
        for n in (1, 2, 4, 8, 1, 8):  # the first calls of a session allocate: not a stage's cost
            infer(warm[:n], batch_size=n)
        for path in videos:
            r = staged(path, infer, list(model.classes), ws.config.extract, args, tmp)
            t0 = time.perf_counter()
            rep = detect.run(ws, detect.DetectOptions(
                sources=[str(path)], detector="yunet", fps=args.fps, max_seconds=args.max_seconds,
                out=str(tmp / "runs" / path.stem)))
            r["job_fps"] = round(rep.frames / (time.perf_counter() - t0), 2)
            r["job_timings"] = rep.timings
            results.append(r)
        ws.dispose()
    load1 = os.getloadavg()

    head = f"{'video':<48} {'frames':>6} {'faces':>6} " + " ".join(f"{s:>10}" for s in (
        "decode", "detect", "crop", "classify", "per-crop", "track", "vp09", "mp4v", "job"))
    print(f"frames/s per stage (each stage alone), yunet, {args.fps} fps, first "
          f"{args.max_seconds:g} s; classify = one call per frame ({backend}), per-crop = one "
          "call per face")
    print(head)
    for r in results:
        f = r["fps"]
        cells = [f.get(k) for k in STAGES] + [r["job_fps"]]
        print(f"{r['video'][:48]:<48} {r['frames']:>6} {r['faces']:>6} " + " ".join(
            f"{'-' if v is None else v:>10}" for v in cells))
    tot = {k: sum(r["stage_s"][k] for r in results) for k in STAGES}
    frames = sum(r["frames"] for r in results)
    faces = sum(r["faces"] for r in results)
    overall = {k: round(frames / v, 2) if v > 0 else None for k, v in tot.items()}
    speedup = round(tot["classify_per_crop"] / tot["classify"], 2) if tot["classify"] > 0 else None
    print(f"{'all':<48} {frames:>6} {faces:>6} " + " ".join(
        f"{'-' if overall[k] is None else overall[k]:>10}" for k in STAGES))
    print(f"batched classification vs crop by crop: {speedup}x ({faces / max(tot['classify'], 1e-9):.0f} "
          f"vs {faces / max(tot['classify_per_crop'], 1e-9):.0f} faces/s); same probabilities: "
          f"{all(r['batched_equals_per_crop'] for r in results)}; load average "
          f"{load0[0]:.2f} -> {load1[0]:.2f} on {os.cpu_count()} cores")
    print(json.dumps({
        "bench": "detect", "detector": "yunet", "fps": args.fps, "max_seconds": args.max_seconds,
        "backend": backend, "frames": frames, "faces": faces, "frames_per_s": overall,
        "faces_per_s": {"classify_batched": round(faces / max(tot["classify"], 1e-9), 1),
                        "classify_per_crop": round(faces / max(tot["classify_per_crop"], 1e-9), 1)},
        "batched_speedup": speedup,
        "job_frames_per_s": {r["video"]: r["job_fps"] for r in results},
        "per_video": results, "load_avg": [round(load0[0], 2), round(load1[0], 2)],
        "cores": os.cpu_count(), "python": platform.python_version()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
