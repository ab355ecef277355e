"""Job: CCTV footage -> faces (YuNet, MTCNN) or people (OpenPifPaf keypoints) -> head crops in the
queue.

Per source: read sampled frames (``annotator.media.video``), detect (``annotator.media.detectors``), cut a head box
from each person (``annotator.core.geometry``), follow heads across frames and keep a few good crops
per track (``annotator.core.track``), store them (``ws.store``) and add them to the queue.

Resumable and idempotent:

* A file source is known by its content sha256; a source already ``done`` is skipped.
* Work is committed every ``chunk_frames`` sampled frames in one transaction together with
  ``frames_done``, the tracker state and the crops still waiting for their track to end (their
  image files are already in the store). A killed run restarts from the last commit with the
  same state, so it ends with exactly the crops of an uninterrupted run and no duplicates
  (``crop_queue.add_crops`` also ignores origins it knows).
* Crop files of candidates that thinning drops are deleted once no crop row uses them.
* ``redo`` starts a finished (or interrupted) file source over with new settings: its crops that
  carry no label are removed, labeled crops and every label stay, and the new run adds only
  origins it does not already have.

Several sources run in parallel worker processes (``workers``); each loads its detector once.
``engine="ray"`` runs video files as frame ranges on a Ray cluster instead
(:mod:`pipelines.extract_ray`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import select

from annotator.data import crop_queue, reports
from annotator.media import detectors, video
from annotator.core.config import check_options
from annotator.data import slice_store  # slice attributes of stored crops
from annotator.data.db import Crop, chunks, get_or_create_source, update_source_progress
from annotator.core.errors import AnnotatorError, InputError
from annotator.core.failpoints import failpoint
from annotator.core.geometry import Person, head_box, sharpness
from annotator.core.motion import MotionGate
from annotator.core.progress import ProgressFn, silent
from annotator.core.track import Tracker, compact, crop_quality, thin
from annotator.service.workspace import Workspace

ENGINES = ("local", "ray")
MOTION = ("auto", "on", "off")  # auto: on for video files and streams (fixed cameras)
PENDING_CAP = 8  # candidates held per live track = PENDING_CAP * per_track (bounds memory)
UPLOADS = "uploads"  # folder of the workspace that holds videos uploaded through the app
AFTER_CHECKPOINT = "extract_after_checkpoint"  # failpoint: right after a mid-source commit


@dataclass(kw_only=True)
class ExtractOptions:
    """What to extract; ``None`` means the workspace's ``[extract]`` default."""

    sources: list[str]
    detector: str | None = None  # auto | yunet | mtcnn | openpifpaf
    checkpoint: str | None = None
    fps: float | None = None
    every: int | None = None
    min_size: float | None = None
    margin: float | None = None
    per_track: int | None = None
    min_sharpness: float | None = None
    min_score: float | None = None  # 0..1; None: config, whose -1 means the detector's default
    redo: bool = False  # start finished sources over; labeled crops and labels are kept
    max_seconds: float | None = None
    long_edge: int | None = None
    batch_size: int | None = None
    workers: int | None = None  # None: one per source, up to one per core
    chunk_frames: int = 16  # sampled frames per transaction
    engine: str = "local"  # local (this machine's processes) | ray (a Ray cluster)
    address: str | None = None  # ray: auto | HOST:PORT | ray://HOST:PORT; None starts one here
    range_seconds: float | None = None  # ray: video per task (None: extract_ray's default)
    delete_source_after: bool = False  # privacy: delete each video/image file once fully extracted
    motion: str = "auto"  # auto | on | off: detect only where something moved (annotator.core.motion)


@dataclass
class SourceResult:
    """What happened to one source in one run."""

    name: str
    uri: str
    kind: str
    status: str | None = None  # done | partial | error (None: not reached)
    skipped: bool = False  # already fully extracted: nothing to do
    source_id: int | None = None
    frames: int = 0
    detections: int = 0
    tracks: int = 0
    crops_kept: int = 0
    crops_removed: int = 0  # unlabeled crops of an earlier run removed by redo
    dropped: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of this source, hashing and probing included
    frames_skipped: int = 0  # motion gating: sampled frames where nothing moved (no detector)
    pixels_detected: int = 0  # pixels the detector ran on (gated: the moving windows only)
    pixels_total: int = 0  # pixels of all sampled frames


@dataclass
class ExtractReport:
    sources: int = 0  # sources processed by this run (not counting skipped ones)
    skipped: int = 0  # already fully extracted: nothing to do
    frames: int = 0  # sampled frames run through the detector
    detections: int = 0
    tracks: int = 0
    crops_kept: int = 0
    crops_removed: int = 0  # unlabeled crops of earlier runs removed by redo
    scored: int = 0  # new crops the active model scored before the job ended
    dropped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    detector: str = ""  # the detector that ran (auto resolved)
    detector_reason: str = ""  # why that one
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    per_source: list[SourceResult] = field(default_factory=list)
    deleted_sources: list[str] = field(default_factory=list)  # --delete-source-after
    frames_skipped: int = 0  # motion gating: sampled frames that needed no detector
    pixels_detected: int = 0
    pixels_total: int = 0


