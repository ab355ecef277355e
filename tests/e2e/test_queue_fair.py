"""A fair queue, in headless Chromium: the Label page holds a few crops, not the queue, so a
second annotator has crops to label while the first has the page open; leaving the page or
signing out gives the held crops back at once."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from annotator.data import db
from annotator.service import labeling
from annotator.service.workspace import Workspace
from tests.e2e import browser as B

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("fair") / "ws"
    with B.served_workspace(root, 8, per_track=1, log=B.ARTIFACTS / "fair-server.log") as url:
        yield url, root


def held(root) -> dict[str, set[int]]:
    ws = Workspace.open(root)
    try:
        with ws.read_session() as s:
            rows = s.execute(select(db.Annotator.name, db.Lease.crop_id).join(db.Annotator)).all()
    finally:
        ws.dispose()
    out: dict[str, set[int]] = {}
    for name, crop in rows:
        out.setdefault(name, set()).add(crop)
    return out


def test_two_annotators_share_a_small_queue_and_sign_out_frees_at_once(served):
    url, root = served
    with B.chromium() as browser:
        alice = B.sign_in(browser, url, "alice", "alice-password", viewport=(1366, 768))
        B.shown_crop(alice)
        assert 0 < len(held(root)["alice"]) <= 5  # a few, not the whole queue of 8
        bob = B.sign_in(browser, url, "bob", "bob-password", viewport=(1366, 768))
        b = B.shown_crop(bob)  # bob has crops while alice's Label page is open
        assert b not in held(root)["alice"]
        B.screenshot(bob, "32-label-second-annotator")

        B.open_page(alice, "Dashboard", "h1")  # leaving the page gives her crops back
        assert "alice" not in held(root)
        B.open_page(alice, "Label", "img[data-crop-id]")
        mine = held(root)["alice"]
        assert mine
        alice.get_by_role("link", name="Sign out").click()
        alice.get_by_role("button", name="Sign in").wait_for()
        assert "alice" not in held(root)

    ws = Workspace.open(root)  # what she held is claimable by someone else at once
    try:
        with ws.read_session() as s:
            root_id = db.get_annotator(s, "root").id
        got = {c.crop_id for c in labeling.claim(ws, root_id, 8)}
        assert mine <= got
    finally:
        ws.dispose()


def test_an_empty_batch_says_who_holds_the_rest(served):
    url, root = served
    ws = Workspace.open(root)
    try:
        with ws.read_session() as s:
            bob = db.get_annotator(s, "bob").id
        labeling.claim(ws, bob, 8)  # bob holds everything that is left
    finally:
        ws.dispose()
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "alice", "alice-password", viewport=(1366, 768))
        page.get_by_text("held by others, free at").wait_for()
        B.screenshot(page, "33-label-held-by-others")
