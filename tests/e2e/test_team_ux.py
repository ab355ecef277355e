"""End to end, in headless Chromium: sessions that survive a reload, a track decided with one
key and undone with one key, the grid driven by the keyboard only, a retrain cancelled from the
Models page, and `annotator app` stopped by SIGTERM with nothing left behind."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from annotator.data import db, model_versions
from annotator.service import jobs
from annotator.service.workspace import Workspace
from tests.app import factory
from tests.e2e import browser as B

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("ux") / "ws"
    with B.served_workspace(root, 400, per_track=4, footage=True, log=B.ARTIFACTS / "ux-server.log") as url:
        yield url, root


def active_labels(root) -> list[tuple]:
    ws = Workspace.open(root)
    try:
        with ws.read_session() as s:
            return s.execute(select(db.Label.crop_id, db.Annotator.name, db.Label.value,
                                    db.Label.method, db.Label.decision_id)
                             .join(db.Annotator).where(db.active_label())).all()
    finally:
        ws.dispose()


def test_reload_keeps_the_session_and_sign_out_ends_it(served):
    url, _ = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "alice", "alice-password")
        page.wait_for_function("() => document.cookie.includes('fma_session=')")
        page.reload()
        page.get_by_text("signed in as alice").wait_for()  # no sign-in form after a reload
        assert "fma_session" in {c["name"] for c in page.context.cookies()}
        assert "fma_session" not in page.url
        page.goto(url)  # a typed URL too
        page.get_by_text("signed in as alice").wait_for()
        page.get_by_role("link", name="Sign out").click()
        page.get_by_role("button", name="Sign in").wait_for()
        page.reload()
        page.get_by_role("button", name="Sign in").wait_for()
        B.settle(page)
        assert page.get_by_text("signed in as alice").count() == 0


def test_a_track_decided_with_one_key_and_undone_with_one(served):
    url, root = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "bob", "bob-password")
        first = B.shown_crop(page)
        page.locator(".track-strip img").first.wait_for()
        page.locator("img.context-view").first.wait_for()  # 48-px crops: context on
        strip = [int(x) for x in page.locator(".track-strip img").evaluate_all(
            "els => els.map(e => e.dataset.stripId)")]
        assert len(strip) == 3
        B.screenshot(page, "11-label-track-strip")
        B.press_and_wait(page, "Shift+M", first)
        mine = [r for r in active_labels(root) if r[1] == "bob"]
        assert {r[0] for r in mine} == {first, *strip}
        assert {r[3] for r in mine} == {"track"} and len({r[4] for r in mine}) == 1
        assert B.press_and_wait(page, "z", B.shown_crop(page)) == first
        assert not [r for r in active_labels(root) if r[1] == "bob"]
        page.keyboard.press("?")  # the shortcut overlay, drawn in the browser
        page.get_by_text("the whole track strip").first.wait_for()
        B.screenshot(page, "12-label-help")


def test_the_grid_by_arrows_and_keys_only(served):
    url, root = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "root", "root-password")
        B.open_page(page, "Grid", ".fma-cell")
        cells = page.locator(".fma-cell")
        ids = [int(x) for x in cells.evaluate_all("els => els.map(e => e.dataset.cropId)")]
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        # n on the first crop (the cursor moves on), Right skips one, m, Down a row, x.
        for key in ("n", "ArrowRight", "m", "ArrowDown", "x"):
            page.keyboard.press(key)
        values = dict(zip(ids, cells.evaluate_all("els => els.map(e => e.dataset.value)")))
        per_row = 8
        assert values[ids[0]] == "no_mask" and values[ids[2]] == "mask"
        assert values[ids[3 + per_row]] == "not_a_face"
        assert cells.nth(4 + per_row).get_attribute("data-cursor") == "1"
        B.screenshot(page, "13-grid-keyboard")
        page.keyboard.press("g")
        page.get_by_text(f"saved {len(ids)} labels").wait_for()
        saved = {r[0]: r[2] for r in active_labels(root) if r[1] == "root"}
        assert {i: saved[i] for i in ids} == values  # what the browser showed is stored
        assert {r[3] for r in active_labels(root) if r[1] == "root"} == {"grid"}


def test_cancel_a_running_retrain_from_the_models_page(served, tmp_path):
    url, root = served
    from pipelines import import_folder
    from tests.conftest import write_image_folder

    ws = Workspace.open(root)
    folder = write_image_folder(tmp_path / "faces", {"mask": 40, "no_mask": 40})
    import_folder.run(ws, import_folder.ImportOptions(folder=folder, labeled=True))
    with ws.read_session() as s:
        active_before = model_versions.active_model(s).name
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "root", "root-password")
        B.open_page(page, "Models", "h1")
        page.get_by_label("Epochs").fill("500")
        page.get_by_label("Epochs").press("Tab")
        # The factory's active model has no weights file: start from scratch.
        page.get_by_role("combobox", name="Start from").click()
        page.get_by_role("option", name="none").click()
        page.get_by_role("button", name="Retrain now").click()
        page.get_by_role("button", name="Cancel").wait_for(timeout=60_000)
        (job,) = [j for j in jobs.list_jobs(ws, kinds=["retrain"]) if j.active]
        deadline = time.monotonic() + 120  # wait until it trains (progress past the dataset)
        while "train" not in (jobs.get(ws, job.id).message or ""):
            now = jobs.get(ws, job.id)
            assert now.active and time.monotonic() < deadline, (now.status, now.message)
            time.sleep(0.5)
        B.screenshot(page, "14-models-training")
        page.get_by_role("button", name="Cancel").click()
        done = jobs.wait(ws, job.id, timeout=60)
        assert done.status == "cancelled", (done.status, done.message, jobs.log_tail(done))
        page.get_by_text("cancelled").first.wait_for()
        B.screenshot(page, "15-models-cancelled")
    with ws.read_session() as s:
        assert model_versions.active_model(s).name == active_before  # the active model is unchanged
    deadline = time.monotonic() + 20  # no orphan (nor zombie) process: the app reaps it
    while Path(f"/proc/{done.pid}").exists():
        assert time.monotonic() < deadline, Path(f"/proc/{done.pid}/status").read_text()[:200]
        time.sleep(0.3)
    ws.dispose()


def test_label_page_shows_crop_frame_strip_and_keys_above_the_fold_at_1366(served):
    url, _ = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "alice", "alice-password", viewport=(1366, 768))
        B.shown_crop(page)
        page.locator(".track-strip img").first.wait_for()
        page.locator("img.context-view").first.wait_for()
        B.settle(page)
        box = {name: page.locator(sel).first.bounding_box() for name, sel in [
            ("crop", B.CROP), ("frame", "img.context-view"), ("strip", ".track-strip"),
            ("keys", ".st-key-btn_skip button")]}
        B.screenshot(page, "16-label-1366")
    for name, b in box.items():  # every part inside the 1366x768 window, nothing below it
        assert b["x"] >= 0 and b["x"] + b["width"] <= 1366 and b["y"] + b["height"] <= 768, (name, b)
    assert box["crop"]["x"] + box["crop"]["width"] <= box["frame"]["x"]  # side by side
    assert box["frame"]["x"] + box["frame"]["width"] <= box["strip"]["x"]


def test_screenshots_of_every_page(served):
    url, _ = served
    from pages.common import PAGES

    from urllib.parse import urlparse

    outside = []
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "root", "root-password", viewport=(1366, 768))
        page.context.on("request", lambda r: outside.append(r.url) if urlparse(r.url).hostname
                        not in (None, "127.0.0.1", "localhost") else None)
        page.wait_for_function("() => document.cookie.includes('fma_session=')")
        page.reload()  # the favicon and fonts are asked for again, now watched
        page.get_by_text("signed in as root").wait_for()
        ready = {"label.py": B.CROP, "grid.py": ".fma-cell"}  # the others have a title
        for _section, script, title, _icon, _admin in PAGES:
            B.open_page(page, title, ready.get(script, "[data-testid='stMain'] h1"))
            B.screenshot(page, f"20-page-{Path(script).stem}")
    shots = {p.stem for p in B.ARTIFACTS.glob("20-page-*.png")}
    assert {f"20-page-{Path(p[1]).stem}" for p in PAGES} <= shots
    assert outside == []  # no request to any other host: the app works offline as it is


def _port_free(port: int) -> bool:
    """Nothing listens on it any more (a bind may still fail for a minute because of the
    health check's connection in TIME_WAIT, which is not a server)."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _processes_with(text: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd:
                found.append(int(pid))
    return found


def test_sigterm_to_annotator_app_leaves_no_server_behind(tmp_path):
    import urllib.request

    ws = factory.build(tmp_path / "ws", 5)
    ws.dispose()
    port = B.free_port()
    annotator = Path(sys.executable).with_name("annotator")
    proc = subprocess.Popen([str(annotator), "app", "--project", str(tmp_path / "ws"),
                             "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.3)
    marker = f"--server.port {port}"
    assert _processes_with(marker)  # the Streamlit server runs in a process of its own
    proc.send_signal(signal.SIGTERM)  # to `annotator app` only, as systemd or `kill` would
    assert proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 15
    while _processes_with(marker) or not _port_free(port):
        assert time.monotonic() < deadline, "streamlit outlived annotator app"
        time.sleep(0.2)
