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


def _coloured_pixels(png: bytes, *, box=(0.0, 0.0, 1.0, 1.0)) -> int:
    """Pixels of a saturated colour (a bar, a line, a marker; not grey text or grid lines)
    inside the ``box`` share (x0, y0, x1, y1) of a chart's screenshot."""
    import io

    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = box
    part = img[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)]
    return int(((part.max(axis=2) - part.min(axis=2)) > 50).sum())


def _chart_after(page, text: str):
    chart = page.locator(f"xpath=//*[contains(text(), {text!r})]"
                         "/following::*[@data-testid='stVegaLiteChart'][1]")
    chart.locator("canvas, svg").first.wait_for()
    chart.scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # Vega draws after the element appears
    return chart


def test_one_hour_of_labels_and_unmeasured_slices_are_drawn_not_blank(served):
    """A first hour of labeling is one point per series (a bare line drew nothing), and a
    slice band with no error measured yet is a bar (a null colour drew none)."""
    B.require_chromium()
    with B.chromium() as browser:
        page = B.sign_in(browser, served, "root", "root-password", viewport=(1366, 768))
        B.open_page(page, "Dashboard", ".count-bar")
        over_time = _chart_after(page, "Human decisions and labels over time").screenshot()
        face = _chart_after(page, "Where the model is worst").screenshot()
        B.ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (B.ARTIFACTS / "35-dashboard-slice-chart.png").write_bytes(face)
    # The plot area only: the legend sits below the time chart and right of the slice chart.
    assert _coloured_pixels(over_time, box=(0.1, 0.0, 1.0, 0.6)) > 40
    assert _coloured_pixels(face, box=(0.1, 0.1, 0.6, 0.8)) > 400
