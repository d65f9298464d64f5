"""Links in a real browser: a pasted URL opens a run compared with its baseline, the address bar
follows the visitor's picks, "Copy link" offers the same URL, and a bad link says what is wrong."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from mnist_core.config import TrainConfig
from mnist_core.jobs import execute_run
from mnist_core.runs import create_run
from tests.e2e.conftest import ARTIFACTS, assert_no_errors, running_server, wait_idle

pytestmark = pytest.mark.e2e


def test_a_link_opens_its_state_and_a_bad_link_says_why(page, e2e_data_dir, tmp_path):
    runs = tmp_path / "runs"
    run = create_run(TrainConfig.preset("fast").replace(train_subset=3000), runs)
    execute_run(run, e2e_data_dir)
    tab = page  # the shared desktop tab (tests/e2e/conftest.py)
    tab.set_default_timeout(60_000)
    with running_server(e2e_data_dir, runs, ARTIFACTS / "server-links.log", standby=False) as url:
        tab.goto(f"{url}/mistakes?run={run.id}&baseline=default")
        wait_idle(tab, timeout_ms=120_000)
        tab.get_by_text("Fixed by B").first.wait_for()  # the comparison's tab, opened by the link
        tab.get_by_text("Broken by B").first.wait_for()
        assert_no_errors(tab)
        assert parse_qs(urlparse(tab.url).query) == {"run": [run.id], "baseline": ["default"]}
        tab.get_by_role("button", name="Copy link").click()
        code = tab.locator("[data-testid='stCode']").first
        code.wait_for()
        assert f"/mistakes?run={run.id}&baseline=default" in code.inner_text()
        tab.screenshot(path=str(ARTIFACTS / "link-compare.png"))

        tab.goto(f"{url}/inside?image=123")
        wait_idle(tab, timeout_ms=120_000)
        tab.get_by_text("Test image 123:").wait_for()
        assert parse_qs(urlparse(tab.url).query)["image"] == ["123"]

        tab.goto(f"{url}/mistakes?run=no-such-run&image=99999")
        wait_idle(tab, timeout_ms=120_000)
        tab.get_by_text("'no-such-run' that is not here").wait_for()
        tab.get_by_text("numbered 0 to 9,999").wait_for()
        assert tab.locator("[data-testid='stException']").count() == 0
