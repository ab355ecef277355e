"""Accounts for the Users page: list, add, disable, change role or password (admins only;
``annotator.service.auth`` checks who may).
"""
from __future__ import annotations

import pandas as pd

from annotator.data import db, reports
from annotator.service import auth
from annotator.service.workspace import Workspace


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
