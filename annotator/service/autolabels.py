"""Machine labels in the database: the audit sample, what the active model may label, and what
it no longer backs. The statistics are :mod:`annotator.core.audit`; the job is ``pipelines.autolabel``.

Functions take a ``Session`` first and never commit.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from annotator.core import audit
from annotator.data import label_cost, machine_labels, model_reports
from annotator.core.config import SKIP
from annotator.core.dataset import TRAIN
from annotator.data.db import (
    Annotator,
    Crop,
    CropStatus,
    Dataset,
    Label,
    LabelKind,
    Lease,
    ModelVersion,
    Prediction,
    Role,
    Source,
    active_label,
)
from annotator.data.model_versions import active_model

SYSTEM_NAME = "model"  # the system account machine labels are recorded under


@dataclass(frozen=True)
class Trained:
    """What a version's training split held: its crops, and their tracks (a track mate of a
    training crop is the same person a second apart: no fair audit either)."""

    crops: frozenset[int]
    tracks: frozenset[tuple[str, int]]
    unknown: bool = False  # the manifest is gone: no crop is known to be unseen

    def saw(self, crop_id: int, source_key: str, track_id: int | None) -> bool:
        return self.unknown or int(crop_id) in self.crops or (
            track_id is not None and (source_key, int(track_id)) in self.tracks)


def trained_on(session: Session, version_id: int, root: Path) -> Trained | None:
    """The training split of the version's dataset (its frozen manifest under ``root``, the
    workspace folder; required everywhere, so no caller audits on training crops by leaving it
    out); None for a version trained elsewhere (no dataset here)."""
    manifest = session.scalar(select(Dataset.manifest)
                              .join(ModelVersion, ModelVersion.dataset_id == Dataset.id)
                              .where(ModelVersion.id == version_id))
    if manifest is None:
        return None
    path = Path(root) / manifest
    try:
        stat = path.stat()
    except OSError:  # gone (a deleted folder): nothing tells what it learnt, so trust nothing
        return Trained(frozenset(), frozenset(), unknown=True)
    return _read_trained(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_trained(path: str, _mtime_ns: int, _size: int) -> Trained:
    """One read per manifest version per process (an erasure rewrites a manifest: its new
    mtime is a new key). An unreadable one is treated as gone."""
    try:
        m = pd.read_csv(path, usecols=["crop_id", "source", "track", "split"])
    except (OSError, EOFError, ValueError):  # EOFError: a gzip cut short
        return Trained(frozenset(), frozenset(), unknown=True)
    m = m[m["split"] == TRAIN]
    tracks = {(str(src), int(t)) for src, t in zip(m["source"], m["track"]) if pd.notna(t)}
    return Trained(frozenset(int(c) for c in m["crop_id"]), frozenset(tracks))


def audit_sample(session: Session, version_id: int, classes: Sequence[str], *,
                 root: Path):
    """People's labels from the random share on crops this version scored and never trained
    on (nor on their track mates: ``trained_on``), as arrays ``(pred (n,), conf (n,), wrong
    (n,) bool)``: the unbiased audit of its predictions. A crop the model learnt is one it
    gets right more often than the queue's, so counting it would lower the bound falsely.
    ``not_a_face`` counts as wrong (a machine label would have put a non-face in a dataset)."""
    trained = trained_on(session, version_id, root)
    rows = session.execute(
        select(Label.value, Prediction.probs, Label.crop_id, Source.key, Crop.track_id)
        .join(Prediction, (Prediction.crop_id == Label.crop_id)
              & (Prediction.model_version_id == version_id))
        .join(Annotator, Annotator.id == Label.annotator_id)
        .join(Crop, Crop.id == Label.crop_id)
        .join(Source, Source.id == Crop.source_id)
        .where(active_label(), Label.sampling == "random", Label.value != SKIP,
               Annotator.role != Role.SYSTEM)).all()
    if trained is not None:
        rows = [r for r in rows if not trained.saw(r[2], r[3], r[4])]
    rows = [(v, p) for v, p, *_ in rows]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
    probs = np.array([p for _, p in rows], np.float64).reshape(len(rows), len(classes))
    pred = probs.argmax(1)
    truth = np.array([classes.index(v) if v in classes else -1 for v, _ in rows])
    return pred, probs.max(1), truth != pred


@dataclass
class Plan:
    """What ``autolabel`` would do now (a dry run is exactly this)."""

    model: str | None
    classes: list[str]
    max_error: float
    audited: int = 0  # random-share labels on crops the active model scored
    thresholds: list[audit.Threshold] = field(default_factory=list)
    bands: list[audit.Band] = field(default_factory=list)
    to_label: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # class -> (crop, p)
    withdraw: list[int] = field(default_factory=list)  # machine label ids no longer backed

    @property
    def refused(self) -> bool:
        return all(t.threshold is None for t in self.thresholds)

    def refusal(self) -> str:
        """The one line that says why nothing may be labeled."""
        if self.model is None:
            return "autolabel needs an active model (`annotator promote`)"
        need = min((t.needed for t in self.thresholds), default=0)
        return (f"autolabel refused: no class of {self.model} has an audited error bound <= "
                f"{self.max_error:g} ({self.audited} random-share labels so far); it needs at "
                f"least {need} more random-share labels")


def plan(session: Session, classes: Sequence[str], *, max_error: float,
         root: Path) -> Plan:
    """Thresholds from the audit, the crops above them, and the machine labels to withdraw
    (``root``: the workspace folder, where the active version's dataset tells what it learnt)."""
    mv = active_model(session)
    out = Plan(mv.name if mv else None, list(classes), max_error)
    if mv is None or list(mv.classes) != list(classes):
        out.withdraw = _unbacked(session, mv, {}, list(classes))
        return out
    pred, conf, wrong = audit_sample(session, mv.id, list(classes), root=root)
    out.audited = len(pred)
    k = len(classes)
    out.thresholds = audit.choose_thresholds(pred, conf, wrong, k, max_error=max_error)
    out.bands = [b for b in audit.band_table(pred, conf, wrong, k) if b.n]
    cut = {t.cls: t.threshold for t in out.thresholds if t.threshold is not None}
    out.to_label = {c: [] for c in classes}
    for cid, probs in session.execute(
            select(Prediction.crop_id, Prediction.probs)
            .join(Crop, Crop.id == Prediction.crop_id)
            .where(Prediction.model_version_id == mv.id, Crop.status == CropStatus.UNLABELED,
                   ~exists().where(Label.crop_id == Crop.id, active_label()),
                   ~exists().where(Lease.crop_id == Crop.id))
            .order_by(Prediction.crop_id)):
        c = int(np.argmax(probs))
        if c in cut and max(probs) >= cut[c]:
            out.to_label[classes[c]].append((int(cid), float(max(probs))))
    out.withdraw = _unbacked(session, mv, cut, list(classes))
    return out


def _unbacked(session: Session, mv: ModelVersion | None, cut: dict[int, float],
              classes: list[str]) -> list[int]:
    """Active ``auto`` labels the active model does not back: its own below today's threshold
    for the class (or of a class it may no longer label: the audit's bound rose above the
    maximum), another version's where the active model predicts another class or is below the
    threshold. No active model (or other classes): every auto label."""
    rows = session.execute(
        select(Label.id, Label.value, Label.model_version_id, Label.probability, Label.crop_id)
        .where(Label.method == LabelKind.AUTO, active_label())).all()
    if mv is None or list(mv.classes) != classes:
        return [r[0] for r in rows]
    others = [r[4] for r in rows if r[2] != mv.id]
    now = {}
    if others:
        ids, probs, _ = model_reports.prediction_arrays(session, mv.id, others)
        now = {int(i): p for i, p in zip(ids, probs)}
    out = []
    for lid, value, version, prob, crop_id in rows:
        c = classes.index(value) if value in classes else -1
        if version == mv.id:
            backed = c in cut and prob is not None and prob >= cut[c]
        else:
            p = now.get(int(crop_id))
            backed = (p is not None and int(np.argmax(p)) == c
                      and (c not in cut or float(np.max(p)) >= cut[c]))
        if not backed:
            out.append(int(lid))
    return out


def is_audit(crop_id: int, share: float) -> bool:
    """Whether a machine-labeled crop is also served to people (a fixed hash of its id, salted
    apart from the double-annotation share's)."""
    return (((crop_id ^ 0x5BD1E995) * 2654435761) % 2**32) / 2**32 < share


def system_annotator(session: Session) -> int:
    from annotator.service.auth import system_user

    user = system_user(session, SYSTEM_NAME)
    if user.role != Role.SYSTEM:  # a person took the name: never record machine labels as theirs
        from annotator.core.errors import WorkspaceError

        raise WorkspaceError(f"the account {SYSTEM_NAME!r} is a person's; rename it to autolabel")
    return user.id


def apply(session: Session, p: Plan, *, audit_share: float) -> tuple[int, list[int]]:
    """Withdraw what the plan says is no longer backed, then label what it may label.
    Returns ``(labels added, crop ids withdrawn back to the queue)``."""
    back = machine_labels.withdraw_labels(session, p.withdraw) if p.withdraw else []
    added = 0
    mv = active_model(session)
    if mv is None or not any(p.to_label.values()):
        return 0, back
    who = system_annotator(session)
    for value, items in p.to_label.items():
        added += machine_labels.add_machine_labels(session, who, [
            machine_labels.MachineLabel(cid, value, prob, audit=is_audit(cid, audit_share))
            for cid, prob in items], kind=LabelKind.AUTO, model_version_id=mv.id)
    return added, back


def measured_error(session: Session, kind: str = LabelKind.AUTO) -> dict:
    """The machine labels' error as people measured it on audit crops, with its 95% interval."""
    n, k = label_cost.machine_label_audit(session, kind)
    lo, hi = audit.interval(k, n)
    return {"kind": kind, "audited": n, "disagreed": k, "error": (k / n) if n else None,
            "interval": [round(lo, 5), round(hi, 5)], "bound": round(audit.upper_bound(k, n), 5)}


def recheck(session: Session, label_ids: Sequence[int], classes: Sequence[str], *,
            max_error: float, root: Path) -> list[int]:
    """After people's labels: if one is from the random share and the active model got it
    wrong, a band's bound may have risen above ``max_error``: withdraw what the audit no
    longer backs, at once (in the same transaction). Returns the crop ids put back."""
    mv = active_model(session)
    if mv is None or not label_ids or not session.scalar(
            select(Label.id).where(Label.method == LabelKind.AUTO, active_label()).limit(1)):
        return []
    rows = session.execute(
        select(Label.value, Prediction.probs)
        .join(Prediction, (Prediction.crop_id == Label.crop_id)
              & (Prediction.model_version_id == mv.id))
        .where(Label.id.in_(list(label_ids)), Label.sampling == "random",
               Label.value != SKIP)).all()
    if not any(v not in classes or classes.index(v) != int(np.argmax(p)) for v, p in rows):
        return []
    p = plan_thresholds(session, mv, classes, max_error=max_error, root=root)
    return machine_labels.withdraw_labels(session, _unbacked(session, mv, p, list(classes)))


def plan_thresholds(session: Session, mv: ModelVersion, classes: Sequence[str], *,
                    max_error: float, root: Path) -> dict[int, float]:
    """``{class index: threshold}`` for the classes the audit lets the model label now."""
    pred, conf, wrong = audit_sample(session, mv.id, list(classes), root=root)
    return {t.cls: t.threshold for t in audit.choose_thresholds(
        pred, conf, wrong, len(classes), max_error=max_error) if t.threshold is not None}


FIRST = 2.0  # queue priority above any uncertainty (<= 1): a track mate the model disputes


def propagate(session: Session, decided: Sequence[tuple[int, str]], classes: Sequence[str], *,
              audit_share: float, max_error: float) -> tuple[int, int]:
    """After people decided crops: their tracks' other open crops on which the active model
    predicts the same class get a ``propagated`` label (an audit share of them stays in the
    queue, as for ``auto``); the ones it predicts otherwise are served first. Nothing is
    propagated once the audit shows propagated labels wrong more often than ``max_error``
    (the lower end of their 95% interval above it). Returns ``(propagated, ranked first)``."""
    mv = active_model(session)
    decided = [(int(c), v) for c, v in decided if v in classes]
    if mv is None or not decided or list(mv.classes) != list(classes):
        return 0, 0
    m = measured_error(session, LabelKind.PROPAGATED)
    if m["audited"] and m["interval"][0] > max_error:
        return 0, 0
    value_of = {}
    for cid, value in decided:
        row = session.execute(select(Crop.source_id, Crop.track_id).where(Crop.id == cid)).one()
        if row.track_id is not None:
            value_of.setdefault((row.source_id, row.track_id), value)
    if not value_of:
        return 0, 0
    mates = []
    for (source, track), value in value_of.items():
        mates += [(int(c), p, value) for c, p in session.execute(
            select(Crop.id, Prediction.probs)
            .join(Prediction, (Prediction.crop_id == Crop.id)
                  & (Prediction.model_version_id == mv.id))
            .where(Crop.source_id == source, Crop.track_id == track,
                   Crop.status == CropStatus.UNLABELED,
                   ~exists().where(Label.crop_id == Crop.id, active_label()),
                   ~exists().where(Lease.crop_id == Crop.id)))]
    agree = [machine_labels.MachineLabel(c, v, float(max(p)), audit=is_audit(c, audit_share))
             for c, p, v in mates if int(np.argmax(p)) == classes.index(v)]
    disputed = [c for c, p, v in mates if int(np.argmax(p)) != classes.index(v)]
    n = machine_labels.add_machine_labels(session, system_annotator(session), agree,
                                 kind=LabelKind.PROPAGATED, model_version_id=mv.id) if agree else 0
    from sqlalchemy import update

    if disputed:
        session.execute(update(Crop).where(Crop.id.in_(disputed)).values(priority=FIRST))
    return n, len(disputed)


def after_people(session: Session, label_ids: Sequence[int], classes: Sequence[str], cfg, *,
                 root: Path) -> None:
    """What people's new labels set off (``cfg``: ``config.AutolabelConfig``): the audit's
    re-check, and with ``cfg.propagate`` the propagation to their tracks."""
    recheck(session, label_ids, classes, max_error=cfg.max_error, root=root)
    if cfg.propagate and label_ids:
        decided = session.execute(select(Label.crop_id, Label.value)
                                  .where(Label.id.in_(list(label_ids)))).all()
        propagate(session, decided, classes, audit_share=cfg.audit_share, max_error=cfg.max_error)


def labels_of_decision(session: Session, decision_id: str) -> list[int]:
    return list(session.scalars(select(Label.id).where(Label.decision_id == decision_id)))


def cost_summary(ws) -> dict:
    """For the Dashboard: what labels cost people (``label_cost.label_cost``) and the machine
    labels' error measured on their audit crops (``ws``: a Workspace; a read transaction)."""
    with ws.read_session() as s:
        return {**label_cost.label_cost(s), "auto_error": measured_error(s, LabelKind.AUTO),
                "propagated_error": measured_error(s, LabelKind.PROPAGATED),
                "over_time": label_cost.label_cost_over_time(s)}
