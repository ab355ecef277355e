"""Model versions: register, load, list, promote, roll back, and import Neuralet's weights.

The one place where the active model changes. Every change ends the same way
(:func:`_activate`): the new active version scores the unlabeled crops it has not scored yet,
then ONE transaction makes it active and sets every unlabeled crop's priority to its
uncertainty. A crash before that commit leaves the old model with its own priorities; after it,
the new one with its own: the queue never follows a model that is not active.

The promotion gate compares the candidate and the active model on the same frozen validation
split (the candidate's dataset). The candidate's figure comes from training (``candidate_val``);
the active model's is its stored figure when it was measured on that dataset, else measured now.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotator.data import db, model_versions
from annotator.core.errors import InputError
from annotator.core.failpoints import failpoint
from annotator.core.files import removed_on_error
from annotator.core.progress import ProgressFn, silent, under
from annotator.service.workspace import Workspace


@dataclass(frozen=True)
class Version:
    """A model version's registry row, detached from the database."""

    id: int
    name: str
    path: str
    classes: tuple[str, ...]
    active: bool
    dataset_id: int | None
    metrics: dict

    @classmethod
    def of(cls, mv: db.ModelVersion) -> "Version":
        return cls(mv.id, mv.name, mv.path, tuple(mv.classes or ()), bool(mv.active),
                   mv.dataset_id, dict(mv.metrics or {}))


@dataclass(frozen=True)
class VersionInfo:
    name: str
    path: str
    classes: list[str]
    active: bool
    dataset: str | None
    created_at: str
    promoted_at: str | None
    val_balanced_accuracy: float | None
    val_accuracy: float | None
    source: str | None
    trained_on_erased: bool = False  # its dataset lost crops to an erasure (pipelines.erase)


# --- registering and loading --------------------------------------------------------------------


def register(ws: Workspace, model, *, metrics: dict, card: str, dataset_id: int | None = None,
             name: str | None = None) -> str:
    """Write a new version's files and add its row (inactive). Returns its name."""
    from models import registry

    with ws.read_session() as s:
        name = registry.check_name(name) if name else db.next_name(
            s, db.ModelVersion, "v", ws.models_dir)
        if model_versions.get_model_version(s, name) is not None:
            raise InputError(f"model version {name!r} already exists")
    folder = ws.models_dir / name
    if folder.exists():  # only an explicit --name gets here: next_name skips existing folders
        raise InputError(f"{folder} already exists; pick another --name")
    registry.write_version(folder, model, metrics=metrics, card=card)
    with removed_on_error(folder), ws.session() as s:
        s.add(db.ModelVersion(name=name, path=str(folder.relative_to(ws.root)),
                              dataset_id=dataset_id, classes=list(model.classes),
                              metrics=_summary(metrics), active=False))
    return name


def get(ws: Workspace, version: str | None = None) -> Version:
    """The registry row of ``version`` (None or ``"active"``: the active one)."""
    with ws.read_session() as s:
        if version in (None, "active"):
            mv = model_versions.active_model(s)
            if mv is None:
                raise InputError("no active model: train one (`annotator train`) or import "
                                 "Neuralet's (`annotator models import-keras PATH.h5`), then "
                                 "promote it")
        else:
            mv = model_versions.get_model_version(s, version)
            if mv is None:
                raise InputError(f"no model version {version!r}; see `annotator models list`")
        return Version.of(mv)


def load(ws: Workspace, version: str | None = None):
    """``(model, Version)`` for ``version`` (None or ``"active"``: the active one)."""
    from models import registry

    v = get(ws, version)
    return registry.load_model_file(ws.root / v.path), v


def list_versions(ws: Workspace) -> list[VersionInfo]:
    with ws.read_session() as s:
        datasets = {d.id: d.name for d in db.list_datasets(s)}
        erased = {d.id for d in db.list_datasets(s)
                  if (ws.root / d.path / "erasures.csv").is_file()}  # pipelines.erase records
        rows = model_versions.list_model_versions(s)
    return [VersionInfo(
        name=mv.name, path=mv.path, classes=list(mv.classes), active=bool(mv.active),
        dataset=datasets.get(mv.dataset_id), created_at=str(mv.created_at),
        promoted_at=str(mv.promoted_at) if mv.promoted_at else None,
        val_balanced_accuracy=(mv.metrics or {}).get("balanced_accuracy"),
        val_accuracy=(mv.metrics or {}).get("accuracy"), source=(mv.metrics or {}).get("source"),
        trained_on_erased=mv.dataset_id in erased,
    ) for mv in rows]


