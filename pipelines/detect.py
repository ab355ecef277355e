"""Job: a model on footage. Detect faces, classify each, track people, vote one label per track,
and write what a site can use; the uncertain tracks' crops can go back to the labeling queue.

Per sampled frame (``annotator.media.video``): detect (``annotator.media.detectors``), cut each head box as
extract does (:func:`pipelines.extract.head_crops`), classify all of the frame's heads in one
call (ONNX Runtime on a CPU, PyTorch on CUDA), follow heads with the project's tracker
(``annotator.core.track``) and update each track's vote (``annotator.core.votes``). Below ``min_score`` a
frame's label is ``unknown``.

Files in ``out`` (written in a hidden folder beside it and moved into place at the end, so a
failed or cancelled run leaves no half-written folder):

``<source>.mp4``     per video or stream: head box, track id and voted label, coloured by label
                     (``<source>.jpg`` for a still image)
``detections.csv``   one row per head per frame: source, frame, time, track, box, per-frame
                     label and probabilities, voted label at that frame
``tracks.csv``       one row per track: first / last time, frames, voted label, mean
                     probabilities, label changes per frame and voted, why it is uncertain
``summary.csv``      per source and minute of video: faces, one column per class, unknown, tracks
``hard_crops.csv``   the crops of uncertain tracks (thinned per track as extract does), with
``hard/``, ``hard_crops.npz``   their images and the model's probabilities and embeddings
``report.json``      the :class:`DetectReport`

:func:`queue_hard` adds a run's hard crops to the queue (``--to-queue`` and the Footage page's
button call it): same source row as extract (key: the file's sha256), same origins, so crops
already in the queue are not added twice and a second call adds nothing.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.core import votes
from annotator.data import crop_queue, db, model_versions, reports
from annotator.media import detectors, images, video
from annotator.service import jobs
from annotator.core.config import check_options
from annotator.core.errors import AnnotatorError, InputError
from annotator.core.progress import ProgressFn, silent
from annotator.core.sample import uncertainty
from annotator.core.track import Tracker, compact, crop_quality, thin
from annotator.core.urls import redact_text
from annotator.service.workspace import Workspace
from pipelines import extract

DETECTORS = ("auto", "yunet", "mtcnn", "openpifpaf")
# mp4v (MPEG-4 part 2): fast, plays in VLC / mpv / QuickTime but in no browser; vp09 (VP9 in
# MP4): plays in browsers (the Footage page asks for it) but encodes ~60x slower here.
CODECS = ("mp4v", "vp09")
RUNS_DIR = "detections"  # under the workspace: runs started from the app, and the default --out
# Crop.track_id of detect's tracks start here, above any extract track, so a track labeled as
# one person never mixes two; below labeling.GROUP_STRIDE so group ids stay per source.
TRACK_BASE = 5_000_000
OUTPUT_FILES = ("detections.csv", "tracks.csv", "summary.csv", "hard_crops.csv", "hard_crops.npz",
                "report.json")
COLOURS = {"mask": (60, 180, 60), "no_mask": (40, 40, 220), votes.UNKNOWN: (0, 190, 250)}  # BGR
OTHER_COLOURS = ((220, 130, 40), (200, 60, 200), (40, 200, 200))


@dataclass(kw_only=True)
class DetectOptions:
    """What to run on; ``None`` means the workspace's ``[extract]`` default."""

    sources: list[str]
    out: str | None = None  # None: <workspace>/detections/run-<UTC time>
    model: str | None = None  # a version; None: the active one
    detector: str = "auto"
    checkpoint: str | None = None
    fps: float | None = None
    every: int | None = None
    min_score: float = 0.75  # classifier: a lower top probability is "unknown"
    vote: str = "debounce:3"  # debounce:K or majority
    video: bool = True
    codec: str = "mp4v"
    max_seconds: float | None = None
    to_queue: bool = False
    force: bool = False  # replace the detect files of a non-empty --out
    per_track: int | None = None  # hard crops kept per uncertain track
    hard_flicker: float = 0.5  # per-frame label changes per second above which a track is hard
    hard_margin: float = 0.2  # mean probability within this of 0.5 (two classes): hard
    blur_faces: bool = False  # privacy: the annotated video shows every head blurred


@dataclass
class SourceDetect:
    """One source's figures."""

    name: str
    uri: str
    kind: str
    key: str | None = None
    sha256: str | None = None
    fps: float | None = None
    frame_count: int | None = None
    width: int | None = None
    height: int | None = None
    frames: int = 0
    detections: int = 0
    tracks: int = 0
    hard_tracks: int = 0
    hard_crops: int = 0
    by_label: dict[str, int] = field(default_factory=dict)
    per_frame_by_label: dict[str, int] = field(default_factory=dict)
    tracks_by_label: dict[str, int] = field(default_factory=dict)
    flicker: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # heads not classified, by reason
    video_seconds: float = 0.0
    video: str | None = None  # file name in out
    codec: str | None = None  # the video's codec (mp4v where no VP9 encoder is built in)
    error: str | None = None


