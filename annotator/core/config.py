"""The workspace's config.toml: label set, sampling, training, extraction, sign-in and limits.

Every value is type- and range-checked when the file is read, so a typo gives one clear line
(``config.toml: sampling.claim_size must be an integer >= 1, got "x"``) instead of a failure
deep inside a job. Keys renamed because one name meant several things (``RENAMED``) are still
read, with one warning line on stderr.
"""
from __future__ import annotations

import math
import re
import sys
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from annotator.core.errors import InputError, WorkspaceError

# Label values that are decisions about the crop, not classes of the classifier.
NOT_A_FACE = "not_a_face"
SKIP = "skip"
SPECIAL_LABELS = (NOT_A_FACE, SKIP)
DETECTOR_CHOICES = ("auto", "yunet", "mtcnn", "openpifpaf")
STRATEGY_CHOICES = ("hybrid", "uncertainty", "diverse", "random", "slices")


def _int(lo=None, hi=None):
    return ("int", lo, hi)


def _float(lo=None, hi=None):
    return ("float", lo, hi)


@dataclass
class SamplingConfig:
    strategy: str = "hybrid"  # hybrid | uncertainty | diverse | random
    claim_size: int = 20  # crops the Label page holds for one annotator (at most 5 of them)
    random_share: float = 0.10  # share of every batch drawn at random (unbiased accuracy estimate)
    lease_seconds: int = 600  # an abandoned claim comes back after this
    double_annotation: float = 0.0  # share of crops sent to two annotators (agreement)
    hybrid_pool: int = 3000  # most-uncertain crops among which a diverse batch is picked
    # strategy "slices": share of each batch spent on the worst slices (annotator.core.slices), and
    # the labeled crops a slice needs before its measured error counts (else its uncertainty)
    slice_share: float = 0.5
    slice_min_n: int = 20
    # crops the team's own not_a_face decisions say are likely junk go last (sample.likely_junk),
    # once junk_min_each decisions of each kind (a class / not_a_face) exist for their detector
    junk_last: bool = True
    junk_min_each: int = 10

    RULES = {"strategy": STRATEGY_CHOICES, "claim_size": _int(1, 1000),
             "random_share": _float(0, 1), "lease_seconds": _int(10, 30 * 24 * 3600),
             "double_annotation": _float(0, 1), "hybrid_pool": _int(1, 10_000_000),
             "slice_share": _float(0, 1), "slice_min_n": _int(1, 1_000_000),
             "junk_last": bool, "junk_min_each": _int(1, 1_000_000)}


@dataclass
class TrainingConfig:
    epochs: int = 20
    batch_size: int = 16  # crops per optimizer step
    lr: float = 2e-4
    val_fraction: float = 0.15
    seed: int = 0
    synthetic_masks: bool = False  # paste masks from mask_overlays on no_mask crops
    mask_overlays: str = ""  # folder of RGBA mask PNGs (e.g. ../shared/data/mask_overlays)

    RULES = {"epochs": _int(1, 10_000), "batch_size": _int(2, 65_536), "lr": _float(1e-9, 1),
             "val_fraction": _float(0, 0.99), "seed": _int(0, 2**32 - 1), "synthetic_masks": bool,
             "mask_overlays": str}


@dataclass
class ExtractConfig:
    detector: str = "auto"  # OpenPifPaf when its checkpoint is on this machine, else YuNet
    checkpoint: str = "shufflenetv2k16"
    fps: float = 2.0
    min_size: int = 16
    margin: float = 0.15
    per_track: int = 3
    min_sharpness: float = 0.0  # variance of the Laplacian; 0 keeps blurry crops too
    min_score: float = -1.0  # detector confidence 0..1; -1: each detector's measured default
    long_edge: int = 0  # OpenPifPaf resizes frames to this long edge; 0 = native size
    frames_per_call: int = 4  # frames per detector call

    RULES = {"detector": DETECTOR_CHOICES, "checkpoint": str, "fps": _float(1e-6, 1000),
             "min_size": _int(0, 10_000), "margin": _float(0, 10), "per_track": _int(1, 1000),
             "min_sharpness": _float(0, 1e9), "min_score": _float(-1, 1), "long_edge": _int(0, 20_000),
             "frames_per_call": _int(1, 256)}


@dataclass
class AuthConfig:
    min_password_length: int = 10
    max_failures: int = 5  # wrong passwords in a row (per account, per client) before a lockout
    lockout_minutes: float = 15.0
    session_hours: float = 12.0  # a signed-in browser stays signed in this long
    # Reverse proxies (IPs or CIDR blocks) whose X-Forwarded-For names the client; none by default:
    # a header from anyone else is ignored, so no client picks its own throttle key.
    trusted_proxies: list[str] = field(default_factory=list)

    RULES = {"min_password_length": _int(8, 1000), "max_failures": _int(1, 1000),
             "lockout_minutes": _float(0.1, 100_000), "session_hours": _float(0.05, 24 * 365),
             "trusted_proxies": "networks"}