@dataclass(frozen=True)
class Settings:
    """Options resolved against the workspace config (picklable: sent to worker processes)."""

    detector: str  # never "auto": resolved by detectors.choose
    detector_reason: str
    checkpoint: str | None
    fps: float | None
    every: int | None
    min_size: float
    margin: float
    per_track: int
    min_sharpness: float
    min_score: float | None  # None: the detector's own default
    redo: bool
    max_seconds: float | None
    long_edge: int | None
    batch_size: int
    chunk_frames: int
    motion: str = "auto"

    def public(self) -> dict:
        """The settings a source's crops were made with (stored with the source)."""
        skip = {"chunk_frames", "detector_reason", "redo"}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


def resolve(ws: Workspace, opts: ExtractOptions) -> Settings:
    cfg = ws.config.extract
    check_options(fps=opts.fps, every=opts.every, min_size=opts.min_size, margin=opts.margin,
                  per_track=opts.per_track, min_sharpness=opts.min_sharpness,
                  min_score=opts.min_score, max_seconds=opts.max_seconds,
                  long_edge=opts.long_edge, workers=opts.workers,
                  range_seconds=opts.range_seconds)
    pick = lambda v, d: d if v is None else v  # noqa: E731
    if opts.fps is not None and opts.every is not None:
        raise InputError("give either --fps or --every, not both")
    every = opts.every
    fps = None if every else pick(opts.fps, cfg.fps)
    min_score = pick(opts.min_score, None if cfg.min_score < 0 else cfg.min_score)
    if min_score is not None and not 0.0 <= float(min_score) <= 1.0:
        raise InputError(f"--min-score must be between 0 and 1, got {min_score}")
    checkpoint = pick(opts.checkpoint, cfg.checkpoint)
    detector, why = detectors.choose(pick(opts.detector, cfg.detector), checkpoint)
    s = Settings(
        detector=detector, detector_reason=why,
        checkpoint=checkpoint,
        fps=fps, every=every,
        min_size=float(pick(opts.min_size, cfg.min_size)),
        margin=float(pick(opts.margin, cfg.margin)),
        per_track=int(pick(opts.per_track, cfg.per_track)),
        min_sharpness=float(pick(opts.min_sharpness, cfg.min_sharpness)),
        min_score=None if min_score is None else float(min_score),
        redo=bool(opts.redo),
        max_seconds=opts.max_seconds,
        long_edge=pick(opts.long_edge, cfg.long_edge) or None,
        batch_size=int(pick(opts.batch_size, cfg.frames_per_call)),
        chunk_frames=int(opts.chunk_frames),
        motion=str(opts.motion),
    )
    if s.motion not in MOTION:
        raise InputError(f"--motion must be one of {', '.join(MOTION)}, got {s.motion!r}")
    if s.fps is not None and s.fps <= 0:
        raise InputError(f"--fps must be > 0, got {s.fps}")
    if every is not None and every < 1:
        raise InputError(f"--every must be >= 1, got {every}")
    if s.per_track < 1:
        raise InputError(f"--per-track must be >= 1, got {s.per_track}")
    if s.margin < 0 or s.min_size < 0 or s.min_sharpness < 0:
        raise InputError("--margin, --min-size and --min-sharpness must be >= 0")
    if s.max_seconds is not None and s.max_seconds <= 0:
        raise InputError(f"--max-seconds must be > 0, got {s.max_seconds}")
    if s.batch_size < 1 or s.chunk_frames < 1:
        raise InputError("batch size and chunk size must be >= 1")
    return s


