"""The Train page while a run trains: the progress line comes first, then the curve, and the history row follows."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import assert_no_errors
from tests.e2e.test_browser import LOSS_POINTS, loss_points, start_short_run

pytestmark = pytest.mark.e2e

# The last table on the page: the run history is below both tabs (the Sweep tab may hold a leaderboard).
HISTORY_TEXT = ("() => { const t = document.querySelectorAll('[data-testid=\"stDataFrame\"]');"
                " return t.length ? t[t.length - 1].textContent : ''; }")


def test_the_progress_line_then_the_curve_and_the_history_row_follow_the_run(page, app_server):
    start_short_run(page, app_server)
    started = time.monotonic()
    # Earlier tests' runs may be listed, finished: count them now, while this one cannot have ended.
    finished = page.evaluate(f"() => ({HISTORY_TEXT})().split('finished').length")
    # The Start click's redraw lists the run (it loads data for a second or more before it trains).
    page.wait_for_function(f"() => /queued|running/.test(({HISTORY_TEXT})())", timeout=10_000)
    page.wait_for_function("() => document.body.innerText.includes('Epoch 1/1')", timeout=60_000)
    first_point = time.monotonic() - started
    # The bar jumps to each value: a sliding one repaints on every frame, CPU the run needs (ui.shell.CALM_PROGRESS_CSS).
    sliding = page.evaluate("""() => Array.from(document.querySelectorAll('[data-testid="stProgress"], [data-testid="stProgress"] *'))
        .map(element => getComputedStyle(element).transitionDuration).filter(duration => duration.split(',').some(d => parseFloat(d) > 0))""")
    assert page.locator('[data-testid="stProgress"]').count() and sliding == [], sliding
    # The charts follow at their own, slower pace (ui.live_run.CURVES_POLL_SECONDS, 2.5 s), while
    # the run trains (on a machine fast enough to finish first, the summary's redraw draws them).
    page.wait_for_function(f"() => ({LOSS_POINTS})() > 0", timeout=15_000)
    assert loss_points(page) >= 1
    # While the live panel shows the only active run, the history catches up only every 10 s
    # (ui.history.QUIET_POLL_SECONDS); the panel redraws the page when the run ends, and with no
    # click and no reload the row then says so.
    page.get_by_text("Test accuracy", exact=True).wait_for(timeout=300_000)
    page.wait_for_function(f"([before]) => ({HISTORY_TEXT})().split('finished').length > before", arg=[finished])
    assert_no_errors(page)
    print(f"\nclick -> first point: {first_point:.2f} s")