@dataclass
class LimitsConfig:
    max_image_pixels: int = 40_000_000  # larger pictures are counted unreadable, never decoded
    max_upload_mb: int = 2048

    RULES = {"max_image_pixels": _int(1, 10**10), "max_upload_mb": _int(1, 10**6)}


@dataclass
class PrivacyConfig:
    """Personal data (README "Personal data"): retention in days (0 = keep), the audit trail,
    and blurring the other faces in the frame context."""

    trail: bool = True  # record who viewed which crop / frame, exports, erasures, role changes
    blur_faces: bool = True  # the context view blurs every face but the labeled head
    upload_days: float = 0.0  # delete uploaded videos (uploads/) once extracted and this old
    unlabeled_crop_days: float = 0.0  # erase crops nobody labeled after this many days
    detect_run_days: float = 0.0  # delete detect run folders (detections/) this old

    RULES = {"trail": bool, "blur_faces": bool, "upload_days": _float(0, 100_000),
             "unlabeled_crop_days": _float(0, 100_000), "detect_run_days": _float(0, 100_000)}


@dataclass
class AutolabelConfig:
    max_error: float = 0.01  # the audited 95% bound every auto-label threshold must stay under
    audit_share: float = 0.02  # share of machine labels still served to people (their error)
    after_promote: bool = True  # a promotion re-runs autolabel (and withdraws what it no longer backs)
    # A person's label also labels the track mates the active model agrees on ("propagated").
    # Off by default: until its own audit share has measured it, its error is unknown.
    propagate: bool = False

    RULES = {"max_error": _float(1e-4, 0.5), "audit_share": _float(0.0, 1.0), "after_promote": bool,
             "propagate": bool}


@dataclass
class DetectConfig:
    """``annotator detect``: a model on footage (its detector and head settings are
    ``[extract]``'s, so detect sees the heads extract would)."""

    min_prob: float = 0.75  # classifier: a lower top class probability is "unknown"

    RULES = {"min_prob": _float(0, 1)}


# Old keys still read: (section, old) -> new. ``batch_size`` meant three things; it now names
# only the training batch.
RENAMED = {("sampling", "batch_size"): "claim_size", ("extract", "batch_size"): "frames_per_call",
           ("detect", "min_score"): "min_prob"}
_warned: set[tuple[str, str]] = set()  # one warning per file and key per process

SECTIONS = {"sampling": SamplingConfig, "training": TrainingConfig, "extract": ExtractConfig,
            "auth": AuthConfig, "limits": LimitsConfig, "privacy": PrivacyConfig,
            "autolabel": AutolabelConfig, "detect": DetectConfig}


@dataclass
class Config:
    labels: list[str] = field(default_factory=lambda: ["mask", "no_mask"])
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    autolabel: AutolabelConfig = field(default_factory=AutolabelConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)

    @property
    def label_values(self) -> list[str]:
        """Every value an annotator may give: the classes plus not-a-face and skip."""
        return [*self.labels, *SPECIAL_LABELS]


def load_config(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise WorkspaceError(f"{path} is missing; run `annotator init`") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WorkspaceError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(raw, where=str(path))


LABEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")  # db.Label.value is 40 long


def parse_config(raw: dict, *, where: str = "config.toml") -> Config:
    """A checked Config from parsed TOML; WorkspaceError names the first bad value."""
    unknown = set(raw) - {"labels", *SECTIONS}
    if unknown:
        raise WorkspaceError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
    labels = raw.get("labels", Config().labels)
    if (not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels)):
        raise WorkspaceError(f"{where}: labels must be a list of names, e.g. [\"mask\", \"no_mask\"]"
                             f", got {labels!r}")
    bad = [x for x in labels if not LABEL_NAME.fullmatch(x)]
    if bad:  # a label names dataset folders and fits the labels table on PostgreSQL
        raise WorkspaceError(f"{where}: labels must be up to 40 letters, digits, _ or - each, "
                             f"starting with a letter or digit, got {bad[0]!r}")
    clash = set(labels) & set(SPECIAL_LABELS)
    if len(labels) < 2 or clash or len(set(labels)) != len(labels):
        raise WorkspaceError(f"{where}: labels must be 2+ distinct names other than {SPECIAL_LABELS}")
    sections = {}
    for name, cls in SECTIONS.items():
        values = raw.get(name, {})
        if not isinstance(values, dict):
            raise WorkspaceError(f"{where}: [{name}] must be a table")
        values = _renamed(name, values, where)
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise WorkspaceError(f"{where}: unknown setting {name}.{key}")
        sections[name] = cls(**{k: _checked(f"{name}.{k}", v, cls.RULES[k], where)
                                for k, v in values.items()})
    return Config(labels=list(labels), **sections)


