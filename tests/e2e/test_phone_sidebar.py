"""On a phone, choosing a page in the sidebar closes the sidebar; on a desktop it stays open."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import wait_idle

pytestmark = pytest.mark.e2e

SIDEBAR = "[data-testid='stSidebar']"


OPEN = f"document.querySelector(\"{SIDEBAR}\").getBoundingClientRect().width > 0"


def is_open(tab) -> bool:
    return tab.evaluate(OPEN)


@pytest.mark.parametrize(("viewport", "closes"), [({"width": 390, "height": 844}, True),
                                                   ({"width": 1400, "height": 1000}, False)], ids=["phone", "desktop"])
def test_a_page_chosen_in_the_sidebar_is_not_left_under_it_on_a_phone(browser, app_server, viewport, closes):
    context = browser.new_context(viewport=viewport, is_mobile=closes, has_touch=closes)
    tab = context.new_page()
    try:
        tab.goto(f"{app_server[0]}/draw")
        wait_idle(tab, timeout_ms=120_000)
        if not is_open(tab):  # a phone starts with it closed: open it as a person would
            tab.locator("[data-testid='stExpandSidebarButton']").click()
            tab.wait_for_function(OPEN)
            tab.wait_for_timeout(500)  # its slide-in animation
        tab.locator(SIDEBAR).get_by_text("Inside", exact=True).click()
        wait_idle(tab, timeout_ms=120_000)
        tab.wait_for_function("location.pathname.endsWith('/inside')")  # a client-side navigation
        tab.wait_for_timeout(1000)
        assert is_open(tab) is not closes
    finally:
        context.close()
