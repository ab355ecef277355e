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

The package: ``options`` (what is asked, resolved, reported), ``frames`` (the frame loop every
engine shares, around ``annotator.core.footage.Keeper``), ``source`` (one source on this
machine: commits and resume), ``workers`` (processes), ``ray`` and ``ray_cluster`` (Ray ranges),
``uploads`` (sources given in the app); this module runs a batch of sources.
``engine="ray"`` runs video files as frame ranges on a Ray cluster instead
(:mod:`pipelines.extract.ray`).
"""
from __future__ import annotations

import time
from pathlib import Path

from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent
from annotator.media import detectors, video
from annotator.service.workspace import Workspace
from pipelines.extract.detector import LazyDetector, workers_for
from pipelines.extract.options import (ENGINES, ExtractOptions, ExtractReport, SourceResult,
                                       resolve)
from pipelines.extract.source import extract_source
from pipelines.extract.workers import run_parallel


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
    workers = workers_for(opts.workers, specs)
    images = _ImageProgress(progress, sum(1 for s in specs if s.kind == "image"))
    if opts.engine == "ray":
        from pipelines.extract import ray

        results = ray.run_sources(ws, specs, settings, progress, images,
                                          address=opts.address, range_seconds=opts.range_seconds)
    elif workers <= 1:
        detector = LazyDetector(settings, threads=None)
        results = []
        for spec in specs:
            results.append(extract_source(ws, spec, settings, detector, progress))
            images.done(results[-1])
    else:
        results = run_parallel(ws, specs, settings, workers, progress, images)
    for res in results:
        _merge(report, res)
    if report.crops_kept:  # ranked (and guessed) at once, not after the next promotion
        from pipelines.common import scoring
        report.scored = scoring.score_new(ws, progress)
    if opts.delete_source_after:  # privacy: footage kept no longer than needed; crops stay
        for res in results:
            if res.status == "done" and res.kind in ("video", "image") and Path(res.uri).is_file():
                Path(res.uri).unlink()
                report.deleted_sources.append(res.uri)
    report.seconds = round(time.perf_counter() - t0, 2)
    return report



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
