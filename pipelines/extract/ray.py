"""Job engine for ``extract --engine ray``: video files cut into frame ranges, one Ray task each.

A task decodes its range where the footage is (OpenCV, seeking to the range's first frame),
detects, tracks and thins exactly as the local engine does, and sends back only the kept crops:
PNG bytes plus the crop's fields. This process (the driver) writes them to the workspace's
store and queue, one transaction per range, with the same idempotency key as local runs
(source + origin ``fNNNNNN:x1,y1,x2,y2``). So the workers need the footage and the Python
dependencies, never the workspace or the database; the project's code travels with the job
(``runtime_env`` ``py_modules``).

Ranges and tracks: a range starts with a fresh tracker and ends every track at its last frame,
so a person in view across a range boundary becomes two tracks, each thinned to ``per_track``
crops (up to twice as many crops of that person as a local run, some at other frames). Ranges
are ``range_seconds`` of video (default 5 minutes: most people cross a camera's view in
seconds), cut at multiples of ``every`` with ``--every``; with ``--fps`` each range also reads
the frame before its first, for its timestamp, so the sampled frames are exactly the local
run's whatever the cut. A range as long as the video gives exactly the local run's crops.
With motion gating a range also starts a fresh background (its first sampled frame is detected
whole, and it neither sees the trail of a person who just left nor holds a face seen in the range
before), so short ranges skip other frames than a local run, more or fewer; the driver adds up
each range's counts (frames skipped, pixels detected and in all) into the source's, as the local
engine counts a source's batches.

Resumable: the source's ``stats["ray"]`` holds the committed frame intervals (``done``) and the
next free track id, written in the transaction that adds a range's crops; ``frames_done`` is the
end of the committed prefix. A re-run after the driver was killed redoes only the frames no
interval covers; a worker that dies is retried by Ray. A complete run adds nothing when run
again (the source is ``done``; the origins are known anyway).
"""
from __future__ import annotations

import os
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from annotator.core.errors import AnnotatorError, InputError
from annotator.core.failpoints import failpoint
from annotator.core.footage import Candidate, Keeper
from annotator.core.progress import ProgressFn
from annotator.data import crop_queue, slice_store
from annotator.data.db import update_source_progress
from annotator.media import video
from annotator.media.images import encode_png
from annotator.service.workspace import Workspace
from pipelines.common.footage_source import expected_frames
from pipelines.extract.detector import LazyDetector, NoDetector
from pipelines.extract.frames import FrameLoop, Kept
from pipelines.extract.options import Settings, SourceResult
from pipelines.extract.ray_cluster import connect, first_line, import_ray, send_token
from pipelines.extract.source import (OpenedSource, extract_source, new_crop, open_source,
                                      remove_unused_files, source_totals)

DEFAULT_RANGE_SECONDS = 300.0
TORCH_DETECTORS = ("mtcnn", "openpifpaf")  # YuNet runs on the CPU only: never asks for a GPU
AFTER_RANGE = "extract_ray_after_range"  # failpoint: the driver, right after a range's commit
IN_TASK = "extract_ray_in_task"  # failpoint: a worker, as a range task starts
# what a range counts, added up per source by the driver (motion gating's three as well: the
# summary's "motion gating" line and --json need them, as for a local run)
RANGE_COUNTS = ("frames", "detections", "tracks", "frames_skipped", "pixels_detected",
                "pixels_total")


# --- the driver -----------------------------------------------------------------------------------