def run(ws: Workspace, opts: ExtractOptions, progress: ProgressFn = silent) -> ExtractReport:
    """Extract head crops from every source; per-source errors are reported, the batch goes on."""
    t0 = time.perf_counter()
    settings = resolve(ws, opts)
    if opts.engine not in ENGINES:
        raise InputError(f"unknown engine {opts.engine!r}; expected one of {', '.join(ENGINES)}")
    if opts.engine != "ray" and (opts.address is not None or opts.range_seconds is not None):
        raise InputError("--address and --range-seconds need --engine ray")
    if opts.engine == "ray" and opts.workers is not None:
        raise InputError("--workers is for --engine local (Ray runs a range per cluster CPU)")
    specs, errors = video.expand_sources(list(opts.sources),
                                         max_pixels=ws.config.limits.max_image_pixels)
    if not specs and not errors:
        raise InputError("no sources given")
    report = ExtractReport(detector=settings.detector, detector_reason=settings.detector_reason,
                           errors=list(errors))
    if settings.detector == "openpifpaf" and specs:
        # fail once, clearly, before any work (downloads a known checkpoint where there is network)
        detectors.resolve_checkpoint(settings.checkpoint or detectors.DEFAULT_CHECKPOINT)
    workers = _workers(opts.workers, specs)
    images = _ImageProgress(progress, sum(1 for s in specs if s.kind == "image"))
    if opts.engine == "ray":
        from pipelines import extract_ray

        results = extract_ray.run_sources(ws, specs, settings, progress, images,
                                          address=opts.address, range_seconds=opts.range_seconds)
    elif workers <= 1:
        detector = _LazyDetector(settings, threads=None)
        results = []
        for spec in specs:
            results.append(extract_source(ws, spec, settings, detector, progress))
            images.done(results[-1])
    else:
        results = _run_parallel(ws, specs, settings, workers, progress, images)
    for res in results:
        _merge(report, res)
    if report.crops_kept:  # ranked (and guessed) at once, not after the next promotion
        from pipelines.common.scoring import score_new
        report.scored = score_new(ws, progress)
    if opts.delete_source_after:  # privacy: footage kept no longer than needed; crops stay
        for res in results:
            if res.status == "done" and res.kind in ("video", "image") and Path(res.uri).is_file():
                Path(res.uri).unlink()
                report.deleted_sources.append(res.uri)
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


# --- one source ---------------------------------------------------------------------------------


def extract_source(ws: Workspace, spec: video.SourceSpec, st: Settings, detector,
                   progress: ProgressFn = silent) -> SourceResult:
    """Extract one source (never raises for a bad source: the error is in the result)."""
    res = SourceResult(name=spec.name, uri=spec.shown_uri, kind=spec.kind)
    t0 = time.perf_counter()
    try:
        _SourceRun(ws, spec, st, detector, progress, res).run()
    except NoDetector:  # not this source's fault: the whole run stops with one line
        raise
    except AnnotatorError as exc:
        res.error, res.status = str(exc), "error"
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # a bug or an odd file: report it, the batch goes on
        res.error, res.status = f"{spec.name}: {type(exc).__name__}: {exc}", "error"
    if res.status == "error" and res.source_id:
        try:
            with ws.session() as s:
                update_source_progress(s, res.source_id, status="error", error=res.error)
        except Exception:  # the report still carries the error
            pass
    res.seconds = round(time.perf_counter() - t0, 3)
    return res


