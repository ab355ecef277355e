"""`annotator detect`: a model on footage (one voted label per tracked person).

The classifier threshold is ``--min-prob`` (a class probability); ``--min-score`` is extract's
detector confidence, so detect's old ``--min-score`` still works but says so on stderr.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from annotator.core.errors import InputError
from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, command, deprecated, given, open_ws, run_job
from pipelines.cli.render import emit, print_errors, progress_bar

commands = typer.Typer()

MIN_PROB_FIELD = "min_prob"  # DetectOptions' field for --min-prob (a classifier probability)


def min_prob_of(min_prob: float | None, min_score: float | None) -> float | None:
    """--min-prob, or the deprecated --min-score (one warning line); never both."""
    if min_score is None:
        return min_prob
    if min_prob is not None:
        raise InputError("give --min-prob only (--min-score is its old name)")
    deprecated("annotator detect --min-score", "--min-prob")
    return min_score


@command(commands, "detect")
def detect_cmd(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help="Video/image files, folders (recursive), rtsp:// or http(s):// streams (with --max-seconds).")],
    model: Annotated[Optional[str], typer.Option("--model", metavar="V", help="Model version; default: the active one.")] = None,
    detector: Annotated[Optional[str], typer.Option("--detector", help="auto (the default), yunet, mtcnn or openpifpaf.")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", metavar="NAME_OR_PATH", help="OpenPifPaf checkpoint.")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frames per second of video to run on (default from config.toml).")] = None,
    every: Annotated[Optional[int], typer.Option("--every", help="Every N-th frame instead of --fps.")] = None,
    min_prob: Annotated[Optional[float], typer.Option("--min-prob", help="A lower top class probability makes a frame's label unknown (default 0.75).")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", hidden=True, help="Deprecated: --min-prob.")] = None,
    vote: Annotated[Optional[str], typer.Option("--vote", help="debounce:K (a label changes after K identical frames; default debounce:3) or majority.")] = None,
    dest: Annotated[Optional[Path], typer.Option("--out", metavar="DIR", help="Output folder; default: <workspace>/detections/run-<time>.")] = None,
    write_video: Annotated[Optional[bool], typer.Option("--video/--no-video", help="Write the annotated video (default: yes).")] = None,
    codec: Annotated[Optional[str], typer.Option("--codec", help="mp4v (the default: fast; plays in VLC, mpv, QuickTime) or vp09 (plays in browsers, ~60x slower to encode).")] = None,
    to_queue: Annotated[Optional[bool], typer.Option("--to-queue", help="Add the crops of uncertain tracks to the labeling queue.")] = None,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="Stop after this much video (streams: capture time).")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Replace the detect files of a non-empty --out.")] = None,
    blur_faces: Annotated[Optional[bool], typer.Option("--blur-faces", help="Blur every head in the annotated video (privacy).")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Run a model on footage: faces, one voted label per tracked person, an annotated video and CSVs."""
    threshold = min_prob_of(min_prob, min_score)
    from pipelines import detect

    ws = open_ws(project)
    opts = detect.DetectOptions(sources=sources, **given(
        model=model, detector=detector, checkpoint=checkpoint, fps=fps, every=every,
        vote=vote, out=None if dest is None else str(dest), video=write_video, codec=codec,
        to_queue=to_queue, max_seconds=max_seconds, force=force, blur_faces=blur_faces,
        **{MIN_PROB_FIELD: threshold}))
    with progress_bar("detect", enabled=not as_json) as progress:
        report = run_job(ws, "detect", opts, progress)
    emit(report, as_json, detect.summary(report))
    print_errors(report.errors, as_json)
    if report.errors:
        raise typer.Exit(1)