@dataclass
class DetectReport:
    out: str
    model: str
    classes: list[str]
    detector: str
    detector_why: str
    vote: str
    min_score: float
    sources: int = 0
    frames: int = 0
    detections: int = 0
    tracks: int = 0
    by_label: dict[str, int] = field(default_factory=dict)  # detections by voted label
    per_frame_by_label: dict[str, int] = field(default_factory=dict)
    tracks_by_label: dict[str, int] = field(default_factory=dict)  # tracks by final vote
    flicker: dict[str, float] = field(default_factory=dict)  # changes per second of track
    hard_tracks: int = 0
    hard_crops: int = 0
    queued: int | None = None  # crops added to the queue (None: not asked)
    scored: int = 0  # queued crops the active model scored before the job ended
    codec: str | None = None
    backend: str = ""
    seconds: float = 0.0
    fps: float = 0.0  # sampled frames processed per second
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    errors: list[str] = field(default_factory=list)
    per_source: list[SourceDetect] = field(default_factory=list)


@dataclass
class QueueReport:
    added: int = 0
    known: int = 0  # crops whose origin the queue already had
    scored: int = 0  # predictions stored for the added crops (the run's model version)


@dataclass(frozen=True)
class Settings:
    detector: str
    detector_why: str
    checkpoint: str | None
    fps: float | None
    every: int | None
    max_seconds: float | None
    min_score: float
    method: str
    k: int
    video: bool
    codec: str
    min_size: float
    margin: float
    min_sharpness: float
    per_track: int
    hard_flicker: float
    hard_margin: float
    batch_size: int
    long_edge: int | None
    det_min_score: float | None
    blur_faces: bool = False


# --- options ------------------------------------------------------------------------------------


def resolve(ws: Workspace, opts: DetectOptions) -> Settings:
    """Options checked and completed from ``[extract]``; InputError names the bad one."""
    cfg = ws.config.extract
    check_options(fps=opts.fps, every=opts.every, min_score=opts.min_score,
                  max_seconds=opts.max_seconds, per_track=opts.per_track)
    if opts.detector not in DETECTORS:
        raise InputError(f"unknown detector {opts.detector!r}; expected one of {', '.join(DETECTORS)}")
    if opts.fps is not None and opts.every is not None:
        raise InputError("give either --fps or --every, not both")
    if opts.fps is not None and not opts.fps > 0:
        raise InputError(f"--fps must be > 0, got {opts.fps}")
    if opts.every is not None and opts.every < 1:
        raise InputError(f"--every must be >= 1, got {opts.every}")
    if opts.max_seconds is not None and not opts.max_seconds > 0:
        raise InputError(f"--max-seconds must be > 0, got {opts.max_seconds}")
    if not 0.0 <= float(opts.min_score) <= 1.0:
        raise InputError(f"--min-score must be between 0 and 1, got {opts.min_score}")
    try:
        method, k = votes.parse_vote(opts.vote)
    except ValueError as exc:
        raise InputError(f"--vote: {exc}") from None
    if opts.codec not in CODECS:
        raise InputError(f"unknown codec {opts.codec!r}; expected one of {', '.join(CODECS)}")
    per_track = cfg.per_track if opts.per_track is None else int(opts.per_track)
    if per_track < 1:
        raise InputError(f"--per-track must be >= 1, got {per_track}")
    if opts.hard_flicker < 0 or not 0.0 <= opts.hard_margin <= 0.5:
        raise InputError("need hard_flicker >= 0 and 0 <= hard_margin <= 0.5")
    name, why = detectors.choose(opts.detector, opts.checkpoint or cfg.checkpoint)
    return Settings(
        detector=name, detector_why=why, checkpoint=opts.checkpoint or cfg.checkpoint,
        fps=None if opts.every else (opts.fps if opts.fps is not None else cfg.fps),
        every=opts.every, max_seconds=opts.max_seconds, min_score=float(opts.min_score),
        method=method, k=k or votes.DEFAULT_K, video=bool(opts.video), codec=opts.codec,
        min_size=float(cfg.min_size), margin=float(cfg.margin),
        min_sharpness=float(cfg.min_sharpness), per_track=per_track,
        hard_flicker=float(opts.hard_flicker), hard_margin=float(opts.hard_margin),
        batch_size=int(cfg.frames_per_call), long_edge=cfg.long_edge or None,
        det_min_score=None if cfg.min_score < 0 else float(cfg.min_score),
        blur_faces=bool(opts.blur_faces))


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


def for_job(ws: Workspace, opts: DetectOptions, job_id: int) -> DetectOptions:
    """A run started from the app writes to ``<workspace>/detections/job-<id>``."""
    if opts.out is not None:
        return opts
    return dataclasses.replace(opts, out=str(ws.root / RUNS_DIR / f"job-{job_id}"))


