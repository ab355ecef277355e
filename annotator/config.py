"""The workspace's config.toml: label set, sampling, training and extraction defaults."""
from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from annotator.errors import WorkspaceError

# Label values that are decisions about the crop, not classes of the classifier.
NOT_A_FACE = "not_a_face"
SKIP = "skip"
SPECIAL_LABELS = (NOT_A_FACE, SKIP)


@dataclass
class SamplingConfig:
    strategy: str = "hybrid"  # hybrid | uncertainty | diverse | random
    batch_size: int = 20
    random_share: float = 0.10  # share of every batch drawn at random (unbiased accuracy estimate)
    lease_seconds: int = 600  # an abandoned claim comes back after this
    double_annotation: float = 0.0  # share of crops sent to two annotators (agreement)
    hybrid_pool: int = 3000  # most-uncertain crops among which a diverse batch is picked


@dataclass
class TrainingConfig:
    epochs: int = 20
    batch_size: int = 16
    lr: float = 2e-4
    val_fraction: float = 0.15
    seed: int = 0
    synthetic_masks: bool = False  # paste masks from mask_overlays on no_mask crops
    mask_overlays: str = ""  # folder of RGBA mask PNGs (e.g. ../shared/data/mask_overlays)


@dataclass
class ExtractConfig:
    detector: str = "openpifpaf"
    checkpoint: str = "shufflenetv2k16"
    fps: float = 2.0
    min_size: int = 16
    margin: float = 0.15
    per_track: int = 3
    min_sharpness: float = 0.0  # variance of the Laplacian; 0 keeps blurry crops too
    long_edge: int = 0  # OpenPifPaf resizes frames to this long edge; 0 = native size
    batch_size: int = 4  # frames per detector call


@dataclass
class Config:
    labels: list[str] = field(default_factory=lambda: ["mask", "no_mask"])
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)

    @property
    def label_values(self) -> list[str]:
        """Every value an annotator may give: the classes plus not-a-face and skip."""
        return [*self.labels, *SPECIAL_LABELS]


def load_config(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise WorkspaceError(f"{path} is missing; run `annotator init`") from None
    except tomllib.TOMLDecodeError as exc:
        raise WorkspaceError(f"{path} is not valid TOML: {exc}") from None
    try:
        cfg = Config(
            labels=[str(x) for x in raw.get("labels", Config().labels)],
            sampling=SamplingConfig(**raw.get("sampling", {})),
            training=TrainingConfig(**raw.get("training", {})),
            extract=ExtractConfig(**raw.get("extract", {})),
        )
    except TypeError as exc:
        raise WorkspaceError(f"{path}: unknown setting ({exc})") from None
    clash = set(cfg.labels) & set(SPECIAL_LABELS)
    if len(cfg.labels) < 2 or clash or len(set(cfg.labels)) != len(cfg.labels):
        raise WorkspaceError(f"{path}: labels must be 2+ distinct names other than {SPECIAL_LABELS}")
    return cfg


def dump_config(cfg: Config) -> str:
    """TOML text with a comment per section, written once by `annotator init`."""

    def table(obj) -> str:
        lines = []
        for f in fields(obj):
            v = getattr(obj, f.name)
            lines.append(f"{f.name} = {_toml_value(v)}")
        return "\n".join(lines)

    return (
        "# facemask-annotator workspace settings\n"
        "# Classes the classifier learns (annotators can also say not_a_face or skip).\n"
        f"labels = {_toml_value(cfg.labels)}\n\n"
        "[sampling]\n" + table(cfg.sampling) + "\n\n"
        "[training]\n" + table(cfg.training) + "\n\n"
        "[extract]\n" + table(cfg.extract) + "\n"
    )


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def config_dict(cfg: Config) -> dict:
    return asdict(cfg)
