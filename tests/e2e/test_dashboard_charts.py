"""The Dashboard's count charts drawn for real, in headless Chromium: 1, 9 and 10,000 crops are
three bars of non-zero width, longest for the largest count (the rendered DOM, not the data)."""
from __future__ import annotations

import pytest

from tests.app import factory
from tests.e2e import browser as B

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash") / "ws"
    ws = factory.build(root, 10_010, per_track=1)
    factory.label_some(ws, "alice", list(range(1, 10)), "mask")  # 9 labeled
    factory.label_some(ws, "bob", [10], "not_a_face")  # 1 not a face; 10,000 to label
    ws.dispose()
    with B.app_server(root, log=B.ARTIFACTS / "dash-server.log") as url:
        yield url


def test_crops_by_status_has_a_visible_bar_for_1_9_and_10000(served):
    B.require_chromium()
    with B.chromium() as browser:
        page = B.sign_in(browser, served, "root", "root-password", viewport=(1366, 768))
        B.open_page(page, "Dashboard", ".count-bar")
        chart = page.locator(".count-bars").filter(has_text="Crops by status")
        widths = {int(n): w for n, w in chart.locator(".count-bar").evaluate_all(
            "els => els.map(e => [e.dataset.n, e.getBoundingClientRect().width])")}
        people = page.locator(".count-bars").filter(has_text="Labels given by people")
        heights = people.locator(".count-bar").evaluate_all(
            "els => els.map(e => e.getBoundingClientRect().height)")
        B.screenshot(page, "34-dashboard-counts")
    assert set(widths) == {1, 9, 10_000}, widths  # skipped: 0, no bar
    assert 3 <= widths[1] < widths[9] < widths[10_000], widths
    assert len(heights) == 2 and min(heights) > 10  # mask 9, not a face 1: real bars