class _SourceRun:
    """State of one source's extraction between commits."""

    def __init__(self, ws, spec, st: Settings, detector, progress, res):
        self.ws, self.spec, self.st, self.detector, self.res = ws, spec, st, detector, res
        self.progress = progress
        self.dropped: Counter = Counter()
        self.to_add: list[crop_queue.NewCrop] = []
        self.discard: list[dict] = []
        self.pending: dict[int, list[dict]] = {}
        self.timings = Counter()
        self.base = Counter()  # totals of earlier runs of this source (sources.stats)

    # -- setup and resume --
    def run(self):
        spec, st = self.spec, self.st
        opened = open_source(self.ws, spec, st, self.res, before_redo=self._load_detector)
        if opened is None:
            return
        self.source_id, info = opened.source_id, opened.info
        start, status, stats = opened.frames_done, opened.status, opened.stats
        saved = stats.get("resume") if start > 0 and spec.kind != "stream" else None
        if saved:  # interrupted: same tracker, same crops waiting for their tracks to end
            self.tracker = Tracker.from_state(saved["tracker"])
            if saved.get("motion"):  # and the same background
                self._motion = MotionGate.from_state(saved["motion"])
            self.pending = {int(k): v for k, v in saved["pending"].items()}
        else:
            # A continued source (a stream, a run stopped by --max-seconds) numbers its new
            # tracks after the old ones: one id is always one person.
            self.tracker = Tracker(first_id=opened.max_track_id + 1)
            if status != "partial" and spec.kind != "stream":
                start = 0  # nothing reliable to resume from
        if saved or status == "partial" or spec.kind == "stream":
            self.base.update(stats.get("totals", {}))
        self.base.update({"runs": 1})
        reader = video.FrameReader(spec, start=start, fps=st.fps, every=st.every,
                                   max_seconds=st.max_seconds)
        self._loop(reader, info)
        for tid in self.tracker.finish():  # end of source, or of --max-seconds: tracks end here
            self._end_track(tid)
        status = "done" if reader.finished else "partial"
        self._commit(reader.next_index, final=True, status=status, error=reader.problem)
        self._report_progress(final=True)
        self.res.status = status
        if reader.problem:
            self.res.error = reader.problem

    def _loop(self, reader, info):
        st = self.st
        self.expected = expected_frames(info, st, reader.start)
        self.t_start = time.perf_counter()
        since_commit = 0
        for batch in video.batches(reader, st.batch_size, self.timings):
            self._process(batch)
            since_commit += len(batch)
            if since_commit >= st.chunk_frames:
                self._commit(batch[-1].index + 1, final=False, status="running")
                failpoint(AFTER_CHECKPOINT)
                since_commit = 0
            self._report_progress()

    def _report_progress(self, final=False):
        if self.spec.kind == "image":  # images share one bar (see _ImageProgress)
            return
        done = self.res.frames
        rate = done / max(time.perf_counter() - self.t_start, 1e-9)
        message = (f"{self.st.detector}: {self.res.detections} heads, {self.res.crops_kept} kept, "
                   f"{rate:.1f} frames/s")
        self.progress(done, done if final else self.expected, message, stage=self.spec.name)

    # -- per batch of frames --
    def _load_detector(self):
        t = time.perf_counter()
        if self.detector.load():
            self.timings["load"] += time.perf_counter() - t

    def _process(self, frames):
        st = self.st
        self._load_detector()
        t = time.perf_counter()
        gate = self._gate(frames[0].image)
        if gate is None:
            people_per_frame = self.detector.people([f.image for f in frames])
            self.res.pixels_detected += sum(f.image.shape[0] * f.image.shape[1] for f in frames)
        else:
            people_per_frame = gated_people(self.detector, frames, gate, self.res)
        self.res.pixels_total += sum(f.image.shape[0] * f.image.shape[1] for f in frames)
        self.timings["detect"] += time.perf_counter() - t
        for frame, people in zip(frames, people_per_frame):
            t = time.perf_counter()
            self.res.frames += 1
            self.res.detections += len(people)
            found = head_crops(frame.image, people, margin=st.margin, min_size=st.min_size,
                               min_sharpness=st.min_sharpness, dropped=self.dropped)
            boxes = [hb.box for _p, hb, _crop, _sharp in found]
            if gate is not None:  # where faces are, the detector looks again for a while
                gate.seen(boxes, frame.timestamp_s)
            ids, ended = self.tracker.update(np.array(boxes, dtype=float).reshape(-1, 4),
                                             frame.timestamp_s)
            for tid in ended:
                self._end_track(tid)
            for tid, (p, hb, crop, sharp) in zip(ids.tolist(), found):
                self._add_candidate(tid, frame, p, hb, crop, sharp)
            self.timings["crop_store"] += time.perf_counter() - t

    def _gate(self, image):
        """This source's motion gate (built on its first frame), or None when gating is off."""
        if not hasattr(self, "_motion"):
            on = self.st.motion == "on" or (self.st.motion == "auto"
                                            and self.spec.kind in ("video", "stream"))
            h, w = image.shape[:2]
            self._motion = MotionGate((w, h)) if on else None
        return self._motion

    def _add_candidate(self, tid, frame, person, hb, crop, sharp):
        kps = None
        if person.keypoints is not None:
            kps = np.round(np.asarray(person.keypoints, dtype=float), 2).tolist()
        cand = {
            "origin": crop_origin(frame.index, hb),
            # The file is written once the crop is kept, or at a commit while it waits (for a
            # resume): most candidates are thinned away before either, and PNG costs ~16 ms for
            # a 400-px face. Until then the pixels wait here (a copy: not the whole frame).
            "sha256": None, "path": None, "_image": crop.copy(),
            "width": hb.width, "height": hb.height, "frame_index": frame.index,
            "timestamp_s": round(float(frame.timestamp_s), 4), "box": list(hb.box),
            "det_score": round(float(person.score), 4), "keypoints": kps,
            "sharpness": round(float(sharp), 3), "method": hb.method,
            "quality": float(crop_quality([hb.width], [sharp], [person.score])[0]),
        }
        cands = self.pending.setdefault(tid, [])
        cands.append(cand)
        cap = PENDING_CAP * self.st.per_track
        if len(cands) > cap:
            keep = set(compact([c["timestamp_s"] for c in cands], [c["quality"] for c in cands],
                               cap).tolist())
            self._discard(c for i, c in enumerate(cands) if i not in keep)
            self.dropped["near_duplicate"] += len(cands) - len(keep)
            self.pending[tid] = [c for i, c in enumerate(cands) if i in keep]

    def _end_track(self, tid):
        cands = self.pending.pop(tid, [])
        if not cands:
            return
        keep = thin(np.array([c["timestamp_s"] for c in cands]),
                    np.array([c["quality"] for c in cands]), self.st.per_track).tolist()
        for i in keep:
            self._keep(tid, cands[i])
        kept = set(keep)
        self._discard(c for i, c in enumerate(cands) if i not in kept)
        self.dropped["near_duplicate"] += len(cands) - len(kept)
        self.res.tracks += 1

    def _keep(self, tid: int, cand: dict) -> None:
        """A crop that thinning kept: stored now, added at the next commit."""
        c = self._stored(cand)
        self.to_add.append(new_crop(c, sha256=c["sha256"], path=c["path"],
                                    detector=self.st.detector, track_id=tid))

    def _stored(self, cand: dict) -> dict:
        """The candidate with its image file in the store (written now if it is not yet)."""
        if cand["sha256"] is None:
            f = self.ws.store.put_image(cand.pop("_image"))
            cand["sha256"], cand["path"] = f.sha256, f.relpath
        return cand

    def _discard(self, cands) -> None:
        """Dropped candidates: those whose file was written (for a resume) may leave a file."""
        self.discard += [c for c in cands if c["sha256"] is not None]

    # -- one transaction: crops + progress + resume state --
    def _commit(self, frames_done, *, final, status, error=None):
        stats = {"settings": self.st.public()}
        if not final:  # a resumed run needs the waiting candidates' files
            t = time.perf_counter()
            pending = {str(k): [_saved(self._stored(c)) for c in cs]
                       for k, cs in self.pending.items()}
            self.timings["crop_store"] += time.perf_counter() - t
            stats["resume"] = {"tracker": self.tracker.state(), "pending": pending}
            if getattr(self, "_motion", None) is not None:
                stats["resume"]["motion"] = self._motion.state()
        t = time.perf_counter()
        with self.ws.session() as s:
            new_ids = crop_queue.add_crops(s, self.source_id, self.to_add)
            stats["totals"] = self._totals(len(new_ids))
            update_source_progress(s, self.source_id, frames_done=frames_done, status=status,
                                   error=error, stats=stats)
        self.res.crops_kept += len(new_ids)  # counted once committed
        slice_store.fill(self.ws, new_ids)  # slice attributes; a crash here is healed by backfill
        self.to_add = []
        busy = {c["sha256"] for cs in self.pending.values() for c in cs}
        remove_unused_files(self.ws, [(c["sha256"], c["path"]) for c in self.discard], busy=busy)
        self.discard = []
        self.timings["db"] += time.perf_counter() - t
        self.res.dropped = dict(self.dropped)
        self.res.timings = {k: round(v, 3) for k, v in self.timings.items()}

    def _totals(self, new_crops: int) -> dict:
        return source_totals(self.base, self.res, self.dropped, new_crops)