def run_sources(ws: Workspace, specs: list[video.SourceSpec], st: Settings, progress: ProgressFn,
                images, *, address: str | None, range_seconds: float | None) -> list[SourceResult]:
    """Extract ``specs`` with video files as Ray tasks; images and streams run here, as locally
    (a photo is one frame, a stream cannot be cut into ranges). Results in ``specs`` order."""
    range_s = DEFAULT_RANGE_SECONDS if range_seconds is None else float(range_seconds)
    if range_s <= 0:
        raise InputError(f"--range-seconds must be > 0, got {range_seconds}")
    token = send_token()  # before importing Ray, which reads its settings once
    ray = import_ray()
    results: dict[int, SourceResult] = {}
    videos = any(s.kind == "video" for s in specs)
    started = connect(ray, address, token=token) if videos else False
    try:
        cluster = _Cluster(ray, st) if videos else None
        if videos and st.redo:
            cluster.check_detector()  # first: a detector that cannot be built removes nothing
        jobs = []
        for i, spec in enumerate(specs):
            if spec.kind != "video":
                continue
            job = _RaySource(ws, spec, st, progress, range_s)
            results[i] = job.res
            if job.open():
                jobs.append(job)
        if jobs:
            if cluster.device is None:
                cluster.check_detector()
            for job in jobs:
                job.device = f" ({cluster.device})" if cluster.device != "cpu" else ""
            _run_ranges(ray, cluster, jobs)
        local = LazyDetector(st, threads=None)
        for i, spec in enumerate(specs):
            if spec.kind != "video":
                results[i] = extract_source(ws, spec, st, local, progress)
                images.done(results[i])
    finally:
        if started:
            ray.shutdown()
    return [results[i] for i in range(len(specs))]


class _Cluster:
    """What every task of this run asks for: one CPU, and one GPU when the cluster has GPUs and
    the detector runs on torch (unmeasured here: no GPU on the machines this was written on)."""

    def __init__(self, ray, st: Settings):
        self.ray, self.st = ray, st
        gpus = ray.cluster_resources().get("GPU", 0) if st.detector in TORCH_DETECTORS else 0
        self.resources = dict(num_cpus=1, num_gpus=1 if gpus >= 1 else 0)
        # Tasks are pure functions of their range: Ray retries one whose worker died.
        self.range_fn = ray.remote(_range_task).options(max_retries=3, **self.resources)
        self.device: str | None = None  # where the detector runs, once a worker built it
        slots = ray.cluster_resources().get("GPU" if self.resources["num_gpus"] else "CPU", 1)
        self.window = max(2, 2 * int(slots))  # ranges in flight: each slot busy, one queued
        self.probe_fn = ray.remote(_probe_task).options(max_retries=3, **self.resources)

    def check_detector(self) -> None:
        """Build the detector on a worker before any range: one clear line if it cannot be."""
        try:
            self.device = self.ray.get(self.probe_fn.remote(self.st))
        except NoDetector as exc:
            raise NoDetector(first_line(exc)) from None
        except self.ray.exceptions.RayError as exc:
            raise InputError(f"Ray workers cannot run the extraction: {first_line(exc)}") from None


def _run_ranges(ray, cluster: _Cluster, jobs: list["_RaySource"]) -> None:
    """Keep the cluster busy with ranges, sources in order, and commit each as it comes back.

    Only ``cluster.window`` ranges are in flight: a camera-day is hundreds of ranges, and a
    driver that dies loses only what is in flight; sources also finish one after another."""
    queued = [(job, start, stop) for job in jobs for start, stop in job.todo]
    queued.reverse()  # popped from the end: first source, first range first
    for job in jobs:
        job.outstanding = len(job.todo)
    waiting: dict = {}
    try:
        while waiting or queued:
            while queued and len(waiting) < cluster.window:
                job, start, stop = queued.pop()
                ref = cluster.range_fn.remote(job.spec, job.st, start, stop, job.size_bytes)
                waiting[ref] = (job, start, stop)
                if not job.shown:  # its bar appears with its first range
                    job.shown = True
                    job.report_progress()
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=1.0)
            for ref in ready:
                job, start, stop = waiting.pop(ref)
                try:
                    result = ray.get(ref)
                except NoDetector as exc:
                    raise NoDetector(first_line(exc)) from None
                except ray.exceptions.RayError as exc:
                    job.failed(_range_error(exc))
                else:
                    job.commit(start, stop, result)
                    failpoint(AFTER_RANGE)
                job.outstanding -= 1
                if job.outstanding == 0:
                    job.finish()
    except BaseException:
        for ref in waiting:  # Ctrl-C or a stop: what is committed stays, the rest is redone
            ray.cancel(ref, force=True)
        raise


def _range_error(exc) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, AnnotatorError):
        return str(cause)
    return f"{type(cause or exc).__name__}: {first_line(exc)}"


@dataclass
class _RayState:
    """``stats["ray"]`` of a source: committed frame intervals and the next free track id."""

    done: list[list[int]] = field(default_factory=list)  # merged [start, stop) intervals
    end: int | None = None  # first frame past the end of the video, once a range reached it
    next_track: int = 1

    def as_json(self) -> dict:
        return {"done": self.done, "end": self.end, "next_track": self.next_track}


