"""Job: CCTV footage -> people (OpenPifPaf keypoints or MTCNN faces) -> head crops in the queue.

Per source: read sampled frames (``annotator.video``), detect (``annotator.detectors``), cut a head box
from each person (``annotator.geometry``), follow heads across frames and keep a few good crops
per track (``annotator.track``), store them (``ws.store``) and add them to the queue.

Resumable and idempotent:

* A file source is known by its content sha256; a source already ``done`` is skipped.
* Work is committed every ``chunk_frames`` sampled frames in one transaction together with
  ``frames_done``, the tracker state and the crops still waiting for their track to end (their
  image files are already in the store). A killed run restarts from the last commit with the
  same state, so it ends with exactly the crops of an uninterrupted run and no duplicates
  (``queue.add_crops`` also ignores origins it knows).
* Crop files of candidates that thinning drops are deleted once no crop row uses them.

Several sources run in parallel worker processes (``workers``); each loads its detector once.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator import queue, video
from annotator.db import Crop, count, get_or_create_source, update_source_progress
from annotator.errors import AnnotatorError, InputError
from annotator.geometry import head_box, sharpness
from annotator.progress import ProgressFn, silent
from annotator.track import Tracker, compact, crop_quality, thin
from annotator.workspace import Workspace

PENDING_CAP = 8  # candidates held per live track = PENDING_CAP * per_track (bounds memory)


@dataclass(kw_only=True)
class ExtractOptions:
    """What to extract; ``None`` means the workspace's ``[extract]`` default."""

    sources: list[str]
    detector: str | None = None
    checkpoint: str | None = None
    fps: float | None = None
    every: int | None = None
    min_size: float | None = None
    margin: float | None = None
    per_track: int | None = None
    min_sharpness: float | None = None
    max_seconds: float | None = None
    long_edge: int | None = None
    batch_size: int | None = None
    workers: int | None = None  # None: one per source up to half the cores
    chunk_frames: int = 16  # sampled frames per transaction


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
    dropped: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class ExtractReport:
    sources: int = 0  # sources processed by this run (not counting skipped ones)
    skipped: int = 0  # already fully extracted: nothing to do
    frames: int = 0  # sampled frames run through the detector
    detections: int = 0
    tracks: int = 0
    crops_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    detector: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    per_source: list[SourceResult] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    """Options resolved against the workspace config (picklable: sent to worker processes)."""

    detector: str
    checkpoint: str | None
    fps: float | None
    every: int | None
    min_size: float
    margin: float
    per_track: int
    min_sharpness: float
    max_seconds: float | None
    long_edge: int | None
    batch_size: int
    chunk_frames: int

    def public(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "chunk_frames"}


def resolve(ws: Workspace, opts: ExtractOptions) -> Settings:
    cfg = ws.config.extract
    pick = lambda v, d: d if v is None else v  # noqa: E731
    if opts.fps is not None and opts.every is not None:
        raise InputError("give either --fps or --every, not both")
    every = opts.every
    fps = None if every else pick(opts.fps, cfg.fps)
    s = Settings(
        detector=pick(opts.detector, cfg.detector),
        checkpoint=pick(opts.checkpoint, cfg.checkpoint),
        fps=fps, every=every,
        min_size=float(pick(opts.min_size, cfg.min_size)),
        margin=float(pick(opts.margin, cfg.margin)),
        per_track=int(pick(opts.per_track, cfg.per_track)),
        min_sharpness=float(pick(opts.min_sharpness, cfg.min_sharpness)),
        max_seconds=opts.max_seconds,
        long_edge=pick(opts.long_edge, cfg.long_edge) or None,
        batch_size=int(pick(opts.batch_size, cfg.batch_size)),
        chunk_frames=int(opts.chunk_frames),
    )
    if s.detector not in ("openpifpaf", "mtcnn"):
        raise InputError(f"unknown detector {s.detector!r}; expected openpifpaf or mtcnn")
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
    specs, errors = video.expand_sources(list(opts.sources))
    if not specs and not errors:
        raise InputError("no sources given")
    report = ExtractReport(detector=settings.detector, errors=list(errors))
    if settings.detector == "openpifpaf" and specs:
        from annotator.detectors import resolve_checkpoint

        resolve_checkpoint(settings.checkpoint)  # fail once, clearly, before any work
    workers = _workers(opts.workers, specs)
    images = _ImageProgress(progress, sum(1 for s in specs if s.kind == "image"))
    if workers <= 1:
        detector = _load(settings, threads=None) if specs else None
        results = []
        for spec in specs:
            results.append(extract_source(ws, spec, settings, detector, progress))
            images.done(results[-1])
    else:
        results = _run_parallel(ws, specs, settings, workers, progress, images)
    for res in results:
        _merge(report, res)
    report.seconds = round(time.perf_counter() - t0, 2)
    return report


