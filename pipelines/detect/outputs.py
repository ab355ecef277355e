"""A detect run's folder, both ways: writing it (a hidden folder beside ``out``, moved into place
whole at the end, so a failed or cancelled run leaves no half-written folder; ``--force``
replaces only detect's own files) and reading it back (the Footage page, ``queue_hard``).

Files: ``<source>.mp4`` / ``.jpg``, ``detections.csv``, ``tracks.csv``, ``summary.csv``,
``hard_crops.csv`` with ``hard/NNNNNN.png`` and ``hard_crops.npz``, ``report.json``
(see ``pipelines.detect``).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.core import votes
from annotator.core.errors import InputError
from annotator.core.footage import Candidate
from annotator.data import db
from annotator.media import video
from annotator.media.images import encode_png
from annotator.service import jobs
from annotator.service.workspace import Workspace
from pipelines.detect.options import RUNS_DIR, DetectReport, SourceDetect

OUTPUT_FILES = ("detections.csv", "tracks.csv", "summary.csv", "hard_crops.csv", "hard_crops.npz",
                "report.json")


def output_folder(ws: Workspace, out: str | Path | None, *, force: bool,
                  sources: list[video.SourceSpec] = ()) -> Path:
    """The run's folder, checked: never the workspace's own files, never a non-empty folder
    unless ``force`` (which replaces only detect's files there)."""
    root = ws.root.resolve()
    runs = root / RUNS_DIR
    if out is None:
        stamp = db.utcnow().strftime("%Y%m%d-%H%M%S")
        path, n = runs / f"run-{stamp}", 1
        while path.exists():
            n += 1
            path = runs / f"run-{stamp}-{n}"
        return path
    path = Path(out).expanduser().resolve()
    if path == root or root.is_relative_to(path):
        raise InputError(f"--out {out} would hold the workspace {ws.root}; pick another folder")
    if path.is_relative_to(root) and (path == runs or not path.is_relative_to(runs)):
        raise InputError(f"--out {out} is inside the workspace; use a folder under "
                         f"{runs} or outside {ws.root}")
    if path.exists() and not path.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise InputError(f"--out {out} is not empty; pass --force to replace its detect files")
        for spec in sources:
            if spec.kind != "stream" and Path(spec.uri).resolve().is_relative_to(path):
                raise InputError(f"{spec.name} is inside --out {out}; pick another folder")
    return path


def unique_name(source_name: str, ext: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source_name).stem).strip("._") or "source"
    name, n = f"{stem}{ext}", 1
    while name in used or name in OUTPUT_FILES:
        n += 1
        name = f"{stem}-{n}{ext}"
    used.add(name)
    return name


@dataclass
class HardCrop:
    """A crop of an uncertain track, as ``hard_crops.csv`` and ``.npz`` hold it (in memory while
    the run writes it, so ``--to-queue`` never reads back what it just wrote)."""

    source_key: str | None
    track: int  # the run's own track id (the queue numbers it after the source's tracks)
    origin: str
    frame_index: int
    time_s: float
    box: tuple[float, float, float, float]
    width: int
    height: int
    det_score: float
    sharpness: float
    keypoints: list | None
    file: str  # relative to the run folder
    probs: np.ndarray
    emb: np.ndarray
    png: bytes | None = None  # the file's bytes, when at hand


