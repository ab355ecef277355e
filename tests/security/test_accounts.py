"""Sign-in limits, equal work for unknown names, account management, sessions (items 2, 3, 10)."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from annotator.data import db
from annotator.service import auth
from annotator.core.errors import AuthError, InputError
from pipelines.cli import app

GOOD = "correct horse battery"


@pytest.fixture
def ws(workspace):
    auth.create_account(workspace, "root", GOOD, role="admin")
    auth.create_account(workspace, "alice", GOOD)
    return workspace


def test_a_thousand_wrong_passwords_lock_the_account_then_the_lock_expires(ws):
    t0 = db.utcnow()
    for i in range(1000):
        with pytest.raises(AuthError) as exc:
            auth.sign_in(ws, "alice", f"guess-{i}", client="10.0.0.9", now=t0)
    assert "try again in 15 min" in str(exc.value)  # locked after 5; the rest never hashed
    with pytest.raises(AuthError, match="try again"):  # the right password does not help now
        auth.sign_in(ws, "alice", GOOD, client="10.0.0.9", now=t0)
    later = t0 + dt.timedelta(minutes=16)
    assert auth.sign_in(ws, "alice", GOOD, client="10.0.0.9", now=later).name == "alice"


def test_lockout_is_per_account_and_per_client(ws):
    t0 = db.utcnow()
    for i in range(5):  # one client guesses at one account
        with pytest.raises(AuthError):
            auth.sign_in(ws, "alice", f"x{i}", client="10.0.0.9", now=t0)
    with pytest.raises(AuthError, match="try again"):  # alice is locked from everywhere
        auth.sign_in(ws, "alice", GOOD, client="10.0.0.10", now=t0)
    with pytest.raises(AuthError, match="try again"):  # and that client for every account
        auth.sign_in(ws, "root", GOOD, client="10.0.0.9", now=t0)
    assert auth.sign_in(ws, "root", GOOD, client="10.0.0.10", now=t0).role == "admin"


def test_failures_reset_after_a_good_sign_in(ws):
    t0 = db.utcnow()
    for _ in range(2):
        for i in range(4):
            with pytest.raises(AuthError, match="wrong user name"):
                auth.sign_in(ws, "alice", f"x{i}", now=t0)
        auth.sign_in(ws, "alice", GOOD, now=t0)  # 4 + 4 wrong, never 5 in a row


def test_unknown_names_cost_as_much_as_known_ones(ws, monkeypatch):
    """A name that does not exist is checked against a dummy hash, so timing tells nothing:
    each wrong sign-in runs exactly one argon2 verification, with the same cost parameters
    (time, memory, parallelism) for an unknown name as for a known one. Counted, not timed."""
    from argon2 import extract_parameters

    verified = []

    class CountingHasher:  # the real hasher does the work; this only notes what it verified
        def __init__(self, real):
            self.real = real

        def verify(self, hash_, password):
            verified.append(extract_parameters(hash_))
            return self.real.verify(hash_, password)

        def __getattr__(self, name):
            return getattr(self.real, name)

    monkeypatch.setattr(auth, "_hasher", CountingHasher(auth._hasher))
    work = {}
    for name in ("alice", "nobody-by-that-name"):
        verified.clear()
        with pytest.raises(AuthError):
            auth.sign_in(ws, name, "wrong-password", client=f"c-{name}")
        work[name] = list(verified)
    assert len(work["alice"]) == 1 and work["nobody-by-that-name"] == work["alice"]


def test_password_rules(ws):
    for bad, why in (("", "empty"), ("          ", "empty"), ("short", "at least 10"),
                     ("x" * 2000, "at most")):
        with pytest.raises(InputError, match=why):
            auth.create_account(ws, "carol", bad)
    with pytest.raises(InputError, match="names ignore case"):
        auth.create_account(ws, "ROOT", GOOD)
    with pytest.raises(InputError, match="invalid user name"):
        auth.create_account(ws, "<b>eve</b>", GOOD)
    assert auth.sign_in(ws, "ALICE", GOOD).name == "alice"  # sign-in ignores case too


def cli(*args, input=None):
    r = CliRunner().invoke(app, [str(a) for a in args], input=input)
    return r


def test_user_commands_disable_enable_set_role_set_password(ws):
    p = ("--project", ws.root)
    token = auth.start_session(ws, auth.sign_in(ws, "alice", GOOD))
    assert auth.resume_session(ws, token).name == "alice"
    assert cli("user", "disable", "alice", *p).exit_code == 0
    assert auth.resume_session(ws, token) is None  # the open session ended at once
    with pytest.raises(AuthError):
        auth.sign_in(ws, "alice", GOOD)
    assert cli("user", "enable", "alice", *p).exit_code == 0
    assert auth.sign_in(ws, "alice", GOOD).role == "annotator"
    assert cli("user", "set-role", "alice", "admin", *p).exit_code == 0
    assert auth.sign_in(ws, "alice", GOOD).role == "admin"
    r = cli("user", "set-password", "alice", "--password-stdin", *p, input="a new long password\n")
    assert r.exit_code == 0, r.output
    with pytest.raises(AuthError):
        auth.sign_in(ws, "alice", GOOD)
    assert auth.sign_in(ws, "alice", "a new long password").name == "alice"
    listed = json.loads(cli("user", "list", *p, "--json").stdout)
    assert {u["name"]: u["role"] for u in listed} == {"alice": "admin", "root": "admin"}


def test_the_last_admin_cannot_be_disabled_or_demoted(ws):
    for args in (("user", "disable", "root"), ("user", "set-role", "root", "annotator")):
        r = cli(*args, "--project", ws.root)
        assert r.exit_code != 0 and "last enabled admin" in r.output and "Traceback" not in r.output
    r = cli("user", "set-role", "nobody", "admin", "--project", ws.root)
    assert r.exit_code != 0 and r.output.strip() == "error: no user 'nobody'"


def test_sessions_expire_and_sign_out_revokes(ws):
    who = auth.sign_in(ws, "alice", GOOD)
    t0 = db.utcnow()
    token = auth.start_session(ws, who, now=t0)
    assert auth.resume_session(ws, token, now=t0 + dt.timedelta(hours=11)).name == "alice"
    assert auth.resume_session(ws, token, now=t0 + dt.timedelta(hours=13)) is None  # 12 h default
    assert auth.resume_session(ws, token + "x") is None and auth.resume_session(ws, "") is None
    auth.end_session(ws, token)
    assert auth.resume_session(ws, token) is None
    with ws.read_session() as s:  # only the hash is stored
        assert token not in {r.token_hash for r in s.query(db.UserSession)}