# --- one source ---------------------------------------------------------------------------------


def extract_source(ws: Workspace, spec: video.SourceSpec, st: Settings, detector,
                   progress: ProgressFn = silent) -> SourceResult:
    """Extract one source (never raises for a bad source: the error is in the result)."""
    res = SourceResult(name=spec.name, uri=spec.uri, kind=spec.kind)
    try:
        _SourceRun(ws, spec, st, detector, progress, res).run()
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
    return res


class _SourceRun:
    """State of one source's extraction between commits."""

    def __init__(self, ws, spec, st: Settings, detector, progress, res):
        self.ws, self.spec, self.st, self.detector, self.res = ws, spec, st, detector, res
        self.progress = progress
        self.dropped: Counter = Counter()
        self.to_add: list[queue.NewCrop] = []
        self.discard: list[dict] = []
        self.pending: dict[int, list[dict]] = {}
        self.timings = Counter()
        self.base = Counter()  # totals of earlier runs of this source (sources.stats)

    # -- setup and resume --
    def run(self):
        spec, st = self.spec, self.st
        key, sha = source_key(spec)
        info = video.probe(spec)
        with self.ws.session() as s:
            src = source_row(s, spec, key=key, sha256=sha, info=info)
            self.source_id, start, status, stats = src.id, src.frames_done, src.status, src.stats
        self.res.source_id = self.source_id
        if status == "done" and spec.kind != "stream":
            self.res.skipped, self.res.status = True, "done"
            return
        stats = stats or {}
        saved = stats.get("resume") if start > 0 and spec.kind != "stream" else None
        if saved:  # interrupted: same tracker, same crops waiting for their tracks to end
            self.tracker = Tracker.from_state(saved["tracker"])
            self.pending = {int(k): v for k, v in saved["pending"].items()}
        else:
            self.tracker = Tracker()
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
        batch, since_commit = [], 0
        it = iter(reader)
        while True:
            t = time.perf_counter()
            frame = next(it, None)
            self.timings["decode"] += time.perf_counter() - t
            if frame is not None:
                batch.append(frame)
            if batch and (frame is None or len(batch) >= st.batch_size):
                self._process(batch)
                since_commit += len(batch)
                last = batch[-1].index
                batch = []
                if since_commit >= st.chunk_frames:
                    self._commit(last + 1, final=False, status="running")
                    since_commit = 0
                self._report_progress()
            if frame is None:
                return

    def _report_progress(self, final=False):
        if self.spec.kind == "image":  # images share one bar (see _ImageProgress)
            return
        done = self.res.frames
        rate = done / max(time.perf_counter() - self.t_start, 1e-9)
        message = f"{self.res.detections} heads, {self.res.crops_kept} kept, {rate:.1f} frames/s"
        self.progress(done, done if final else self.expected, message, stage=self.spec.name)

    # -- per batch of frames --
    def _process(self, frames):
        st = self.st
        t = time.perf_counter()
        people_per_frame = self.detector.people([f.image for f in frames])
        self.timings["detect"] += time.perf_counter() - t
        for frame, people in zip(frames, people_per_frame):
            t = time.perf_counter()
            self.res.frames += 1
            self.res.detections += len(people)
            found = head_crops(frame.image, people, margin=st.margin, min_size=st.min_size,
                               min_sharpness=st.min_sharpness, dropped=self.dropped)
            boxes = [hb.box for _p, hb, _crop, _sharp in found]
            ids, ended = self.tracker.update(np.array(boxes, dtype=float).reshape(-1, 4),
                                             frame.timestamp_s)
            for tid in ended:
                self._end_track(tid)
            for tid, (p, hb, crop, sharp) in zip(ids.tolist(), found):
                self._add_candidate(tid, frame, p, hb, crop, sharp)
            self.timings["crop_store"] += time.perf_counter() - t

    def _add_candidate(self, tid, frame, person, hb, crop, sharp):
        stored = self.ws.store.put_image(crop)
        kps = None
        if person.keypoints is not None:
            kps = np.round(np.asarray(person.keypoints, dtype=float), 2).tolist()
        cand = {
            "origin": crop_origin(frame.index, hb),
            "sha256": stored.sha256, "path": stored.relpath,
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
            self.discard += [c for i, c in enumerate(cands) if i not in keep]
            self.dropped["near_duplicate"] += len(cands) - len(keep)
            self.pending[tid] = [c for i, c in enumerate(cands) if i in keep]

    def _end_track(self, tid):
        cands = self.pending.pop(tid, [])
        if not cands:
            return
        keep = thin(np.array([c["timestamp_s"] for c in cands]),
                    np.array([c["quality"] for c in cands]), self.st.per_track).tolist()
        for i in keep:
            c = cands[i]
            self.to_add.append(queue.NewCrop(
                origin=c["origin"], sha256=c["sha256"], path=c["path"], width=c["width"],
                height=c["height"], frame_index=c["frame_index"], timestamp_s=c["timestamp_s"],
                box=tuple(c["box"]), detector=self.detector.name, det_score=c["det_score"],
                keypoints=c["keypoints"], sharpness=c["sharpness"], track_id=tid))
        kept = set(keep)
        self.discard += [c for i, c in enumerate(cands) if i not in kept]
        self.dropped["near_duplicate"] += len(cands) - len(kept)
        self.res.tracks += 1

    # -- one transaction: crops + progress + resume state --
    def _commit(self, frames_done, *, final, status, error=None):
        t = time.perf_counter()
        stats = {"settings": self.st.public()}
        if not final:
            stats["resume"] = {"tracker": self.tracker.state(),
                               "pending": {str(k): v for k, v in self.pending.items()}}
        with self.ws.session() as s:
            new_ids = queue.add_crops(s, self.source_id, self.to_add)
            stats["totals"] = self._totals(len(new_ids))
            update_source_progress(s, self.source_id, frames_done=frames_done, status=status,
                                   error=error, stats=stats)
        self.res.crops_kept += len(new_ids)  # counted once committed
        self.to_add = []
        self._delete_unused(self.discard)
        self.discard = []
        self.timings["db"] += time.perf_counter() - t
        self.res.dropped = dict(self.dropped)
        self.res.timings = {k: round(v, 3) for k, v in self.timings.items()}

    def _totals(self, new_crops: int) -> dict:
        """Counts over every run of this source (earlier runs' totals + this run so far)."""
        t = Counter(self.base)
        t.update({k: getattr(self.res, k) for k in ("frames", "detections", "tracks")})
        t.update({"crops_kept": self.res.crops_kept + new_crops})
        t.update({f"dropped_{k}": v for k, v in self.dropped.items()})
        return dict(t)

    def _delete_unused(self, cands):
        """Remove stored files of dropped candidates that no crop row or pending crop uses."""
        if not cands:
            return
        busy = {c["sha256"] for cs in self.pending.values() for c in cs}
        with self.ws.read_session() as s:
            for c in {c["sha256"]: c for c in cands}.values():
                if c["sha256"] in busy or count(s, Crop, Crop.sha256 == c["sha256"]):
                    continue
                try:
                    self.ws.store.path(c["path"]).unlink()
                except FileNotFoundError:
                    pass


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
        return spec.uri, None
    if not Path(spec.uri).is_file():
        raise InputError(f"{spec.name}: no such file")
    sha = video.file_sha256(spec.uri)
    return sha, sha


def source_row(session, spec: video.SourceSpec, *, key: str, sha256: str | None,
               info: video.VideoInfo):
    """The source's row (created on first sight, by extract or by detect)."""
    return get_or_create_source(
        session, key=key, kind=spec.kind, uri=spec.uri, name=spec.name, sha256=sha256,
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


def _load(st: Settings, *, threads: int | None):
    """The detector for this process. MTCNN's small convolutions gain nothing from several
    threads and lose a lot when cores are busy, so it runs on one; OpenPifPaf gets the cores."""
    from annotator.detectors import load_detector

    if st.detector == "mtcnn":
        threads = 1

    return load_detector(st.detector, checkpoint=st.checkpoint, long_edge=st.long_edge,
                         batch_size=st.batch_size, min_face_size=max(12, int(st.min_size / 1.25)),
                         threads=threads)


def _workers(requested: int | None, specs) -> int:
    heavy = sum(1 for s in specs if s.kind != "image") or (1 if specs else 0)
    if requested is not None:
        if requested < 1:
            raise InputError(f"--workers must be >= 1, got {requested}")
        return min(requested, max(len(specs), 1))
    cores = os.cpu_count() or 1
    return max(1, min(heavy, cores // 2))


_WORKER: dict = {}  # filled in each worker process by _worker_init


def _worker_init(root, db_url, st, threads, messages):
    _WORKER["ws"] = Workspace.open(Path(root), db_url=db_url)
    _WORKER["detector"] = _load(st, threads=threads)
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
    threads = max(1, (os.cpu_count() or 1) // workers)
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
                    except Exception as exc:  # the worker itself died
                        results.append(SourceResult(
                            name=spec.name, uri=spec.uri, kind=spec.kind, status="error",
                            error=f"{spec.name}: worker failed: {exc}"))
                    images.done(results[-1])
            _drain(messages, progress)
    order = {s.uri: i for i, s in enumerate(specs)}
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
    for k in ("frames", "detections", "tracks", "crops_kept"):
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
    return (f"{report.sources} sources{skipped}: {report.frames} frames, {report.detections} "
            f"detections, {report.tracks} tracks, {report.crops_kept} crops kept in "
            f"{report.seconds:.1f} s\ndropped: {dropped}")