# --- the job ------------------------------------------------------------------------------------


def run(ws: Workspace, opts: DetectOptions, progress: ProgressFn = silent) -> DetectReport:
    """Detect, classify, track and vote on every source; per-source errors are reported and the
    batch goes on. Writes the files of ``out`` (see the module docstring)."""
    from pipelines.common import registry

    t0 = time.perf_counter()
    st = resolve(ws, opts)
    specs, errors = video.expand_sources(list(opts.sources),
                                         max_pixels=ws.config.limits.max_image_pixels)
    errors = [redact_text(e) for e in errors]
    if not specs:
        raise InputError("; ".join(errors) or "no sources given")
    for spec in specs:
        if spec.kind == "stream" and st.max_seconds is None:
            raise InputError(f"{spec.name}: a stream needs --max-seconds (the files are written "
                             "when the run ends)")
    out = output_folder(ws, opts.out, force=opts.force, sources=specs)
    model, version = registry.load(ws, opts.model)
    classes = list(model.classes)
    if votes.UNKNOWN in classes:
        raise InputError(f"model {version.name} has a class named {votes.UNKNOWN!r}")
    backend, infer = _classifier(model)
    detector = _load_detector(st)
    report = DetectReport(out=str(out), model=version.name, classes=classes, detector=st.detector,
                          detector_why=st.detector_why, vote=f"{st.method}:{st.k}"
                          if st.method == "debounce" else st.method, min_score=st.min_score,
                          errors=list(errors), backend=backend,
                          codec=st.codec if st.video else None)
    tmp = _temp_folder(out)
    try:
        writer = _Tables(tmp, classes)
        names: set[str] = set()
        timings: Counter = Counter()
        for spec in specs:
            # A stream's URL is stored and reported without its secrets (urls.redact).
            res = SourceDetect(name=spec.name, uri=spec.shown_uri, kind=spec.kind)
            try:
                _SourceRun(spec, st, detector, infer, classes, writer, tmp, names, progress,
                           res, timings).run()
            except AnnotatorError as exc:
                res.error = str(exc)
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:  # an odd file: report it, the batch goes on
                res.error = f"{spec.name}: {type(exc).__name__}: {exc}"
            if res.error:
                res.error = redact_text(res.error)  # OpenCV may quote the full URL
                report.errors.append(res.error)
            report.per_source.append(res)
        writer.close()
        _totals(report, timings, t0)
        used = {r.codec for r in report.per_source if r.codec}
        if len(used) == 1:
            report.codec = used.pop()
        _write_json(tmp / "report.json", report)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if opts.to_queue:
        report.queued = queue_hard(ws, out).added
        if report.queued:  # ranked (and guessed) at once, not after the next promotion
            from pipelines.common.scoring import score_new
            report.scored = score_new(ws, progress)
        report.seconds = round(time.perf_counter() - t0, 2)
        _write_json(out / "report.json", report)
    return report


def _totals(report: DetectReport, timings: Counter, t0: float) -> None:
    ok = [r for r in report.per_source if r.error is None or r.frames]
    report.sources = len(ok)
    changes = {"per_frame": 0.0, "voted": 0.0}
    span = 0.0
    for r in report.per_source:
        for k in ("frames", "detections", "tracks", "hard_tracks", "hard_crops"):
            setattr(report, k, getattr(report, k) + getattr(r, k))
        for attr in ("by_label", "per_frame_by_label", "tracks_by_label"):
            total = getattr(report, attr)
            for k, v in getattr(r, attr).items():
                total[k] = total.get(k, 0) + v
        span += r.flicker.get("track_seconds", 0.0)
        for k in changes:
            changes[k] += r.flicker.get(f"{k}_changes", 0)
    report.flicker = {
        "per_frame": round(votes.flicker_rate([changes["per_frame"]], [span]), 4),
        "voted": round(votes.flicker_rate([changes["voted"]], [span]), 4),
        "track_seconds": round(span, 2), "per_frame_changes": int(changes["per_frame"]),
        "voted_changes": int(changes["voted"])}
    report.timings = {k: round(v, 3) for k, v in timings.items()}
    report.seconds = round(time.perf_counter() - t0, 2)
    report.fps = round(report.frames / max(report.seconds, 1e-9), 2)


# --- one source ---------------------------------------------------------------------------------