def gated_people(detector, frames, gate: MotionGate, res: SourceResult) -> list[list]:
    """Per frame, the people the detector finds in the windows the motion gate gives: none and
    no detector call where nothing moved (counted in ``res.frames_skipped``); the frame itself
    where the windows would cover most of it. Windows do not overlap, so nothing is found twice."""
    out: list[list | None] = []
    whole = []  # frames detected whole, batched as without gating
    for i, f in enumerate(frames):
        h, w = f.image.shape[:2]
        wins = gate.windows(f.image, f.timestamp_s)
        if not wins:
            res.frames_skipped += 1
            out.append([])
        elif wins == [(0, 0, w, h)]:
            whole.append(i)
            out.append(None)
        else:
            people = []
            for x0, y0, x1, y1 in wins:
                found = detector.people([np.ascontiguousarray(f.image[y0:y1, x0:x1])])[0]
                people += [shifted(p, x0, y0) for p in found]
            out.append(people)
        res.pixels_detected += sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in wins)
    if whole:
        for i, people in zip(whole, detector.people([frames[i].image for i in whole])):
            out[i] = people
    return out


def shifted(p: Person, dx: float, dy: float) -> Person:
    """A person found in a window, in the frame's pixels."""
    kps = None
    if p.keypoints is not None:
        kps = np.array(p.keypoints, dtype=np.float32, copy=True)
        kps[:, 0] += dx
        kps[:, 1] += dy
    box = None if p.face_box is None else (p.face_box[0] + dx, p.face_box[1] + dy,
                                           p.face_box[2] + dx, p.face_box[3] + dy)
    return Person(keypoints=kps, score=p.score, face_box=box)


def source_totals(base: dict, res: SourceResult, dropped: Counter, new_crops: int) -> dict:
    """Counts over every run of a source: ``base`` (earlier runs' totals) + this run so far, with
    ``new_crops`` about to be committed."""
    t = Counter(base)
    t.update({k: getattr(res, k) for k in ("frames", "detections", "tracks")})
    t.update({"crops_kept": res.crops_kept + new_crops})
    t.update({f"dropped_{k}": v for k, v in dropped.items()})
    return dict(t)


@dataclass
class OpenedSource:
    """A source row as a run finds it (after ``--redo`` cleared it)."""

    source_id: int
    frames_done: int
    status: str
    stats: dict
    info: video.VideoInfo
    max_track_id: int = 0  # the highest track id its crops already have


