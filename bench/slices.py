"""Cost of the slice attributes per 10,000 crops (target: under 10 s on 2 cores).

Crops: the shared faces (up to 128 px) plus face boxes cut from the shared scenes (mostly
small), cycled to ``--crops``. Measures, on one process:

* ``decode``: reading the crop files (the baseline: what storing a crop costs anyway),
* ``attributes``: ``annotator.slices.attributes`` on decoded crops (the added work),
* ``fill``: ``slice_store.fill`` end to end in a workspace (read rows, decode, compute, insert),

each scaled to 10,000 crops. Prints a table, then ONE JSON line.

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

from annotator import queue, slice_store, slices
from annotator.db import CropAttributes, get_or_create_source
from annotator.workspace import Workspace


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
        t = time.perf_counter()
        crops = [cv2.imread(str(f)) for f in files]
        decode = time.perf_counter() - t
        t = time.perf_counter()
        attrs = [slices.attributes(c) for c in crops]
        compute = time.perf_counter() - t

        ws = Workspace.init(tmp / "ws")
        stored = [ws.store.put_bytes(f.read_bytes(), f.suffix) for f in files]
        with ws.session() as s:
            src = get_or_create_source(s, key="bench", kind="folder", uri=str(tmp), name="bench")
            ids = queue.add_crops(s, src.id, [
                queue.NewCrop(origin=f"c{i}", sha256=st.sha256, path=st.relpath,
                              width=c.shape[1], height=c.shape[0])
                for i, (st, c) in enumerate(zip(stored, crops))])
        with ws.session() as s:  # add_crops stores no attributes; start from none anyway
            s.execute(delete(CropAttributes))
        t = time.perf_counter()
        written, bad = slice_store.fill(ws, ids)
        fill = time.perf_counter() - t
        ws.dispose()
    per10k = lambda s: round(s * 10_000 / n, 2)  # noqa: E731
    bands = slices.bands(attrs)
    print(f"{n} crops ({sum(1 for f in files if f.suffix == '.jpg')} faces, the rest scene boxes)")
    print(f"{'step':<12} {'seconds':>8} {'per 10k crops':>14}")
    for name, sec in (("decode", decode), ("attributes", compute), ("fill", fill)):
        print(f"{name:<12} {sec:>8.2f} {per10k(sec):>14.2f}")
    print("face bands: " + ", ".join(f"{b} {int((bands['face'] == b).sum())}"
                                     for b in sorted(set(bands["face"]))))
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    print(json.dumps({"bench": "slices", "crops": n, "load_1min": load,
                      "decode_s_per_10k": per10k(decode),
                      "attributes_s_per_10k": per10k(compute),
                      "fill_s_per_10k": per10k(fill), "fill_rows": written, "unreadable": bad,
                      "target_s_per_10k": 10.0, "met": per10k(fill) < 10.0,
                      "seconds": round(time.perf_counter() - t_all, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
