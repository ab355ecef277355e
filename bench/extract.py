"""Benchmark: extraction speed per stage and per detector on the shared videos.

For each detector (MTCNN at 2 fps over the first 8 s; OpenPifPaf at 0.5 fps over the first 4 s,
with from-scratch weights: the same compute as the pretrained checkpoint, which cannot be
downloaded here) and each video, runs the real extract job
into a fresh workspace and reports frames/s and milliseconds per frame for each stage: decode,
detect, crop+store (head boxes, sharpness, tracking, PNG files), DB (commits). The baseline,
measured in the same run, is what the queue would receive without tracking and thinning: every
usable head detection, against the crops kept.

Prints a table, then one JSON line with the figures. Default run: ~2-3 minutes on 2 CPU cores.

    python bench/extract.py [--fps 2] [--max-seconds 8] [--long-edge 641] [--videos a.mp4,b.mp4]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from annotator.workspace import Workspace
from pipelines import extract

STAGES = ("decode", "detect", "crop_store", "db")


def shared_videos() -> list[Path]:
    root = Path(os.environ.get("ANNOTATOR_SHARED_DATA") or REPO.parent / "shared" / "data")
    return sorted((root / "videos").glob("*.mp4"))


def bench_one(detector: str, video: Path, args, tmp: Path) -> dict:
    ws = Workspace.init(tmp / f"{detector}-{video.stem}")
    pifpaf = detector == "openpifpaf"
    opts = extract.ExtractOptions(
        [str(video)], detector=detector, fps=args.openpifpaf_fps if pifpaf else args.fps,
        max_seconds=args.openpifpaf_seconds if pifpaf else args.max_seconds,
        checkpoint="scratch:shufflenetv2k16" if detector == "openpifpaf" else None,
        long_edge=args.long_edge if detector == "openpifpaf" else None, workers=1,
        batch_size=1,
    )
    t0 = time.perf_counter()
    rep = extract.run(ws, opts)
    wall = time.perf_counter() - t0
    ws.dispose()
    usable = rep.crops_kept + rep.dropped.get("near_duplicate", 0)
    stage = {k: rep.timings.get(k, 0.0) for k in STAGES}
    return {"video": video.name, "frames": rep.frames, "wall_s": wall, "stage_s": stage,
            "load_s": wall - sum(stage.values()), "detections": rep.detections,
            "usable_heads": usable, "tracks": rep.tracks, "crops_kept": rep.crops_kept,
            "errors": rep.errors}


def summarise(rows: list[dict]) -> dict:
    frames = sum(r["frames"] for r in rows)
    stage = {k: sum(r["stage_s"][k] for r in rows) for k in STAGES}
    work = sum(stage.values())
    usable = sum(r["usable_heads"] for r in rows)
    kept = sum(r["crops_kept"] for r in rows)
    return {
        "frames": frames,
        "frames_per_s": round(frames / work, 3) if work else None,
        "ms_per_frame": {k: round(1000 * v / max(frames, 1), 1) for k, v in stage.items()},
        "detections": sum(r["detections"] for r in rows),
        "usable_heads_baseline": usable,  # what the queue gets with no tracking/thinning
        "tracks": sum(r["tracks"] for r in rows),
        "crops_kept": kept,
        "queue_reduction_x": round(usable / kept, 2) if kept else None,
        "setup_s_median": round(sorted(r["load_s"] for r in rows)[len(rows) // 2], 2),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fps", type=float, default=2.0, help="MTCNN: frames sampled per second of video")
    ap.add_argument("--max-seconds", type=float, default=8.0, help="MTCNN: seconds of each video")
    ap.add_argument("--openpifpaf-fps", type=float, default=0.5)
    ap.add_argument("--openpifpaf-seconds", type=float, default=4.0)
    ap.add_argument("--long-edge", type=int, default=641, help="OpenPifPaf input long edge")
    ap.add_argument("--detectors", default="mtcnn,openpifpaf")
    ap.add_argument("--videos", default="", help="comma-separated names (default: all shared videos)")
    args = ap.parse_args(argv)
    videos = shared_videos()
    if args.videos:
        videos = [v for v in videos if v.name in args.videos.split(",")]
    if not videos:
        print("no shared videos found (set ANNOTATOR_SHARED_DATA)", file=sys.stderr)
        return 1
    import torch

    figures = {"bench": "extract", "device": "cuda" if torch.cuda.is_available() else "cpu",
               "cpu_threads": torch.get_num_threads(), "machine": platform.machine(),
               "mtcnn_sampling": {"fps": args.fps, "max_seconds": args.max_seconds},
               "openpifpaf_sampling": {"fps": args.openpifpaf_fps, "max_seconds": args.openpifpaf_seconds,
                                       "long_edge": args.long_edge},
               "videos": [v.name for v in videos]}
    header = (f"{'detector':<20}{'video':<48}{'frames':>7}{'fr/s':>7}{'decode':>8}{'detect':>9}"
              f"{'crop+st':>9}{'db':>7}{'dets':>6}{'heads':>6}{'tracks':>7}{'kept':>6}")
    print(header + "\n" + "-" * len(header) + "   (stage columns: ms per frame)")
    with tempfile.TemporaryDirectory() as tmp:
        for det in args.detectors.split(","):
            rows = []
            for video in videos:
                r = bench_one(det, video, args, Path(tmp))
                rows.append(r)
                ms = {k: 1000 * v / max(r["frames"], 1) for k, v in r["stage_s"].items()}
                work = sum(r["stage_s"].values())
                label = det + (" (scratch)" if det == "openpifpaf" else "")
                print(f"{label:<20}{r['video']:<48}{r['frames']:>7}{r['frames'] / work if work else 0:>7.2f}"
                      f"{ms['decode']:>8.1f}{ms['detect']:>9.1f}{ms['crop_store']:>9.1f}{ms['db']:>7.1f}"
                      f"{r['detections']:>6}{r['usable_heads']:>6}{r['tracks']:>7}{r['crops_kept']:>6}",
                      flush=True)
                for e in r["errors"]:
                    print(f"   error: {e}", flush=True)
            key = "openpifpaf_scratch" if det == "openpifpaf" else det
            figures[key] = summarise(rows)
    print()
    for key in ("mtcnn", "openpifpaf_scratch"):
        if key in figures:
            f = figures[key]
            print(f"{key}: {f['frames_per_s']} frames/s; ms/frame {f['ms_per_frame']}; baseline "
                  f"{f['usable_heads_baseline']} heads without thinning -> {f['crops_kept']} crops kept "
                  f"({f['queue_reduction_x']}x fewer)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
