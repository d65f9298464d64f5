"""MNIST CNN Studio: page config and navigation over the three pages."""

import streamlit as st

from ui.shell import require_app_shell
from ui.sidebar import show_sidebar

require_app_shell()
st.set_page_config(page_title="MNIST CNN Studio", page_icon=":material/draw:", layout="wide")
page = st.navigation(
    [
        st.Page("pages/train.py", title="Train", icon=":material/model_training:", default=True),
        st.Page("pages/mistakes.py", title="Mistakes", icon=":material/error:"),
        st.Page("pages/draw.py", title="Draw", icon=":material/draw:"),
    ]
)
show_sidebar()
page.run()
