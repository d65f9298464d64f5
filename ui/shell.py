"""Making sure every page runs inside app.py's frame (navigation, sidebar, wide layout).

Until some session has called `st.navigation`, Streamlit treats a `pages/` folder the old
way and runs a page file on its own: the first visitor of a fresh server who opens a link
like /mistakes would get the page without the app around it. `require_app_shell()` turns
that old mode off and reruns, so the request goes through app.py like every later one.
"""

from __future__ import annotations

import streamlit as st


def require_app_shell() -> None:
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without the old mode: nothing to do
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()