def _summary(metrics: dict) -> dict:
    """The numbers kept in the database row (the full report stays in metrics.json)."""
    val = metrics.get("val") or {}
    out = {k: val.get(k) for k in ("accuracy", "balanced_accuracy", "roc_auc", "ece") if k in val}
    for k in ("n_train", "n_val", "dataset", "source", "best_epoch", "epochs"):
        if k in metrics:
            out[k] = metrics[k]
    return out


# --- promotion and rollback ---------------------------------------------------------------------


@dataclass(kw_only=True)
class PromoteOptions:
    version: str
    force: bool = False  # promote even if worse (or when there is nothing to compare on)


@dataclass
class PromoteReport:
    version: str
    promoted: bool
    previous: str | None
    dataset: str | None
    candidate_balanced_accuracy: float | None
    active_balanced_accuracy: float | None
    forced: bool
    reason: str
    scored: int = 0  # queue crops the version scored before it became active
    priorities_set: int = 0
    autolabel: dict | None = None  # [autolabel] after_promote: its report, or why it refused


def promote(ws: Workspace, opts: PromoteOptions, progress: ProgressFn = silent, *,
            candidate_val: dict | None = None) -> PromoteReport:
    """Activate ``opts.version`` if its validation balanced accuracy is at least the active
    model's on the same frozen validation set (or when forced, or when nothing is active).

    ``candidate_val``: the candidate's metrics on its dataset's validation split, as training
    measured them (saves scoring the split again).
    """
    cand = get(ws, opts.version)
    with ws.read_session() as s:
        active = model_versions.active_model(s)
        active = Version.of(active) if active is not None else None
        ds = s.get(db.Dataset, cand.dataset_id) if cand.dataset_id else db.latest_dataset(s)
        ds_name = ds.name if ds is not None else None
    if active is not None and active.id == cand.id:
        return PromoteReport(cand.name, False, cand.name, None, None, None, opts.force,
                             "already the active model")
    _check_classes(ws, cand)
    cand_score = active_score = None
    if active is not None and not opts.force:
        if ds_name is None:
            raise InputError("no validation set to compare against the active model: build a "
                             "dataset first, or pass --force")
        cand_score = _val_score(ws, cand, ds_name, candidate_val)
        active_score = (_val_score(ws, active, ds_name, None)
                        if list(active.classes) == list(cand.classes) else None)
        if active_score is not None and (cand_score is None or cand_score < active_score):
            return PromoteReport(
                cand.name, False, active.name, ds_name, cand_score, active_score, False,
                f"balanced accuracy {cand_score:.4f} < active {active.name}'s {active_score:.4f} "
                f"on dataset {ds_name} (val); use --force to promote anyway")
    scored, n = _activate(ws, cand, stamp=True, progress=progress)
    reason = ("forced" if opts.force else "no active model" if active is None else
              f"balanced accuracy {cand_score:.4f} >= {active_score:.4f} on dataset {ds_name} (val)"
              if active_score is not None else "the active model has other classes")
    from pipelines import autolabel  # withdraws what the new model no longer backs

    return PromoteReport(cand.name, True, active.name if active else None, ds_name, cand_score,
                         active_score, opts.force, reason, scored, n,
                         autolabel.after_promote(ws, progress))


@dataclass(kw_only=True)
class RollbackOptions:
    pass


@dataclass
class RollbackReport:
    rolled_back_from: str
    to: str
    scored: int = 0
    priorities_set: int = 0
    autolabel: dict | None = None  # as for a promotion: the model changed