class _RaySource:
    """The driver's side of one video: its row, what is left to do, and the commits."""

    def __init__(self, ws, spec, st: Settings, progress, range_s: float):
        self.ws, self.spec, self.st, self.progress, self.range_s = ws, spec, st, progress, range_s
        self.res = SourceResult(name=spec.name, uri=spec.shown_uri, kind=spec.kind)
        self.dropped: Counter = Counter()
        self.timings: Counter = Counter()
        self.errors: Counter = Counter()  # message -> ranges (a node without the file: many)
        self.todo: list[tuple[int, int | None]] = []
        self.ranges_done = 0
        self.leftover: list[tuple[str, str]] = []  # files of an interrupted local run's state
        self.t0 = time.perf_counter()
        self.device = ""  # " (cuda)" once the cluster said so
        self.shown = False  # its progress bar is on screen

    # -- before the tasks --
    def open(self) -> bool:
        """Find the source and plan its ranges; False when there is nothing to do."""
        try:
            opened = open_source(self.ws, self.spec, self.st, self.res)
        except AnnotatorError as exc:
            self._error(str(exc))
            return False
        except Exception as exc:  # an odd file: reported, the batch goes on
            self._error(f"{self.spec.name}: {type(exc).__name__}: {exc}")
            return False
        if opened is None:
            self.res.seconds = round(time.perf_counter() - self.t0, 3)
            return False
        self.source_id, self.info = opened.source_id, opened.info
        self.state, self.base = self._resume(opened)
        self.size_bytes = Path(self.spec.uri).stat().st_size
        self.expected = expected_frames(self.info, self.st, 0)
        self.todo = self._plan()
        if not self.todo:
            self.finish()
            return False
        return True

    def _resume(self, opened: OpenedSource) -> tuple[_RayState, Counter]:
        stats, status = opened.stats, opened.status
        saved = stats.get("ray")
        runs = Counter({"runs": 1})
        if saved and status in ("running", "partial", "error"):
            state = _RayState(done=[list(iv) for iv in saved.get("done", [])],
                              end=saved.get("end"), next_track=int(saved.get("next_track", 1)))
            return state, Counter(stats.get("totals", {})) + runs
        # above the tracks of crops kept from earlier runs (labeled ones survive --redo)
        state = _RayState(next_track=opened.first_track)
        if status == "partial" and opened.frames_done and "resume" not in stats:
            # a local run stopped by --max-seconds: it too would go on from there, tracks cut
            state.done = [[0, opened.frames_done]]
            return state, Counter(stats.get("totals", {})) + runs
        # Fresh, or a killed local run: from frame 0 (known origins are not added twice). The
        # local run's waiting crops have files in the store; those no crop keeps go at the end.
        for cands in (stats.get("resume") or {}).get("pending", {}).values():
            self.leftover += [(c["sha256"], c["path"]) for c in cands if c.get("sha256")]
        return state, runs

    def _plan(self) -> list[tuple[int, int | None]]:
        return plan_ranges(self.state.done, end=self.state.end, frame_count=self.info.frame_count,
                           fps=self.info.fps, range_seconds=self.range_s, every=self.st.every,
                           max_seconds=self.st.max_seconds)

    # -- as the tasks finish --
    def commit(self, start: int, stop: int | None, r: dict) -> None:
        """One range's crops into the store and the queue, with its interval, in one transaction."""
        t = time.perf_counter()
        files = [self.ws.store.put_bytes(c["png"], "png") for c in r["crops"]]
        state = _RayState(done=_merge(self.state.done, start, r["next_index"]),
                          end=_end(self.state.end, r),
                          next_track=self.state.next_track + r["tracks_made"])
        crops = [new_crop(c["cand"], sha256=f.sha256, path=f.relpath, detector=self.st.detector,
                          track_id=self.state.next_track + c["track"] - 1)
                 for c, f in zip(r["crops"], files)]
        self.dropped.update(r["dropped"])
        for k in RANGE_COUNTS:
            setattr(self.res, k, getattr(self.res, k) + r[k])
        if r["problem"]:
            self.errors[r["problem"]] += 1
        with self.ws.session() as s:
            new_ids = crop_queue.add_crops(s, self.source_id, crops)
            totals = self._totals(len(new_ids))
            update_source_progress(s, self.source_id, frames_done=_prefix(state.done),
                                   status="running", stats=self._stats(state, totals))
        self.state = state
        # files of crops whose origin was known already (an earlier run added it) may be unused
        remove_unused_files(self.ws, [(f.sha256, f.relpath) for f in files])
        self.res.crops_kept += len(new_ids)
        slice_store.fill(self.ws, new_ids)  # slice attributes; backfill heals a crash here
        self.ranges_done += 1
        self.timings.update(r["timings"])
        self.timings["db"] += time.perf_counter() - t
        self.report_progress()

    def failed(self, message: str) -> None:
        """A range that failed (after Ray's retries): the source ends in error, its other ranges
        are committed, and a re-run redoes the failed ones."""
        self.errors[message if self.spec.name in message else f"{self.spec.name}: {message}"] += 1

    def finish(self) -> None:
        """All of this run's ranges are back: the source's final status."""
        st = self.state
        complete = st.end is not None and _holes(st.done, st.end) == []
        if self.errors and not complete:
            status = "error"
        else:
            status = "done" if complete else "partial"
        error = "; ".join(m if n == 1 else f"{m} ({n} ranges)"
                          for m, n in self.errors.items()) or None
        with self.ws.session() as s:
            update_source_progress(s, self.source_id, frames_done=_prefix(st.done), status=status,
                                   error=error, stats=self._stats(st, self._totals(0)))
        remove_unused_files(self.ws, self.leftover)
        self.res.status, self.res.error = status, error
        self.res.dropped = dict(self.dropped)
        self.res.timings = {k: round(v, 3) for k, v in self.timings.items()}
        self.res.seconds = round(time.perf_counter() - self.t0, 3)
        self.report_progress(final=True)

    def _error(self, message: str) -> None:
        self.res.error, self.res.status = message, "error"
        if self.res.source_id:
            try:
                with self.ws.session() as s:
                    update_source_progress(s, self.res.source_id, status="error", error=message)
            except Exception:  # the report still carries the error
                pass

    def _totals(self, new_crops: int) -> dict:
        return source_totals(self.base, self.res, self.dropped, new_crops)

    def _stats(self, state: _RayState, totals: dict) -> dict:
        return {"settings": self.st.public(), "totals": totals,
                "ray": {**state.as_json(), "range_seconds": self.range_s}}

    def report_progress(self, final: bool = False) -> None:
        done = self.base.get("frames", 0) + self.res.frames
        rate = self.res.frames / max(time.perf_counter() - self.t0, 1e-9)
        ranges = f"{self.ranges_done}/{len(self.todo)} ranges"
        message = (f"ray {self.st.detector}{self.device}: {ranges}, {self.res.detections} heads, "
                   f"{self.res.crops_kept} kept, {rate:.1f} frames/s")
        total = done if final else (self.expected and max(self.expected, done))
        self.progress(done, total, message, stage=self.spec.name)


