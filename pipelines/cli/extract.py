"""`annotator extract`: head crops out of footage into the labeling queue."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from annotator.service.workspace import DEFAULT_PROJECT
from pipelines.cli.common import JsonOpt, ProjectOpt, command, given, open_ws, run_job
from pipelines.cli.render import emit, print_errors, progress_bar

commands = typer.Typer()


@command(commands, "extract")
def extract_cmd(
    sources: Annotated[list[str], typer.Argument(metavar="SOURCE...", help="Video/image files, folders (recursive), rtsp:// or http(s):// streams.")],
    detector: Annotated[Optional[str], typer.Option("--detector", help="auto (OpenPifPaf when its checkpoint is here, else YuNet), yunet (faces, offline), mtcnn (faces, offline) or openpifpaf (keypoints). Default from config.toml (auto).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", metavar="NAME_OR_PATH", help="OpenPifPaf checkpoint name (downloaded once), file, or scratch:BASENET.")] = None,
    fps: Annotated[Optional[float], typer.Option("--fps", help="Frames per second of video to sample.")] = None,
    every: Annotated[Optional[int], typer.Option("--every", help="Sample every N-th frame instead of --fps.")] = None,
    min_size: Annotated[Optional[float], typer.Option("--min-size", metavar="PX", help="Drop heads smaller than this (head height, pixels).")] = None,
    margin: Annotated[Optional[float], typer.Option("--margin", help="Context around the head, share of its height.")] = None,
    per_track: Annotated[Optional[int], typer.Option("--per-track", metavar="K", help="Crops kept per tracked head.")] = None,
    min_sharpness: Annotated[Optional[float], typer.Option("--min-sharpness", help="Drop crops whose Laplacian variance is lower.")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Drop detections scoring below this (0..1; default: the detector's own, YuNet 0.5).")] = None,
    redo: Annotated[Optional[bool], typer.Option("--redo", help="Extract finished sources again with these settings: their unlabeled crops are replaced, labeled crops and labels kept.")] = None,
    max_seconds: Annotated[Optional[float], typer.Option("--max-seconds", help="Stop after this much video (streams: capture time).")] = None,
    long_edge: Annotated[Optional[int], typer.Option("--long-edge", help="OpenPifPaf input long edge in pixels (0: native).")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Parallel processes for several sources (default: by cores).")] = None,
    engine: Annotated[Optional[str], typer.Option("--engine", help="local (processes on this machine) or ray (video files cut into frame ranges, run as tasks on a Ray cluster; the crops are stored here); default local.")] = None,
    address: Annotated[Optional[str], typer.Option("--address", help="--engine ray: auto (the cluster `ray start` runs on this machine), HOST:PORT or ray://HOST:PORT; default: start Ray on this machine for this run.")] = None,
    range_seconds: Annotated[Optional[float], typer.Option("--range-seconds", help="--engine ray: seconds of video per task (default 300); a person in view across a range boundary becomes two tracks.")] = None,
    delete_source_after: Annotated[Optional[bool], typer.Option("--delete-source-after", help="Delete each video/image file once fully extracted (crops and labels stay; the frame context then says the frame is gone).")] = None,
    motion: Annotated[Optional[str], typer.Option("--motion", help="auto (the default: on for videos and streams), on or off: run the detector only where something moved or a face was seen lately; still frames skip it.")] = None,
    project: ProjectOpt = DEFAULT_PROJECT,
    as_json: JsonOpt = False,
):
    """Cut head crops out of CCTV footage into the labeling queue; re-running resumes or adds nothing."""
    from pipelines import extract

    ws = open_ws(project)
    opts = extract.ExtractOptions(sources=sources, **given(
        detector=detector, checkpoint=checkpoint, fps=fps, every=every, min_size=min_size,
        margin=margin, per_track=per_track, min_sharpness=min_sharpness, min_score=min_score,
        redo=redo, max_seconds=max_seconds, long_edge=long_edge, workers=workers, engine=engine,
        address=address, range_seconds=range_seconds, delete_source_after=delete_source_after,
        motion=motion))
    with progress_bar("extract", enabled=not as_json) as progress:
        report = run_job(ws, "extract", opts, progress)
    if report.sources:  # which detector ran and why (the bar named it while running)
        print(f"detector: {report.detector} ({report.detector_reason})", file=sys.stderr)
    emit(report, as_json, extract.summary(report))
    print_errors(report.errors, as_json)
    if report.errors:
        raise typer.Exit(1)