class _Track:
    """What a track has gathered so far (a few numbers, plus candidate crops)."""

    def __init__(self, tid: int, k: int, method: str, n_classes: int):
        self.id = tid
        self.voter = votes.Voter(method, k)
        self.first_t = self.last_t = None
        self.frames = 0
        self.unknown = 0
        self.prob_sum = np.zeros(n_classes)
        self.label = self.state = None
        self.frame_changes = self.voted_changes = 0
        self.cands: list[dict] = []

    def add(self, t: float, label: str, probs: np.ndarray) -> str | None:
        self.first_t = t if self.first_t is None else self.first_t
        self.last_t = t
        self.frames += 1
        self.unknown += label == votes.UNKNOWN
        self.prob_sum += probs
        if self.label is not None and label != self.label:
            self.frame_changes += 1
        self.label = label
        state = self.voter.add(label)
        if self.state is not None and state != self.state:
            self.voted_changes += 1
        self.state = state
        return state


class _SourceRun:
    def __init__(self, spec, st: Settings, detector, infer, classes, tables, tmp, names, progress,
                 res: SourceDetect, timings: Counter):
        self.spec, self.st, self.detector, self.infer = spec, st, detector, infer
        self.classes, self.tables, self.tmp, self.names = classes, tables, tmp, names
        self.progress, self.res, self.timings = progress, res, timings
        self.tracks: dict[int, _Track] = {}
        self.minutes: dict[int, Counter] = {}
        self.minute_tracks: dict[int, set] = {}
        self.dropped: Counter = Counter()
        self.by_label: Counter = Counter()
        self.per_frame: Counter = Counter()
        self.tracks_by_label: Counter = Counter()
        self.span = 0.0
        self.frame_changes = self.voted_changes = 0
        self.writer = None

    def run(self):
        spec, st, res = self.spec, self.st, self.res
        res.key, res.sha256 = extract.source_key(spec)
        info = video.probe(spec)
        res.fps, res.frame_count, res.width, res.height = (info.fps, info.frame_count, info.width,
                                                           info.height)
        reader = video.FrameReader(spec, fps=st.fps, every=st.every, max_seconds=st.max_seconds)
        expected = extract.expected_frames(info, st, 0)
        self.tracker = Tracker()
        t_start = time.perf_counter()
        try:
            def report(total):
                rate = res.frames / max(time.perf_counter() - t_start, 1e-9)
                self.progress(res.frames, total, f"{res.detections} faces, {len(self.tracks)} "
                              f"live tracks, {rate:.1f} frames/s", stage=spec.name)

            for batch in video.batches(reader, st.batch_size, self.timings):
                self._process(batch, info)
                report(expected)  # None for a stream: a bar without an end
            report(res.frames)  # the real count: the expected one is an estimate
        finally:  # after an error too: every detection row gets its track and minute rows
            for tid in self.tracker.finish():
                self._end_track(tid)
            self._finish()
            if self.writer is not None:
                self.timings["video"] += self.writer.close()
        if reader.problem:
            res.error = reader.problem

    def _process(self, frames, info):
        t = time.perf_counter()
        people_per_frame = self.detector.people([f.image for f in frames])
        self.timings["detect"] += time.perf_counter() - t
        for frame, people in zip(frames, people_per_frame):
            self._frame(frame, people, info)

    def _frame(self, frame, people, info):
        st, res = self.st, self.res
        res.frames += 1
        res.video_seconds = max(res.video_seconds, float(frame.timestamp_s))
        t = time.perf_counter()
        found = extract.head_crops(frame.image, people, margin=st.margin, min_size=st.min_size,
                                   min_sharpness=st.min_sharpness, dropped=self.dropped)
        res.detections += len(found)
        x = model_inputs([crop for _p, _hb, crop, _s in found])
        self.timings["crop"] += time.perf_counter() - t
        t = time.perf_counter()
        probs, emb = classify(self.infer, x)
        self.timings["classify"] += time.perf_counter() - t
        t = time.perf_counter()
        labels = votes.frame_labels(probs, self.classes, min_score=st.min_score)
        boxes = np.array([hb.box for _p, hb, _c, _s in found], dtype=float).reshape(-1, 4)
        ids, ended = self.tracker.update(boxes, frame.timestamp_s)
        for tid in ended:
            self._end_track(tid)
        drawn = []
        minute = int(frame.timestamp_s // 60)
        counts = self.minutes.setdefault(minute, Counter())
        seen = self.minute_tracks.setdefault(minute, set())
        for i, (tid, (person, hb, crop, sharp)) in enumerate(zip(ids.tolist(), found)):
            tr = self.tracks.get(tid)
            if tr is None:
                tr = self.tracks[tid] = _Track(tid, st.k, st.method, len(self.classes))
            state = tr.add(float(frame.timestamp_s), labels[i], probs[i])
            shown = state or votes.UNKNOWN
            self.by_label[shown] += 1
            self.per_frame[labels[i]] += 1
            counts["faces"] += 1
            counts[shown] += 1
            seen.add(tid)
            self.tables.detection(self.spec.name, frame, tid, hb, person.score, labels[i],
                                  probs[i], shown)
            drawn.append((hb, tid, shown, float(probs[i].max())))
            self._candidate(tr, frame, person, hb, crop, sharp, probs[i], emb[i])
        self.timings["track"] += time.perf_counter() - t
        if st.video:
            t = time.perf_counter()
            self._draw(frame, drawn, info)
            self.timings["video"] += time.perf_counter() - t

    # -- hard crops: kept per track until it ends, thinned like extract --
    def _candidate(self, tr: _Track, frame, person, hb, crop, sharp, probs, emb):
        kps = None
        if person.keypoints is not None:
            kps = np.round(np.asarray(person.keypoints, dtype=float), 2).tolist()
        tr.cands.append({
            "image": crop.copy(), "origin": extract.crop_origin(frame.index, hb),
            "frame": frame.index, "time_s": round(float(frame.timestamp_s), 4),
            "box": hb.box, "width": hb.width, "height": hb.height,
            "det_score": round(float(person.score), 4), "sharpness": round(float(sharp), 3),
            "keypoints": kps, "probs": probs.astype(np.float32), "emb": emb.astype(np.float32),
            "quality": float(crop_quality([hb.width], [sharp], [person.score])[0])})
        cap = extract.PENDING_CAP * self.st.per_track
        if len(tr.cands) > cap:  # bounds memory on long tracks, keeping spread and quality
            keep = compact([c["time_s"] for c in tr.cands], [c["quality"] for c in tr.cands], cap)
            tr.cands = [tr.cands[i] for i in keep.tolist()]

    def _end_track(self, tid: int):
        tr = self.tracks.pop(tid, None)
        if tr is None:
            return
        st = self.st
        span = max(0.0, tr.last_t - tr.first_t)
        rate = votes.flicker_rate([tr.frame_changes], [span])
        mean = tr.prob_sum / max(tr.frames, 1)
        reason = votes.uncertain(mean[None, :], tr.state, rate, max_flicker=st.hard_flicker,
                                 margin=st.hard_margin)
        shown = tr.state or votes.UNKNOWN
        self.res.tracks += 1
        self.tracks_by_label[shown] += 1
        self.span += span
        self.frame_changes += tr.frame_changes
        self.voted_changes += tr.voted_changes
        kept = 0
        if reason and tr.cands:
            keep = thin(np.array([c["time_s"] for c in tr.cands]),
                        np.array([c["quality"] for c in tr.cands]), st.per_track).tolist()
            for i in keep:
                self.tables.hard_crop(self.spec, self.res, tid, tr.cands[i], reason)
            kept = len(keep)
            self.res.hard_tracks += 1
            self.res.hard_crops += kept
        self.tables.track(self.spec.name, tr, shown, mean, span, rate, reason, kept)
        tr.cands = []

    def _finish(self):
        res = self.res
        res.by_label = self._ordered(self.by_label)
        res.per_frame_by_label = self._ordered(self.per_frame)
        res.tracks_by_label = self._ordered(self.tracks_by_label)
        fc, vc = self.frame_changes, self.voted_changes
        res.flicker = {"per_frame": round(votes.flicker_rate([fc], [self.span]), 4),
                       "voted": round(votes.flicker_rate([vc], [self.span]), 4),
                       "track_seconds": round(self.span, 2), "per_frame_changes": fc,
                       "voted_changes": vc}
        res.video_seconds = round(res.video_seconds, 2)
        res.dropped = dict(self.dropped)
        for minute in sorted(self.minutes):
            self.tables.minute(self.spec.name, minute, self.minutes[minute],
                               len(self.minute_tracks[minute]))

    def _ordered(self, counts: Counter) -> dict[str, int]:
        return {k: int(counts.get(k, 0)) for k in [*self.classes, votes.UNKNOWN]}

    # -- the annotated video --
    def _draw(self, frame, drawn, info):
        img = frame.image.copy()
        if self.st.blur_faces:  # privacy: the heads the run found, blurred before the boxes
            from annotator.media.blur import blur_boxes

            img = blur_boxes(img, [(hb.x1, hb.y1, hb.x2, hb.y2) for hb, *_ in drawn], grow=0.0)
        draw_boxes(img, drawn)
        if self.spec.kind == "image":
            name = _unique_name(self.spec.name, ".jpg", self.names)
            import cv2

            cv2.imwrite(str(self.tmp / name), img)
            self.res.video = name
            return
        if self.writer is None:
            name = _unique_name(self.spec.name, ".mp4", self.names)
            self.writer = VideoOut(self.tmp / name, _output_fps(info, self.st),
                                   (img.shape[1], img.shape[0]), self.st.codec)
            self.res.video, self.res.codec = name, self.writer.codec
        self.writer.write(img)


# --- pieces (bench/detect.py times them one by one) ----------------------------------------------


def model_inputs(crops) -> np.ndarray:
    """BGR head crops -> the classifier's input, uint8 RGB ``(N, 45, 45, 3)``."""
    if not len(crops):
        return np.zeros((0, images.MODEL_SIZE, images.MODEL_SIZE, 3), np.uint8)
    return np.stack([images.to_model_input(c) for c in crops])


def classify(infer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One call for all of a frame's heads: ``(probs (N, K), emb (N, D))``."""
    return infer(x, batch_size=max(len(x), 1))


def _classifier(model):
    """ONNX Runtime on a CPU, PyTorch on CUDA: the same choice as the score job."""
    from pipelines.common.scoring import inference_backend

    return inference_backend(model, "auto")


def _load_detector(st: Settings):
    from annotator.media.detectors import load_detector

    return load_detector(st.detector, checkpoint=st.checkpoint, long_edge=st.long_edge,
                         batch_size=st.batch_size, min_face_size=max(12, int(st.min_size / 1.25)),
                         min_score=st.det_min_score)


def colour(label: str) -> tuple[int, int, int]:
    """BGR colour of a label (mask green, no_mask red, unknown amber, others a fixed palette)."""
    if label in COLOURS:
        return COLOURS[label]
    return OTHER_COLOURS[sum(map(ord, label)) % len(OTHER_COLOURS)]


def draw_boxes(img: np.ndarray, drawn) -> None:
    """Box, track id, voted label and the frame's top probability, in place."""
    import cv2

    scale = max(0.4, min(img.shape[:2]) / 900)
    thick = max(1, round(2 * scale))
    for hb, tid, label, p in drawn:
        c = colour(label)
        cv2.rectangle(img, (hb.x1, hb.y1), (hb.x2 - 1, hb.y2 - 1), c, thick)
        text = f"#{tid} {label} {p:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        y = hb.y1 - 4 if hb.y1 - th - base - 4 >= 0 else hb.y2 + th + 4
        cv2.rectangle(img, (hb.x1, y - th - base), (hb.x1 + tw + 4, y + base // 2), c, -1)
        cv2.putText(img, text, (hb.x1 + 2, y - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thick, cv2.LINE_AA)


def open_video(path: Path, fps: float, size: tuple[int, int], codec: str):
    """``(cv2.VideoWriter, codec used)``. VP9 in MP4 plays in browsers and OpenCV reads it back,
    but encodes ~60x slower than mp4v here; where no VP9 encoder is built in, mp4v it is."""
    import cv2

    for c in dict.fromkeys([codec, "mp4v"]):
        w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*c), float(fps), size)
        if w.isOpened():
            return w, c
        w.release()
    raise InputError(f"cannot write an MP4 video here ({codec} and mp4v both failed); use --no-video")


class VideoOut:
    """An MP4 written by a thread of its own: OpenCV encodes without the GIL, so encoding the
    last frame overlaps detecting the next one (VP9 costs about as much as YuNet here)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], codec: str):
        import queue as stdqueue
        import threading

        self.size = size
        self._writer, self.codec = open_video(path, fps, size, codec)
        self._frames: stdqueue.Queue = stdqueue.Queue(maxsize=8)  # bounds memory
        self._seconds, self._error = 0.0, None
        self._thread = threading.Thread(target=self._encode, daemon=True)
        self._thread.start()

    def write(self, img: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        if (img.shape[1], img.shape[0]) != self.size:
            import cv2

            img = cv2.resize(img, self.size, interpolation=cv2.INTER_AREA)
        self._frames.put(img)

    def close(self) -> float:
        """Flush and close; returns the seconds spent encoding."""
        self._frames.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._seconds

    def _encode(self):
        while True:
            img = self._frames.get()
            t = time.perf_counter()
            try:
                if img is None:
                    self._writer.release()
                else:
                    self._writer.write(img)
            except Exception as exc:  # raised in the job's thread at its next write
                self._error = exc
            self._seconds += time.perf_counter() - t
            if img is None:
                return


def _output_fps(info, st: Settings) -> float:
    native = info.fps or 25.0
    if st.every:
        return native / st.every
    if st.fps:
        return min(st.fps, native) if info.fps else st.fps
    return native


def _unique_name(source_name: str, ext: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(source_name).stem).strip("._") or "source"
    name, n = f"{stem}{ext}", 1
    while name in used or name in OUTPUT_FILES:
        n += 1
        name = f"{stem}-{n}{ext}"
    used.add(name)
    return name


# --- files ----------------------------------------------------------------------------------------


class _Tables:
    """The CSV files, written row by row (a long stream is never held in memory)."""

    def __init__(self, folder: Path, classes: list[str]):
        self.folder, self.classes = folder, classes
        p = [f"p_{c}" for c in classes]
        self._files, self._w = [], {}
        for name, header in (
            ("detections", ["source", "frame", "time_s", "track", "x1", "y1", "x2", "y2",
                            "det_score", "label", "prob", *p, "voted"]),
            ("tracks", ["source", "track", "first_s", "last_s", "frames", "voted", *[f"mean_{x}" for x in p],
                        "unknown_frames", "changes_per_frame", "changes_voted",
                        "flicker_per_frame", "flicker_voted", "hard", "hard_crops"]),
            ("summary", ["source", "minute", "start_s", "faces", *classes, votes.UNKNOWN, "tracks"]),
            ("hard_crops", ["source", "source_uri", "source_kind", "source_key", "track", "frame",
                            "time_s", "x1", "y1", "x2", "y2", "width", "height", "det_score",
                            "sharpness", "origin", "file", "reason", "keypoints", *p]),
        ):
            fh = open(folder / f"{name}.csv", "w", newline="")
            self._files.append(fh)
            self._w[name] = csv.writer(fh)
            self._w[name].writerow(header)
        self.hard_probs, self.hard_emb = [], []

    def detection(self, source, frame, tid, hb, det_score, label, probs, voted):
        self._w["detections"].writerow([
            source, frame.index, f"{frame.timestamp_s:.3f}", tid, hb.x1, hb.y1, hb.x2, hb.y2,
            f"{det_score:.4f}", label, f"{probs.max():.4f}", *[f"{v:.4f}" for v in probs], voted])

    def track(self, source, tr: _Track, shown, mean, span, rate, reason, kept):
        voted_rate = votes.flicker_rate([tr.voted_changes], [span])
        self._w["tracks"].writerow([
            source, tr.id, f"{tr.first_t:.3f}", f"{tr.last_t:.3f}", tr.frames, shown,
            *[f"{v:.4f}" for v in mean], tr.unknown, tr.frame_changes, tr.voted_changes,
            f"{rate:.4f}", f"{voted_rate:.4f}", reason or "", kept])

    def minute(self, source, minute, counts: Counter, n_tracks: int):
        self._w["summary"].writerow([source, minute, minute * 60, counts["faces"],
                                     *[counts[c] for c in self.classes], counts[votes.UNKNOWN],
                                     n_tracks])

    def hard_crop(self, spec, res: SourceDetect, tid, c, reason):
        import cv2

        (self.folder / "hard").mkdir(exist_ok=True)
        rel = f"hard/{len(self.hard_probs):06d}.png"
        cv2.imwrite(str(self.folder / rel), c["image"])  # lossless: the crop extract would store
        x1, y1, x2, y2 = c["box"]
        self._w["hard_crops"].writerow([
            spec.name, spec.shown_uri, spec.kind, res.key, tid, c["frame"], c["time_s"], x1, y1, x2, y2,
            c["width"], c["height"], c["det_score"], c["sharpness"], c["origin"], rel, reason,
            json.dumps(c["keypoints"]) if c["keypoints"] is not None else "",
            *[f"{v:.6f}" for v in c["probs"]]])
        self.hard_probs.append(c["probs"])
        self.hard_emb.append(c["emb"])

    def close(self):
        for fh in self._files:
            fh.close()
        k = len(self.classes)
        emb = np.stack(self.hard_emb) if self.hard_emb else np.zeros((0, 0), np.float32)
        np.savez(self.folder / "hard_crops.npz",
                 probs=np.array(self.hard_probs, np.float32).reshape(-1, k), emb=emb)


def _write_json(path: Path, report: DetectReport) -> None:
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(dataclasses.asdict(report), indent=1, default=str))
    os.replace(tmp, path)


def _move_into_place(tmp: Path, out: Path) -> None:
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


def _temp_folder(out: Path) -> Path:
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



# --- hard crops to the queue ---------------------------------------------------------------------


def queue_hard(ws: Workspace, out: str | Path) -> QueueReport:
    """Add a finished run's hard crops to the queue as ordinary crops (``added_by = detect``).

    Same source row as extract (key: the file's sha256), same origins: crops the queue already
    has are left alone, so a second call adds nothing. When the run's model version is still
    registered with the same classes, its probabilities and embeddings are stored as that
    version's predictions, so the sampler can rank the new crops at once.
    """
    out = Path(out)
    try:
        report = json.loads((out / "report.json").read_text())
        with open(out / "hard_crops.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        arrays = np.load(out / "hard_crops.npz")
        probs, emb = arrays["probs"], arrays["emb"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{out}: not a finished detect run ({type(exc).__name__})") from None
    result = QueueReport()
    if not rows:
        return result
    classes = list(report.get("classes") or [])
    sources = {s["key"]: s for s in report.get("per_source", []) if s.get("key")}
    by_source: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_source.setdefault(r["source_key"], []).append(i)
    for key, idx in by_source.items():
        s = sources.get(key)
        if s is None:
            continue
        spec = video.SourceSpec(s["uri"], s["kind"], s["name"])
        info = video.VideoInfo(s.get("fps"), s.get("frame_count"), s.get("width") or 0,
                               s.get("height") or 0)
        with ws.session() as sess:
            src = extract.source_row(sess, spec, key=key, sha256=s.get("sha256"), info=info)
            known = set(reports.crop_ids_by_origin(sess, src.id, [rows[i]["origin"] for i in idx]))
            new = [i for i in idx if rows[i]["origin"] not in known]
            result.known += len(idx) - len(new)
            if not new:
                continue
            base = _track_base(sess, src.id)
            crops = []
            for i in new:
                r = rows[i]
                stored = ws.store.put_bytes((out / r["file"]).read_bytes(), "png")
                crops.append(crop_queue.NewCrop(
                    origin=r["origin"], sha256=stored.sha256, path=stored.relpath,
                    width=int(r["width"]), height=int(r["height"]), frame_index=int(r["frame"]),
                    timestamp_s=float(r["time_s"]),
                    box=tuple(float(r[k]) for k in ("x1", "y1", "x2", "y2")),
                    detector=report.get("detector"), det_score=float(r["det_score"]),
                    keypoints=json.loads(r["keypoints"]) if r["keypoints"] else None,
                    sharpness=float(r["sharpness"]), track_id=base + int(r["track"])))
            ids = crop_queue.add_crops(sess, src.id, crops, added_by=db.AddedBy.DETECT)
            result.added += len(ids)
            result.scored += _store_predictions(sess, report.get("model"), classes, src.id,
                                                [rows[i]["origin"] for i in new], probs[new],
                                                emb[new])
    return result


def _track_base(session, source_id: int) -> int:
    """Track ids for this run's crops: a block above every track the source has (extract's
    start at 1), so two runs' tracks never share an id."""
    return max(TRACK_BASE, reports.max_track_id(session, source_id) + 1)


def _store_predictions(session, model_name, classes, source_id, origins, probs, emb) -> int:
    mv = model_versions.get_model_version(session, model_name) if model_name else None
    if mv is None or list(mv.classes or []) != classes or not len(origins):
        return 0
    ids = reports.crop_ids_by_origin(session, source_id, origins)
    unc = uncertainty(probs)
    rows = [{"crop_id": int(ids[o]), "model_version_id": mv.id,
             "probs": [round(float(v), 6) for v in p], "uncertainty": float(u),
             "embedding": e.astype(np.float32).tobytes()}
            for o, p, u, e in zip(origins, probs, unc, emb) if o in ids]
    model_versions.add_predictions(session, rows, set_priority=True)
    return len(rows)


# --- what the Footage page shows ------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    path: Path
    report: dict

    @property
    def name(self) -> str:
        return self.path.name


def runs(ws: Workspace) -> list[RunInfo]:
    """Finished runs under ``<workspace>/detections``, newest first."""
    folder = ws.root / RUNS_DIR
    found = []
    for d in folder.iterdir() if folder.is_dir() else ():
        if d.is_dir() and not d.name.startswith(".") and (d / "report.json").is_file():
            try:
                found.append(RunInfo(d, json.loads((d / "report.json").read_text())))
            except (OSError, ValueError):
                continue
    return sorted(found, key=lambda r: (r.path / "report.json").stat().st_mtime, reverse=True)


def run_at(ws: Workspace, path: str | Path) -> RunInfo:
    """One finished run (a job's ``result["out"]``)."""
    p = Path(path)
    try:
        return RunInfo(p, json.loads((p / "report.json").read_text()))
    except (OSError, ValueError):
        raise InputError(f"{p}: not a finished detect run") from None


def table(run: RunInfo, name: str):
    """``tracks``, ``summary`` or ``detections`` of a run as a DataFrame."""
    import pandas as pd

    if name not in ("tracks", "summary", "detections"):
        raise ValueError(name)
    return pd.read_csv(run.path / f"{name}.csv")


def server_sources(ws: Workspace) -> list[tuple[str, str]]:
    """``(name, uri)`` of the workspace's video sources whose file is still on this server, and
    its streams: what the Footage page offers to run on."""
    with ws.read_session() as s:
        rows = reports.media_sources(s)
    return [(n, u) for n, u, k in rows if k == "stream" or Path(u).is_file()]


def summary(report: DetectReport) -> str:
    """Human lines for the CLI."""
    labels = ", ".join(f"{k} {v}" for k, v in report.tracks_by_label.items())
    queued = "" if report.queued is None else f"; {report.queued} crops added to the queue"
    plural = "" if report.sources == 1 else "s"
    return (f"{report.sources} source{plural}: {report.frames} frames, {report.detections} "
            f"faces, {report.tracks} tracks ({labels}) in {report.seconds:.1f} s "
            f"({report.fps:.1f} frames/s)\nflicker per second of track: per frame "
            f"{report.flicker.get('per_frame', 0):.3f}, voted {report.flicker.get('voted', 0):.3f}; "
            f"{report.hard_tracks} uncertain tracks, {report.hard_crops} crops{queued}\n"
            f"written to {report.out}")
