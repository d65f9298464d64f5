"""MNIST CNN Studio: page config and navigation over the four pages, and the server that serves them.

This one file plays two parts:
- Streamlit runs it as the app's script (as `__main__`) for every visitor's every run: the page
  config, the menu, the sidebar and the chosen page. The navigation goes out first and the slow
  imports (PyTorch, through the sidebar) come after it, so even the first visitor of a freshly
  started server sees the app's menu at once; see ui/shell.py for why the menu is drawn with page links.
- `streamlit run app.py` finds the st.App below and serves it (uvicorn imports this file as a
  module): Streamlit's own routes, the small JSON route a live run's page polls instead of
  rerunning itself, and a prompt, clean end on SIGTERM (ui/serve.py).
"""

from pathlib import Path

import streamlit as st

if __name__ == "__main__":
    from ui.shell import app_navigation, inside_app

    # The tab's icon is a file beside the code: a ":material/…:" icon would be fetched from Google's
    # servers, and an offline first visit would show a broken one.
    st.set_page_config(page_title="MNIST CNN Studio", page_icon=str(Path(__file__).parent / "ui" / "favicon.png"),
                       layout="wide")
    page = app_navigation()
    with st.spinner("Starting up…"):  # shown only when it takes a while: the first run loads PyTorch
        from ui.hosted import keep_visitor_cookie
        from ui.phone_sidebar import close_sidebar_after_navigation
        from ui.sidebar import show_sidebar
        from ui.state import end_promptly_when_stopped
    end_promptly_when_stopped()  # SIGTERM ends the server within seconds (mnist_core/shutdown.py)
    show_sidebar()
    with st.sidebar:
        keep_visitor_cookie()  # a hosted demo's visitor keeps their identity across reloads and tabs
        close_sidebar_after_navigation(page.title)  # on a phone, the chosen page is not left under the menu
    with inside_app():
        page.run()
else:
    from ui.serve import ROUTES, lifespan

    app = st.App(__file__, routes=ROUTES, lifespan=lifespan)
