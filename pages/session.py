"""Who is signed in, in this browser: a session cookie that survives reloads.

The token is a random string whose hash the server keeps (``annotator.service.auth``); the browser gets
it as a cookie written by a tiny ``st.components.v2`` component (Streamlit's own component API:
inline JavaScript in the page), and Streamlit hands it back on every new connection through
``st.context.cookies``. Nothing goes in the URL. The cookie is ``SameSite=Strict``, and
``Secure`` when the page is served over HTTPS (behind a TLS proxy, see SECURITY.md). Script on
the page can read it (Streamlit offers no HttpOnly cookie), which is why sign-out and disabling
an account revoke the token on the server too.
"""
from __future__ import annotations

import streamlit as st

from annotator.service import auth

COOKIE = "fma_session"
_JS = """
export default function ({ data }) {
  if (!data || !data.name) return;
  const secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${data.name}=${data.value}; Path=/; Max-Age=${data.max_age}; SameSite=Strict${secure}`;
}
"""
_cookie_writer = st.components.v2.component("fma_session_cookie", js=_JS)


def browser_token() -> str | None:
    try:
        token = st.context.cookies.get(COOKIE)
    except Exception:  # no browser connection (AppTest, bare mode)
        return None
    return token if isinstance(token, str) else None


def client_address(trusted: list[str] | None = None) -> str:
    """The connection's address, for per-client sign-in throttling (``local`` on loopback).

    The TCP peer, never a header, unless the peer is one of ``trusted`` (``[auth]
    trusted_proxies``): only then does X-Forwarded-For name the client (``auth.client_address``).
    """
    from annotator.service.auth import client_address as pick

    peer, forwarded = _peer_and_forwarded()
    if peer is None:  # AppTest, bare mode
        return "local"
    ip = pick(peer, forwarded, list(trusted or []))
    return "local" if ip in (None, "127.0.0.1", "::1") else ip


def _peer_and_forwarded() -> tuple[str | None, str | None]:
    """The TCP peer of this session's connection and its X-Forwarded-For header."""
    try:
        from streamlit.runtime import get_instance
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        client = get_instance().get_client(ctx.session_id).client_context
        # uvicorn's address: the peer's, or a trusted proxy's client (annotator.service.app_server)
        peer = client.remote_ip
        forwarded = ", ".join(v for k, v in client.headers or () if k.lower() == "x-forwarded-for")
        return (peer if isinstance(peer, str) and peer else None, forwarded or None)
    except Exception:  # no browser connection
        return None, None


def write_cookie(token: str, max_age_s: int) -> None:
    _cookie_writer(key="fma_session_cookie", data={"name": COOKIE, "value": token,
                                                   "max_age": int(max_age_s)}, height=0)


def resume(ws) -> dict | None:
    """The signed-in user of this browser tab: from this run's session state, else from the
    cookie a reload brought back. Re-read from the database every run, so a disabled account
    or a changed role takes effect on the next page action."""
    state = st.session_state
    user = state.get("user")
    if user is None:
        token = browser_token()
        if token and token != state.get("revoked_token"):
            account = auth.resume_session(ws, token)
            if account is not None:
                state.session_token = token
                user = {"id": account.id, "name": account.name, "role": account.role}
    if user is None:
        return None
    token = state.get("session_token")
    # A revoked token (signed out in another tab, account disabled) ends this tab's session too.
    account = auth.resume_session(ws, token) if token else auth.current(ws, user["id"])
    if account is None or account.id != user["id"]:
        state.pop("user", None)
        state.pop("session_token", None)
        return None
    state.user = {"id": account.id, "name": account.name, "role": account.role}
    return state.user
