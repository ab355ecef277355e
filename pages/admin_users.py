"""Users page (admin): who can sign in, with which role, and how much each has labeled."""
from __future__ import annotations

import streamlit as st

from annotator import team
from annotator.errors import AnnotatorError
from pages import common

ws = common.workspace()
me = common.require_admin()

st.title("Users")
st.dataframe(team.users(ws), hide_index=True)

st.subheader("Add an account")
with st.form("add-user", clear_on_submit=True):
    name = st.text_input("User name", key="new_name")
    password = st.text_input("Password", type="password", key="new_password")
    role = st.selectbox("Role", ["annotator", "admin"], key="new_role")
    added = st.form_submit_button("Add user", type="primary")
if added:
    try:
        team.add_user(ws, name.strip(), password, role=role)
    except AnnotatorError as exc:
        st.error(str(exc))
    else:
        st.success(f"added {role} {name.strip()}")
        st.rerun()