class Tables:
    """The CSV files, written row by row (a long stream is never held in memory); the hard
    crops also stay in ``hard`` (their PNG bytes too with ``keep_png``)."""

    def __init__(self, folder: Path, classes: list[str], *, keep_png: bool = False):
        self.folder, self.classes, self.keep_png = folder, classes, keep_png
        p = [f"p_{c}" for c in classes]
        self._files, self._w = [], {}
        for name, header in (
            ("detections", ["source", "frame", "time_s", "track", "x1", "y1", "x2", "y2",
                            "det_score", "label", "prob", *p, "voted"]),
            ("tracks", ["source", "track", "first_s", "last_s", "frames", "voted",
                        *[f"mean_{x}" for x in p], "unknown_frames", "changes_per_frame",
                        "changes_voted", "flicker_per_frame", "flicker_voted", "hard",
                        "hard_crops"]),
            ("summary", ["source", "minute", "start_s", "faces", *classes, votes.UNKNOWN, "tracks"]),
            ("hard_crops", HARD_HEADER + p),
        ):
            fh = open(folder / f"{name}.csv", "w", newline="")
            self._files.append(fh)
            self._w[name] = csv.writer(fh)
            self._w[name].writerow(header)
        self.hard: list[HardCrop] = []

    def detection(self, source, frame, tid, hb, det_score, label, probs, voted):
        self._w["detections"].writerow([
            source, frame.index, f"{frame.timestamp_s:.3f}", tid, hb.x1, hb.y1, hb.x2, hb.y2,
            f"{det_score:.4f}", label, f"{probs.max():.4f}", *[f"{v:.4f}" for v in probs], voted])

    def track(self, source, tr, shown, mean, span, rate, reason, kept):
        voted_rate = votes.flicker_rate([tr.voted_changes], [span])
        self._w["tracks"].writerow([
            source, tr.id, f"{tr.first_t:.3f}", f"{tr.last_t:.3f}", tr.frames, shown,
            *[f"{v:.4f}" for v in mean], tr.unknown, tr.frame_changes, tr.voted_changes,
            f"{rate:.4f}", f"{voted_rate:.4f}", reason or "", kept])

    def minute(self, source, minute, counts: Counter, n_tracks: int):
        self._w["summary"].writerow([source, minute, minute * 60, counts["faces"],
                                     *[counts[c] for c in self.classes], counts[votes.UNKNOWN],
                                     n_tracks])

    def hard_crop(self, spec, res: SourceDetect, tid: int, c: Candidate, reason: str) -> None:
        """A kept crop of an uncertain track; ``c.data`` is its ``(probs, emb)``."""
        probs, emb = c.data
        (self.folder / "hard").mkdir(exist_ok=True)
        rel = f"hard/{len(self.hard):06d}.png"
        png = encode_png(c.image)  # lossless: the crop extract would store
        (self.folder / rel).write_bytes(png)
        x1, y1, x2, y2 = c.box
        self._w["hard_crops"].writerow([
            spec.name, spec.shown_uri, spec.kind, res.key, tid, c.frame_index, c.time_s,
            x1, y1, x2, y2, c.width, c.height, c.det_score, c.sharpness, c.origin, rel, reason,
            json.dumps(c.keypoints) if c.keypoints is not None else "",
            *[f"{v:.6f}" for v in probs]])
        self.hard.append(HardCrop(
            source_key=res.key, track=tid, origin=c.origin, frame_index=c.frame_index,
            time_s=c.time_s, box=tuple(float(v) for v in c.box), width=c.width,
            height=c.height, det_score=c.det_score, sharpness=c.sharpness,
            keypoints=c.keypoints, file=rel, probs=probs, emb=emb,
            png=png if self.keep_png else None))

    def close(self):
        for fh in self._files:
            fh.close()
        k = len(self.classes)
        emb = np.stack([h.emb for h in self.hard]) if self.hard else np.zeros((0, 0), np.float32)
        np.savez(self.folder / "hard_crops.npz",
                 probs=np.array([h.probs for h in self.hard], np.float32).reshape(-1, k), emb=emb)


HARD_HEADER = ["source", "source_uri", "source_kind", "source_key", "track", "frame", "time_s",
               "x1", "y1", "x2", "y2", "width", "height", "det_score", "sharpness", "origin",
               "file", "reason", "keypoints"]


def write_json(path: Path, report: DetectReport) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(dataclasses.asdict(report), indent=1, default=str))
    os.replace(tmp, path)


def move_into_place(tmp: Path, out: Path) -> None:
    """A new folder appears whole; an existing one (``--force``) loses only the files of the run
    written there before and gets this run's. Everything is checked before anything moves: a
    ``hard/`` that is not detect's, or a symlink in the way, is refused with the folder as it was."""
    (tmp / OWNER).unlink(missing_ok=True)
    if not out.exists():
        os.replace(tmp, out)
        return
    old = _previous_files(out)
    for item in tmp.iterdir():
        target = out / item.name
        if (target.exists() or target.is_symlink()) and item.name not in old:
            raise InputError(f"--out {out}: {item.name} is there and is not a file of an earlier "
                             "detect run; move it or pick another folder")
    for name in old:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)  # a symlink goes, never what it points to
    for item in tmp.iterdir():
        os.replace(item, out / item.name)
    tmp.rmdir()


_HARD_FILE = re.compile(r"\d{6}\.png")
_VIDEO_FILE = re.compile(r"[A-Za-z0-9._-]+\.(mp4|jpg)")


