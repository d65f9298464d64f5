"""app.py's frame (navigation, sidebar, wide layout) around every page, from the first paint on.

Until some script run has called `st.navigation`, Streamlit 1.67 treats the `pages/` folder the
old way (`PagesManager.uses_pages_directory`, set when the first session starts). For that first
run it builds a menu from the file names, "app / draw / mistakes / train"
(`_mpa_v1` in streamlit/runtime/scriptrunner/script_runner.py), and for a link like /draw it
runs pages/draw.py on its own, without app.py around it. The project keeps that folder, so
with supported means only:

- `.streamlit/config.toml` sets `client.showSidebarNavigation = false`, so that old menu goes
  out hidden (`_mpa_v1` passes position "hidden" then) and is never drawn. The option also hides
  `st.navigation`'s own sidebar menu (commands/navigation.py turns "sidebar" into HIDDEN, and
  the browser keeps `hideSidebarNav` from the session's first message), so `app_navigation()`
  draws the menu itself with `st.page_link`, which that option leaves alone. (Unlike the
  built-in menu, a page link does not close the sidebar on a phone after a tap;
  `ui/phone_sidebar.py` does.)
- app.py calls `app_navigation()` before anything slow is imported, so the menu is on screen
  while PyTorch loads.
- `require_app_shell()`, which every page calls before drawing anything, sends a page that was
  started on its own in the old mode through app.py: `st.navigation` ends the old mode for the
  whole server, and a rerun with the same page asked for then runs app.py, which runs the page
  inside its frame. Nothing here writes to Streamlit's internals.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import streamlit as st
from streamlit.errors import StreamlitPageNotFoundError

PAGES = (  # (file relative to app.py, title, icon); the first is the default page
    ("pages/train.py", "Train", ":material/model_training:"),
    ("pages/mistakes.py", "Mistakes", ":material/error:"),
    ("pages/draw.py", "Draw", ":material/draw:"),
    ("pages/inside.py", "Inside", ":material/layers:"),
)

# Streamlit slides a progress bar to each new value with a CSS transition of its width, which
# lays out and repaints the bar on every frame of the slide. A bare page with a once-a-second
# progress line cost headless Chromium 0.077-0.081 cores on 2 cores with the slide, 0.030-0.039
# without it: CPU taken from the run the line shows. The bar jumps to each value instead. (The Train
# page's live line is no st.progress: it is drawn by ui/live_feed.py, without a transition; the
# label audit's and the sweep's bars are.)
CALM_PROGRESS_CSS = ('<style>[data-testid="stProgress"], [data-testid="stProgress"] * '
                     '{ transition: none !important; }</style>')

_inside_app: ContextVar[bool] = ContextVar("inside_app", default=False)


def app_pages() -> list[st.Page]:
    """The app's pages. Raises StreamlitPageNotFoundError where the main script is not app.py."""
    return [st.Page(path, title=title, icon=icon, default=index == 0) for index, (path, title, icon) in enumerate(PAGES)]


def app_navigation() -> st.Page:
    """Register the pages, draw the menu at the top of the sidebar and return the page to run."""
    pages = app_pages()
    page = st.navigation(pages, position="hidden")  # the menu below replaces the built-in one
    st.html(CALM_PROGRESS_CSS)  # a style only: it takes no room on the page
    with st.sidebar:
        for each in pages:
            st.page_link(each, width="stretch")  # the current page is drawn highlighted and bold
        st.divider()
    return page


@contextmanager
def inside_app() -> Iterator[None]:
    """Run a page in here: its `require_app_shell()` then knows that app.py is around it."""
    token = _inside_app.set(True)
    try:
        yield
    finally:
        _inside_app.reset(token)


def require_app_shell() -> None:
    """Rerun through app.py where this page was started on its own in the old `pages/` mode."""
    if _inside_app.get():
        return
    try:
        pages = app_pages()
    except StreamlitPageNotFoundError:  # the page is the main script itself (AppTest,
        return  # `streamlit run pages/draw.py`): there is no app.py to run it in
    # Ends the old mode for the server and resolves to this same page, so the rerun runs app.py
    # with it. No menu here: the rerun drops whatever of this run has not reached the browser
    # yet, which could leave half a menu on screen until app.py draws it whole.
    st.navigation(pages, position="hidden")
    st.rerun()


def point_to_train(message: str) -> None:
    """Say there is no model yet, with a link to Train (none when a page runs on its own, as in tests)."""
    st.info(message, icon=":material/model_training:")
    with contextlib.suppress(StreamlitPageNotFoundError):
        st.page_link("pages/train.py", label="Go to Train", icon=":material/model_training:")
