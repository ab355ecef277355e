"""The app before and after sign-in, as an attacker on the LAN sees it (items 9, 10)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from annotator.data import db
from annotator.service import accounts, auth
from pipelines.cli.server import APP_SERVER_OPTIONS
from tests.app import factory

PAGES = Path(__file__).resolve().parents[2] / "pages"
T = 60


@pytest.fixture
def ws(tmp_path, monkeypatch):
    with factory.served(tmp_path / "ws", monkeypatch, 40) as ws:
        yield ws


def rendered_text(at: AppTest) -> str:
    parts = []
    for kind in ("markdown", "caption", "code", "error", "warning", "info", "title", "html"):
        parts += [str(getattr(e, "value", "")) for e in at.get(kind)]
    return "\n".join(parts)


def test_sign_in_page_reveals_no_server_path(ws):
    at = AppTest.from_file(str(PAGES / "app.py"), default_timeout=T).run()
    assert not at.exception
    text = rendered_text(at)
    assert str(ws.root) not in text and str(ws.root.resolve()) not in text
    assert "Sign in" in [b.label for b in at.button]


def test_first_run_shows_the_exact_command_to_the_server_itself(tmp_path, monkeypatch):
    ws = factory.build(tmp_path / "empty", 5, users={})
    monkeypatch.setenv("ANNOTATOR_PROJECT", str(ws.root))
    at = AppTest.from_file(str(PAGES / "app.py"), default_timeout=T).run()
    assert "no admin account yet" in at.warning[0].value
    # AppTest has no remote address: it is the server's own user, who may see the path.
    assert f"annotator user add NAME --role admin --project {ws.root.resolve()}" in at.code[0].value


def test_a_role_change_reaches_a_signed_in_session_on_its_next_action(ws):
    accounts.set_role(ws, "alice", "admin")
    with ws.read_session() as s:
        alice = db.get_annotator(s, "alice")
    signed_in_as_admin = {"id": alice.id, "name": "alice", "role": "admin"}

    def open_users_page(state_user):
        at = AppTest.from_file(str(PAGES / "admin_users.py"), default_timeout=T)
        at.session_state["user"] = dict(state_user)
        return at.run()

    assert not open_users_page(signed_in_as_admin).error
    accounts.set_role(ws, "alice", "annotator")  # demoted while her browser still says admin
    at = open_users_page(signed_in_as_admin)
    assert [e.value for e in at.error] == ["This page is for admins."]
    assert at.session_state["user"]["role"] == "annotator"
    accounts.set_disabled(ws, "alice", True)  # disabled while signed in: signed out
    at = AppTest.from_file(str(PAGES / "label.py"), default_timeout=T)
    at.session_state["user"] = {"id": alice.id, "name": "alice", "role": "annotator"}
    at.run()
    assert "user" not in at.session_state and "Please sign in." in at.warning[0].value


def test_a_revoked_session_token_signs_the_browser_out(ws):
    who = auth.sign_in(ws, "alice", "alice-password")
    token = auth.start_session(ws, who)
    at = AppTest.from_file(str(PAGES / "app.py"), default_timeout=T)
    at.session_state["user"] = {"id": who.id, "name": who.name, "role": who.role}
    at.session_state["session_token"] = token
    at.run()
    assert "user" in at.session_state
    auth.end_session(ws, token)  # signed out in another tab
    at.run()
    assert "user" not in at.session_state


def test_tracebacks_never_reach_the_browser():
    opts = list(APP_SERVER_OPTIONS)
    assert opts[opts.index("--client.showErrorDetails") + 1] == "none"
