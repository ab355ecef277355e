"""Export speed and size per format, per 10,000 labeled crops.

Builds a workspace of ``--crops`` crops (distinct 48x48 PNGs, a real video on disk whose 200
frames they point into, an active model with a prediction for each), labels them all, freezes a
dataset split, then runs ``pipelines.export.run`` once per format. The baseline, in the same run,
is a plain copy of the crop files (what any export must at least do). ``coco``/``yolo`` write
frames, not crops: their figures are per 10,000 labeled crops all the same (here 50 per frame).

    python -m bench.export [--crops 10000] [--formats hf,coco,...]

Prints a table, then one JSON line.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

from annotator.data import crop_queue, export_reads, reports
from annotator.service import auth  # noqa: E402
from pipelines import build_dataset, export  # noqa: E402
from tests.app import factory  # noqa: E402


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(
        p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=10_000)
    ap.add_argument("--formats", default=",".join(export.FORMATS))
    args = ap.parse_args(argv)
    per = 10_000 / args.crops
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ws = factory.build(tmp / "ws", args.crops, images=args.crops, footage=True, per_track=4)
        with ws.session() as s:
            uid = auth.system_user(s, "bench").id
            ids = export_reads.crop_ids_with_status(s, ["unlabeled"])
            crop_queue.import_labels(s, uid, {c: ("mask", "no_mask")[c % 2] for c in ids})
        build_dataset.run(ws, build_dataset.BuildOptions(val_fraction=0.2))
        setup_s = time.perf_counter() - t0
        t = time.perf_counter()
        with ws.read_session() as s:
            paths = list(reports.crop_images(s).values())
        (tmp / "copy").mkdir()
        for p in paths:
            shutil.copyfile(ws.store.path(p), tmp / "copy" / Path(p).name)
        rows["baseline_copy"] = (time.perf_counter() - t, _size(tmp / "copy"), len(paths))
        for fmt in args.formats.split(","):
            out = tmp / f"out_{fmt}" / ("labels.csv" if fmt == "csv" else "")
            t = time.perf_counter()
            rep = export.run(ws, export.ExportOptions(out=out, format=fmt))
            rows[fmt] = (time.perf_counter() - t, rep.bytes, rep.crops)
        ws.dispose()
    print(f"{'format':<14}{'s / 10k crops':>15}{'MB / 10k crops':>16}")
    for k, (sec, size, _) in rows.items():
        print(f"{k:<14}{sec * per:>15.2f}{size / 1e6 * per:>16.1f}")
    result = {"bench": "export", "crops": args.crops, "setup_s": round(setup_s, 1),
              "machine": platform.node(),
              "seconds_per_10k": {k: round(v[0] * per, 2) for k, v in rows.items()},
              "mb_per_10k": {k: round(v[1] / 1e6 * per, 2) for k, v in rows.items()},
              "baseline": "baseline_copy"}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
