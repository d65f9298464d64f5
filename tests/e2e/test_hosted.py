"""A hosted demo shared by two strangers: each keeps their identity, and neither touches the other's run.

Two browser contexts are two browsers (separate cookies). A starts a run that keeps training;
B, on the same link, sees it live but is not offered its Stop. A reload and a second tab are
still A: A keeps its Stop, and its one-job limit still holds.
"""

from __future__ import annotations

import pytest

from mnist_core.runs import list_runs
from tests.conftest import wait_for
from tests.e2e.conftest import ARTIFACTS, open_page, running_server, wait_idle
from tests.e2e.test_browser import set_number

pytestmark = pytest.mark.e2e

STOP = "[data-testid='stButton'] button:has-text('Stop')"
ONE_JOB = "one job per visitor"


@pytest.fixture(scope="module")
def hosted_server(tmp_path_factory, e2e_data_dir):
    runs = tmp_path_factory.mktemp("e2e-hosted-runs")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / "hosted-server.log"
    with running_server(e2e_data_dir, runs, log_path, hosted=True) as url:
        yield url, log_path, runs


def _visitor_cookie(context) -> str | None:
    return next((cookie["value"] for cookie in context.cookies() if cookie["name"] == "mnist_visitor"), None)


def test_two_visitors_keep_to_their_own_work_across_reloads_and_tabs(browser, hosted_server):
    a_browser = browser.new_context(viewport={"width": 1400, "height": 1000})
    b_browser = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        a = a_browser.new_page()
        a.set_default_timeout(30_000)
        open_page(a, hosted_server)
        a.wait_for_function("() => document.cookie.includes('mnist_visitor=')")
        token = _visitor_cookie(a_browser)
        set_number(a, "Batch size", 1)  # slow enough to still be training through the whole test
        a.get_by_role("button", name="Start training").click()
        a.locator(STOP).first.wait_for(timeout=60_000)
        owner = list_runs(hosted_server[2])[0].status()["owner"]
        assert owner and token.startswith(owner + ".")  # the run belongs to the id the cookie carries

        b = b_browser.new_page()
        b.set_default_timeout(30_000)
        open_page(b, hosted_server)
        b.wait_for_function("() => document.cookie.includes('mnist_visitor=')")
        assert _visitor_cookie(b_browser).split(".")[0] != owner  # another browser, another visitor
        b.get_by_text("Run ", exact=False).first.wait_for()
        b.wait_for_function("() => document.body.innerText.includes('Epoch')", timeout=60_000)  # A's run, live
        assert b.locator(STOP).count() == 0  # B is not offered A's Stop
        assert ONE_JOB not in b.inner_text("body")  # and may start a run of its own

        a.reload()
        wait_idle(a)
        a.locator(STOP).first.wait_for()  # after a reload A still owns its run...
        a.get_by_text(ONE_JOB).first.wait_for()  # ...and its one-job limit still holds
        assert a.get_by_role("button", name="Start training").is_disabled()
        second_tab = a_browser.new_page()
        open_page(second_tab, hosted_server)
        second_tab.locator(STOP).first.wait_for()  # a new tab in the same browser is A too
        assert _visitor_cookie(a_browser) == token

        second_tab.locator(STOP).first.click()  # and A may stop it
        assert wait_for(lambda: list_runs(hosted_server[2])[0].status()["state"] == "cancelled", timeout=60)
    finally:
        for run in list_runs(hosted_server[2]):
            run.request_stop()
        a_browser.close()
        b_browser.close()
