"""The Train page while a run trains: the progress line comes first, then the curve, and the history row follows.

While it trains, the page keeps its line fresh without rerunning: the browser asks Streamlit for a
rerun only for new chart points (at most every ui.live_feed.CURVES_SECONDS) and at the end."""

from __future__ import annotations

import time

import pytest

from tests.e2e.conftest import assert_no_errors
from tests.e2e.test_browser import loss_points, start_short_run
from ui.history import QUIET_POLL_SECONDS
from ui.live_feed import CURVES_SECONDS

pytestmark = pytest.mark.e2e

# The last table on the page: the run history is below both tabs (the Sweep tab may hold a leaderboard).
HISTORY_TEXT = ("() => { const t = document.querySelectorAll('[data-testid=\"stDataFrame\"]');"
                " return t.length ? t[t.length - 1].textContent : ''; }")


LINE = "() => { const e = document.querySelector('.mnist-live-line'); return e ? e.textContent : ''; }"


def test_the_progress_line_then_the_curve_and_the_history_row_follow_the_run(page, app_server):
    sent = []  # what the browser sends Streamlit (a rerun request is one message), with when

    def listen(socket) -> None:
        socket.on("framesent", lambda _: sent.append(time.monotonic()))

    page.on("websocket", listen)  # the tab is shared (tests/e2e/conftest.py): removed at the end
    try:
        follow_a_run(page, app_server, sent)
    finally:
        page.remove_listener("websocket", listen)


def follow_a_run(page, app_server, sent: list[float]) -> None:
    start_short_run(page, app_server, batch=8)  # about 8 s of training on 2 cores: the charts are redrawn meanwhile
    started = time.monotonic()
    # Earlier tests' runs may be listed, finished: count them now, while this one cannot have ended.
    finished = page.evaluate(f"() => ({HISTORY_TEXT})().split('finished').length")
    # The Start click's redraw lists the run (it loads data for a second or more before it trains).
    page.wait_for_function(f"() => /queued|running/.test(({HISTORY_TEXT})())", timeout=10_000)
    page.wait_for_function("() => document.body.innerText.includes('Epoch 1/1')", timeout=60_000)
    first_point = time.monotonic() - started
    training = time.monotonic()
    # The line moves on by itself while the run trains: the browser reads the run, the page does not rerun.
    steps, drawn_while_training = set(), 0
    while not page.get_by_text("Test accuracy", exact=True).count() and time.monotonic() - training < 300:
        steps.add(page.evaluate(LINE))
        drawn_while_training = max(drawn_while_training, loss_points(page))
        page.wait_for_timeout(100)
    ended = time.monotonic()
    assert len({line for line in steps if "step" in line}) >= 2, steps
    if ended - training > CURVES_SECONDS + 1:  # (a fast machine ends first, and the summary draws the curve)
        assert drawn_while_training >= 1, "the charts were not redrawn while the run trained"
    reruns = [moment for moment in sent if training <= moment <= ended]
    # New chart points are drawn at most every CURVES_SECONDS, the history catches up every
    # QUIET_POLL_SECONDS, and the end is drawn once (the summary); at a poll a second, it was 5 or more.
    seconds = ended - training
    assert len(reruns) <= seconds / CURVES_SECONDS + seconds / QUIET_POLL_SECONDS + 2, (len(reruns), seconds)
    assert loss_points(page) >= 2  # the whole curve, by then
    # While the live panel shows the only active run, the history catches up only every 10 s
    # (ui.history.QUIET_POLL_SECONDS); the panel redraws the page when the run ends, and with no
    # click and no reload the row then says so.
    page.get_by_text("Test accuracy", exact=True).wait_for(timeout=300_000)
    page.wait_for_function(f"([before]) => ({HISTORY_TEXT})().split('finished').length > before", arg=[finished])
    assert_no_errors(page)
    print(f"\nclick -> first point: {first_point:.2f} s")


def test_without_the_route_a_queued_run_is_still_followed_to_its_summary(page, app_server):
    """With the live view's route out of reach (a host that serves the script without it, a base
    path), the page asks the server to redraw it instead, at the charts' pace. A run queued behind
    another looks the same for several of those redraws: the element must keep asking."""
    cut_off = []
    page.route("**/api/live/**", lambda route: (cut_off.append(route.request.url), route.abort()))
    start_short_run(page, app_server, batch=8)  # A: about 8 s of training
    page.locator(".mnist-live").wait_for()
    start_short_run(page, app_server, images=2_000)  # B, from a fresh session: queued behind A (one job at a time here)
    page.wait_for_function(f"() => ({LINE})().startsWith('Queued')", timeout=10_000)
    page.get_by_text("Test accuracy", exact=True).wait_for(timeout=180_000)  # B's summary
    assert cut_off
    assert_no_errors(page)
