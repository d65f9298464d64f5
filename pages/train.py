"""Train: set hyperparameters, start a background training job or a sweep of them, watch it live, compare runs."""

import streamlit as st

from mnist_core.config import ConfigError
from mnist_core.data import DatasetMissing
from mnist_core.jobs import RayMissing
from mnist_core.links import read_model
from mnist_core.policy import QuotaExceeded
from mnist_core.runs import Run
from mnist_core.storage import plain_error
from ui import links
from ui.dataset import dataset_ready
from ui.history import run_history
from ui.hosted import hosted, visitor
from ui.live_run import live_run_panel, watch, watched_run
from ui.shell import require_app_shell
from ui.state import runner
from ui.sweep_tab import sweep_tab
from ui.train_form import hyperparameters_ui

require_app_shell()


def apply_link() -> None:
    """`/train?run=ID` shows that run's curves (mnist_core.links); a run that is not here is said."""
    params = links.incoming("train")
    if not params:
        return
    read = read_model(params.get("run"), runner().runs_dir, need_model=False)
    links.say_problems(read)
    if read.value is not None:
        watch(Run(runner().runs_dir / read.value))


@st.fragment
def train_page() -> None:
    """Everything under the title. A fragment: a click here (Start, above all) redraws this part
    only, not the page's frame (menu, sidebar, styles), and the browser is done with it sooner.

    On this 2-core machine a Start click that reran the whole app kept headless Chromium busy for
    0.46-0.87 core-seconds, this fragment's 0.3-0.5 (its processes sampled every 0.2 s from /proc),
    while the run loads its data. Whatever must change the frame (a run that ends, a model chosen
    in the history) calls st.rerun(), which reruns the whole app."""
    link_slot = st.container()  # "Copy link", once the page knows which run it shows
    apply_link()
    held = None  # a run this click started, held until the browser has drawn this page
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
            start = st.empty()
            if start.button(
                "Start training",
                type="primary",
                icon=":material/play_arrow:",
                width="stretch",
                disabled=bool(problems or busy or not ready),
                help="Fix the settings marked in red first." if problems else None,
            ):
                try:
                    # Held until the browser has drawn this page (about 1 s at most), when that browser
                    # shares the machine; a hosted demo's visitors draw on their own.
                    run = runner().submit(config, owner=visitor().id, hold=not hosted())
                    held = run if runner().is_held(run) else None
                except (ConfigError, QuotaExceeded, DatasetMissing, RayMissing, OSError) as error:
                    st.error(f"Could not start: {plain_error(error)}", icon=":material/error:")
                else:
                    watch(run)  # the live panel, drawn below in this same run, shows it
                    st.toast(f"Started run {run.id}")
                    # Greyed at once, so a double click starts one run. No rerun of the whole page:
                    # drawing it twice cost the run's first second as much CPU as the training.
                    start.button("Start training", type="primary", icon=":material/play_arrow:", width="stretch",
                                 disabled=True, key="start_training_started", help="Started: it trains on the right.")
        with live:
            live_run_panel(held)
            shown = watched_run()
            links.follow("train", run=shown.id if shown else None)
            if shown is not None:
                with link_slot:
                    links.copy_link("train_copy_link", run=shown.id)
    with sweep:
        sweep_tab()
    st.divider()
    run_history()


st.title("Train")
train_page()
