"""The live view of one run: progress, curves, Stop, and the summary once it ends.

It polls the run folder from a fragment, so only this part of the page reruns each half
second, and only while the run is queued or running. Any tab, and any reload, shows the
same run because everything comes from the run folder.
"""

from __future__ import annotations

import streamlit as st

from mnist_core.events import Compiled, EpochEnd, Finished, Progress, Started
from mnist_core.runs import ACTIVE_STATES, Run, list_runs, mark_if_interrupted
from ui.charts import training_loss_figure, validation_figure
from ui.state import runner, select_model

WATCHED_RUN = "watched_run"
POLL_SECONDS = 0.75  # "at least once a second", without redrawing more often than people can see


def watch(run: Run) -> None:
    st.session_state[WATCHED_RUN] = run.id


def watched_run() -> Run | None:
    """The run this session watches; a new session (reload, second tab) picks the newest active one."""
    runs = list_runs()
    by_id = {run.id: run for run in runs}
    chosen = st.session_state.get(WATCHED_RUN)
    if chosen in by_id:
        return by_id[chosen]
    active = [run for run in runs if run.status().get("state") in ACTIVE_STATES]
    run = (active or runs or [None])[0]
    if run:
        watch(run)
    return run


def live_run_panel() -> None:
    run = watched_run()
    if run is None:
        st.info("No runs yet. Choose settings on the left and press **Start training**; "
                "the curves will grow here while it trains.", icon=":material/monitoring:")
        return
    active = mark_if_interrupted(run).get("state") in ACTIVE_STATES
    # Poll only while something can change; a finished run is drawn once.
    st.fragment(_panel, run_every=POLL_SECONDS if active else None)(run, active)


def _panel(run: Run, was_active: bool) -> None:
    status = mark_if_interrupted(run)
    state = status.get("state", "interrupted")
    if was_active and state not in ACTIVE_STATES:
        st.rerun()  # the run just ended: redraw the whole page (summary, history) once
    config = run.config
    events = run.events()
    header, stop = st.columns([4, 1])
    header.subheader(f"Run {run.id}")
    if state in ACTIVE_STATES and stop.button("Stop", icon=":material/stop_circle:", type="secondary",
                                              width="stretch", key=f"stop_{run.id}"):
        runner().cancel(run)
        st.toast("Stopping after the current step…")
    _status_line(run, status, config, events)
    left, right = st.columns(2)
    left.plotly_chart(training_loss_figure(events, config.epochs), width="stretch", key=f"loss_{run.id}")
    right.plotly_chart(validation_figure(events, config.epochs), width="stretch", key=f"val_{run.id}")
    if state not in ACTIVE_STATES:
        _summary(run, state, status, events)


def _status_line(run: Run, status: dict, config, events: list) -> None:
    state = status["state"]
    if state == "queued":
        position = runner().queue_position(run)
        waiting = f"waiting for a free slot: number {position} in the queue" if position else "starting…"
        st.progress(0.0, text=f":material/hourglass_top: Queued, {waiting}")
        return
    if state == "running" and status.get("phase") == "downloading":
        download = status.get("download") or {}
        done, total = download.get("done", 0), download.get("total") or 1
        st.progress(min(done / total, 1.0), text=f"Downloading MNIST: {download.get('file', '')} "
                    f"({done / 1e6:.1f} of {total / 1e6:.1f} MB)")
        return
    progress = [e for e in events if isinstance(e, Progress)]
    if state == "running" and not progress:
        compiling = (config.compile_model and any(isinstance(e, Started) for e in events)
                     and not any(isinstance(e, Compiled) for e in events))
        st.progress(0.0, text="Compiling the model with torch.compile (a minute or more on a CPU)…" if compiling
                    else "Loading data and building the model…")
        return
    if state != "running":
        return
    last = progress[-1]
    done = ((last.epoch - 1) * last.steps_per_epoch + last.step) / (config.epochs * last.steps_per_epoch)
    # Validation time is not in `elapsed`; the estimate is of training time left.
    left = last.elapsed * (1 - done) / max(done, 1e-9)
    started = next((e for e in events if isinstance(e, Started)), None)
    st.progress(min(done, 1.0), text=f"Epoch {last.epoch}/{config.epochs} · step {last.step}/{last.steps_per_epoch} · "
                f"{last.images_per_second:,.0f} images/s · about {_duration(left)} left"
                + (f" · {started.device}" if started else ""))


def _summary(run: Run, state: str, status: dict, events: list) -> None:
    finished = next((e for e in events if isinstance(e, Finished)), None)
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    if finished:
        columns = st.columns(4)
        columns[0].metric("Test accuracy", f"{finished.test_accuracy:.2f} %")
        columns[1].metric("Training time", _duration(finished.train_seconds))
        columns[2].metric("Device", status.get("device", "?"))
        columns[3].metric("Images per second", f"{finished.images_per_second:,.0f}")
        if finished.compile_seconds:
            st.caption(f"Compiling the model took {_duration(finished.compile_seconds)} more, before training.")
    elif state == "failed":
        st.error(f"This run failed: {status.get('message') or 'no reason was recorded'}", icon=":material/error:")
    else:
        st.warning(status.get("message") or f"This run was {state}.", icon=":material/info:")
    if run.has_checkpoint():
        if not finished and epochs:
            st.caption(f"Its checkpoint after epoch {epochs[-1].epoch} "
                       f"({epochs[-1].val_accuracy:.2f} % validation accuracy) is kept.")
        mistakes, draw = st.columns(2)
        if mistakes.button("Open in Mistakes", icon=":material/error:", width="stretch", key=f"m_{run.id}"):
            select_model(run.id)
            st.switch_page("pages/mistakes.py")
        if draw.button("Open in Draw", icon=":material/draw:", width="stretch", key=f"d_{run.id}"):
            select_model(run.id)
            st.switch_page("pages/draw.py")


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"
