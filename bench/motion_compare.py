"""Benchmark: the five shared videos with motion gating off against on (YuNet, 2 fps).

Gating must not change what a team gets from ordinary footage. For each video the real extract
job runs twice into fresh workspaces, ``--motion off`` then ``--motion on``, and the bench prints
per video: frames skipped by the gate, tracks and crops kept by each run, and the tracks found
by one run only (no crop of the other run within 1 s overlapping it: the matching of
``bench/extract.py --camera-day``) with each one's best detector score. Its figures are the
differences the issue asks a note to list; ``identical`` says whether the crop boxes match
exactly. ~3 minutes on 2 cores.

    python -m bench.motion_compare [--videos a.mp4,b.mp4] [--fps 2]

Prints a table, then ONE JSON line of figures as the last line.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from annotator.service.workspace import Workspace
from bench.extract import _chosen, shared_videos, track_crops, tracks_only_in
from pipelines import extract


def run_one(root: Path, video: Path, motion: str, fps: float) -> tuple[object, list]:
    """One extract run of ``video`` with gating ``motion``: its report and its tracks' crops."""
    ws = Workspace.init(root)
    try:
        rep = extract.run(ws, extract.ExtractOptions(sources=[str(video)], detector="yunet",
                                                     fps=fps, workers=1, motion=motion))
        return rep, track_crops(ws)
    finally:
        ws.dispose()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", default="", help="comma-separated names of shared videos")
    ap.add_argument("--fps", type=float, default=2.0)
    args = ap.parse_args(argv)
    videos = _chosen(shared_videos(), args.videos)
    if not videos:
        print("no shared video to run: none in ../shared/data/videos, or none of --videos is there")
        return 2
    figures = {"bench": "motion_compare", "fps": args.fps, "videos": {}}
    header = (f"{'video':<44}{'skipped':>8}{'tracks off/on':>14}{'crops off/on':>13}"
              f"{'only off':>9}{'only on':>8}  identical")
    print(header + "\n" + "-" * len(header))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for v in videos:
            runs = {m: run_one(Path(tmp) / f"{v.stem}-{m}", v, m, args.fps) for m in ("off", "on")}
            (off, t_off), (on, t_on) = runs["off"], runs["on"]
            only_off, only_on = tracks_only_in(t_off, t_on), tracks_only_in(t_on, t_off)
            boxes = {m: sorted(c[:5] for cs in t for c in cs)
                     for m, t in (("off", t_off), ("on", t_on))}
            same = boxes["off"] == boxes["on"]
            f = figures["videos"][v.name] = {
                "frames": on.frames, "frames_skipped": on.frames_skipped,
                "tracks_off": off.tracks, "tracks_on": on.tracks,
                "crops_off": off.crops_kept, "crops_on": on.crops_kept,
                "only_off_best_scores": sorted(round(max(c[5] for c in cs), 2) for cs in only_off),
                "only_on_best_scores": sorted(round(max(c[5] for c in cs), 2) for cs in only_on),
                "identical": same}
            print(f"{v.name[:43]:<44}{f['frames_skipped']:>8}"
                  f"{f['tracks_off']:>7}/{f['tracks_on']:<6}{f['crops_off']:>6}/{f['crops_on']:<6}"
                  f"{len(only_off):>9}{len(only_on):>8}  {'yes' if same else 'no'}", flush=True)
    vs = figures["videos"].values()
    figures["identical_videos"] = sum(f["identical"] for f in vs)
    figures["only_off_tracks"] = sum(len(f["only_off_best_scores"]) for f in vs)
    figures["only_on_tracks"] = sum(len(f["only_on_best_scores"]) for f in vs)
    figures["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\n{figures['identical_videos']} of {len(figures['videos'])} videos give the same crops "
          f"with gating on; tracks found only with gating off: {figures['only_off_tracks']}, "
          f"only with it on: {figures['only_on_tracks']} (their best scores are in the JSON)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
