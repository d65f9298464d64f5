"""The Sweep tab in a real browser: start a 2-trial sweep on local Ray and see both trials finish.

The trials then appear in the run history as ordinary runs, marked with their sweep.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import assert_no_errors, open_page, wait_idle

pytestmark = pytest.mark.e2e

LAST_TABLE_TEXT = ("() => { const t = document.querySelectorAll('[data-testid=\"stDataFrame\"]');"
                   " return t.length ? t[t.length - 1].textContent : ''; }")


def test_a_sweep_started_from_the_tab_finishes_and_its_trials_join_the_history(page, app_server):
    open_page(page, app_server)
    page.get_by_role("tab", name="Sweep").click()
    values = page.get_by_label("Values, separated by commas")
    values.fill("0.01, 0.005")
    values.press("Enter")
    wait_idle(page)
    page.get_by_text("This sweep makes 2 runs").wait_for()
    page.get_by_role("button", name="Start sweep").click()
    # Ray starts, then the two fast-preset trials train one after the other.
    page.wait_for_function("() => /(Finished|Failed|Cancelled|Interrupted): \\d of 2 trials ended/"
                           ".test(document.body.innerText)", timeout=300_000)
    wait_idle(page)  # the panel reruns the whole page once when the sweep ends
    page.get_by_text("Finished: 2 of 2 trials ended").wait_for(timeout=10_000)
    page.get_by_text("Best trial: lr=").wait_for()
    assert_no_errors(page)
    page.wait_for_function(f"() => ({LAST_TABLE_TEXT})().includes('sweep trial 2')", timeout=30_000)
    history = page.evaluate(LAST_TABLE_TEXT)
    assert history.count("finished") >= 2 and "sweep trial 1" in history
    assert page.locator(".js-plotly-plot .parcoords").count() == 1  # settings against accuracy
