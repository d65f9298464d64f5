"""Train: set hyperparameters, start a background training job, watch it live, compare runs."""

import uuid

import streamlit as st

from mnist_core.config import ConfigError
from ui.history import run_history
from ui.live_run import live_run_panel, watch
from ui.state import runner
from ui.train_form import hyperparameters_ui

st.title("Train")
form, live = st.columns([1, 2.2], gap="large")
with form:
    config, problems = hyperparameters_ui()
    if st.button("Start training", type="primary", icon=":material/play_arrow:", width="stretch",
                 disabled=bool(problems), help="Fix the settings marked in red first." if problems else None):
        try:
            run = runner().submit(config, owner=st.session_state.setdefault("session_id", uuid.uuid4().hex))
        except (ConfigError, OSError) as error:
            st.error(f"Could not start: {error}")
        else:
            watch(run)
            st.toast(f"Started run {run.id}")
with live:
    live_run_panel()
st.divider()
run_history()
