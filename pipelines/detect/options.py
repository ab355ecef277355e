"""detect's options: what the caller asks (:class:`DetectOptions`), what a run resolved it to
(:class:`Settings`: ``[detect]`` for the classifier, ``[extract]`` for the detector and head
boxes, so detect sees the heads extract would), and what it reports."""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field

from annotator.core import votes
from annotator.core.config import check_options
from annotator.core.errors import InputError
from annotator.media import detectors
from annotator.service.workspace import Workspace

DETECTORS = ("auto", "yunet", "mtcnn", "openpifpaf")
# mp4v (MPEG-4 part 2): fast, plays in VLC / mpv / QuickTime but in no browser; vp09 (VP9 in
# MP4): plays in browsers (the Footage page asks for it) but encodes ~60x slower here.
CODECS = ("mp4v", "vp09")
RUNS_DIR = "detections"  # under the workspace: runs started from the app, and the default --out


@dataclass(kw_only=True)
class DetectOptions:
    """What to run on; ``None`` means the workspace's default (``[detect]``, ``[extract]``)."""

    sources: list[str]
    out: str | None = None  # None: <workspace>/detections/run-<UTC time>
    model: str | None = None  # a version; None: the active one
    detector: str = "auto"
    checkpoint: str | None = None
    fps: float | None = None
    every: int | None = None
    min_prob: float | None = None  # classifier: a lower top probability is "unknown" ([detect])
    min_score: float | None = None  # deprecated name of min_prob (one stderr line when given)
    vote: str = "debounce:3"  # debounce:K or majority
    video: bool = True
    codec: str = "mp4v"
    max_seconds: float | None = None
    to_queue: bool = False
    force: bool = False  # replace the detect files of a non-empty --out
    per_track: int | None = None  # hard crops kept per uncertain track
    hard_flicker: float = 0.5  # per-frame label changes per second above which a track is hard
    hard_margin: float = 0.2  # mean probability within this of 0.5 (two classes): hard
    blur_faces: bool = False  # privacy: the annotated video shows every head blurred


@dataclass
class SourceDetect:
    """One source's figures."""

    name: str
    uri: str
    kind: str
    key: str | None = None
    sha256: str | None = None
    frames: int = 0  # sampled frames run; the source's own figures follow (video.probe)
    fps: float | None = None
    frame_count: int | None = None
    width: int | None = None
    height: int | None = None
    detections: int = 0
    tracks: int = 0
    hard_tracks: int = 0
    hard_crops: int = 0
    by_label: dict[str, int] = field(default_factory=dict)
    per_frame_by_label: dict[str, int] = field(default_factory=dict)
    tracks_by_label: dict[str, int] = field(default_factory=dict)
    flicker: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)  # heads not classified, by reason
    video_seconds: float = 0.0
    video: str | None = None  # file name in out
    codec: str | None = None  # the video's codec (mp4v where no VP9 encoder is built in)
    error: str | None = None


@dataclass
class DetectReport:
    out: str
    model: str
    classes: list[str]
    detector: str
    detector_why: str
    vote: str
    min_score: float  # the classifier threshold (min_prob); report.json keeps its name
    sources: int = 0
    frames: int = 0
    detections: int = 0
    tracks: int = 0
    by_label: dict[str, int] = field(default_factory=dict)  # detections by voted label
    per_frame_by_label: dict[str, int] = field(default_factory=dict)
    tracks_by_label: dict[str, int] = field(default_factory=dict)  # tracks by final vote
    flicker: dict[str, float] = field(default_factory=dict)  # changes per second of track
    hard_tracks: int = 0
    hard_crops: int = 0
    queued: int | None = None  # crops added to the queue (None: not asked)
    scored: int = 0  # queued crops the active model scored before the job ended
    codec: str | None = None
    blur_faces: bool = False  # the video's heads are blurred (the Footage page blurs its tiles)
    backend: str = ""
    seconds: float = 0.0
    fps: float = 0.0  # sampled frames processed per second
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    errors: list[str] = field(default_factory=list)
    per_source: list[SourceDetect] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    detector: str
    detector_why: str
    checkpoint: str | None
    fps: float | None
    every: int | None
    max_seconds: float | None
    min_prob: float  # classifier probability ([detect] min_prob)
    method: str
    k: int
    video: bool
    codec: str
    min_size: float
    margin: float
    min_sharpness: float
    per_track: int
    hard_flicker: float
    hard_margin: float
    batch_size: int
    long_edge: int | None
    detector_min_score: float | None  # detector confidence: [extract] min_score (None: its own)
    blur_faces: bool = False


