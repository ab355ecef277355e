"""What a dataset cost in human decisions: labels by how they were decided (a key, a track,
a grid page, an audit, the model, an import), over time, and the audit of machine labels."""
from __future__ import annotations

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from annotator.core.config import SKIP
from annotator.data.frames import select_frame
from annotator.data.db import Annotator, Crop, CropStatus, Label, LabelKind, Role, active_label, count


def label_cost(session: Session) -> dict:
    """What the labels cost in people's decisions (``stats``: ``labels_by_kind``,
    ``human_decisions``, ``crops_labeled``, ``human_decisions_per_labeled_crop``).

    A human decision is one key press: a ``key``, ``audit`` or ``review`` label each; a grid page
    counts each crop it saved plus one for the page; a track decision counts once however many
    crops it labeled. Undone decisions are left out, superseded ones still cost their decision.
    """
    by_kind = dict(session.execute(
        select(Label.method, func.count()).where(active_label()).group_by(Label.method)).all())
    person = (Label.undone_at.is_(None), Annotator.role != Role.SYSTEM)
    each = session.scalar(
        select(func.count()).select_from(Label).join(Annotator, Annotator.id == Label.annotator_id)
        .where(*person, Label.method.not_in([LabelKind.TRACK, LabelKind.IMPORT]))) or 0
    gestures = session.scalar(
        select(func.count(Label.decision_id.distinct())).select_from(Label)
        .join(Annotator, Annotator.id == Label.annotator_id)
        .where(*person, Label.method.in_([LabelKind.TRACK, LabelKind.GRID]))) or 0
    decisions = each + gestures
    labeled = count(session, Crop, Crop.status == CropStatus.LABELED)
    return {
        "labels_by_kind": {**{k: by_kind.get(k, 0) for k in LabelKind.ALL},
                           **{str(k): v for k, v in by_kind.items() if k not in LabelKind.ALL}},
        "human_decisions": decisions,
        "crops_labeled": labeled,
        "human_decisions_per_labeled_crop": round(decisions / labeled, 4) if labeled else None,
    }


def label_cost_over_time(session: Session, *, freq: str = "h") -> pd.DataFrame:
    """Cumulative human decisions and labels (by people, by the machine) per ``freq`` bin, for
    the Dashboard's plot; counted as in :func:`label_cost` (undone ones out)."""
    q = (select(Label.created_at, Label.method, Label.decision_id,
                (Annotator.role != Role.SYSTEM).label("human"),
                Label.superseded_by_id.is_(None).label("active"))
         .join(Annotator, Annotator.id == Label.annotator_id)
         .where(Label.undone_at.is_(None)))
    df = select_frame(session, q)
    cols = ["human decisions", "labels by people", "labels by the model"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    person = df["human"].astype(bool) & (df["method"] != LabelKind.IMPORT)
    gesture = df["method"].isin([LabelKind.TRACK, LabelKind.GRID]) & df["decision_id"].notna()
    first = ~df.duplicated("decision_id") | df["decision_id"].isna()
    decisions = (person & (df["method"] != LabelKind.TRACK)).astype(int) + (
        person & gesture & first).astype(int)
    t = pd.to_datetime(df["created_at"]).dt.floor(freq)
    active = df["active"].astype(bool)
    out = pd.DataFrame({cols[0]: decisions.to_numpy(),
                        cols[1]: (person & active).astype(int).to_numpy(),
                        cols[2]: (df["method"].isin(LabelKind.MACHINE) & active).astype(int)
                        .to_numpy()}, index=t.to_numpy())
    return out.groupby(level=0).sum().cumsum()


def machine_label_audit(session: Session, kind: str) -> tuple[int, int]:
    """``(audited, disagreed)``: machine labels of ``kind`` that a person later labeled on an
    audit crop, and how many of those people labeled otherwise (the measured error)."""
    person = aliased(Label)
    rows = session.execute(
        select(Label.value, person.value).join(person, person.id == Label.superseded_by_id)
        .where(Label.method == kind, person.method == LabelKind.AUDIT, active_label(person),
               person.value != SKIP)).all()
    return len(rows), sum(1 for a, b in rows if a != b)
