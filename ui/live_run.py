"""The live view of one run: progress, curves, the first layer's filters, Stop, and the summary once it ends.

While the run is queued or running, its progress line is kept fresh by the browser itself
(ui/live_feed.py), without rerunning the page; the charts and filters are in a fragment that
reruns only when the line's element asks: when there are new points to draw (at most every
live_feed.CURVES_SECONDS) and when the run ends, which redraws the whole page once. Any tab, and
any reload, shows the same run because everything comes from the run folder.
"""

from __future__ import annotations

import streamlit as st

from mnist_core.events import GRAPH_METHOD, Compiled, EpochEnd
from mnist_core.inference import load_model
from mnist_core.inside import conv_filters
from mnist_core.job import RUN, TRIAL
from mnist_core.listing import run_jobs, runs_of
from mnist_core.runs import ACTIVE_STATES, Run, RunSummary, duration, run_name, summarize
from mnist_core.storage import plain_error
from mnist_core.visitors import NotYours
from ui.charts import CHART_CONFIG, training_loss_figure, validation_figure
from ui.glossary import explain
from ui.hosted import may_change, visitor
from ui.inside_charts import filters_picture
from ui.live_feed import live_feed, look_now
from ui.state import runner, select_model

WATCHED_RUN = "watched_run"
TRAIN_TIME_HELP = ("Time spent training, the same figure as in the run history: the training steps and the "
                   "model's data-dependent preparation, not loading data, compiling or validating.")
BEST_ACCURACY_HELP = "The highest after any epoch. " + explain("Validation accuracy")  # the tables' "best val acc %"


def watch(run: Run) -> None:
    st.session_state[WATCHED_RUN] = run.id


def watched_id() -> str | None:
    """The id of the run shown in the live panel, as this session last chose it."""
    return st.session_state.get(WATCHED_RUN)


def watched_run() -> Run | None:
    """The run this session watches; a new session (reload, second tab) picks the newest active one.

    Label audits are runs too, but have no curves: they are watched on Mistakes' audit tab."""
    entries = run_jobs(kinds=(RUN, TRIAL))
    runs = runs_of(entries)
    by_id = {run.id: run for run in runs}
    chosen = st.session_state.get(WATCHED_RUN)
    if chosen in by_id:
        return by_id[chosen]
    active = [entry.job for entry in entries if entry.status.get("state") in ACTIVE_STATES]
    run = (active or runs or [None])[0]
    if run:
        watch(run)
    return run


def live_run_panel(held: Run | None = None) -> None:
    """The watched run's panel; `held` is a run this script run started and the runner holds until
    the browser has drawn the page (JobRunner.submit's `hold`): its live element says when."""
    run = watched_run()
    if run is None:
        st.info("No runs yet. Choose settings in the training form and press **Start training**; "
                "the curves will grow here while it trains.", icon=":material/monitoring:")
        # The empty charts show where the curves will grow, and the browser loads its charting
        # code now, not in the first seconds of the first run (it cost that run about 0.4 s on 2 cores).
        _charts([], epochs=1, label_smoothing=0.0, key="none")
        return
    _status(run)
    # After _status: a Stop just pressed on a queued run has ended it, and it is drawn as ended at once.
    active = summarize(run).state in ACTIVE_STATES
    if active:
        st.fragment(_live)(run, held is not None and held.id == run.id)
    else:  # a finished run is drawn once
        _curves(run)


def _status(run: Run) -> None:
    """The run's name, and Stop while it is queued or running."""
    summary = summarize(run)
    header, stop = st.columns([4, 1])
    header.subheader(run_name(summary))  # a name a person tells runs apart by
    header.caption(f"Run {run.id}", help="Its id: the run's folder, and what links and the command line call it.")
    if summary.damaged:
        st.error(f"{summary.message} It can be deleted in the run history below.", icon=":material/broken_image:")
        return
    # On a shared demo only the visitor who started the run is offered Stop (the runner refuses others).
    if summary.state in ACTIVE_STATES and may_change(summary.owner) and stop.button(
            "Stop", icon=":material/stop_circle:", type="secondary", width="stretch", key=f"stop_{run.id}"):
        try:
            runner().cancel(run, by=visitor())
        except (OSError, NotYours) as error:
            st.error(f"Could not stop the run: {plain_error(error)}")
        else:
            st.toast("Stopping after the current step…")


def _live(run: Run, held: bool) -> None:
    """A queued or running run's progress line (the browser keeps it fresh), charts and filters."""
    now = look_now(run)
    if not now.active:
        st.rerun()  # the run just ended: redraw the whole page (summary, history) once
    live_feed(run, now, held)
    _curves(run)


