"""What the pages share: the job runner (one per server) and the model chosen for Mistakes and Draw.

The chosen model lives in `st.session_state["selected_model"]`: "default" for the shipped
model, or a run id. Train sets it ("Open in Mistakes / Draw"); the other pages preselect it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st
from streamlit import runtime
from streamlit.runtime import RuntimeState

from mnist_core import shutdown
from mnist_core.inference import DEFAULT_MODEL_PATH, resolve_checkpoint
from mnist_core.jobs import JobRunner, server_runner
from mnist_core.listing import run_jobs
from mnist_core.runs import ENDED_STATES, Run, default_runs_dir, run_name, summarize
from ui.hosted import job_policy

SELECTED_MODEL = "selected_model"
DEFAULT = "default"


def runner() -> JobRunner:
    """The server's one job runner, shared by every browser session (it is thread-safe).

    It enforces the hosted demo's limits itself, whoever calls it. It lives in mnist_core, not in
    Streamlit's resource cache, which any client can clear (`jobs.server_runner`). When the server
    stops, its standby worker goes at once; running jobs are left alone (see `end_promptly_when_stopped`)."""
    return server_runner(job_policy())


def end_promptly_when_stopped() -> None:
    """Once per server (app.py calls it on every run): when the server is asked to stop (SIGTERM,
    Ctrl-C), its process ends promptly, with exit code 0, instead of going through Python's
    teardown; see mnist_core.shutdown for why. A training job outlives the server only briefly: its
    worker sees the server gone, stops within a step and records the run as interrupted, its
    checkpoint kept."""
    if not runtime.exists():
        return
    server = runtime.get_instance()
    if not isinstance(server.state, RuntimeState):  # AppTest runs pages under a stand-in runtime: not a server
        return
    shutdown.watch(
        stopping=lambda: server.state in (RuntimeState.STOPPING, RuntimeState.STOPPED),
        stopped=lambda: server.state == RuntimeState.STOPPED,
    )


def usable_runs() -> list[Run]:
    """Runs that are over and have a checkpoint, newest first.

    A run that stopped or failed after some epochs still offers its last completed epoch: the
    checkpoint is written only after an epoch ended and validated, so its weights are sound."""
    return [entry.job for entry in run_jobs() if entry.status.get("state") in ENDED_STATES and entry.job.has_checkpoint()]


def model_label(choice: str) -> str:
    if choice == DEFAULT:
        return "Shipped default model"
    summary = summarize(Run(default_runs_dir() / choice))
    if summary.config is None:
        return f"Run {choice} (damaged settings)"
    state = "" if summary.state == "finished" else f", {summary.state}"
    started = datetime.fromtimestamp(summary.created_at).strftime("%b %d %H:%M:%S") if summary.created_at else choice
    return f"{run_name(summary)} ({started}{state})"


def model_choices() -> list[str]:
    choices = [DEFAULT] if DEFAULT_MODEL_PATH.is_file() else []
    return choices + [run.id for run in usable_runs()]


def selected_model() -> str | None:
    """The model chosen for Mistakes and Draw, if there is one that still exists."""
    choices = model_choices()
    chosen = st.session_state.get(SELECTED_MODEL)
    if chosen in choices:
        return chosen
    return choices[0] if choices else None


def select_model(choice: str) -> None:
    st.session_state[SELECTED_MODEL] = choice


def model_picker(key: str) -> str | None:
    """A selectbox over the shipped model and usable runs, tied to the shared selection."""
    choices = model_choices()
    if not choices:
        return None
    current = selected_model()
    if st.session_state.get(key) != current:  # the shared choice wins (e.g. set by Train's "Open in …")
        st.session_state[key] = current
    # The callback runs before the rerun, so the sidebar (drawn before this page) already shows the new choice.
    choice = st.selectbox(
        "Model", choices, format_func=model_label, key=key, on_change=lambda: select_model(st.session_state[key]),
        help="The shipped model, or any run with a checkpoint. The Train page's 'Open in …' buttons choose one.",
    )
    select_model(choice)
    return choice


def checkpoint_path(choice: str) -> Path:
    """The checkpoint file of a choice; raises FileNotFoundError when it is gone."""
    return resolve_checkpoint(DEFAULT if choice == DEFAULT else default_runs_dir() / choice)
