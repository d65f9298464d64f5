"""The app in a real browser, used the way a person uses it."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import assert_no_errors, open_page, wait_idle

pytestmark = pytest.mark.e2e


def loss_points(tab) -> int:
    """How many points the live training-loss chart shows (its first trace)."""
    return tab.evaluate(
        "() => { const plot = document.querySelector('.js-plotly-plot');"
        " return plot && plot.data && plot.data[0] ? plot.data[0].x.length : 0; }"
    )


def set_number(tab, label: str, value: int) -> None:
    field = tab.get_by_role("spinbutton", name=label)
    field.fill(str(value))
    field.press("Enter")
    wait_idle(tab)


@pytest.mark.parametrize("path, heading", [("", "Train"), ("mistakes", "Mistakes"), ("draw", "Draw")])
def test_every_page_loads_without_errors(page, app_server, path, heading):
    open_page(page, app_server, path)
    page.get_by_role("heading", name=heading).first.wait_for()
    assert_no_errors(page)


def test_train_a_short_run_and_watch_it_live(page, app_server):
    open_page(page, app_server)
    set_number(page, "Epochs", 1)
    set_number(page, "Batch size", 16)
    page.get_by_text("More settings").click()
    set_number(page, "Train on the first N images only (0 = all 60,000)", 10000)
    page.get_by_role("button", name="Start training").click()

    # The loss chart gains points while the job trains.
    deadline = time.monotonic() + 90
    while loss_points(page) < 2 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    first = loss_points(page)
    assert first >= 2, "the loss chart never showed training progress"
    page.wait_for_timeout(1500)
    if not page.get_by_text("Test accuracy").count():  # still running: it must have grown
        assert loss_points(page) > first

    page.get_by_text("Test accuracy").wait_for(timeout=180_000)
    assert_no_errors(page)
    history = page.locator("[data-testid='stDataFrame']")
    history.wait_for()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=\"stDataFrame\"]').innerText.includes('finished')"
    )
