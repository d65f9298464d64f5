"""On a phone, what a tap opened is scrolled into view.

At phone width Streamlit stacks a page's columns, so the enlargement that sits beside the
Mistakes gallery on a desktop lands below the whole gallery, about 1,600 px under the tapped
tile, with nothing on screen to say a tap did anything. This invisible component scrolls the
keyed container into view after each new tap; on a wider screen, where the columns stand side by
side, it does nothing. A rerun without a new tap (a filter, a page of the gallery, a reload)
scrolls nothing: the taps are counted by the page, and the count last acted on is kept in the
tab's sessionStorage.
"""

from __future__ import annotations

import functools

import streamlit as st

STACKED_COLUMNS_WIDTH = 640  # px: at this width and narrower Streamlit stacks a page's columns

_SCROLL_JS = """
export default function (component) {
  const { target, taps, stacked } = component.data;
  const seen = "mnist-taps-" + target;
  const last = window.sessionStorage.getItem(seen);
  window.sessionStorage.setItem(seen, String(taps));
  if (taps === 0 || String(taps) === last) return;
  if (!window.matchMedia(`(max-width: ${stacked}px)`).matches) return;
  // After this run's elements are laid out: the container may have been drawn in this same update.
  window.setTimeout(() => {
    const element = document.querySelector(".st-key-" + target);
    if (element) element.scrollIntoView({ behavior: "smooth", block: "start" });
  }, 50);
}
"""


def scroll_into_view_on_phone(target: str, taps: int) -> None:
    """Scroll the container keyed `target` into view on a phone when `taps` (a count the page keeps of
    the taps that open it) has grown since the last run; call it after the container is drawn."""
    _scroller()(data={"target": target, "taps": taps, "stacked": STACKED_COLUMNS_WIDTH}, key=f"phone_scroll_{target}", height=0)


@functools.cache
def _scroller():
    return st.components.v2.component("mnist_phone_scroll", js=_SCROLL_JS)
