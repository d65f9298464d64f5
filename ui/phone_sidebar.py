"""On a phone, the sidebar closes once a page is chosen in it.

Streamlit's own page menu does this, but the app draws its menu with page links (ui/shell.py
says why), and a page link leaves the sidebar open over the page that was chosen. This invisible
component, called on every run with the page's name, closes it when the page has changed and the
screen is narrow enough for the sidebar to cover the page. On a desktop it does nothing.
"""

from __future__ import annotations

import functools

import streamlit as st

# Runs in the app's document (components v2 do not use an iframe). The page last seen is kept in
# the tab's sessionStorage, so a rerun of the same page, or the first page of a visit, closes nothing.
_CLOSE_JS = """
export default function (component) {
  const { page } = component.data;
  const last = window.sessionStorage.getItem("mnist-last-page");
  window.sessionStorage.setItem("mnist-last-page", page);
  if (last === null || last === page) return;
  if (!window.matchMedia("(max-width: 767px)").matches) return;
  const sidebar = document.querySelector('[data-testid="stSidebar"]');
  if (!sidebar || sidebar.getBoundingClientRect().width === 0) return;  // already closed
  const close = document.querySelector('[data-testid="stSidebarCollapseButton"] button')
    || document.querySelector('[data-testid="stSidebarCollapseButton"]');
  if (close) close.click();
}
"""


def close_sidebar_after_navigation(page: str) -> None:
    _closer()(data={"page": page}, key="phone_sidebar", height=0)


@functools.cache
def _closer():
    return st.components.v2.component("mnist_close_sidebar", js=_CLOSE_JS)
