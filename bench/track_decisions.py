"""How many crops one human decision labels when annotators decide whole tracks.

Extracts the shared videos with the default detector at 2 fps (the product's defaults: tracked,
thinned to 3 crops per track), then counts, per video, the crops a Label-page session would
see and the decisions it takes: one key per crop (the baseline) against one Shift+key per track
strip (a strip shows up to ``labeling.STRIP_MAX`` mates, so a longer track takes more than one).
Prints a table, then ONE JSON line.

    python -m bench.track_decisions [--fps 2] [--per-track 3] [--videos a.mp4,b.mp4]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from annotator.service.crop_cards import STRIP_MAX
from annotator.service.workspace import Workspace
from pipelines import extract


def shared_videos() -> list[Path]:
    root = Path(os.environ.get("ANNOTATOR_SHARED_DATA")
                or Path(__file__).resolve().parents[1].parent / "shared" / "data")
    return sorted((root / "videos").glob("*.mp4"))


def decisions_for(track_sizes: list[int]) -> int:
    """One decision per strip: a track of n crops is the shown crop plus n - 1 mates, and a
    strip holds at most STRIP_MAX mates."""
    return sum(math.ceil(n / (STRIP_MAX + 1)) for n in track_sizes)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--per-track", type=int, default=3)
    ap.add_argument("--videos", default="", help="comma-separated file names (default: all)")
    args = ap.parse_args()
    videos = [v for v in shared_videos() if not args.videos or v.name in args.videos.split(",")]
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-tracks-") as tmp:
        for v in videos:
            ws = Workspace.init(Path(tmp) / v.stem)
            rep = extract.run(ws, extract.ExtractOptions(sources=[str(v)], fps=args.fps,
                                                         per_track=args.per_track))
            con = sqlite3.connect(ws.root / "annotator.data.db")
            sizes = [n for (n,) in con.execute(
                "select count(*) from crops group by source_id, track_id")]
            con.close()
            ws.dispose()
            crops = sum(sizes)
            rows.append({"video": v.name, "detector": rep.detector, "crops": crops,
                         "tracks": len(sizes), "decisions_one_key": crops,
                         "decisions_track_key": decisions_for(sizes),
                         "crops_per_decision": round(crops / max(decisions_for(sizes), 1), 2)})
    print(f"{'video':<48} {'crops':>6} {'tracks':>7} {'1 key/crop':>10} {'track key':>10} "
          f"{'crops/decision':>15}")
    for r in rows:
        print(f"{r['video']:<48} {r['crops']:>6} {r['tracks']:>7} {r['decisions_one_key']:>10} "
              f"{r['decisions_track_key']:>10} {r['crops_per_decision']:>15}")
    crops = sum(r["crops"] for r in rows)
    decisions = sum(r["decisions_track_key"] for r in rows)
    print(f"{'all':<48} {crops:>6} {sum(r['tracks'] for r in rows):>7} {crops:>10} "
          f"{decisions:>10} {crops / max(decisions, 1):>15.2f}")
    print("a track decision labels the shown crop and every open mate in its strip; the upper "
          "bound assumes every track holds one person with one label (check the strip first)")
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    print(json.dumps({"bench": "track_decisions", "fps": args.fps, "per_track": args.per_track,
                      "load_1min": load, "seconds": round(time.perf_counter() - t0, 1),
                      "crops": crops, "decisions_one_key": crops, "decisions_track_key": decisions,
                      "crops_per_decision": round(crops / max(decisions, 1), 2), "videos": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
