"""Train: set hyperparameters, start a background training job or a sweep of them, watch it live, compare runs."""

import streamlit as st

from mnist_core.config import ConfigError
from mnist_core.data import DatasetMissing
from mnist_core.jobs import RayMissing
from mnist_core.policy import QuotaExceeded
from mnist_core.storage import plain_error
from ui.dataset import dataset_ready
from ui.history import run_history
from ui.hosted import visitor
from ui.live_run import live_run_panel, watch
from ui.shell import require_app_shell
from ui.state import runner
from ui.sweep_tab import sweep_tab
from ui.train_form import hyperparameters_ui

require_app_shell()

st.title("Train")
# Both tabs are drawn on every run (not lazily), so neither form forgets its values while the other is shown.
single, sweep = st.tabs(["Single run", "Sweep"])
with single:
    form, live = st.columns([1, 2.2], gap="large")
    with form:
        config, problems = hyperparameters_ui(runner().policy)
        busy = runner().start_problem(visitor().id)
        if busy:
            st.info(busy, icon=":material/hourglass_top:")
        if runner().problem:
            st.warning(runner().problem, icon=":material/warning:")
        ready = dataset_ready(config.dataset)
        if st.button(
            "Start training",
            type="primary",
            icon=":material/play_arrow:",
            width="stretch",
            disabled=bool(problems or busy or not ready),
            help="Fix the settings marked in red first." if problems else None,
        ):
            try:
                run = runner().submit(config, owner=visitor().id)
            except (ConfigError, QuotaExceeded, DatasetMissing, RayMissing, OSError) as error:
                st.error(f"Could not start: {plain_error(error)}", icon=":material/error:")
            else:
                watch(run)
                st.toast(f"Started run {run.id}")
                st.rerun()  # redraw the form (Start may now be disallowed) and the live panel
    with live:
        live_run_panel()
with sweep:
    sweep_tab()
st.divider()
run_history()
