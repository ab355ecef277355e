"""Accounts, sign-in and sessions for a team's server on a LAN.

- Passwords: argon2id hashes (argon2-cffi, the maintained PHC-winner binding); at least
  ``[auth] min_password_length`` characters (default 10), never blank.
- Names are unique case-insensitively (``root`` and ``ROOT`` are one account).
- Sign-in does the same work for an unknown name as for a known one (a dummy hash is checked),
  so response times do not tell which names exist. Wrong passwords are counted per account and
  per client address; ``max_failures`` in a row lock that key for ``lockout_minutes`` (the
  lock applies to unknown names too, for the same reason).
- Sessions: a random 256-bit token in the browser's cookie; only its sha256 is stored, with an
  expiry. Sign-out revokes it server-side; disabling an account or changing its password revokes
  all of its sessions; a role change or a disable reaches a signed-in browser on its next page
  action (:func:`current` re-reads the account every time).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update

from annotator.core.config import AuthConfig
from annotator.data.db import Annotator, AuthFailure, Role, UserSession, count, get_annotator, utcnow
from annotator.core.errors import AuthError, InputError

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password anyone has: it only makes unknown names cost time")
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")
MAX_PASSWORD = 1024
WRONG = "wrong user name or password"


@dataclass(frozen=True)
class Account:
    """The signed-in person, as pages keep it."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


# --- rules --------------------------------------------------------------------------------------


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InputError(f"invalid user name {name!r}: 1-100 letters, digits, _ . @ -")
    return name


def check_password(password: str, *, min_length: int) -> str:
    if not isinstance(password, str) or not password.strip():
        raise InputError("the password is empty")
    if len(password) < min_length:
        raise InputError(f"password too short: at least {min_length} characters")
    if len(password) > MAX_PASSWORD:
        raise InputError(f"password too long: at most {MAX_PASSWORD} characters")
    return password


def check_role(role: str) -> str:
    if role not in Role.HUMAN:
        raise InputError(f"unknown role {role!r}; expected admin or annotator")
    return role


# --- accounts (session-level: the caller owns the transaction) ----------------------------------


def add_user(session, name: str, password: str, *, role: str = Role.ANNOTATOR,
             min_length: int = AuthConfig.min_password_length) -> Annotator:
    check_name(name)
    check_role(role)
    check_password(password, min_length=min_length)
    if get_annotator(session, name) is not None:
        raise InputError(f"user {name!r} already exists (names ignore case)")
    user = Annotator(name=name, name_key=name.lower(), password_hash=_hasher.hash(password),
                     role=role)
    session.add(user)
    session.flush()
    return user


def system_user(session, name: str) -> Annotator:
    """A non-login account that records automatic labels (e.g. ``import``)."""
    user = get_annotator(session, name)
    if user is None:
        user = Annotator(name=name, name_key=name.lower(), password_hash=None, role=Role.SYSTEM)
        session.add(user)
        session.flush()
    return user


def authenticate(session, name: str, password: str) -> Annotator:
    """The enabled account with this name and password, or AuthError (one message for every
    cause). Costs one argon2 verification whether or not the name exists."""
    user = get_annotator(session, name) if isinstance(name, str) else None
    usable = (user is not None and user.password_hash and user.role in Role.HUMAN
              and user.disabled_at is None)
    try:
        _hasher.verify(user.password_hash if usable else _DUMMY_HASH, password or "")
    except (VerificationError, InvalidHashError):
        raise AuthError(WRONG) from None
    if not usable:
        raise AuthError(WRONG)
    return user


def _account(session, name: str) -> Annotator:
    user = get_annotator(session, name)
    if user is None or user.role not in Role.HUMAN:
        raise InputError(f"no user {name!r}")
    return user


def _keep_an_admin(session, user: Annotator, *, losing: bool) -> None:
    if losing and user.role == Role.ADMIN and count(
            session, Annotator, Annotator.role == Role.ADMIN, Annotator.disabled_at.is_(None)) <= 1:
        raise InputError(f"{user.name} is the last enabled admin; make another admin first")


def set_disabled(session, name: str, disabled: bool) -> Annotator:
    user = _account(session, name)
    if disabled:
        _keep_an_admin(session, user, losing=user.disabled_at is None)
        user.disabled_at = user.disabled_at or utcnow()
        revoke_all(session, user.id)
    else:
        user.disabled_at = None
    return user


def set_role(session, name: str, role: str) -> Annotator:
    user = _account(session, name)
    check_role(role)
    _keep_an_admin(session, user, losing=role != Role.ADMIN and user.disabled_at is None)
    user.role = role
    return user


def set_password(session, name: str, password: str, *,
                 min_length: int = AuthConfig.min_password_length) -> Annotator:
    user = _account(session, name)
    check_password(password, min_length=min_length)
    user.password_hash = _hasher.hash(password)
    revoke_all(session, user.id)  # anyone signed in with the old password is signed out
    return user


# --- sign-in throttling -------------------------------------------------------------------------


def client_address(peer: str | None, forwarded_for: str | None, trusted: list[str]) -> str | None:
    """The client's address for throttling: the connection's own ``peer``, unless that peer is
    one of the ``trusted`` proxies (``[auth] trusted_proxies``); then the right-most address of
    ``X-Forwarded-For`` that is not a trusted proxy (the left part is whatever the client
    wrote). None when the peer is unknown."""
    import ipaddress

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr.strip())
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(n, strict=False) for n in trusted)

    if not peer:
        return None
    if not trusted or not is_trusted(peer) or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from the client side: throttle the proxy's address
    return peer


