"""The model registry as jobs read it: versions' rows, their weights, their dataset.

A version is a row (``db.ModelVersion``) plus, unless it holds imported predictions only, a
folder of files (``models.registry``). Every job that needs "the active model", "version X's
weights" or "the dataset this version was measured on" asks here; only ``pipelines.promote``
changes which version is active.
"""
from __future__ import annotations

from dataclasses import dataclass

from annotator.core.errors import InputError
from annotator.core.files import removed_on_error
from annotator.data import db, model_versions
from annotator.data.model_versions import Version
from annotator.service.workspace import Workspace


@dataclass(frozen=True)
class VersionInfo:
    """A version as `annotator models list` and the Models page list it (names, not ids)."""

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
    trained_on_erased: bool = False  # its dataset lost crops to an erasure (common.erasure)


# --- registering and loading --------------------------------------------------------------------


def register(ws: Workspace, model, *, metrics: dict, card: str, dataset_id: int | None = None,
             name: str | None = None) -> str:
    """Write a new version's files and add its row (inactive). Returns its name."""
    from models import registry as model_files

    with ws.read_session() as s:
        name = model_files.check_name(name) if name else db.next_name(
            s, db.ModelVersion, "v", ws.models_dir)
        if model_versions.get_model_version(s, name) is not None:
            raise InputError(f"model version {name!r} already exists")
    folder = ws.models_dir / name
    if folder.exists():  # only an explicit --name gets here: next_name skips existing folders
        raise InputError(f"{folder} already exists; pick another --name")
    model_files.write_version(folder, model, metrics=metrics, card=card)
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
    from models import registry as model_files

    v = get(ws, version)
    return model_files.load_model_file(ws.root / v.path), v


def list_versions(ws: Workspace) -> list[VersionInfo]:
    with ws.read_session() as s:
        datasets = {d.id: d.name for d in db.list_datasets(s)}
        erased = {d.id for d in db.list_datasets(s)
                  if (ws.root / d.path / "erasures.csv").is_file()}  # common.erasure records
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


def dataset_of(ws: Workspace, version: Version) -> str | None:
    """The dataset a version is measured on: the one it was trained on, else the latest
    (None when there is no dataset yet)."""
    with ws.read_session() as s:
        ds = s.get(db.Dataset, version.dataset_id) if version.dataset_id else db.latest_dataset(s)
        return ds.name if ds is not None else None