def plan_ranges(done: list[list[int]], *, end: int | None, frame_count: int | None,
                fps: float | None, range_seconds: float, every: int | None,
                max_seconds: float | None) -> list[tuple[int, int | None]]:
    """The ranges ``[start, stop)`` not committed yet, the last one open (to the end of the file).

    Cut at multiples of ``range_seconds`` of frames (of ``every`` too, with ``--every``), so a
    re-run cuts where the first run did; ranges starting past ``max_seconds`` (with a second's
    margin, as timestamps come from the container) are left for a later run.
    """
    size = max(1, round(range_seconds * fps)) if fps else None
    if size and every:
        size = max(every, size // every * every)
    n = end if end is not None else frame_count
    limit = int((max_seconds + 1.0) * fps) + 1 if max_seconds is not None and fps else None
    ranges = []
    for a, b in _holes(done, end):
        cuts = [a]
        if size and n:
            k = a // size + 1
            while k * size < (b if b is not None else n):
                cuts.append(k * size)
                k += 1
        for i, c in enumerate(cuts):
            if limit is not None and c > limit:
                break
            ranges.append((c, cuts[i + 1] if i + 1 < len(cuts) else b))
    return ranges


def _end(end: int | None, r: dict) -> int | None:
    """The video ends at the first end a range found (a range planned past the true end, from
    an overstated frame count, finds it further on)."""
    if not r["finished"]:
        return end
    return r["next_index"] if end is None else min(end, r["next_index"])


def _holes(done: list[list[int]], end: int | None) -> list[tuple[int, int | None]]:
    """The frame intervals ``[a, b)`` that ``done`` does not cover, up to ``end`` (None: open)."""
    holes, at = [], 0
    for a, b in sorted(done):
        if a > at:
            holes.append((at, a))
        at = max(at, b)
    if end is None or at < end:
        holes.append((at, end))
    return holes


def _merge(done: list[list[int]], a: int, b: int) -> list[list[int]]:
    out: list[list[int]] = []
    for x, y in sorted([*done, [a, b]]):
        if y <= x:
            continue
        if out and x <= out[-1][1]:
            out[-1][1] = max(out[-1][1], y)
        else:
            out.append([x, y])
    return out


def _prefix(done: list[list[int]]) -> int:
    """Frames ``[0, n)`` committed without a gap (a local run resumes from there)."""
    first = min(done, default=None)
    return first[1] if first and first[0] == 0 else 0


# --- the workers ----------------------------------------------------------------------------------

_DETECTORS: dict = {}  # per worker process: Settings -> detector, built once for many ranges


def _worker_detector(st: Settings) -> LazyDetector:
    if st not in _DETECTORS:
        _DETECTORS[st] = LazyDetector(st, threads=1)  # one CPU per task
    return _DETECTORS[st]


def _probe_task(st: Settings) -> str:
    """Build this run's detector on a worker; the device it runs on."""
    det = _worker_detector(st)
    det.load()
    return det.device


class _RangeRun:
    """One frame range through the frame loop every engine shares, with no workspace: what this
    engine does with a kept crop is encode it to PNG bytes here (the driver stores them);
    dropped candidates never become files. Track ids start at 1 (the driver offsets them)."""

    def __init__(self, spec, st: Settings, detector):
        self.spec, self.st = spec, st
        self.res = SourceResult(name=spec.name, uri=spec.shown_uri, kind=spec.kind)
        self.loop = FrameLoop(st, detector, Keeper(st.per_track), self.res, kind=spec.kind)
        self.kept: list[dict] = []

    def _keep(self, kept: list[Kept], _dropped: list[Candidate]) -> None:
        t = time.perf_counter()  # timed with crop_store, as a local run's file is
        for tid, cand in kept:
            png = encode_png(cand.image)
            cand.image = None
            self.kept.append({"cand": cand, "png": png, "track": tid})
        self.loop.timings["crop_store"] += time.perf_counter() - t

    def run_range(self, start: int, stop: int | None) -> dict:
        st, loop = self.st, self.loop
        reader = video.FrameReader(self.spec, start=start, stop=stop, fps=st.fps, every=st.every,
                                   max_seconds=st.max_seconds, seek=True)
        for batch in video.batches(reader, st.batch_size, loop.timings):
            self._keep(*loop.process(batch))
        self._keep(*loop.finish())  # the range ends every track (see the module's doc)
        return {"crops": self.kept, **{k: getattr(self.res, k) for k in RANGE_COUNTS},
                "tracks_made": loop.keeper.tracks_made,
                "dropped": dict(loop.dropped), "timings": dict(loop.timings),
                "next_index": reader.next_index, "finished": reader.finished,
                "problem": reader.problem}


def _range_task(spec: video.SourceSpec, st: Settings, start: int, stop: int | None,
                size_bytes: int) -> dict:
    """A Ray task: the kept crops of frames ``[start, stop)`` of a video file on this node."""
    failpoint(IN_TASK)
    path = Path(spec.uri)
    if not path.is_file() or path.stat().st_size != size_bytes:
        what = "not found" if not path.is_file() else "a different file"
        raise InputError(f"{spec.name}: {what} at {spec.uri} on Ray node {_node()}: the footage "
                         "must be at the same path on every node")
    return _RangeRun(spec, st, _worker_detector(st)).run_range(start, stop)


def _node() -> str:
    try:
        return socket.gethostname()
    except OSError:
        return os.environ.get("HOSTNAME", "?")
