"""Job: promote a model version, roll back, or register Neuralet's weights: the one place where
the active model changes.

Every change ends the same way (:func:`activate`): the new active version scores the crops it
has not scored yet (the ``score`` job), then ONE transaction makes it active and sets every
unlabeled crop's priority to its uncertainty. A crash before that commit leaves the old model
with its own priorities; after it, the new one with its own: the queue never follows a model
that is not active.

The promotion gate compares the candidate and the active model on the same frozen validation
split (the candidate's dataset). The candidate's figure comes from training (``candidate_val``);
the active model's is its stored figure when it was measured on that dataset, else measured now
(``pipelines.common.measuring``). Each change ends with the ``[autolabel] after_promote`` pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotator.core.errors import InputError
from annotator.core.failpoints import failpoint
from annotator.core.progress import ProgressFn, silent, under
from annotator.data import db, model_versions
from annotator.service.workspace import Workspace
from pipelines import score
from pipelines.common import registry
from pipelines.common.autolabeling import after_promote
from pipelines.common.measuring import measure_stored, on_split
from annotator.data.model_versions import Version


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
    scored: int = 0  # crops the version scored before it became active (queue; retrain: all)
    priorities_set: int = 0
    autolabel: dict | None = None  # [autolabel] after_promote: its report, or why it refused


def promote(ws: Workspace, opts: PromoteOptions, progress: ProgressFn = silent, *,
            candidate_val: dict | None = None) -> PromoteReport:
    """Activate ``opts.version`` if its validation balanced accuracy is at least the active
    model's on the same frozen validation set (or when forced, or when nothing is active).

    ``candidate_val``: the candidate's metrics on its dataset's validation split, as training
    measured them (saves scoring the split again).
    """
    return promote_and_score(ws, opts, progress, candidate_val=candidate_val)[0]


def promote_and_score(ws: Workspace, opts: PromoteOptions, progress: ProgressFn = silent, *,
                      candidate_val: dict | None = None,
                      labeled: bool = False) -> tuple[PromoteReport, score.ScoreReport | None]:
    """:func:`promote`, plus the report of the scoring pass that preceded the activation (None
    when it was not promoted or had nothing to score). ``labeled``: that pass scores labeled
    crops too, so a retrain scores the queue once, not once here and again after."""
    cand = registry.get(ws, opts.version)
    with ws.read_session() as s:
        active = model_versions.active_model(s)
        active = Version.of(active) if active is not None else None
    ds_name = registry.dataset_of(ws, cand)
    if active is not None and active.id == cand.id:
        return PromoteReport(cand.name, False, cand.name, None, None, None, opts.force,
                             "already the active model"), None
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
                f"on dataset {ds_name} (val); use --force to promote anyway"), None
    scored, n = activate(ws, cand, stamp=True, progress=progress, labeled=labeled)
    reason = ("forced" if opts.force else "no active model" if active is None else
              f"balanced accuracy {cand_score:.4f} >= {active_score:.4f} on dataset {ds_name} (val)"
              if active_score is not None else "the active model has other classes")
    # the auto-labeling pass withdraws what the new model no longer backs
    return PromoteReport(cand.name, True, active.name if active else None, ds_name, cand_score,
                         active_score, opts.force, reason, scored.scored if scored else 0, n,
                         after_promote(ws, progress)), scored


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
    scored, n = activate(ws, prev, stamp=False, progress=progress)
    return RollbackReport(cur.name, prev.name, scored.scored if scored else 0, n,
                          after_promote(ws, progress))


def activate(ws: Workspace, version: Version, *, stamp: bool, progress: ProgressFn,
             labeled: bool = False) -> tuple[score.ScoreReport | None, int]:
    """Score what the version has not scored (``labeled``: labeled crops too), then activate it
    and sync priorities in one transaction. Returns ``(the scoring's report or None when there
    was nothing to score, priorities set)``."""
    with ws.read_session() as s:
        todo = bool(model_versions.unscored_crops(s, version.id, limit=1, labeled=labeled))
    scored = None
    if todo:  # (loading a model costs a second or two: not when there is nothing to score)
        scored = score.run(ws, score.ScoreOptions(model=version.name, labeled=labeled),
                           under(progress, "score"))
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
        m = measure_stored(ws, v.id, list(v.classes), dataset)
        return None if m is None else m["balanced_accuracy"]
    model, _ = registry.load(ws, v.name)
    rep = on_split(ws, model, dataset)
    if not rep:
        raise InputError(f"dataset {dataset} has an empty validation split")
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
    from models import registry as model_files
    from models.keras_import import load_keras_h5

    classes = list(ws.config.labels)
    model = model_files.as_stored(load_keras_h5(Path(opts.path), classes))
    with ws.read_session() as s:
        ds = db.latest_dataset(s)
        ds_id, ds_name = (ds.id, ds.name) if ds is not None else (None, None)
        has_active = model_versions.active_model(s) is not None
    val = on_split(ws, model, ds_name) if ds_name else {}
    metrics = {"source": "keras-import", "keras_file": str(Path(opts.path).resolve()),
               "dataset": ds_name if val else None, "val": val}
    with ws.read_session() as s:
        name = opts.name or db.next_name(s, db.ModelVersion, "v", ws.models_dir)
    card = model_files.model_card(name=name, classes=classes, dataset=metrics["dataset"],
                                  metrics=metrics, params={"weights": Path(opts.path).name},
                                  source="Neuralet OFMClassifier.h5 (Keras), imported")
    name = registry.register(ws, model, metrics=metrics, card=card, name=name,
                             dataset_id=ds_id if val else None)
    if not has_active:
        activate(ws, registry.get(ws, name), stamp=True, progress=progress)
    return KerasImportReport(name, str(opts.path), classes, not has_active, val or None)