def rollback(ws: Workspace, opts: RollbackOptions | None = None,
             progress: ProgressFn = silent) -> RollbackReport:
    """Re-activate the version promoted before the active one; the queue follows it again."""
    with ws.read_session() as s:
        cur, prev = model_versions.active_model(s), model_versions.previous_model(s)
        if cur is None or prev is None:
            raise InputError("nothing to roll back to: no earlier promoted version")
        cur, prev = Version.of(cur), Version.of(prev)
    _check_classes(ws, prev)
    scored, n = _activate(ws, prev, stamp=False, progress=progress)
    from pipelines import autolabel

    return RollbackReport(cur.name, prev.name, scored, n, autolabel.after_promote(ws, progress))


def _activate(ws: Workspace, version: Version, *, stamp: bool, progress: ProgressFn) -> tuple[int, int]:
    """Score what the version has not scored, then activate it and sync priorities in one
    transaction. Returns ``(crops scored, priorities set)``."""
    from pipelines import score

    with ws.read_session() as s:
        todo = bool(model_versions.unscored_crops(s, version.id, limit=1))
    scored = 0
    if todo:  # (loading a model costs a second or two: not when there is nothing to score)
        scored = score.run(ws, score.ScoreOptions(model=version.name),
                           under(progress, "score")).scored
    failpoint("before_activate")
    with ws.session() as s:
        n = model_versions.activate_model(s, version.id, stamp=stamp)
    failpoint("after_activate")
    return scored, n


def _check_classes(ws: Workspace, v: Version) -> None:
    if list(v.classes) != list(ws.config.labels):
        raise InputError(f"{v.name} predicts {list(v.classes)}; this workspace's classes are "
                         f"{ws.config.labels}")


def _val_score(ws: Workspace, v: Version, dataset: str, measured: dict | None) -> float | None:
    """Balanced accuracy of a version on a dataset's validation split: from training's
    measurement or the version's stored metrics when they are for that dataset, else now."""
    if measured and measured.get("balanced_accuracy") is not None:
        return float(measured["balanced_accuracy"])
    if v.metrics.get("dataset") == dataset and v.metrics.get("balanced_accuracy") is not None:
        return float(v.metrics["balanced_accuracy"])
    if not v.path:  # imported predictions (no weights): measured from what it predicted
        from pipelines.import_predictions import measure

        m = measure(ws, v.id, list(v.classes), dataset)
        return None if m is None else m["balanced_accuracy"]
    from pipelines import evaluate

    rep = evaluate.run(ws, evaluate.EvalOptions(model=v.name, dataset=dataset))
    return rep["balanced_accuracy"]


# --- Neuralet's released weights ----------------------------------------------------------------


@dataclass(kw_only=True)
class KerasImportOptions:
    path: Path
    name: str | None = None


@dataclass
class KerasImportReport:
    version: str
    path: str
    classes: list
    active: bool
    val: dict | None


def import_keras(ws: Workspace, opts: KerasImportOptions,
                 progress: ProgressFn = silent) -> KerasImportReport:
    """Register Neuralet's released Keras weights as a model version.

    Evaluated on the latest dataset's validation split when there is one; becomes active when
    no model is active yet (the loop can start from it).
    """
    from models import registry
    from models.keras_import import load_keras_h5
    from pipelines import evaluate

    classes = list(ws.config.labels)
    model = load_keras_h5(Path(opts.path), classes)
    with ws.read_session() as s:
        ds = db.latest_dataset(s)
        ds_id, ds_name = (ds.id, ds.name) if ds is not None else (None, None)
        has_active = model_versions.active_model(s) is not None
    val = evaluate.on_split(ws, model, ds_name) if ds_name else {}
    metrics = {"source": "keras-import", "keras_file": str(Path(opts.path).resolve()),
               "dataset": ds_name if val else None, "val": val}
    with ws.read_session() as s:
        name = opts.name or db.next_name(s, db.ModelVersion, "v", ws.models_dir)
    card = registry.model_card(name=name, classes=classes, dataset=metrics["dataset"],
                               metrics=metrics, params={"weights": Path(opts.path).name},
                               source="Neuralet OFMClassifier.h5 (Keras), imported")
    name = register(ws, model, metrics=metrics, card=card, name=name,
                    dataset_id=ds_id if val else None)
    if not has_active:
        _activate(ws, get(ws, name), stamp=True, progress=progress)
    return KerasImportReport(name, str(opts.path), classes, not has_active, val or None)
