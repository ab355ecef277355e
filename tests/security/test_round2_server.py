"""Second round, the real server (`annotator app` + headless Chromium): uploads before sign-in
are refused without the server holding them (item 5), and X-Forwarded-For is believed only from
``[auth] trusted_proxies`` (item 6)."""
from __future__ import annotations

import http.client
import re
import time
from pathlib import Path

import pytest
from annotator.data import db
from annotator.service import auth
from annotator.service.app_server import REFUSED
from annotator.core.config import parse_config
from annotator.core.errors import WorkspaceError
from tests.e2e import browser as B

UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def server_rss_mb(group: int) -> float:
    """RSS of the Streamlit server: the process of the app's group that runs app_server."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[2]) == group and b"annotator.service.app_server" in cmd:
            status = (proc / "status").read_text()
            return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
    raise AssertionError("no app server process in the group")


def put(url: str, session_id: str, xsrf: str, body: bytes | None = None, *,
        size: int = 0) -> tuple[int | None, bytes]:
    """A multipart PUT to Streamlit's upload endpoint, as a script would send it; ``size``:
    that many bytes of body, streamed (the server may close the connection before the end)."""
    host, port = url.removeprefix("http://").split(":")
    boundary = "b0undary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"x.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    payload = body if body is not None else b""
    length = len(head) + (len(payload) if body is not None else size) + len(tail)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("PUT", f"/_stcore/upload_file/{session_id}/file-1")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(length))
        conn.putheader("X-Xsrftoken", xsrf)
        conn.putheader("Cookie", f"_streamlit_xsrf={xsrf}")
        conn.endheaders()
        try:
            conn.send(head)
            if body is not None:
                conn.send(payload)
            else:
                block = b"\0" * (1 << 20)
                for _ in range(size >> 20):
                    conn.send(block)
            conn.send(tail)
        except OSError:
            pass  # refused and closed while we were still sending: what the gate does
        try:
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException):
            return None, b""
        try:
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):  # closed under the body: status only
            return resp.status, b""
    finally:
        conn.close()


@pytest.mark.e2e
def test_item05_item06_uploads_before_sign_in_refused_and_proxy_header_ignored(tmp_path):
    from tests.app import factory

    B.require_chromium()
    ws = factory.build(tmp_path / "ws", 20, model=False)
    ws.dispose()
    from playwright.sync_api import sync_playwright

    with B.app_server(ws.root, log=tmp_path / "server.log") as url, sync_playwright() as pw:
        browser = B.launch(pw)
        try:
            # A client behind "a proxy" that names itself 6.6.6.6 (item 6).
            ctx = browser.new_context(extra_http_headers={"X-Forwarded-For": "6.6.6.6"})
            page = ctx.new_page()
            page.set_default_timeout(30_000)
            frames: list[bytes] = []
            page.on("websocket", lambda w: w.on(
                "framereceived", lambda f: frames.append(f if isinstance(f, bytes)
                                                         else f.encode())))
            page.goto(url)
            page.get_by_role("button", name="Sign in").wait_for()
            B.settle(page)
            ids = list(dict.fromkeys(m.decode() for f in frames for m in UUID.findall(f)))
            assert ids, "no session id seen on the WebSocket"
            xsrf = next(c["value"] for c in ctx.cookies() if c["name"] == "_streamlit_xsrf")

            # Item 5, the harmless payload first: a 1 KB upload before sign-in is refused ...
            for sid in ids:
                assert put(url, sid, xsrf, b"harmless" * 128) == (403, REFUSED)
            # ... and four 64 MB attempts leave the server's memory where it was.
            pgid = _app_group(url)
            before = server_rss_mb(pgid)
            for sid in ids:  # four attempts with each id the page got (one is its session's)
                for _ in range(4):
                    status, body = put(url, sid, xsrf, size=64 << 20)
                    assert status in (403, None) and body in (REFUSED, b"")
            time.sleep(1.0)
            grown = server_rss_mb(pgid) - before
            print(f"server RSS {before:.0f} MB -> {before + grown:.0f} MB after 4 x 64 MB "
                  "uploads before sign-in")
            assert grown <= 10, f"server RSS grew by {grown:.1f} MB"

            # Item 6: a wrong password from "6.6.6.6" is counted for this connection's own
            # address (loopback), never for the address the client wrote.
            page.get_by_role("textbox", name="User name").fill("alice")
            page.get_by_role("textbox", name="Password").fill("wrong-password")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("wrong user name or password", exact=False).wait_for()
            with ws.read_session() as s:
                keys = set(s.scalars(db.select(db.AuthFailure.key)))
            assert "client:6.6.6.6" not in keys and "client:local" in keys, keys

            # Signed in, the same session may upload: the gate opens for it, not before.
            page.get_by_role("textbox", name="Password").fill("alice-password")
            page.get_by_role("button", name="Sign in").click()
            page.get_by_text("signed in as alice").wait_for()
            B.settle(page)
            accepted = [sid for sid in ids if put(url, sid, xsrf, b"ok")[0] == 204]
            assert len(accepted) == 1, accepted
        finally:
            browser.close()


def _app_group(url: str) -> int:
    """The process group of the `annotator app` serving ``url`` (it runs in its own)."""
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        if b"annotator.service.app_server" in cmd and port.encode() in cmd:
            return int(stat.rsplit(")", 1)[1].split()[2])
    raise AssertionError("app server process not found")


# --- item 6: the rule, without a server -------------------------------------------------------


@pytest.mark.parametrize("peer, forwarded, trusted, expected", [
    ("127.0.0.1", "6.6.6.6", [], "127.0.0.1"),  # default: no proxy is trusted
    ("10.0.0.9", "6.6.6.6", ["127.0.0.1"], "10.0.0.9"),  # a header from someone else
    ("127.0.0.1", "6.6.6.6, 192.168.1.20", ["127.0.0.1"], "192.168.1.20"),  # right-most hop
    ("10.0.0.2", "6.6.6.6, 192.168.1.20, 10.0.0.3", ["10.0.0.0/24"], "192.168.1.20"),
    ("127.0.0.1", "not-an-ip", ["127.0.0.1"], "127.0.0.1"),
    ("127.0.0.1", None, ["127.0.0.1"], "127.0.0.1"),
])
def test_item06_forwarded_for_counts_only_from_trusted_proxies(peer, forwarded, trusted,
                                                                expected):
    assert auth.client_address(peer, forwarded, trusted) == expected


def test_item06_trusted_proxies_config():
    assert parse_config({}).auth.trusted_proxies == []
    cfg = parse_config({"auth": {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]}})
    assert cfg.auth.trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "::1"]
    with pytest.raises(WorkspaceError, match="trusted_proxies"):
        parse_config({"auth": {"trusted_proxies": ["localhost"]}})
