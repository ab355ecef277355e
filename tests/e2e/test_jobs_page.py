"""The Models page in headless Chromium: Enter in a field never starts a job (only the button
does), and the page keeps the values it was given when the admin goes elsewhere and back."""
from __future__ import annotations

import pytest

from annotator.service import jobs
from annotator.service.workspace import Workspace
from tests.e2e import browser as B

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs") / "ws"
    with B.served_workspace(root, 60, log=B.ARTIFACTS / "jobs-server.log") as url:
        yield url, root


def test_enter_in_epochs_starts_nothing_and_the_value_stays(served):
    url, root = served
    with B.chromium() as browser:
        page = B.sign_in(browser, url, "root", "root-password", viewport=(1366, 768))
        B.open_page(page, "Models", "h1")
        box = page.get_by_label("Epochs")
        box.fill("3")
        box.press("Enter")
        B.settle(page)
        page.get_by_text("Skip the validation gate").first.click()  # the label: Streamlit's box
        B.settle(page)
        box.press("Enter")
        B.settle(page)
        ws = Workspace.open(root)
        try:
            assert jobs.list_jobs(ws) == []  # Enter submitted nothing
        finally:
            ws.dispose()
        assert page.get_by_role("button", name="Retrain now").is_enabled()
        B.open_page(page, "Label", "[data-testid='stMain']")
        B.open_page(page, "Models", "h1")
        assert page.get_by_label("Epochs").input_value() == "3"
        assert page.get_by_role("checkbox", name="Skip the validation gate").first.is_checked()
