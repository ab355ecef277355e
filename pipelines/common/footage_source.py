"""A footage source as the jobs that read footage see it (extract, its Ray ranges, detect): its
database row, its track numbering, and how many frames a run will sample.

Jobkit: imports ``annotator`` only, never a job, so extract and detect share it without
importing each other.
"""
from __future__ import annotations

import math
from pathlib import Path

from annotator.core.errors import InputError
from annotator.core.footage import first_track_id
from annotator.data import reports
from annotator.data.db import get_or_create_source
from annotator.media import video


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


def next_track_id(session, source_id: int, *, by: str) -> int:
    """The first track id a new run adds to this source: the one numbering rule for every job
    that adds crops (:func:`annotator.core.footage.first_track_id` over the source's crops)."""
    return first_track_id(reports.max_track_id(session, source_id), by=by)


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