def open_source(ws: Workspace, spec: video.SourceSpec, st: Settings, res: SourceResult, *,
                before_redo=None) -> OpenedSource | None:
    """The source's row, created on first sight; ``--redo`` clears it first (``before_redo`` runs
    before anything is removed). None, with ``res`` saying so, when it is done already."""
    key, sha = source_key(spec)
    info = video.probe(spec)
    removed: list[tuple[str, str]] = []
    if st.redo and spec.kind != "stream" and before_redo is not None:
        before_redo()  # first: a detector that cannot be built removes nothing
    with ws.session() as s:
        src = source_row(s, spec, key=key, sha256=sha, info=info)
        # A stream's past frames are gone: redo has nothing to redo there, its frames go on.
        if st.redo and spec.kind != "stream" and (src.status != "new" or src.frames_done):
            removed = crop_queue.remove_unlabeled_crops(s, src.id)
            src.frames_done, src.status, src.error, src.stats = 0, "new", None, None
        opened = OpenedSource(src.id, src.frames_done, src.status, src.stats or {}, info,
                              reports.max_track_id(s, src.id))
    res.source_id = opened.source_id
    res.crops_removed = len(removed)
    remove_unused_files(ws, removed)
    if opened.status == "done" and spec.kind != "stream":
        res.skipped, res.status = True, "done"
        return None
    return opened


def new_crop(c: dict, *, sha256: str, path: str, detector: str, track_id: int) -> crop_queue.NewCrop:
    """The queue row of a kept candidate whose file is stored as ``sha256`` at ``path``."""
    return crop_queue.NewCrop(
        origin=c["origin"], sha256=sha256, path=path, width=c["width"], height=c["height"],
        frame_index=c["frame_index"], timestamp_s=c["timestamp_s"], box=tuple(c["box"]),
        detector=detector, det_score=c["det_score"], keypoints=c["keypoints"],
        sharpness=c["sharpness"], track_id=track_id)


# --- stored files -------------------------------------------------------------------------------


def remove_unused_files(ws: Workspace, files, *, busy=frozenset()) -> list[tuple[str, str]]:
    """Delete the stored crop files among ``files`` that no crop row points to.

    Parameters
    ----------
    files : iterable of (sha256, path)
        Files that may have lost their last user (dropped candidates, crops removed by redo).
    busy : set of sha256
        Files still wanted although no row has them yet (candidates waiting for their track).

    Returns the (sha256, path) deleted, after telling :func:`stored_files_gone`.
    """
    wanted = {sha: path for sha, path in files if sha not in busy}
    if not wanted:
        return []
    used = set()
    with ws.read_session() as s:
        for part in chunks(list(wanted)):
            used.update(s.scalars(select(Crop.sha256).where(Crop.sha256.in_(part)).distinct()))
    gone = [(sha, path) for sha, path in wanted.items() if sha not in used]
    for _sha, path in gone:
        ws.store.remove(path)
    stored_files_gone(ws, gone)
    return gone


def stored_files_gone(ws: Workspace, files: list[tuple[str, str]]) -> None:
    """These stored crop files, as (sha256, path), were deleted: whatever is kept per file
    (the tensor cache, keyed by sha256) must forget them. Every deletion by this job comes
    through here."""
    if files:
        from annotator.media import cache

        cache.forget(ws, [sha for sha, _path in files])


def _saved(cand: dict) -> dict:
    """A candidate as kept in the resume state (JSON: no pixels)."""
    return {k: v for k, v in cand.items() if not k.startswith("_")}


