"""End to end: `annotator app` + headless Chromium. Two annotators label at the same time by
keyboard; one undoes and submits a grid page; the database is checked; every page is saved as a
screenshot under tests/artifacts/."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from annotator.data import db
from tests.e2e import browser as B

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e") / "ws"
    with B.served_workspace(root, 600, per_track=3, log=B.ARTIFACTS / "e2e-server.log") as url:
        yield url, root


def leases(root):
    from annotator.service.workspace import Workspace

    ws = Workspace.open(root)
    try:
        with ws.read_session() as s:
            return dict(s.execute(
                select(db.Lease.crop_id, db.Annotator.name).join(db.Annotator)).all())
    finally:
        ws.dispose()


def labels(root):
    from annotator.service.workspace import Workspace

    ws = Workspace.open(root)
    try:
        with ws.read_session() as s:
            return s.execute(
                select(db.Label.crop_id, db.Annotator.name, db.Label.value, db.Label.undone_at,
                       db.Label.sampling).join(db.Annotator)).all()
    finally:
        ws.dispose()


def test_two_annotators_keyboard_undo_grid(served):
    url, root = served
    with B.chromium() as browser:
        alice = B.sign_in(browser, url, "alice", "alice-password", shot="01-sign-in")
        bob = B.sign_in(browser, url, "bob", "bob-password")
        a, b = B.shown_crop(alice), B.shown_crop(bob)
        B.screenshot(alice, "02-label")
        seen_a, seen_b, decided_a = [a], [b], []
        keys = "mnmnxmsmnm" * 2  # 20 decisions: mask, no mask, not a face, skip
        for i, key in enumerate(keys):
            decided_a.append((a, key))
            a = B.press_and_wait(alice, key, a)
            seen_a.append(a)
            if i % 2 == 0:  # bob labels at the same time, at his own pace
                b = B.press_and_wait(bob, "n", b)
                seen_b.append(b)
            # What one annotator is shown is held by them, never by the other.
            held = leases(root)
            assert held.get(a) == "alice" and held.get(b) == "bob"
        assert not set(seen_a) & set(seen_b)

        # Undo: the last decided crop comes back in front.
        last, _ = decided_a[-1]
        assert B.press_and_wait(alice, "z", a) == last
        B.screenshot(alice, "03-label-after-undo")

        # Grid: a click moves the cursor, a key sets the crop, one key submits the page.
        B.open_page(alice, "Grid", ".fma-cell")
        cells = alice.locator(".fma-cell")
        n_grid = cells.count()
        assert 30 <= n_grid <= 60
        first = cells.first
        flipped = int(first.get_attribute("data-crop-id"))
        before = first.get_attribute("data-value")
        first.click()  # focuses only; the key decides
        assert first.get_attribute("data-value") == before
        alice.evaluate("() => document.activeElement && document.activeElement.blur()")
        alice.keyboard.press("n" if before == "mask" else "m")
        after = first.get_attribute("data-value")
        assert after != before
        B.screenshot(alice, "04-grid")
        alice.evaluate("() => document.activeElement && document.activeElement.blur()")
        alice.keyboard.press("g")
        alice.get_by_text(f"saved {n_grid} labels").wait_for()
        B.screenshot(alice, "05-grid-saved")

        for title, ready, shot in [("Review", "h1", "06-review"),
                                   ("Dashboard", "h1", "07-dashboard")]:
            B.open_page(alice, title, ready)
            B.screenshot(alice, shot)
        admin = B.sign_in(browser, url, "root", "root-password")
        for title, shot in [("Models", "08-models"), ("Extract", "09-extract"),
                            ("Users", "10-users")]:
            B.open_page(admin, title, "h1")
            B.screenshot(admin, shot)

    rows = labels(root)
    active = [(c, who, v) for c, who, v, undone, _ in rows if undone is None]
    undone = [(c, who, v) for c, who, v, u, _ in rows if u is not None]
    by_alice = {c: v for c, who, v in active if who == "alice"}
    by_bob = {c: v for c, who, v in active if who == "bob"}
    assert [(c, who) for c, who, _ in undone] == [(last, "alice")]  # exactly one undone label
    value_of = {"m": "mask", "n": "no_mask", "x": "not_a_face", "s": "skip"}
    for crop, key in decided_a[:-1]:
        assert by_alice[crop] == value_of[key]
    assert len(by_alice) == 19 + n_grid
    assert by_alice[flipped] == after
    assert len(by_bob) == len(seen_b) - 1 and set(by_bob.values()) == {"no_mask"}
    assert not set(by_alice) & set(by_bob)  # nobody labeled a crop the other held
    assert all(s is not None for *_, s in rows)  # every label records why it was sampled
