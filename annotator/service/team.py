"""The service behind the Dashboard and Users pages: queue counts, the team's pace and agreement,
model history, and accounts. Takes a workspace, opens short read transactions, returns
DataFrames and dicts; the arithmetic is in :mod:`annotator.core.metrics`.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from annotator.data import db, model_reports, model_versions, reports
from annotator.service import auth
from annotator.core.metrics import cohen_kappa, wilson_interval
from annotator.service.workspace import Workspace


def stats(ws: Workspace) -> dict:
    with ws.read_session() as s:
        return reports.stats(s, ws.config.labels)


def labels_per_hour(ws: Workspace, *, hours: int = 48, now: dt.datetime | None = None) -> pd.DataFrame:
    """Labels per annotator per hour over the last ``hours``: index hour, one column per
    annotator (people only: imported labels are not anyone's pace)."""
    now = now or db.utcnow()
    with ws.read_session() as s:
        df = reports.label_times(s, since=now - dt.timedelta(hours=hours))
    if df.empty:
        return pd.DataFrame()
    df["hour"] = pd.to_datetime(df["created_at"]).dt.floor("h")
    return df.pivot_table(index="hour", columns="annotator", values="value", aggfunc="count",
                          fill_value=0)


def agreement(ws: Workspace) -> pd.DataFrame:
    """Cohen's kappa for every pair of annotators with crops in common.

    Columns: annotator_a, annotator_b, crops (in common), agree (share), kappa.
    """
    with ws.read_session() as s:
        votes = reports.multi_voted(s)
    cols = ["annotator_a", "annotator_b", "crops", "agree", "kappa"]
    if votes.empty:
        return pd.DataFrame(columns=cols)
    wide = votes.pivot_table(index="crop_id", columns="annotator", values="value", aggfunc="last")
    names = sorted(wide.columns)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = wide[[a, b]].dropna()
            if both.empty:
                continue
            agree = float((both[a] == both[b]).mean())
            rows.append((a, b, len(both), agree, cohen_kappa(both[a], both[b])))
    return pd.DataFrame(rows, columns=cols)


def queue_accuracy(ws: Workspace) -> dict | None:
    """The active model's accuracy on the queue, estimated without bias from the crops the
    random share surfaced (labeled after the model scored them), with a 95% Wilson interval:
    ``{"model", "n", "accuracy", "low", "high"}``, or None without a model or such labels."""
    with ws.read_session() as s:
        mv = model_versions.active_model(s)
        if mv is None:
            return None
        y, probs = reports.random_share_labels(s, mv.id, list(mv.classes))
        name = mv.name
    if len(y) == 0:
        return None
    right = int((probs.argmax(axis=1) == y).sum())
    low, high = wilson_interval(right, len(y))
    return {"model": name, "n": int(len(y)), "accuracy": right / len(y), "low": low, "high": high}


def queue_scored(ws: Workspace) -> tuple[int, int]:
    """``(unlabeled crops the active model scored, unlabeled crops)``; (0, n) without a model."""
    with ws.read_session() as s:
        mv = model_versions.active_model(s)
        if mv is None:
            return 0, reports.unlabeled_count(s)
        return model_reports.scored_share(s, mv.id)


def queue_uncertainty(ws: Workspace) -> np.ndarray:
    """Uncertainty (priority) of every unlabeled crop, for the histogram."""
    with ws.read_session() as s:
        return np.asarray(reports.queue_priorities(s), dtype=float)


def model_history(ws: Workspace) -> pd.DataFrame:
    """Model versions oldest first with their metrics as columns."""
    with ws.read_session() as s:
        return model_reports.model_versions_frame(s)


# --- accounts (admin) -------------------------------------------------------------------------


def users(ws: Workspace) -> pd.DataFrame:
    """Accounts with their label counts: name, role, disabled, labels, last_label_at."""
    with ws.read_session() as s:
        people = [(u.name, u.role, u.disabled_at is not None) for u in db.list_annotators(s)]
        times = reports.label_times(s)
    counts = times.groupby("annotator")["created_at"].agg(["count", "max"]) if not times.empty \
        else pd.DataFrame(columns=["count", "max"])
    rows = [(name, role, disabled, int(counts["count"].get(name, 0)), counts["max"].get(name))
            for name, role, disabled in people]
    return pd.DataFrame(rows, columns=["name", "role", "disabled", "labels", "last_label_at"])


def add_user(ws: Workspace, name: str, password: str, *, role: str = db.Role.ANNOTATOR) -> None:
    auth.create_account(ws, name, password, role=role)


def set_disabled(ws: Workspace, name: str, disabled: bool) -> None:
    with ws.session() as s:
        auth.set_disabled(s, name, disabled)


def set_role(ws: Workspace, name: str, role: str, *, by: str = "unknown") -> None:
    """Change a role; the audit trail records who did it (same transaction)."""
    from annotator.data import trail

    with ws.session() as s:
        auth.set_role(s, name, role)
        trail.record(s, by, trail.ROLE, page="admin", detail={"account": name, "role": role})


def set_password(ws: Workspace, name: str, password: str) -> None:
    with ws.session() as s:
        auth.set_password(s, name, password, min_length=ws.config.auth.min_password_length)


# --- instructions for annotators --------------------------------------------------------------

INSTRUCTIONS_FILE = "instructions.md"  # in the workspace: the team's labeling rules, Markdown
MAX_INSTRUCTIONS = 20_000  # characters
DEFAULT_INSTRUCTIONS = """\
**mask**: nose and mouth covered by a mask (cloth, surgical, N95). **no_mask**: a face with
nose and mouth visible, a mask under the chin counts as no_mask. **not a face**: the back of a
head, a sign, a blur. **skip**: you cannot tell (too small, too dark) — someone else decides.
An admin can change this text on the Users page.
"""


def instructions(ws: Workspace) -> str:
    """The workspace's instructions for annotators (Markdown), or the default text."""
    path = ws.root / INSTRUCTIONS_FILE
    try:
        return path.read_text(encoding="utf-8")[:MAX_INSTRUCTIONS]
    except (OSError, UnicodeDecodeError):
        return DEFAULT_INSTRUCTIONS


def save_instructions(ws: Workspace, text: str) -> None:
    """Replace the instructions (written whole: a reader never sees half a file)."""
    import os

    from annotator.core.errors import InputError

    if len(text) > MAX_INSTRUCTIONS:
        raise InputError(f"instructions are at most {MAX_INSTRUCTIONS:,} characters "
                         f"({len(text):,} given)")
    path = ws.root / INSTRUCTIONS_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
