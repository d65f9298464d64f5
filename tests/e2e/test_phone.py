"""At phone width (390 x 844, touch): the Mistakes gallery keeps its reading order, in a grid
that wraps, so the detail is not thousands of pixels down."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import ARTIFACTS, assert_no_errors, wait_idle

pytestmark = pytest.mark.e2e

PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


def test_the_mistakes_gallery_reads_in_order_on_a_phone(browser, app_server):
    context = browser.new_context(**PHONE)
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    try:
        tab.goto(f"{app_server[0]}/mistakes")
        wait_idle(tab, timeout_ms=120_000)
        assert_no_errors(tab)
        labels = tab.locator("[class*='st-key-inspect_']")  # each tile's label button, in page order
        labels.first.wait_for()
        boxes = [labels.nth(i).bounding_box() for i in range(labels.count())]
        assert len(boxes) >= 6
        tops = [round(box["y"]) for box in boxes]
        rows = sorted(set(tops))
        assert len(rows) < len(boxes) / 2, f"the tiles stack one to a line: {tops}"  # several to a row
        positions = [(round(box["y"]), box["x"]) for box in boxes]
        assert positions == sorted(positions), "the tiles are not in reading order"
        page_width = tab.evaluate("document.documentElement.scrollWidth")
        assert page_width <= 390, f"the page scrolls sideways ({page_width} px wide)"
        tab.screenshot(path=str(ARTIFACTS / "phone-mistakes.png"), full_page=True)
    finally:
        context.close()


def test_a_tapped_mistake_is_scrolled_into_view_on_a_phone(browser, app_server):
    """The enlargement sits below the whole gallery on a phone: a tap brings it on screen, and a
    rerun without a tap (another order for the gallery) leaves the page where it is."""
    context = browser.new_context(**PHONE)
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    detail = tab.locator(".st-key-mistakes_detail")
    try:
        tab.goto(f"{app_server[0]}/mistakes")
        wait_idle(tab, timeout_ms=120_000)
        labels = tab.locator("[class*='st-key-inspect_']")
        labels.first.wait_for()
        assert detail.bounding_box()["y"] > 844, "the enlargement is already on screen: nothing to test"
        tapped = labels.nth(4)
        index = tapped.get_attribute("class").split("st-key-inspect_")[1].split()[0]
        tapped.locator("button").tap()
        detail.get_by_text(f"Image {index}").wait_for()  # the tapped image is the one enlarged
        tab.wait_for_function("""() => { const box = document.querySelector('.st-key-mistakes_detail').getBoundingClientRect();
                                         return box.top >= 0 && box.top < 300; }""", timeout=10_000)
        assert_no_errors(tab)
        tab.screenshot(path=str(ARTIFACTS / "phone-mistakes-tapped.png"))
        # Back to the top, then a rerun that is not a tap: nothing scrolls.
        tab.evaluate("document.querySelector('.st-key-mistakes_detail').closest('[data-testid=\"stMain\"]')"
                     "?.scrollTo(0, 0); window.scrollTo(0, 0)")
        tab.get_by_text("least confident first").tap()
        wait_idle(tab)
        # Nothing to wait for when nothing should happen: a wrong scroll would start 50 ms after the redraw.
        tab.wait_for_timeout(500)
        assert detail.bounding_box()["y"] > 844, "a rerun without a tap scrolled the page"
    finally:
        context.close()
