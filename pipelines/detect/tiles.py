"""The Footage page's track tiles: per track a small picture of the person and the second of the
annotated video it starts at.

The picture is the track's most confident head (highest detector score): the run's own hard crop
when the track has one (``hard/``), else cut from the source frame with the box in
``detections.csv``. Only the tracks of the page shown are cut (``PER_PAGE``), and what was cut
is cached per run folder (keyed by its ``report.json``'s mtime, so a ``--force`` rerun into the
same folder is read afresh). A run made with ``--blur-faces`` gets blurred pictures, as its video.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.media import video
from annotator.media.images import MAX_PIXELS, encode_png, read_bgr
from pipelines.detect.outputs import hard_crop_files, read_table

PER_PAGE = 24  # tracks cut per page
THUMB = 96  # the picture's long edge, pixels
MARGIN = 0.15  # around a head box cut from the frame, per side, as a share of its size


@dataclass(frozen=True)
class Tile:
    track: int
    first_s: float
    last_s: float
    voted: str
    start_s: int  # where the annotated video starts to show this track
    png: bytes | None  # None: no picture (a stream, a source no longer on this server)


def video_start(first_s: float) -> int:
    """The second of the annotated video at which a track first shows. The video holds the
    sampled frames at the sampling rate, so its clock is the source's to within one sampled
    frame; the floor (whole seconds, what a player seeks to) starts it just before the track."""
    return max(0, math.floor(float(first_s)))


def page_count(n_tracks: int, per_page: int = PER_PAGE) -> int:
    return max(1, math.ceil(n_tracks / per_page))


def best_detections(det) -> dict[tuple[str, int], tuple[int, tuple[float, float, float, float]]]:
    """``(source, track) -> (frame, head box)`` of each track's highest detector score (the first
    such frame on a tie), from a ``detections.csv`` DataFrame."""
    if det.empty:
        return {}
    det = det.sort_values(["det_score", "frame"], ascending=[False, True], kind="stable")
    best = det.drop_duplicates(["source", "track"])
    return {(str(r.source), int(r.track)): (int(r.frame), (float(r.x1), float(r.y1),
                                                           float(r.x2), float(r.y2)))
            for r in best.itertuples(index=False)}


def cut(image: np.ndarray, box, *, margin: float = MARGIN, size: int = THUMB) -> np.ndarray | None:
    """The box grown by ``margin`` per side, clipped to the image, scaled to ``size`` on its long
    edge (never up); None when nothing of it is inside the image."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    gx, gy = (x2 - x1) * margin, (y2 - y1) * margin
    l, t = max(0, int(x1 - gx)), max(0, int(y1 - gy))
    r, b = min(w, int(math.ceil(x2 + gx))), min(h, int(math.ceil(y2 + gy)))
    if r - l < 1 or b - t < 1:
        return None
    crop = image[t:b, l:r]
    return fit(crop, size)


def fit(image: np.ndarray, size: int = THUMB) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    scale = size / max(h, w)
    if scale >= 1:
        return np.ascontiguousarray(image)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def tiles(run_path: str | Path, report: dict, source: dict, tracks, *,
          max_pixels: int = MAX_PIXELS) -> list[Tile]:
    """The tiles of these rows of ``tracks.csv`` (one page, all of one source), in their order."""
    path = Path(run_path)
    ids = tuple(int(t) for t in tracks["track"])
    pictures = _pictures(str(path), _stamp(path), str(source.get("name")),
                         str(source.get("uri") or ""), str(source.get("kind") or ""),
                         bool(report.get("blur_faces")), ids, max_pixels)
    return [Tile(track=int(r.track), first_s=float(r.first_s), last_s=float(r.last_s),
                 voted=str(r.voted), start_s=video_start(r.first_s), png=pictures.get(int(r.track)))
            for r in tracks.itertuples(index=False)]


def _stamp(path: Path) -> int:
    try:
        return (path / "report.json").stat().st_mtime_ns
    except OSError:
        return 0


@functools.lru_cache(maxsize=32)  # a few pages of a few runs; keyed by the report's mtime
def _pictures(path: str, stamp: int, source: str, uri: str, kind: str, blur: bool,
              ids: tuple[int, ...], max_pixels: int) -> dict[int, bytes]:
    run = Path(path)
    out: dict[int, np.ndarray] = {}
    hard = hard_crop_files(run)
    for tid in ids:
        f = hard.get((source, tid))
        p = run / f if f else None
        if p is not None and p.is_file() and not p.is_symlink():
            img = read_bgr(p, max_pixels=max_pixels)
            if img is not None:
                out[tid] = fit(img)
    missing = [t for t in ids if t not in out]
    if missing and kind in ("video", "image"):
        best = _best(path, stamp)
        wanted: dict[int, list[tuple[int, tuple]]] = {}
        for tid in missing:
            if (source, tid) in best:
                frame, box = best[(source, tid)]
                wanted.setdefault(frame, []).append((tid, box))
        if wanted:
            for index, frame in video.read_frames(uri, kind=kind, indices=list(wanted),
                                                  max_pixels=max_pixels):
                for tid, box in wanted.get(index, []) if frame is not None else ():
                    img = cut(frame, box)
                    if img is not None:
                        out[tid] = img
    if blur:
        from annotator.media.blur import blur_boxes

        out = {t: blur_boxes(img, [(0, 0, img.shape[1], img.shape[0])], grow=0.0)
               for t, img in out.items()}
    return {t: encode_png(img) for t, img in out.items()}


@functools.lru_cache(maxsize=4)
def _best(path: str, stamp: int):
    try:
        det = read_table(path, "detections")
    except (OSError, ValueError):
        return {}
    need = {"source", "frame", "track", "x1", "y1", "x2", "y2", "det_score"}
    return best_detections(det) if need <= set(det.columns) else {}