def resolve(ws: Workspace, opts: DetectOptions) -> Settings:
    """Options checked and completed from ``[detect]`` and ``[extract]``; InputError names the
    bad one."""
    cfg = ws.config.extract
    check_options(min_prob=opts.min_prob, min_score=opts.min_score)  # named as the caller did
    min_prob = opts.min_prob
    if opts.min_score is not None:
        print("detect: min_score is deprecated for the classifier threshold; use min_prob "
              "(--min-prob)", file=sys.stderr)
        min_prob = opts.min_score if min_prob is None else min_prob
    if min_prob is None:
        min_prob = ws.config.detect.min_prob
    check_options(fps=opts.fps, every=opts.every, max_seconds=opts.max_seconds,
                  per_track=opts.per_track)
    if opts.detector not in DETECTORS:
        raise InputError(f"unknown detector {opts.detector!r}; expected one of {', '.join(DETECTORS)}")
    if opts.fps is not None and opts.every is not None:
        raise InputError("give either --fps or --every, not both")
    if opts.fps is not None and not opts.fps > 0:
        raise InputError(f"--fps must be > 0, got {opts.fps}")
    if opts.every is not None and opts.every < 1:
        raise InputError(f"--every must be >= 1, got {opts.every}")
    if opts.max_seconds is not None and not opts.max_seconds > 0:
        raise InputError(f"--max-seconds must be > 0, got {opts.max_seconds}")
    if not 0.0 <= float(min_prob) <= 1.0:
        raise InputError(f"--min-prob must be between 0 and 1, got {min_prob}")
    try:
        method, k = votes.parse_vote(opts.vote)
    except ValueError as exc:
        raise InputError(f"--vote: {exc}") from None
    if opts.codec not in CODECS:
        raise InputError(f"unknown codec {opts.codec!r}; expected one of {', '.join(CODECS)}")
    per_track = cfg.per_track if opts.per_track is None else int(opts.per_track)
    if per_track < 1:
        raise InputError(f"--per-track must be >= 1, got {per_track}")
    if opts.hard_flicker < 0 or not 0.0 <= opts.hard_margin <= 0.5:
        raise InputError("need hard_flicker >= 0 and 0 <= hard_margin <= 0.5")
    name, why = detectors.choose(opts.detector, opts.checkpoint or cfg.checkpoint)
    return Settings(
        detector=name, detector_why=why, checkpoint=opts.checkpoint or cfg.checkpoint,
        fps=None if opts.every else (opts.fps if opts.fps is not None else cfg.fps),
        every=opts.every, max_seconds=opts.max_seconds, min_prob=float(min_prob),
        method=method, k=k or votes.DEFAULT_K, video=bool(opts.video), codec=opts.codec,
        min_size=float(cfg.min_size), margin=float(cfg.margin),
        min_sharpness=float(cfg.min_sharpness), per_track=per_track,
        hard_flicker=float(opts.hard_flicker), hard_margin=float(opts.hard_margin),
        batch_size=int(cfg.frames_per_call), long_edge=cfg.long_edge or None,
        detector_min_score=None if cfg.min_score < 0 else float(cfg.min_score),
        blur_faces=bool(opts.blur_faces))


def for_job(ws: Workspace, opts: DetectOptions, job_id: int) -> DetectOptions:
    """A run started from the app writes to ``<workspace>/detections/job-<id>``."""
    if opts.out is not None:
        return opts
    return dataclasses.replace(opts, out=str(ws.root / RUNS_DIR / f"job-{job_id}"))
