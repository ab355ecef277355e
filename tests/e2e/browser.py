"""The real thing: `annotator app` serving a workspace, driven by Debian's headless Chromium.

Shared by tests/e2e and bench/ui.py. Never `playwright install`: Playwright drives the system
``chromium`` binary (see ../shared/notes/ENVIRONMENT.md).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
CROP = "img[data-crop-id]"

# In-page probe: on each keydown remember the time and the crop shown; when a different crop
# is in the DOM, wait for the next frame to be painted and record the latency.
PROBE = """
() => {
  if (window.__probe) return;
  window.__probe = {lat: [], t0: null, from: null};
  const shown = () => document.querySelector('img[data-crop-id]')?.dataset.cropId ?? null;
  window.addEventListener('keydown', () => {
    window.__probe.t0 = performance.now(); window.__probe.from = shown();
  }, true);
  new MutationObserver(() => {
    const p = window.__probe;
    if (p.t0 === null) return;
    const now = shown();
    if (now !== null && now !== p.from) {
      const t0 = p.t0; p.t0 = null;
      requestAnimationFrame(() => requestAnimationFrame(() => p.lat.push(performance.now() - t0)));
    }
  }).observe(document.body, {childList: true, subtree: true, attributes: true});
}
"""


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def require_chromium() -> None:
    """Fail (never skip: CI installs it) when Debian's chromium is not here."""
    if chromium_path() is None:
        import pytest

        pytest.fail("Debian's chromium is missing (apt-get install chromium)")


@contextmanager
def served_workspace(root: Path, crops: int, *, log: Path, **build):
    """A workspace of ``crops`` made by ``tests.app.factory.build(**build)``, served by a real
    app server; yields its URL."""
    from tests.app import factory

    require_chromium()
    factory.build(root, crops, **build).dispose()
    with app_server(root, log=log) as url:
        yield url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_server(project: Path, *, port: int | None = None, log: Path | None = None):
    """Run `annotator app --project PROJECT` and yield its URL; stopped (its own process group,
    by id) on exit."""
    port = port or free_port()
    annotator = Path(sys.executable).with_name("annotator")
    log = log or (ARTIFACTS / f"server-{port}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(annotator), "app", "--project", str(project), "--port", str(port)],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"app server exited: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"app server not healthy after 90 s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the group we started: annotator + streamlit
            proc.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)


@contextmanager
def chromium():
    """Debian's headless Chromium under Playwright, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(browser, url: str, name: str, password: str, *, shot: str | None = None,
            viewport: tuple[int, int] = (1400, 1000)):
    """A fresh browser context (its own Streamlit session) signed in as ``name``."""
    ctx = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    if shot:
        screenshot(page, shot)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text(f"signed in as {name}").wait_for()
    return page


def open_page(page, title: str, ready: str):
    """Navigate with the sidebar (a URL change would start a new session and sign out)."""
    page.get_by_role("link", name=title).click()
    page.locator(ready).first.wait_for()
    settle(page)


def shown_crop(page) -> int:
    page.locator(CROP).first.wait_for()
    return int(page.locator(CROP).first.get_attribute("data-crop-id"))


def press_and_wait(page, key: str, previous: int, *, timeout: float = 15_000) -> int:
    """Press a shortcut key and wait until a different crop is shown; returns its id."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)
    page.wait_for_function(
        "prev => { const e = document.querySelector('img[data-crop-id]');"
        " return e && e.dataset.cropId !== String(prev); }",
        arg=previous, timeout=timeout, polling="raf",
    )
    return shown_crop(page)


def settle(page, *, quiet_ms: int = 1500, timeout: float = 30_000) -> None:
    """Wait until the page stops changing (the script run ended and lazily loaded charts and
    tables drew): the DOM must stay the same for ``quiet_ms``."""
    page.wait_for_function(
        """(quiet) => {
            const p = window.__settle || (window.__settle = {len: -1, since: performance.now()});
            const len = document.body.innerHTML.length;
            if (len !== p.len) { p.len = len; p.since = performance.now(); return false; }
            return performance.now() - p.since > quiet;
        }""",
        arg=quiet_ms, timeout=timeout, polling=100,
    )
    page.evaluate("() => { delete window.__settle; }")


def screenshot(page, name: str) -> Path:
    """Save the whole page: Streamlit scrolls inside its own container, so the viewport is
    made as tall as the content for the shot."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = page.viewport_size
    tall = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
        '[data-testid="stMain"], [data-testid="stAppViewContainer"], section')]
        .map(e => e.scrollHeight), document.body.scrollHeight)""")
    page.set_viewport_size({"width": size["width"], "height": min(max(size["height"], tall), 6000)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    return path