def _curves(run: Run) -> None:
    """The training loss and validation charts, the first layer's filters, and, once the run has ended, its summary."""
    events = run.events()
    summary = summarize(run, events)
    if summary.damaged:  # said above, by _status
        return
    _charts(events, summary.config.epochs, summary.config.label_smoothing, key=run.id)
    _first_layer_filters(run, events)
    if summary.state not in ACTIVE_STATES:
        _summary(run, summary, events)


def _charts(events: list, epochs: int | None, label_smoothing: float, key: str) -> None:
    left, right = st.columns(2)
    left.plotly_chart(training_loss_figure(events, epochs, label_smoothing), width="stretch", key=f"loss_{key}",
                      config=CHART_CONFIG)
    right.plotly_chart(validation_figure(events, epochs), width="stretch", key=f"val_{key}", config=CHART_CONFIG)


def _first_layer_filters(run: Run, events: list) -> None:
    """The first trained convolution's filters as of the latest checkpoint: they form epoch by epoch."""
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    if not epochs or not run.has_checkpoint():
        return
    try:
        stamp = run.checkpoint_path.stat().st_mtime_ns
        filters = _filters_picture(str(run.checkpoint_path), stamp)
    except (OSError, ValueError) as error:  # being replaced this instant, or damaged: the next poll retries
        st.caption(f"Filters unavailable: {plain_error(error)}")
        return
    if filters is None:  # a model without trained convolutions
        return
    name, picture = filters
    st.image(picture, caption=f"Filters of the first trained convolution (layer {name}) after epoch {epochs[-1].epoch}",
             width=min(picture.shape[1], 320))


@st.cache_data(show_spinner=False, max_entries=32)
def _filters_picture(checkpoint: str, stamp: int):
    """A checkpoint's first-layer filters as one picture; `stamp` (its mtime) renews the cache each epoch."""
    model, _ = load_model(checkpoint)
    trained = conv_filters(model, trained_only=True)
    if not trained:
        return None
    name, weights = trained[0]
    return name, filters_picture(weights)[0]


def _summary(run: Run, summary: RunSummary, events: list) -> None:
    finished = summary.finished
    if finished:
        columns = st.columns(4)
        columns[0].metric("Test accuracy", f"{finished.test_accuracy:.2f} %", help=explain("Validation accuracy"))
        columns[1].metric("Training time", duration(summary.train_seconds), help=TRAIN_TIME_HELP)
        columns[2].metric("Device", summary.device or "?")
        columns[3].metric("Images per second", f"{finished.images_per_second:,.0f}")
        if finished.compile_seconds:
            what, term = _preparing(events)
            st.caption(f"{what} took {duration(finished.compile_seconds)} more, before training.", help=explain(term))
    elif summary.state == "failed":
        st.error(f"This run failed: {summary.message or 'no reason was recorded'}", icon=":material/error:")
    else:
        st.warning(summary.message or f"This run was {summary.state}.", icon=":material/info:")
    if run.has_checkpoint():
        epochs = [e for e in events if isinstance(e, EpochEnd)]
        if not finished and epochs:  # the message above already says the checkpoint is kept: say how good it is
            st.caption(f"After epoch {epochs[-1].epoch}, the last one it finished: "
                       f"{epochs[-1].val_accuracy:.2f} % validation accuracy.")
        open_in_buttons(run)


def open_in_buttons(run: Run, key: str = "live") -> None:
    """'Open in Mistakes' and 'Open in Draw' for a run with a checkpoint; `key` tells apart two sets on one page."""
    mistakes, draw = st.columns(2)
    if mistakes.button("Open in Mistakes", icon=":material/error:", width="stretch", key=f"{key}_m_{run.id}"):
        select_model(run.id)
        st.switch_page("pages/mistakes.py")
    if draw.button("Open in Draw", icon=":material/draw:", width="stretch", key=f"{key}_d_{run.id}"):
        select_model(run.id)
        st.switch_page("pages/draw.py")


def _preparing(events: list) -> tuple[str, str]:
    """What the run did before training, in words, and its glossary term: compiling the model, or
    recording its training step as a CUDA graph."""
    compiled = next((event for event in events if isinstance(event, Compiled)), None)
    if compiled and compiled.method == GRAPH_METHOD:
        return "Recording the training step as a CUDA graph", "CUDA graph"
    return "Compiling the model", "torch.compile"
