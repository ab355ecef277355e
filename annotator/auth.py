"""Annotator accounts: argon2 password hashes (argon2-cffi, the maintained PHC-winner binding)."""
from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dataclasses import dataclass

from annotator.db import Annotator, Role, get_annotator
from annotator.errors import AuthError, InputError

_hasher = PasswordHasher()
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


def add_user(session, name: str, password: str, *, role: str = "annotator") -> Annotator:
    if not NAME_RE.match(name):
        raise InputError(f"invalid user name {name!r}: use letters, digits, _ . @ -")
    if role not in Role.HUMAN:
        raise InputError(f"unknown role {role!r}; expected admin or annotator")
    if len(password) < 4:
        raise InputError("password too short (at least 4 characters)")
    if get_annotator(session, name) is not None:
        raise InputError(f"user {name!r} already exists")
    user = Annotator(name=name, name_key=name.lower(), password_hash=_hasher.hash(password),
                     role=role)
    session.add(user)
    session.flush()
    return user


def authenticate(session, name: str, password: str) -> Annotator:
    """The annotator with this name and password, or AuthError (same message for both causes)."""
    user = get_annotator(session, name)
    if user is None or not user.password_hash or user.role not in Role.HUMAN:
        raise AuthError("wrong user name or password")
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise AuthError("wrong user name or password") from None
    return user


def system_user(session, name: str) -> Annotator:
    """A non-login account that records automatic labels (e.g. ``import``)."""
    user = get_annotator(session, name)
    if user is None:
        user = Annotator(name=name, name_key=name.lower(), password_hash=None, role=Role.SYSTEM)
        session.add(user)
        session.flush()
    return user


@dataclass(frozen=True)
class Account:
    """The signed-in person, as pages keep it."""

    id: int
    name: str
    role: str


def sign_in(ws, name: str, password: str) -> Account:
    """Check a name and password against the workspace's accounts (AuthError if wrong)."""
    with ws.read_session() as s:
        who = authenticate(s, name.strip(), password)
        return Account(who.id, who.name, who.role)