def _previous_files(out: Path) -> list[str]:
    """Names in ``out`` that an earlier detect run wrote: its fixed files, a ``hard/`` holding
    only its crop files, and the videos its report names (detect's own naming only: a planted
    report.json cannot name ``../x`` or ``config.toml``)."""
    names = [n for n in OUTPUT_FILES if (out / n).is_file() or (out / n).is_symlink()]
    try:
        old = json.loads((out / "report.json").read_text())
        names += [s["video"] for s in old.get("per_source", []) if s.get("video")]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    names = [n for n in dict.fromkeys(names) if isinstance(n, str)
             and (n in OUTPUT_FILES or _VIDEO_FILE.fullmatch(n))
             and ((out / n).is_file() or (out / n).is_symlink())]
    hard = out / "hard"
    if hard.is_symlink() or (hard.is_dir() and all(
            _HARD_FILE.fullmatch(p.name) and p.is_file() and not p.is_symlink()
            for p in hard.iterdir())):
        names.append("hard")
    return names


OWNER = ".owner"  # in a run's hidden temporary folder: the pid that writes it


def temp_folder(out: Path) -> Path:
    """A hidden folder beside ``out`` for the run's files, after removing those that killed
    runs on this host left (their owner pid is gone)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for old in out.parent.glob(".*.*"):
            try:  # only folders with our owner file, whose process is gone
                if old.is_symlink() or not (old / OWNER).is_file():
                    continue
                host, pid = (old / OWNER).read_text().split()
                if host == jobs.host() and not jobs.pid_alive(int(pid)):
                    shutil.rmtree(old, ignore_errors=True)
            except (OSError, ValueError):
                continue
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        (tmp / OWNER).write_text(f"{jobs.host()} {os.getpid()}")
    except OSError as exc:
        raise InputError(f"cannot write --out {out}: {exc.strerror or exc}") from None
    return tmp


# --- reading a finished run ------------------------------------------------------------------------


def read_report(out: str | Path) -> dict:
    """``report.json`` of a finished run; InputError when ``out`` is not one."""
    p = Path(out)
    try:
        return json.loads((p / "report.json").read_text())
    except (OSError, ValueError):
        raise InputError(f"{p}: not a finished detect run") from None


def read_hard(out: str | Path) -> tuple[dict, list[HardCrop]]:
    """A finished run's report and hard crops (their PNG bytes are read when needed)."""
    out = Path(out)
    try:
        report = json.loads((out / "report.json").read_text())
        with open(out / "hard_crops.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        arrays = np.load(out / "hard_crops.npz")
        probs, emb = arrays["probs"], arrays["emb"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{out}: not a finished detect run ({type(exc).__name__})") from None
    crops = [HardCrop(
        source_key=r["source_key"], track=int(r["track"]), origin=r["origin"],
        frame_index=int(r["frame"]), time_s=float(r["time_s"]),
        box=tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")), width=int(r["width"]),
        height=int(r["height"]), det_score=float(r["det_score"]),
        sharpness=float(r["sharpness"]),
        keypoints=json.loads(r["keypoints"]) if r["keypoints"] else None, file=r["file"],
        probs=probs[i], emb=emb[i]) for i, r in enumerate(rows)]
    return report, crops


def read_table(out: str | Path, name: str):
    """``tracks``, ``summary`` or ``detections`` of a run as a DataFrame."""
    import pandas as pd

    if name not in ("tracks", "summary", "detections"):
        raise ValueError(name)
    return pd.read_csv(Path(out) / f"{name}.csv")


def hard_crop_files(out: str | Path) -> dict[tuple[str, int], str]:
    """``(source, track) -> file`` of each uncertain track's most confident hard crop (highest
    ``det_score``), relative to ``out``; only detect's own names (``hard/NNNNNN.png``), so a
    planted ``hard_crops.csv`` cannot point outside the run. Empty when there is none."""
    best: dict[tuple[str, int], tuple[float, str]] = {}
    try:
        with open(Path(out) / "hard_crops.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                name = r.get("file") or ""
                if not (name.startswith("hard/") and _HARD_FILE.fullmatch(name[5:])):
                    continue
                key, score = (r["source"], int(r["track"])), float(r["det_score"])
                if key not in best or score > best[key][0]:
                    best[key] = (score, name)
    except (OSError, ValueError, KeyError, TypeError, csv.Error):
        return {}
    return {k: f for k, (_s, f) in best.items()}


def source_spec(s: dict) -> tuple[video.SourceSpec, video.VideoInfo]:
    """A source of ``report.json``'s ``per_source`` as the spec and info it was run with."""
    return (video.SourceSpec(s["uri"], s["kind"], s["name"]),
            video.VideoInfo(s.get("fps"), s.get("frame_count"), s.get("width") or 0,
                            s.get("height") or 0))
