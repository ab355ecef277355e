"""Users page (admin): who can sign in, with which role, and how much each has labeled."""
from __future__ import annotations

import streamlit as st

from annotator.service import accounts, instructions
from annotator.core.errors import AnnotatorError
from pages import common

ws = common.workspace()
me = common.require_admin()
state = st.session_state
rules = ws.config.auth


def _do(action, *args, done: str) -> None:
    try:
        common.recheck_admin()  # the page may have been drawn before a disable or demotion
        action(ws, *args)
        state.users_msg = ("ok", done)
    except AnnotatorError as exc:
        state.users_msg = ("error", str(exc))


st.title("Users")
if state.get("users_msg"):
    kind, text = state.pop("users_msg")
    (st.success if kind == "ok" else st.error)(text)
people = accounts.users(ws)
st.dataframe(people, hide_index=True, width="stretch", column_config={
    "name": "User name", "role": "Role", "disabled": "Disabled", "labels": "Labels given",
    "last_label_at": st.column_config.DatetimeColumn("Last label (UTC)",
                                                     format="YYYY-MM-DD HH:mm")})

left, right = st.columns(2)
with left:
    st.subheader("Add an account")
    if state.pop("users_clear", False):  # after an account was added, not after an error
        state.new_name = state.new_password = ""
    with st.form("add-user"):
        name = st.text_input("User name", key="new_name", max_chars=100)
        password = st.text_input("Password", type="password", key="new_password",
                                 help=f"at least {rules.min_password_length} characters")
        role = st.selectbox("Role", ["annotator", "admin"], key="new_role")
        added = st.form_submit_button("Add user", type="primary")
    if added:
        _do(lambda w, n, p: accounts.add_user(w, n, p, role=role), name.strip(), password,
            done=f"added {role} {name.strip()}")
        state.users_clear = state.users_msg[0] == "ok"  # a refused password keeps the name
        st.rerun()
with right:
    st.subheader("Change an account")
    names = people["name"].tolist()
    who = st.selectbox("User", names, key="edit_user")
    if who:
        row = people.set_index("name").loc[who]
        c1, c2 = st.columns(2)
        if row["disabled"]:
            c1.button("Enable", key="user_enable", on_click=_do,
                      args=(accounts.set_disabled, who, False), kwargs={"done": f"enabled {who}"})
        else:
            c1.button("Disable", key="user_disable", on_click=_do,
                      args=(accounts.set_disabled, who, True),
                      kwargs={"done": f"disabled {who}; their sessions ended"},
                      help="They cannot sign in, and any open session ends at once.")
        other = "annotator" if row["role"] == "admin" else "admin"
        c2.button(f"Make {other}", key="user_role", on_click=_do,
                  args=(lambda w, n, r: accounts.set_role(w, n, r, by=me["name"]), who, other),
                  kwargs={"done": f"{who} is now {other}"})
        with st.form("reset-password", clear_on_submit=True):
            new = st.text_input("New password", type="password", key="reset_password")
            if st.form_submit_button("Set password"):
                _do(accounts.set_password, who, new, done=f"new password set for {who}; their "
                    "sessions ended")
                st.rerun()

st.subheader("Instructions for annotators")
st.caption("Shown on the Label and Grid pages (Markdown; kept in the workspace as "
           f"{instructions.INSTRUCTIONS_FILE}).")
text = st.text_area("Instructions", instructions.instructions(ws), height=180, key="instructions_text",
                    max_chars=instructions.MAX_INSTRUCTIONS, label_visibility="collapsed")
if st.button("Save instructions", key="instructions_save"):
    _do(instructions.save_instructions, text, done="instructions saved")
    st.rerun()
