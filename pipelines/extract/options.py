"""extract's options: what the caller asks (:class:`ExtractOptions`), what a run resolved it to
against the workspace's ``[extract]`` config (:class:`Settings`, sent to worker processes and
Ray tasks), and what it reports (:class:`SourceResult`, :class:`ExtractReport`)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from annotator.core.config import check_options
from annotator.core.errors import InputError
from annotator.media import detectors
from annotator.service.workspace import Workspace

ENGINES = ("local", "ray")
MOTION = ("auto", "on", "off")  # auto: on for video files and streams (fixed cameras)


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