def expected_frames(info, st, start: int) -> int | None:
    """Sampled frames a run will see (for the progress bar), when the length is known; ``st``
    has ``every``, ``fps`` and ``max_seconds`` (extract's and detect's settings both do)."""
    if not info.frame_count:
        return None

    def sampled(n_frames: int) -> int:
        if st.every:
            return -(-n_frames // st.every)
        if st.fps and info.fps:
            seconds = n_frames / info.fps
            if st.max_seconds:
                seconds = min(seconds, st.max_seconds)
            return math.ceil(seconds * min(st.fps, info.fps))
        return n_frames

    return max(1, sampled(info.frame_count) - sampled(start))


# --- shared with pipelines/detect: the same source row, head crops and origins ------------------


def source_key(spec: video.SourceSpec) -> tuple[str, str | None]:
    """``(key, sha256)`` of a source row: a file is known by its content hash, a stream by its URI."""
    if spec.kind == "stream":
        return spec.shown_uri, None  # a camera is known by its URL without secrets
    if not Path(spec.uri).is_file():
        raise InputError(f"{spec.name}: no such file")
    sha = video.file_sha256(spec.uri)
    return sha, sha


def source_row(session, spec: video.SourceSpec, *, key: str, sha256: str | None,
               info: video.VideoInfo):
    """The source's row (created on first sight, by extract or by detect)."""
    return get_or_create_source(
        session, key=key, kind=spec.kind, uri=spec.shown_uri, name=spec.name, sha256=sha256,
        fps=info.fps, frame_count=info.frame_count, width=info.width, height=info.height)


def head_crops(image: np.ndarray, people, *, margin: float, min_size: float,
               min_sharpness: float, dropped: Counter) -> list:
    """``(person, head box, crop, sharpness)`` for each usable head of one frame; the others
    are counted in ``dropped`` by reason. The crop is a view of ``image`` at native resolution."""
    h, w = image.shape[:2]
    found = []
    for p in people:
        hb = head_box(p, (w, h), margin=margin, min_size=min_size)
        if not hb.ok:
            dropped[hb.reason] += 1
            continue
        crop = image[hb.y1:hb.y2, hb.x1:hb.x2]
        sharp = sharpness(crop)
        if sharp < min_sharpness:
            dropped["min_sharpness"] += 1
            continue
        found.append((p, hb, crop, sharp))
    return found


def crop_origin(frame_index: int, hb) -> str:
    """Where a crop is in its source; with the source, the key that makes adding it idempotent."""
    return f"f{frame_index:06d}:{hb.x1},{hb.y1},{hb.x2},{hb.y2}"


# --- detectors and workers ----------------------------------------------------------------------


class NoDetector(InputError):
    """The detector could not be built: the run stops (every source would fail the same way)."""


class _LazyDetector:
    """The detector of a process, built when the first frame needs it: a re-run whose sources
    are all done already starts no torch (MTCNN: ~5 s here)."""

    def __init__(self, st: Settings, *, threads: int | None):
        self.st, self.threads, self._detector = st, threads, None

    def load(self) -> bool:
        """Build the detector now if it is not built yet; True if it was built by this call."""
        if self._detector is not None:
            return False
        try:
            self._detector = _load(self.st, threads=self.threads)
        except AnnotatorError as exc:
            raise NoDetector(str(exc)) from None
        return True

    def people(self, frames):
        self.load()
        return self._detector.people(frames)


def _load(st: Settings, *, threads: int | None):
    """The detector for this process. MTCNN's small convolutions gain nothing from several
    threads and lose a lot when cores are busy, so it runs on one; OpenPifPaf gets the cores."""
    if st.detector in ("mtcnn", "yunet"):  # YuNet: one OpenMP thread per calling thread
        threads = 1
    return detectors.load_detector(
        st.detector, checkpoint=st.checkpoint, long_edge=st.long_edge, batch_size=st.batch_size,
        min_face_size=max(12, int(st.min_size / 1.25)), threads=threads, min_score=st.min_score)


def _workers(requested: int | None, specs) -> int:
    heavy = sum(1 for s in specs if s.kind != "image") or (1 if specs else 0)
    if requested is not None:
        if requested < 1:
            raise InputError(f"--workers must be >= 1, got {requested}")
        return min(requested, max(len(specs), 1))
    return max(1, min(heavy, _cores()))


def _cores() -> int:
    """Cores this process may run on (a container or taskset may allow fewer than the machine)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_WORKER: dict = {}  # filled in each worker process by _worker_init


def _worker_init(root, db_url, st, threads, messages):
    _WORKER["ws"] = Workspace.open(Path(root), db_url=db_url)
    _WORKER["detector"] = _LazyDetector(st, threads=threads)
    _WORKER["st"] = st
    _WORKER["messages"] = messages


def _worker_run(spec):
    messages = _WORKER["messages"]

    def progress(done, total, message="", *, stage=None, data=None):
        messages.put((done, total, message, stage))

    return extract_source(_WORKER["ws"], spec, _WORKER["st"], _WORKER["detector"], progress)


def _run_parallel(ws, specs, st, workers, progress, images):
    import concurrent.futures as cf
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # torch and OpenPifPaf's class-level config do not survive fork
    threads = max(1, _cores() // workers)
    with ctx.Manager() as manager:
        messages = manager.Queue()
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                    initargs=(str(ws.root), ws.db_url, st, threads, messages)) as pool:
            futures = {pool.submit(_worker_run, spec): spec for spec in specs}
            results, waiting = [], set(futures)
            while waiting:
                done, waiting = cf.wait(waiting, timeout=0.25)
                _drain(messages, progress)
                for fut in done:
                    spec = futures[fut]
                    try:
                        results.append(fut.result())
                    except NoDetector:
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
                    except Exception as exc:  # the worker itself died
                        results.append(SourceResult(
                            name=spec.name, uri=spec.shown_uri, kind=spec.kind, status="error",
                            error=f"{spec.name}: worker failed: {exc}"))
                    images.done(results[-1])
            _drain(messages, progress)
    order = {s.shown_uri: i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order.get(r.uri, 0))


def _drain(messages, progress):
    import queue as stdqueue

    while True:
        try:
            done, total, message, stage = messages.get_nowait()
        except stdqueue.Empty:
            return
        progress(done, total, message, stage=stage)


# --- reporting ------------------------------------------------------------------------------------


class _ImageProgress:
    """One progress bar for all image sources (a folder of photos is not 600 bars)."""

    def __init__(self, progress, total: int):
        self.progress, self.total, self.n, self.heads, self.kept = progress, total, 0, 0, 0

    def done(self, res: SourceResult) -> None:
        if res.kind != "image":
            return
        self.n += 1
        self.heads += res.detections
        self.kept += res.crops_kept
        self.progress(self.n, self.total, f"{self.heads} heads, {self.kept} kept", stage="images")


def _merge(report: ExtractReport, res: SourceResult) -> None:
    if res.skipped:
        report.skipped += 1
    else:
        report.sources += 1
    for k in ("frames", "detections", "tracks", "crops_kept", "crops_removed", "frames_skipped",
              "pixels_detected", "pixels_total"):
        setattr(report, k, getattr(report, k) + getattr(res, k))
    for k, v in res.dropped.items():
        report.dropped[k] = report.dropped.get(k, 0) + v
    for k, v in res.timings.items():
        report.timings[k] = round(report.timings.get(k, 0.0) + v, 3)
    if res.error:
        report.errors.append(res.error)
    report.per_source.append(res)


def summary(report: ExtractReport) -> str:
    """Two human lines for the CLI: what was done, and what was dropped why."""
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items()) if v) or "nothing"
    skipped = f" ({report.skipped} already done)" if report.skipped else ""
    removed = (f" ({report.crops_removed} unlabeled crops of earlier runs removed)"
               if report.crops_removed else "")
    plural = "" if report.sources == 1 else "s"
    return (f"{report.sources} source{plural}{skipped}: {report.frames} frames, "
            f"{report.detections} detections, {report.tracks} tracks, {report.crops_kept} crops kept{removed} in "
            f"{report.seconds:.1f} s\ndropped: {dropped}{_motion_line(report)}")


def _motion_line(report: ExtractReport) -> str:
    if not report.frames_skipped and report.pixels_detected >= report.pixels_total:
        return ""
    share = report.pixels_detected / max(report.pixels_total, 1)
    return (f"\nmotion gating: {report.frames_skipped} of {report.frames} frames skipped, "
            f"detector ran on {share:.0%} of the pixels")


# --- sources given in the app -------------------------------------------------------------------


def source_lines(text: str) -> list[str]:
    """Sources typed in the app, one per line: existing files or folders on the server (made
    absolute) and stream URLs. Only ever sources: a line that is neither, such as
    ``--checkpoint=/x``, is refused, never read as an option.

    Raises InputError naming every refused line.
    """
    found, refused = [], []
    for line in text.splitlines():
        item = line.strip()
        if not item:
            continue
        if video.is_stream(item):
            found.append(item)
            continue
        path = Path(item).expanduser()
        if path.exists():
            found.append(str(path.resolve()))
        else:
            refused.append(item)
    if refused:
        lines = ", ".join(repr(r) for r in refused)
        raise InputError(f"no such file or folder on the server: {lines} (one path or stream URL "
                         "per line; settings are chosen above, not typed here)")
    return found


def save_upload(ws: Workspace, name: str, data, *, max_mb: int | None = None) -> Path:
    """Store an uploaded file in the workspace's ``uploads/`` and return its path.

    The file is written under a temporary name and renamed to ``<sha256[:12]>-<name>`` (name
    reduced to letters, digits, ``._-``), so a half-written upload never has a real name, two
    uploads called ``cam.mp4`` do not collide, and a file an older source points to is never
    replaced by other bytes. The same bytes uploaded again give the same path.

    Parameters
    ----------
    name : the file name the browser sent (any folders in it are dropped).
    data : bytes, or a binary file object (read from its start, 1 MiB at a time).
    max_mb : size limit in MiB (default: ``limits.max_upload_mb`` of config.toml).
    """
    limit_mb = ws.config.limits.max_upload_mb if max_mb is None else max_mb
    folder = ws.root / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    safe = _safe_name(name)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".upload-", suffix=".part")
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            for block in _blocks(data):
                size += len(block)
                if size > limit_mb * 2**20:
                    raise InputError(f"{safe}: upload larger than {limit_mb} MB "
                                     "(limits.max_upload_mb in config.toml)")
                digest.update(block)
                out.write(block)
        if size == 0:
            raise InputError(f"{safe}: the upload is empty")
        sha = digest.hexdigest()
        for dest in (folder / f"{sha[:12]}-{safe}", folder / f"{sha}-{safe}"):
            if not dest.exists():
                os.replace(tmp, dest)
                return dest
            if video.file_sha256(dest) == sha:  # uploaded before: keep the file sources point to
                os.unlink(tmp)
                return dest
        raise InputError(f"{safe}: cannot store the upload (name taken by other bytes)")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _safe_name(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name).replace("\\", "/")).name).lstrip(".-")
    stem, dot, ext = base.rpartition(".")
    if len(base) > 100:  # keep the extension: it tells OpenCV the container
        base = (stem[: 99 - len(ext)] + "." + ext) if dot and len(ext) <= 10 else base[:100]
    return base or "upload"


def _blocks(data, size: int = 1 << 20):
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data)
        for i in range(0, len(view), size):
            yield view[i:i + size]
        return
    if hasattr(data, "seek"):
        data.seek(0)
    while block := data.read(size):
        yield block
