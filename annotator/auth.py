"""Annotator accounts: argon2 password hashes (argon2-cffi, the maintained PHC-winner binding)."""
from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from annotator.db import ROLES, Annotator, get_annotator
from annotator.errors import AuthError, InputError

_hasher = PasswordHasher()
NAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,100}$")


def add_user(session, name: str, password: str, *, role: str = "annotator") -> Annotator:
    if not NAME_RE.match(name):
        raise InputError(f"invalid user name {name!r}: use letters, digits, _ . @ -")
    if role not in ("admin", "annotator"):
        raise InputError(f"unknown role {role!r}; expected admin or annotator")
    if len(password) < 4:
        raise InputError("password too short (at least 4 characters)")
    if get_annotator(session, name) is not None:
        raise InputError(f"user {name!r} already exists")
    user = Annotator(name=name, password_hash=_hasher.hash(password), role=role)
    session.add(user)
    session.flush()
    return user


def authenticate(session, name: str, password: str) -> Annotator:
    """The annotator with this name and password, or AuthError (same message for both causes)."""
    user = get_annotator(session, name)
    if user is None or not user.password_hash or user.role not in ROLES[:2]:
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
        user = Annotator(name=name, password_hash=None, role="system")
        session.add(user)
        session.flush()
    return user
