"""Shared bits of the pages: the workspace, the signed-in user, role checks, crop images."""
from __future__ import annotations

import html
import re
from contextlib import contextmanager

import streamlit as st

from annotator.core.errors import AnnotatorError
from annotator.service.workspace import Workspace, default_project

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
    from annotator.service import auth

    u = user()
    account = auth.require_admin(workspace(), u["id"] if u else None,
                                 token=st.session_state.get("session_token"))
    return {"id": account.id, "name": account.name, "role": account.role}


def instructions_panel() -> None:
    """The team's labeling rules (``instructions.md`` in the workspace), folded away: one click
    to read them while labeling. Markdown only, no HTML (``st.markdown`` escapes it)."""
    from annotator.service import instructions

    with st.expander("Instructions for annotators", icon=":material/menu_book:"):
        st.markdown(instructions.instructions(workspace()))


def kept(key: str, default):
    """Keep a widget's value for the whole session, also across pages (Streamlit forgets a
    widget's state when its page is left): call before the widget, and give the widget
    ``key=key, on_change=keep, args=(key,)`` and no ``value``."""
    st.session_state[key] = st.session_state.get(f"_kept_{key}", default)


def keep(key: str) -> None:
    st.session_state[f"_kept_{key}"] = st.session_state[key]


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
    from annotator.service import review

    try:
        review.relabel(workspace(), st.session_state["user"]["id"], crop_id, value)
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
    from annotator.service import jobs

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


KIND_WORDS = {"retrain": "retrain", "score": "score the queue", "promote": "promote",
              "rollback": "roll back", "extract": "extract", "import": "import",
              "detect": "detect", "cli": "command line"}


def job_words(job) -> str:
    """A job's options in words for its row: ``epochs 5, start from none, skip gate`` rather
    than ``epochs=5, init='none', force=False`` (unset and false options left out)."""
    args = job.args if isinstance(job.args, dict) else {}
    names = {"init": "start from", "force": "skip the validation gate", "redo": "redo",
             "to_queue": "send hard tracks to the queue"}
    parts = []
    for k, v in args.items():
        if v in (None, False, "", [], {}):
            continue
        name = names.get(k, k.replace("_", " "))
        if v is True:
            parts.append(name)
        elif isinstance(v, (list, tuple)):
            shown = [str(x).rstrip("/").rsplit("/", 1)[-1] for x in v[:3]]
            parts.append(f"{len(v)} {name}: {', '.join(shown)}{', …' if len(v) > 3 else ''}")
        elif isinstance(v, dict):
            continue  # nested settings (a stream's options): too long for a row
        else:
            text = str(v).rstrip("/").rsplit("/", 1)[-1] if "/" in str(v) else str(v)
            parts.append(f"{name} {text[:60]}")
    return ", ".join(parts)


def job_outcome(job) -> tuple[str, str] | None:
    """What a finished job decided, in words, when it is not plain success: a promotion the
    validation gate refused says why and what to tick. ``(level, text)``, level ``warning``."""
    result = job.result if isinstance(job.result, dict) else {}
    promo = result.get("promote") if job.kind == "retrain" else (
        result if job.kind == "promote" else None)
    if not isinstance(promo, dict) or promo.get("promoted", True):
        return None
    cand, act = promo.get("candidate_balanced_accuracy"), promo.get("active_balanced_accuracy")
    version = promo.get("version") or "the new version"
    if cand is not None and act is not None:
        why = (f"validation balanced accuracy {cand:.3f} < active {act:.3f}"
               if round(cand, 3) != round(act, 3) else
               f"validation balanced accuracy {cand:.4f} < active {act:.4f}")
        return "warning", (f"{version} not promoted: {why}; tick 'Skip the validation gate' "
                           "to promote anyway")
    return "warning", f"{version} not promoted: {promo.get('reason') or 'no reason recorded'}"


def render_jobs(ws: Workspace, listed, *, extra=None) -> None:
    from annotator.service import jobs

    if not listed:
        st.caption("no jobs yet")
        return
    for j in listed:
        words = job_words(j)
        label = (f"job {j.id} · {KIND_WORDS.get(j.kind, j.kind)}"
                 + (f" · {html.escape(words)}" if words else "")
                 + (f" · by {html.escape(j.started_by)}" if j.started_by else ""))
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
        elif (said := job_outcome(j)) is not None:
            st.warning(f"{label} · {said[1]}")
        else:
            st.success(f"{label} · done {j.finished_at:%Y-%m-%d %H:%M:%S}" if j.finished_at
                       else f"{label} · done")
    newest = listed[0]
    with st.expander(f"log of job {newest.id}", expanded=newest.status == "failed"):
        st.code(jobs.log_tail(newest) or "(empty)", language=None)
        if newest.result:
            st.json(newest.result, expanded=False)
