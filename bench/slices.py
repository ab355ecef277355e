"""Cost of the slice attributes per 10,000 crops (target: under 10 s on 2 cores).

Crops: the shared faces (up to 128 px) plus face boxes cut from the shared scenes (mostly
small), cycled to ``--crops``. Measures, on one process:

* ``decode``: reading the crop files (the baseline: what storing a crop costs anyway),
* ``attributes``: ``annotator.core.slices.attributes`` on decoded crops (the added work),
* ``fill``: ``slice_store.fill`` end to end in a workspace (read rows, decode, compute, insert),

each scaled to 10,000 crops, in wall seconds and in CPU seconds of this process (on a shared,
loaded machine the CPU figure is the one that says what the work costs). Prints a table, then
ONE JSON line.

    python -m bench.slices [--crops 3000]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

import cv2
from sqlalchemy import delete

from annotator.core import slices
from annotator.data import crop_queue, slice_store
from annotator.data.db import CropAttributes, get_or_create_source
from annotator.service.workspace import Workspace


def shared_dir() -> Path:
    return Path(os.environ.get("ANNOTATOR_SHARED_DATA")
                or Path(__file__).resolve().parents[1].parent / "shared" / "data")


def sample_files(root: Path, tmp: Path, n: int) -> list[Path]:
    files = sorted((root / "faces").rglob("*.jpg"))[: n // 2]
    with open(root / "scenes" / "boxes.csv", newline="") as fh:
        boxes = list(csv.DictReader(fh))[: n - len(files)]
    for i, r in enumerate(boxes):
        img = cv2.imread(str(root / "scenes" / "images" / r["image"]))
        x1, y1, x2, y2 = (int(float(r[k])) for k in ("x1", "y1", "x2", "y2"))
        if img is not None and x2 - x1 >= 4 and y2 - y1 >= 4:
            out = tmp / f"scene_{i:05d}.png"
            cv2.imwrite(str(out), img[y1:y2, x1:x2])
            files.append(out)
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=3000)
    args = ap.parse_args()
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = sample_files(shared_dir(), tmp, args.crops)
        n = len(files)
        t, c = time.perf_counter(), time.process_time()
        crops = [cv2.imread(str(f)) for f in files]
        decode, decode_cpu = time.perf_counter() - t, time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        attrs = [slices.attributes(c) for c in crops]
        compute, compute_cpu = time.perf_counter() - t, time.process_time() - c

        ws = Workspace.init(tmp / "ws")
        stored = [ws.store.put_bytes(f.read_bytes(), f.suffix) for f in files]
        with ws.session() as s:
            src = get_or_create_source(s, key="bench", kind="folder", uri=str(tmp), name="bench")
            ids = crop_queue.add_crops(s, src.id, [
                crop_queue.NewCrop(origin=f"c{i}", sha256=st.sha256, path=st.relpath,
                              width=c.shape[1], height=c.shape[0])
                for i, (st, c) in enumerate(zip(stored, crops))])
        with ws.session() as s:  # add_crops stores no attributes; start from none anyway
            s.execute(delete(CropAttributes))
        t, c = time.perf_counter(), time.process_time()
        written, bad = slice_store.fill(ws, ids)
        fill, fill_cpu = time.perf_counter() - t, time.process_time() - c
        ws.dispose()
    per10k = lambda s: round(s * 10_000 / n, 2)  # noqa: E731
    bands = slices.bands(attrs)
    print(f"{n} crops ({sum(1 for f in files if f.suffix == '.jpg')} faces, the rest scene boxes)")
    print(f"{'step':<12} {'wall s':>8} {'per 10k':>8} {'CPU s':>8} {'per 10k':>8}")
    for name, sec, cpu in (("decode", decode, decode_cpu), ("attributes", compute, compute_cpu),
                           ("fill", fill, fill_cpu)):
        print(f"{name:<12} {sec:>8.2f} {per10k(sec):>8.2f} {cpu:>8.2f} {per10k(cpu):>8.2f}")
    print("face bands: " + ", ".join(f"{b} {int((bands['face'] == b).sum())}"
                                     for b in sorted(set(bands["face"]))))
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    print(json.dumps({"bench": "slices", "crops": n, "load_1min": load,
                      "decode_s_per_10k": per10k(decode),
                      "attributes_s_per_10k": per10k(compute),
                      "fill_s_per_10k": per10k(fill), "decode_cpu_s_per_10k": per10k(decode_cpu),
                      "attributes_cpu_s_per_10k": per10k(compute_cpu),
                      "fill_cpu_s_per_10k": per10k(fill_cpu), "fill_rows": written,
                      "unreadable": bad, "target_s_per_10k": 10.0,
                      "met_wall": per10k(fill) < 10.0, "met_cpu": per10k(fill_cpu) < 10.0,
                      "seconds": round(time.perf_counter() - t_all, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