def throttle_keys(name: str, client: str | None) -> list[str]:
    keys = [f"user:{(name or '').strip().lower()[:100]}"]
    if client:
        keys.append(f"client:{client[:150]}")
    return keys


def _locked_for(session, keys: list[str], now: dt.datetime) -> float | None:
    """Seconds until the latest lock among ``keys`` ends, or None when none is locked."""
    rows = session.scalars(select(AuthFailure).where(AuthFailure.key.in_(keys))).all()
    ends = [r.locked_until for r in rows if r.locked_until is not None and r.locked_until > now]
    return (max(ends) - now).total_seconds() if ends else None


def _record_failure(session, keys: list[str], rules: AuthConfig, now: dt.datetime) -> None:
    for key in keys:
        row = session.get(AuthFailure, key)
        if row is None:
            row = AuthFailure(key=key, failures=0, first_at=now)
            session.add(row)
        if row.locked_until is not None and row.locked_until <= now:
            row.failures, row.locked_until = 0, None  # the last lock ended: count afresh
        row.failures += 1
        if row.failures >= rules.max_failures:
            row.locked_until = now + dt.timedelta(minutes=rules.lockout_minutes)
            row.failures = 0
    session.flush()


# --- the workspace-level calls pages and the CLI use --------------------------------------------


def sign_in(ws, name: str, password: str, *, client: str | None = None,
            now: dt.datetime | None = None) -> Account:
    """Check a name and password (AuthError when wrong or locked out); counts failures."""
    rules = ws.config.auth
    now = now or utcnow()
    keys = throttle_keys(name, client)
    with ws.session() as s:
        wait = _locked_for(s, keys, now)
        if wait is not None:
            raise AuthError(f"too many wrong passwords: try again in {max(1, round(wait / 60))} min")
        try:
            who = authenticate(s, (name or "").strip(), password)
        except AuthError:
            _record_failure(s, keys, rules, now)
            failed = True
        else:
            failed = False
            s.execute(delete(AuthFailure).where(AuthFailure.key.in_(keys)))
            account = Account(who.id, who.name, who.role)
    if failed:  # outside the transaction, so the failure count is committed
        raise AuthError(WRONG)
    return account


def create_account(ws, name: str, password: str, *, role: str = Role.ANNOTATOR) -> Account:
    with ws.session() as s:
        user = add_user(s, name, password, role=role,
                        min_length=ws.config.auth.min_password_length)
        return Account(user.id, user.name, user.role)


def current(ws, account_id: int) -> Account | None:
    """The account as it is now (role changes apply at once); None if disabled or gone."""
    with ws.read_session() as s:
        user = s.get(Annotator, account_id)
        if user is None or user.disabled_at is not None or user.role not in Role.HUMAN:
            return None
        return Account(user.id, user.name, user.role)


def require_admin(ws, account_id: int | None, *, token: str | None = None) -> Account:
    """The account, re-read from the database at the moment of a privileged action; AuthError
    when it is signed out, disabled or no longer an admin (a page left open keeps its buttons,
    so the check belongs to the action, not only to the page)."""
    account = resume_session(ws, token) if token else (
        current(ws, account_id) if account_id is not None else None)
    if account is None or account.id != account_id:
        raise AuthError("your session has ended or your account is disabled: nothing was changed")
    if account.role != Role.ADMIN:
        raise AuthError("only an admin can do this (your account is no longer one): "
                        "nothing was changed")
    return account


def has_admin(ws) -> bool:
    with ws.read_session() as s:
        return count(s, Annotator, Annotator.role == Role.ADMIN, Annotator.disabled_at.is_(None)) > 0


# --- sessions -----------------------------------------------------------------------------------


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(ws, account: Account, *, now: dt.datetime | None = None) -> str:
    """A new session token for the browser (only its hash is stored)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    with ws.session() as s:
        s.add(UserSession(token_hash=_digest(token), annotator_id=account.id, created_at=now,
                          last_seen_at=now,
                          expires_at=now + dt.timedelta(hours=ws.config.auth.session_hours)))
    return token


def resume_session(ws, token: str | None, *, now: dt.datetime | None = None) -> Account | None:
    """The account a live session token belongs to; None when it is unknown, expired, revoked,
    or the account is disabled."""
    if not token or not isinstance(token, str) or len(token) > 200:
        return None
    now = now or utcnow()
    with ws.read_session() as s:
        row = s.scalar(select(UserSession).where(UserSession.token_hash == _digest(token)))
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        account_id = row.annotator_id
    return current(ws, account_id)


def end_session(ws, token: str | None) -> None:
    """Sign-out: the token stops working everywhere at once."""
    if not token:
        return
    with ws.session() as s:
        s.execute(update(UserSession).where(UserSession.token_hash == _digest(token),
                                            UserSession.revoked_at.is_(None))
                  .values(revoked_at=utcnow()))


def revoke_all(session, annotator_id: int) -> None:
    session.execute(update(UserSession).where(UserSession.annotator_id == annotator_id,
                                              UserSession.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))
