"""Job: a model on footage. Detect faces, classify each, track people, vote one label per track,
and write what a site can use; the uncertain tracks' crops can go back to the labeling queue.

Per sampled frame (``annotator.media.video``): detect (``annotator.media.detectors``), cut each head box and
follow heads with the footage keeper extract uses (``annotator.core.footage``), classify all of
the frame's heads in one call (ONNX Runtime on a CPU, PyTorch on CUDA) and update each track's
vote (``annotator.core.votes``). Below ``min_prob`` (``[detect] min_prob``) a frame's label is
``unknown``.

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

``pipelines.detect.to_queue`` adds a run's hard crops to the queue (``--to-queue`` hands them over
in memory, the Footage page's button reads the folder): same source row as extract (key: the
file's sha256), same origins, so crops already in the queue are not added twice and a second
call adds nothing.

The package: ``options``, ``frames`` (the loop of one source), ``outputs`` (the run folder,
written and read), ``rendering`` (drawing, the encoder thread), ``to_queue``, ``view`` (what the
Footage page reads) and ``tiles`` (its per-track pictures and video times); this module runs a
batch of sources.
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from collections import Counter

from annotator.core import votes
from annotator.core.errors import AnnotatorError, InputError
from annotator.core.progress import ProgressFn, silent
from annotator.core.urls import redact_text
from annotator.media import video
from annotator.service.workspace import Workspace
from pipelines.detect.frames import SourceRun
from pipelines.detect.options import DetectOptions, DetectReport, Settings, SourceDetect, resolve
from pipelines.detect.outputs import (Tables, move_into_place, output_folder, temp_folder,
                                      write_json)
from pipelines.detect.to_queue import add_hard


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
                          if st.method == "debounce" else st.method, min_score=st.min_prob,
                          errors=list(errors), backend=backend,
                          codec=st.codec if st.video else None, blur_faces=st.blur_faces)
    tmp = temp_folder(out)
    try:
        writer = Tables(tmp, classes, keep_png=opts.to_queue)
        names: set[str] = set()
        timings: Counter = Counter()
        for spec in specs:
            # A stream's URL is stored and reported without its secrets (urls.redact).
            res = SourceDetect(name=spec.name, uri=spec.shown_uri, kind=spec.kind)
            try:
                SourceRun(spec, st, detector, infer, classes, writer, tmp, names, progress,
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
        write_json(tmp / "report.json", report)
        move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if opts.to_queue:
        # the crops it just wrote, handed over in memory (never read back from the files)
        report.queued = add_hard(ws, dataclasses.asdict(report), writer.hard).added
        if report.queued:  # ranked (and guessed) at once, not after the next promotion
            from pipelines.common import scoring
            report.scored = scoring.score_new(ws, progress)
        report.seconds = round(time.perf_counter() - t0, 2)
        write_json(out / "report.json", report)
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


def _classifier(model):
    """ONNX Runtime on a CPU, PyTorch on CUDA: the same choice as the score job."""
    from pipelines.common import scoring

    return scoring.inference_backend(model, "auto")


def _load_detector(st: Settings):
    from annotator.media.detectors import load_detector

    return load_detector(st.detector, checkpoint=st.checkpoint, long_edge=st.long_edge,
                         batch_size=st.batch_size, min_face_size=max(12, int(st.min_size / 1.25)),
                         min_score=st.detector_min_score)


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
