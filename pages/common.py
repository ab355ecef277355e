"""Shared bits of the pages: the workspace, the signed-in user, role checks, crop images."""
from __future__ import annotations

import html
import re
from contextlib import contextmanager

import streamlit as st

from annotator.errors import AnnotatorError
from annotator.workspace import Workspace, default_project

# (section, script, title, icon, admin only): the app's navigation, in order.
PAGES = [
    ("Labeling", "label.py", "Label", ":material/label:", False),
    ("Labeling", "grid.py", "Grid", ":material/grid_view:", False),
    ("Labeling", "review.py", "Review", ":material/rule:", False),
    ("Labeling", "browse.py", "Browse", ":material/photo_library:", False),
    ("Team", "dashboard.py", "Dashboard", ":material/monitoring:", False),
    ("Team", "footage.py", "Footage", ":material/videocam:", False),
    ("Admin", "admin_models.py", "Models", ":material/model_training:", True),
    ("Admin", "admin_extract.py", "Extract", ":material/movie:", True),
    ("Admin", "admin_users.py", "Users", ":material/group:", True),
    ("Admin", "admin_privacy.py", "Personal data", ":material/shield_person:", True),
]


@st.cache_resource(show_spinner=False)
def _open_workspace(root: str) -> Workspace:
    return Workspace.open(root)


def workspace() -> Workspace:
    """The workspace the app was started on (``annotator app --project DIR``), opened once."""
    return _open_workspace(str(default_project().resolve()))


def user() -> dict | None:
    """``{"id", "name", "role"}`` of the signed-in annotator, or None."""
    return st.session_state.get("user")


def require_user() -> dict:
    """The signed-in user, re-read from the database (disabled: signed out; role: current)."""
    from pages import session

    u = session.resume(workspace()) if user() is not None else None
    if u is None:
        st.warning("Please sign in.")
        st.stop()
    return u


def require_admin() -> dict:
    """Access control for admin pages: hiding them from the menu is not enough."""
    u = require_user()
    if u["role"] != "admin":
        st.error("This page is for admins.")
        st.stop()
    return u


def recheck_admin() -> dict:
    """Inside a privileged callback or form action: the signed-in account, re-read from the
    database now (AuthError if it was disabled or demoted since the page was drawn)."""
    from annotator import auth

    u = user()
    account = auth.require_admin(workspace(), u["id"] if u else None,
                                 token=st.session_state.get("session_token"))
    return {"id": account.id, "name": account.name, "role": account.role}


@contextmanager
def errors_shown():
    """Show an AnnotatorError as one st.error line instead of a traceback."""
    try:
        yield
    except AnnotatorError as exc:
        st.error(str(exc))


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def md_escape(text: str) -> str:
    """``text`` shown as itself where Streamlit renders Markdown (file and user names: a name
    like ``**x**`` or ``[x](http://...)`` must not become bold or a link)."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def relabel(crop_id: int, value: str, *, message_key: str) -> None:
    """Button callback: replace a crop's label with the signed-in user's decision and say so
    (or why not) in ``st.session_state[message_key]``."""
    from annotator import labeling

    try:
        labeling.relabel(workspace(), st.session_state["user"]["id"], crop_id, value)
        st.session_state[message_key] = f"crop #{crop_id} is now {value}"
    except AnnotatorError as exc:
        st.session_state[message_key] = str(exc)


def crop_html(card, *, size: int, pixelated: bool, border: str | None = None) -> str:
    """An <img> of the crop, scaled to ``size`` px on its long side, inline as a data URI (so the
    next crop shows without another request)."""
    scale = size / max(card.width, card.height, 1)
    w, h = int(card.width * scale), int(card.height * scale)
    rendering = "pixelated" if pixelated else "auto"
    frame = f"border:4px solid {border};" if border else ""
    return (f'<img src="{card.data_uri()}" width="{w}" height="{h}" '
            f'data-crop-id="{card.crop_id}" alt="crop {card.crop_id}" '
            f'style="image-rendering:{rendering};{frame}border-radius:4px" />')


def show_crop(card, *, size: int, pixelated: bool, border: str | None = None) -> None:
    st.html(crop_html(card, size=size, pixelated=pixelated, border=border))


def guess_text(card) -> str:
    if card.guess is None:
        return "model: no prediction"
    return f"model: {html.escape(card.guess)} ({card.confidence:.0%})"


def show_jobs(ws: Workspace, *, kinds, limit: int = 8, extra=None) -> None:
    """Background jobs of these kinds: progress by stage with an ETA, Cancel, the real failure
    reason, and the log of the newest one. Refreshes itself every 2 s while one runs (the job
    runs in its own process); when the last one ends the whole page reruns, so buttons that
    waited for it come back. ``extra(job)`` draws more under an active job (training curves)."""
    from annotator import jobs

    @st.fragment(run_every="2s")
    def panel():
        listed = jobs.list_jobs(ws, kinds=kinds, limit=limit)
        render_jobs(ws, listed, extra=extra)
        if not any(j.active for j in listed):
            st.rerun(scope="app")

    listed = jobs.list_jobs(ws, kinds=kinds, limit=limit)
    if any(j.active for j in listed):
        panel()
    else:
        render_jobs(ws, listed)


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 90:
        return f" · about {max(5, round(seconds / 5) * 5):.0f} s left"
    return f" · about {seconds / 60:.0f} min left"


def render_jobs(ws: Workspace, listed, *, extra=None) -> None:
    from annotator import jobs

    if not listed:
        st.caption("no jobs yet")
        return
    for j in listed:
        label = f"job {j.id} · {j.kind} · {html.escape(j.describe())}"
        if j.active:
            row = st.columns([6, 1])
            text = f"{label} · {j.status} · {j.message or ''}{eta_text(j.eta_s)}"
            row[0].progress(min(max(j.progress or 0.0, 0.0), 1.0), text=text)
            if j.cancel_requested:
                row[1].caption("cancelling…")
            elif row[1].button("Cancel", key=f"cancel_{j.id}", help="Stop this job; work done "
                               "so far is kept, the active model is unchanged."):
                with errors_shown():  # only admins see jobs; re-checked at the click
                    recheck_admin()
                    jobs.cancel(ws, j.id)
                    st.rerun()
            if extra is not None:
                extra(j)
        elif j.status == "failed":
            st.error(f"{label} · failed: {j.message or 'no reason recorded'}")
        elif j.status == "cancelled":
            st.warning(f"{label} · cancelled")
        else:
            st.success(f"{label} · done {j.finished_at:%Y-%m-%d %H:%M:%S}" if j.finished_at
                       else f"{label} · done")
    newest = listed[0]
    with st.expander(f"log of job {newest.id}", expanded=newest.status == "failed"):
        st.code(jobs.log_tail(newest) or "(empty)", language=None)
        if newest.result:
            st.json(newest.result, expanded=False)
