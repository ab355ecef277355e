"""The Grid never saves a label nobody chose, in headless Chromium at 1366x768: with no model
every crop starts undecided and g saves only the decided ones; a click moves the cursor and
never changes a label; z takes back the whole saved page; leaving with unsaved decisions asks
first; 8 columns fit the laptop screen; ? lists the Grid's keys."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from annotator.data import db
from annotator.service.workspace import Workspace
from tests.e2e import browser as B

pytestmark = pytest.mark.e2e
LAPTOP = (1366, 768)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("grid") / "ws"
    with B.served_workspace(root, 300, per_track=3, model=False,
                            log=B.ARTIFACTS / "grid-server.log") as url:
        yield url, root


def labels_of(root, name: str) -> dict[int, str]:
    ws = Workspace.open(root)
    try:
        with ws.read_session() as s:
            return dict(s.execute(select(db.Label.crop_id, db.Label.value).join(db.Annotator)
                                  .where(db.Annotator.name == name, db.active_label())).all())
    finally:
        ws.dispose()


def grid(page):
    B.open_page(page, "Grid", ".fma-cell")
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    cells = page.locator(".fma-cell")
    ids = [int(x) for x in cells.evaluate_all("els => els.map(e => e.dataset.cropId)")]
    return cells, ids


def values(cells) -> list[str]:
    return cells.evaluate_all("els => els.map(e => e.dataset.value)")


def test_no_model_starts_undecided_and_g_saves_only_decided_crops(served):
    url, root = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "alice", "alice-password", viewport=LAPTOP)
        cells, ids = grid(page)
        assert set(values(cells)) == {""}  # undecided: no default class
        page.get_by_text("No model yet").first.wait_for()
        page.keyboard.press("g")  # nothing decided: nothing saved
        page.get_by_text("nothing decided yet").wait_for()
        assert labels_of(root, "alice") == {}
        page.keyboard.press("m")
        page.keyboard.press("n")
        assert values(cells)[:3] == ["mask", "no_mask", ""]
        B.screenshot(page, "30-grid-undecided")
        page.keyboard.press("g")
        page.get_by_text("saved 2 labels").wait_for()
        assert labels_of(root, "alice") == {ids[0]: "mask", ids[1]: "no_mask"}
        cells, again = grid(page)  # the undecided ones are still held for her, first
        assert set(ids[2:]) <= set(again) and set(values(cells)) == {""}


def test_a_click_focuses_and_never_flips_and_the_last_crop_is_not_overwritten(served):
    url, root = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "bob", "bob-password", viewport=LAPTOP)
        cells, ids = grid(page)
        cells.nth(5).click()
        assert values(cells)[5] == "" and cells.nth(5).get_attribute("data-cursor") == "1"
        page.keyboard.press("x")
        cells.nth(5).click()
        cells.nth(5).click()
        assert values(cells)[5] == "not_a_face"  # clicks moved the cursor, nothing else
        last = len(ids) - 1
        cells.nth(last).click()
        page.keyboard.press("n")
        page.keyboard.press("m")  # past the end: ignored
        page.keyboard.press("m")
        assert values(cells)[last] == "no_mask"
        assert [v for v in values(cells) if v] == ["not_a_face", "no_mask"]
        assert labels_of(root, "bob") == {}  # nothing saved before g


def test_z_takes_back_the_whole_saved_page(served):
    url, root = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "root", "root-password", viewport=LAPTOP)
        cells, ids = grid(page)
        keys = "mnx" * 3
        for key in keys:
            page.keyboard.press(key)
        shown = values(cells)[:len(keys)]
        page.keyboard.press("g")
        page.get_by_text(f"saved {len(keys)} labels").wait_for()
        assert len(labels_of(root, "root")) == len(keys)
        page.locator(".fma-cell").first.wait_for()
        page.evaluate("() => document.activeElement && document.activeElement.blur()")
        page.keyboard.press("z")
        page.get_by_text(f"took back your last decision on {len(keys)} crops").wait_for()
        assert labels_of(root, "root") == {}  # all of the page, not one crop
        page.locator(".fma-cell").first.wait_for()  # the page comes back after the message
        B.settle(page)
        cells = page.locator(".fma-cell")
        back = [int(x) for x in cells.evaluate_all("els => els.map(e => e.dataset.cropId)")]
        assert back[:len(keys)] == ids[:len(keys)]  # in front again, as they were decided
        assert values(cells)[:len(keys)] == shown


def test_leaving_with_unsaved_decisions_asks_first(served):
    url, root = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "alice", "alice-password", viewport=LAPTOP)
        before = labels_of(root, "alice")
        cells, _ = grid(page)
        B.open_page(page, "Review", "h1")  # nothing decided: leaves without a question
        cells, _ = grid(page)
        page.keyboard.press("n")
        asked = []

        def dismiss(dialog):
            asked.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        page.get_by_role("link", name="Review").click()
        page.wait_for_timeout(1500)
        assert asked and "unsaved" in asked[0]
        assert values(page.locator(".fma-cell"))[0] == "no_mask"  # still here, still decided
        page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
        page.get_by_role("link", name="Review").click()
        page.locator(".fma-cell").first.wait_for(state="detached")
        assert len(asked) == 2
        assert labels_of(root, "alice") == before  # leaving saves nothing
        B.settle(page)


def test_eight_columns_fit_a_1366_px_laptop_and_question_mark_lists_the_keys(served):
    url, _ = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "bob", "bob-password", viewport=LAPTOP)
        cells, ids = grid(page)
        boxes = cells.evaluate_all("els => els.map(e => { const r = e.getBoundingClientRect();"
                                   " return [r.left, r.right, r.top]; })")
        width = page.viewport_size["width"]
        assert all(0 <= left and right <= width for left, right, _ in boxes), boxes[:8]
        first_row = [b for b in boxes if abs(b[2] - boxes[0][2]) < 2]
        assert len(first_row) == 8
        page.keyboard.press("?")
        help_box = page.locator(".fma-help")
        help_box.get_by_text("save the decided crops").wait_for()
        assert help_box.get_by_text("take back the whole last saved page").is_visible()
        B.screenshot(page, "31-grid-help")
