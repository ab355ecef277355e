"""Entrypoint of the labeling app: sign-in, then the pages this user's role may open."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from annotator.service import app_server, auth, labeling
from annotator.core.errors import AnnotatorError
from pages import common, session

# A local icon file: a ":material/...:" page icon makes the browser fetch the favicon from a
# font CDN, and the app must work offline and talk to no outside host.
st.set_page_config(page_title="facemask-annotator",
                   page_icon=str(Path(__file__).with_name("icon.png")), layout="wide")
state = st.session_state


def sign_in() -> None:
    st.title("facemask-annotator")
    ws = common.workspace()
    client = session.client_address(ws.config.auth.trusted_proxies)  # the proxy's only if trusted
    with st.form("sign-in"):
        name = st.text_input("User name", max_chars=100)
        password = st.text_input("Password", type="password", max_chars=auth.MAX_PASSWORD)
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            who = auth.sign_in(ws, name, password, client=client)
        except AnnotatorError as exc:
            st.error(str(exc))
        else:
            state.user = {"id": who.id, "name": who.name, "role": who.role}
            state.session_token = auth.start_session(ws, who)
            state.pop("revoked_token", None)
            st.rerun()
    if not auth.has_admin(ws):
        st.warning("This workspace has no admin account yet.")
        if client == "local":  # the server's own user may see its path
            st.code(f"annotator user add NAME --role admin --project {ws.root.resolve()}",
                    language="bash")
        else:
            st.caption("Ask whoever runs the server to create the first admin with "
                       "`annotator user add NAME --role admin`.")
    else:
        st.caption("No account? Ask an admin (Users page, or `annotator user add NAME`).")


def _let_go(ws, annotator_id: int) -> None:
    """Give back every crop this annotator holds (a claim still running in the background
    finishes first, or its crops would stay held)."""
    refill = state.get("label_refill")
    if refill is not None:
        try:
            refill.result(timeout=30)
        except Exception:  # a failed claim holds nothing
            pass
    labeling.release(ws, annotator_id)
    state.label_cards = state.label_refill = state.grid_cards = None
    state.holding = False


def sign_out() -> None:
    u = common.user()
    ws = common.workspace()
    if u is not None:
        _let_go(ws, u["id"])  # held crops go back to the queue
    token = state.get("session_token")
    auth.end_session(ws, token)  # the cookie's token stops working on the server at once
    state.clear()
    state.revoked_token = token
    st.rerun()


def navigation(role: str | None) -> dict[str, list]:
    if role is None:
        return {"": [st.Page(sign_in, title="Sign in", icon=":material/login:")]}
    sections: dict[str, list] = {}
    for section, script, title, icon, admin_only in common.PAGES:
        if admin_only and role != "admin":
            continue
        sections.setdefault(section, []).append(
            st.Page(script, title=title, icon=icon, default=script == "label.py"))
    sections["Account"] = [st.Page(sign_out, title="Sign out", icon=":material/logout:")]
    return sections


try:
    ws = common.workspace()
except AnnotatorError as exc:
    st.error(str(exc))
    st.stop()
u = session.resume(ws)
app_server.mark(app_server.current_session_id(), signed_in=u is not None)  # uploads
if u is not None:
    st.sidebar.caption(f"signed in as **{u['name']}** ({u['role']})")
    if state.get("session_token"):
        with st.sidebar:  # (re)writes the cookie, so a reload or a new tab stays signed in
            session.write_cookie(state.session_token, int(ws.config.auth.session_hours * 3600))
elif state.get("revoked_token"):
    with st.sidebar:
        session.write_cookie("", 0)
page = st.navigation(navigation(None if u is None else u["role"]))
if u is not None and state.get("holding") and page.title != state.get("page_title"):
    _let_go(ws, u["id"])  # left the page that held them: claimable by others at once
state.page_title = page.title
page.run()
