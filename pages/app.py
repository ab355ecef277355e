"""Entrypoint of the labeling app: sign-in, then the pages this user's role may open."""
from __future__ import annotations

import streamlit as st

from annotator import auth, labeling
from annotator.errors import AnnotatorError
from pages import common

st.set_page_config(page_title="facemask-annotator", page_icon=":material/masks:", layout="wide")


def sign_in() -> None:
    st.title("facemask-annotator")
    st.caption(f"workspace {common.workspace().root}")
    with st.form("sign-in"):
        name = st.text_input("User name")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        try:
            who = auth.sign_in(common.workspace(), name, password)
            st.session_state.user = {"id": who.id, "name": who.name, "role": who.role}
        except AnnotatorError as exc:
            st.error(str(exc))
        else:
            st.rerun()
    st.caption("Accounts are made with `annotator user add NAME`.")


def sign_out() -> None:
    u = common.user()
    if u is not None:
        labeling.release(common.workspace(), u["id"])  # held crops go back to the queue
    st.session_state.clear()
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
    common.workspace()
except AnnotatorError as exc:
    st.error(str(exc))
    st.stop()
u = common.user()
if u is not None:
    st.sidebar.caption(f"signed in as **{u['name']}** ({u['role']})")
st.navigation(navigation(None if u is None else u["role"])).run()
