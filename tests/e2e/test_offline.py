"""Offline: the four pages ask nothing of any other server (a first visit with no internet looks
the same as one with it). Every request the browser makes is recorded; only the app's own host
may appear."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.e2e.conftest import wait_idle

pytestmark = pytest.mark.e2e


def test_no_page_fetches_anything_from_another_host(browser, app_server):
    url = app_server[0]
    own = urlparse(url).netloc
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    elsewhere: list[str] = []
    context.on("request", lambda request: elsewhere.append(request.url)
               if urlparse(request.url).scheme in ("http", "https", "ws", "wss")
               and urlparse(request.url).netloc != own else None)
    tab = context.new_page()
    try:
        for path in ("", "mistakes", "draw", "inside"):
            tab.goto(f"{url}/{path}")
            wait_idle(tab, timeout_ms=120_000)
            tab.wait_for_timeout(1000)  # late requests: icons, fonts, the favicon
    finally:
        context.close()
    assert not elsewhere, f"requests to other hosts: {sorted(set(elsewhere))}"
