"""One source extracted on this machine, resumable: its row (:func:`open_source`), the frame
loop (``pipelines.extract.frames``), and commits of kept crops, progress and resume state in
one transaction; plus the stored-file bookkeeping that Ray's driver shares."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select

from annotator.core.errors import AnnotatorError
from annotator.core.failpoints import failpoint
from annotator.core.footage import Candidate, Keeper
from annotator.core.motion import MotionGate
from annotator.core.progress import ProgressFn, silent
from annotator.data import crop_queue, slice_store
from annotator.data.db import Crop, chunks, update_source_progress
from annotator.media import video
from annotator.service.workspace import Workspace
from pipelines.common.footage_source import (expected_frames, next_track_id, source_key,
                                             source_row)
from pipelines.extract.detector import NoDetector, load_timed
from pipelines.extract.frames import FrameLoop, Kept
from pipelines.extract.options import Settings, SourceResult

AFTER_CHECKPOINT = "extract_after_checkpoint"  # failpoint: right after a mid-source commit


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
        self.to_add: list[crop_queue.NewCrop] = []
        self.discard: list[Candidate] = []  # dropped candidates whose file was written
        self.timings: Counter = Counter()
        self.base = Counter()  # totals of earlier runs of this source (sources.stats)

    # -- setup and resume --
    def run(self):
        spec, st = self.spec, self.st
        opened = open_source(self.ws, spec, st, self.res,
                             before_redo=lambda: load_timed(self.detector, self.timings))
        if opened is None:
            return
        self.source_id, info = opened.source_id, opened.info
        start, status, stats = opened.frames_done, opened.status, opened.stats
        saved = stats.get("resume") if start > 0 and spec.kind != "stream" else None
        motion = None
        if saved:  # interrupted: same tracker, same crops waiting for their tracks to end
            keeper = Keeper.from_state(saved, st.per_track)
            if saved.get("motion"):  # and the same background
                motion = MotionGate.from_state(saved["motion"])
        else:
            # A continued source (a stream, a run stopped by --max-seconds) numbers its new
            # tracks after the old ones: one id is always one person.
            keeper = Keeper(st.per_track, first_id=opened.first_track)
            if status != "partial" and spec.kind != "stream":
                start = 0  # nothing reliable to resume from
        self.loop = FrameLoop(st, self.detector, keeper, self.res, kind=spec.kind, motion=motion,
                              timings=self.timings)
        if saved or status == "partial" or spec.kind == "stream":
            self.base.update(stats.get("totals", {}))
        self.base.update({"runs": 1})
        reader = video.FrameReader(spec, start=start, fps=st.fps, every=st.every,
                                   max_seconds=st.max_seconds)
        self._loop(reader, info)
        self._keep(*self.loop.finish())  # end of source, or of --max-seconds: tracks end here
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
            self._keep(*self.loop.process(batch))
            since_commit += len(batch)
            if since_commit >= st.chunk_frames:
                self._commit(batch[-1].index + 1, final=False, status="running")
                failpoint(AFTER_CHECKPOINT)
                since_commit = 0
            self._report_progress()

    def _report_progress(self, final=False):
        if self.spec.kind == "image":  # images share one bar (see the package's run)
            return
        done = self.res.frames
        rate = done / max(time.perf_counter() - self.t_start, 1e-9)
        message = (f"{self.st.detector}: {self.res.detections} heads, {self.res.crops_kept} kept, "
                   f"{rate:.1f} frames/s")
        self.progress(done, done if final else self.expected, message, stage=self.spec.name)

    # -- what this engine does with a kept crop: store it, add it at the next commit --
    def _keep(self, kept: list[Kept], dropped: list[Candidate]) -> None:
        t = time.perf_counter()
        for tid, cand in kept:
            c = self._stored(cand)
            self.to_add.append(new_crop(c, sha256=c.sha256, path=c.path,
                                        detector=self.st.detector, track_id=tid))
        # dropped candidates whose file was written (for a resume) may leave a file
        self.discard += [c for c in dropped if c.sha256 is not None]
        self.timings["crop_store"] += time.perf_counter() - t

    def _stored(self, cand: Candidate) -> Candidate:
        """The candidate with its image file in the store (written now if it is not yet). The
        file is written once the crop is kept, or at a commit while it waits (for a resume):
        most candidates are thinned away before either, and PNG costs ~16 ms for a 400-px face."""
        if cand.sha256 is None:
            f = self.ws.store.put_image(cand.image)
            cand.image, cand.sha256, cand.path = None, f.sha256, f.relpath
        return cand

    # -- one transaction: crops + progress + resume state --
    def _commit(self, frames_done, *, final, status, error=None):
        stats = {"settings": self.st.public()}
        keeper = self.loop.keeper
        if not final:  # a resumed run needs the waiting candidates' files
            t = time.perf_counter()
            for cands in keeper.pending.values():
                for c in cands:
                    self._stored(c)
            self.timings["crop_store"] += time.perf_counter() - t
            stats["resume"] = keeper.state()
            if self.loop.motion is not None:
                stats["resume"]["motion"] = self.loop.motion.state()
        t = time.perf_counter()
        with self.ws.session() as s:
            new_ids = crop_queue.add_crops(s, self.source_id, self.to_add)
            stats["totals"] = self._totals(len(new_ids))
            update_source_progress(s, self.source_id, frames_done=frames_done, status=status,
                                   error=error, stats=stats)
        self.res.crops_kept += len(new_ids)  # counted once committed
        slice_store.fill(self.ws, new_ids)  # slice attributes; a crash here is healed by backfill
        self.to_add = []
        busy = {c.sha256 for cs in keeper.pending.values() for c in cs}
        remove_unused_files(self.ws, [(c.sha256, c.path) for c in self.discard], busy=busy)
        self.discard = []
        self.timings["db"] += time.perf_counter() - t
        self.res.dropped = dict(self.loop.dropped)
        self.res.timings = {k: round(v, 3) for k, v in self.timings.items()}

    def _totals(self, new_crops: int) -> dict:
        return source_totals(self.base, self.res, self.loop.dropped, new_crops)


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
    first_track: int = 1  # the first track id a new run hands out (footage_source.next_track_id)


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
                              next_track_id(s, src.id, by="extract"))
    res.source_id = opened.source_id
    res.crops_removed = len(removed)
    remove_unused_files(ws, removed)
    if opened.status == "done" and spec.kind != "stream":
        res.skipped, res.status = True, "done"
        return None
    return opened


def new_crop(c: Candidate, *, sha256: str, path: str, detector: str,
             track_id: int) -> crop_queue.NewCrop:
    """The queue row of a kept candidate whose file is stored as ``sha256`` at ``path``."""
    return crop_queue.NewCrop(
        origin=c.origin, sha256=sha256, path=path, width=c.width, height=c.height,
        frame_index=c.frame_index, timestamp_s=c.time_s, box=tuple(c.box), detector=detector,
        det_score=c.det_score, keypoints=c.keypoints, sharpness=c.sharpness, track_id=track_id)


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