def _renamed(section: str, values: dict, where: str) -> dict:
    """``values`` with renamed keys under their new names: each old one checked (its error names
    the key as written) and announced once on stderr; old and new together are an error."""
    out = dict(values)
    for (sec, old), new in RENAMED.items():
        if sec != section or old not in values:
            continue
        if new in values:
            raise WorkspaceError(f"{where}: {sec}.{old} is the old name of {sec}.{new}; keep one")
        cls = SECTIONS[sec]
        out[new] = _checked(f"{sec}.{old}", out.pop(old), cls.RULES[new], where)
        if (where, f"{sec}.{old}") not in _warned:
            _warned.add((where, f"{sec}.{old}"))
            print(f"warning: {where}: {sec}.{old} is deprecated; use {sec}.{new}", file=sys.stderr)
    return out


# Options of jobs (CLI flags, page fields) checked against rules like the config's, in one place:
# ``--lr must be a number between 1e-09 and 1, got inf``. ``None`` means "the default".
OPTION_RULES = {
    "epochs": TrainingConfig.RULES["epochs"], "batch_size": TrainingConfig.RULES["batch_size"],
    "lr": TrainingConfig.RULES["lr"], "seed": TrainingConfig.RULES["seed"],
    "fps": ExtractConfig.RULES["fps"], "every": _int(1, 10**9),
    "min_size": _float(0, 10_000), "margin": ExtractConfig.RULES["margin"],
    "per_track": ExtractConfig.RULES["per_track"],
    "min_sharpness": ExtractConfig.RULES["min_sharpness"],
    "min_score": _float(0, 1), "min_prob": DetectConfig.RULES["min_prob"],
    "long_edge": ExtractConfig.RULES["long_edge"],
    "max_seconds": _float(1e-3, 10**9), "range_seconds": _float(0.01, 10**7),
    "workers": _int(1, 1024), "val_fraction": TrainingConfig.RULES["val_fraction"],
    "seed_size": _int(1, 10**7), "batch": _int(1, 10**7), "rounds": _int(1, 10_000),
    "repeats": _int(1, 1000), "min_steps": _int(0, 10**7), "full_epochs": _int(1, 10_000),
    "jobs": _int(1, 1024), "random_share": _float(0, 1), "hybrid_pool": _int(1, 10_000_000),
    "port": _int(1, 65_535), "opset": _int(7, 30),
}


def check_options(**values) -> None:
    """InputError naming the first option (as its ``--flag``) outside its rule in
    ``OPTION_RULES``: not a finite number, or out of range. ``None`` values are skipped."""
    for key, value in values.items():
        if value is not None:
            _checked("--" + key.replace("_", "-"), value, OPTION_RULES[key], "", error=InputError)


def _checked(key: str, value, rule, where: str, error=WorkspaceError):
    def bad(expect: str):
        return error(f"{where + ': ' if where else ''}{key} must be {expect}, got {value!r}")

    if rule is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if rule is str:
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if rule == "networks":  # a list of IP addresses or CIDR blocks
        import ipaddress

        try:
            if not isinstance(value, list) or len(value) > 100:
                raise ValueError
            for v in value:
                ipaddress.ip_network(v if isinstance(v, str) else None, strict=False)
        except (TypeError, ValueError):
            raise bad('a list of IP addresses or CIDR blocks, e.g. ["127.0.0.1"]') from None
        return list(value)
    if isinstance(rule, tuple) and rule and rule[0] in ("int", "float"):
        kind, lo, hi = rule
        rng = "" if lo is None else (f" >= {lo}" if hi is None else f" between {lo} and {hi}")
        ok_type = (isinstance(value, int) if kind == "int" else isinstance(value, (int, float)))
        if isinstance(value, bool) or not ok_type or (kind == "float" and not math.isfinite(value)):
            raise bad(("an integer" if kind == "int" else "a finite number") + rng)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise bad(f"{'an integer' if kind == 'int' else 'a number'}{rng}")
        return float(value) if kind == "float" else value
    if not isinstance(value, str) or value not in rule:  # a tuple of choices
        raise bad("one of " + ", ".join(rule))
    return value


def dump_config(cfg: Config) -> str:
    """TOML text with a comment per section, written once by `annotator init`."""

    def table(obj) -> str:
        return "\n".join(f"{f.name} = {_toml_value(getattr(obj, f.name))}" for f in fields(obj))

    return (
        "# facemask-annotator workspace settings\n"
        "# Classes the classifier learns (annotators can also say not_a_face or skip).\n"
        f"labels = {_toml_value(cfg.labels)}\n\n"
        + "\n\n".join(f"[{name}]\n" + table(getattr(cfg, name)) for name in SECTIONS) + "\n"
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
