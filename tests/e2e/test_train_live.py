"""The Train page while a run trains: the first point comes fast and the history row follows along."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import assert_no_errors
from tests.e2e.test_browser import loss_points, start_short_run

pytestmark = pytest.mark.e2e

# The last table on the page: the run history is below both tabs (the Sweep tab may hold a leaderboard).
HISTORY_TEXT = ("() => { const t = document.querySelectorAll('[data-testid=\"stDataFrame\"]');"
                " return t.length ? t[t.length - 1].textContent : ''; }")


def test_the_history_row_updates_while_its_run_trains(page, app_server):
    start_short_run(page, app_server)
    started = time.monotonic()
    page.wait_for_function("() => document.body.innerText.includes('Epoch 1/1')", timeout=60_000)
    first_point = time.monotonic() - started
    assert loss_points(page) >= 1
    page.wait_for_function(f"() => ({HISTORY_TEXT})().includes('running')", timeout=30_000)
    row = page.evaluate(HISTORY_TEXT)
    # No click, no reload from here on: the row (its training time) must change while the run still runs.
    page.wait_for_function(
        f"([before]) => {{ const t = ({HISTORY_TEXT})(); return t.includes('running') && t !== before; }}",
        arg=[row], timeout=60_000,
    )
    page.get_by_text("Test accuracy", exact=True).wait_for(timeout=300_000)
    page.wait_for_function(f"() => ({HISTORY_TEXT})().includes('finished')")
    assert_no_errors(page)
    print(f"\nclick -> first point: {first_point:.2f} s")
