"""How `annotator app` starts Streamlit: uploads closed before sign-in, proxies trusted only when
configured.

Uploads: Streamlit accepts ``PUT /_stcore/upload_file/<session>/<file>`` from any connected
session, the sign-in page's included, and keeps each file in memory (up to
``server.maxUploadSize``, 2 GB by default). ``install`` puts an ASGI middleware in front of
Streamlit's routes that answers 403, before reading a byte of the body, for a session the app
has not marked signed in; ``pages/app.py`` marks a session on every run (``mark``), so signing
out or a disabled account closes it again.

Proxies: uvicorn (Streamlit's server) rewrites the client address from X-Forwarded-For for
connections from ``FORWARDED_ALLOW_IPS``, by default loopback, which is where the documented
nginx connects from: a client could then choose its own sign-in throttle key. ``annotator app``
sets it to ``[auth] trusted_proxies`` (default: none).

The server must be started through this module (``python -m annotator.service.app_server run app.py
...``, what ``annotator app`` runs), so the gate is in place before the first connection.
"""
from __future__ import annotations

import os
import sys
import threading

_signed_in: set[str] = set()
_lock = threading.Lock()
UPLOAD_PATH = "/_stcore/upload_file/"
REFUSED = b"sign in before uploading"


def mark(session_id: str | None, signed_in: bool) -> None:
    """Open (``signed_in``) or close the upload endpoint for one Streamlit session."""
    if not session_id:
        return
    with _lock:
        (_signed_in.add if signed_in else _signed_in.discard)(session_id)


def allowed(session_id: str | None) -> bool:
    with _lock:
        return bool(session_id) and session_id in _signed_in


def current_session_id() -> str | None:
    """The Streamlit session id of the running script (None outside a server)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
    except Exception:
        return None
    return getattr(ctx, "session_id", None) if ctx is not None else None


class UploadGate:
    """ASGI middleware: an upload from a session that is not signed in gets 403 at once; its
    body is never read (uvicorn stops reading the socket and closes the connection)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope.get("type") == "http" and UPLOAD_PATH in path and scope.get("method") in (
                "PUT", "POST", "PATCH"):
            session_id = path.split(UPLOAD_PATH, 1)[1].split("/", 1)[0]
            if not allowed(session_id):
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", b"text/plain"),
                                        (b"content-length", str(len(REFUSED)).encode()),
                                        (b"connection", b"close")]})
                await send({"type": "http.response.body", "body": REFUSED})
                return
        await self.app(scope, receive, send)


def install() -> bool:
    """Put ``UploadGate`` first in Streamlit's middleware (idempotent); False where this
    Streamlit has no such hook (then nothing is changed)."""
    try:
        from starlette.middleware import Middleware
        from streamlit.web.server.starlette import starlette_app
    except ImportError:
        return False
    make = starlette_app.create_streamlit_middleware
    if getattr(make, "upload_gate", False):
        return True

    def with_gate():
        return [Middleware(UploadGate), *make()]

    with_gate.upload_gate = True
    starlette_app.create_streamlit_middleware = with_gate
    return True


def main() -> None:
    """``python -m annotator.service.app_server run APP.py [streamlit options]``."""
    from annotator.service import app_server  # this module under its own name, as the pages see it

    if not app_server.install():
        sys.exit("error: this Streamlit has no middleware hook; uploads cannot be gated")
    os.environ.setdefault("FORWARDED_ALLOW_IPS", "")  # never trust a header by default
    from streamlit.web.cli import main as streamlit_main

    sys.argv = ["streamlit", *sys.argv[1:]]
    streamlit_main()


if __name__ == "__main__":
    main()
