"""The Sweep tab's right side: the chosen sweep, live from its folder.

A fragment polls once a second while the sweep is active and stops
when it is over: progress, a Stop button, the leaderboard, settings against accuracy
(parallel coordinates), every trial's validation curve, and a finished trial to open in
Mistakes or Draw. The charts are built by `ui.sweep_charts`.
"""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from mnist_core.config import preset_label
from mnist_core.runs import ACTIVE_STATES, ENDED_STATES, summarize
from mnist_core.storage import plain_error
from mnist_core.sweep import Sweep, SweepSpec, best_trial, describe, list_sweeps
from mnist_core.visitors import NotYours
from ui.charts import CHART_CONFIG
from ui.hosted import may_change, visitor
from ui.live_run import BEST_ACCURACY_HELP, open_in_buttons
from ui.state import runner
from ui.sweep_charts import curves_figure, leaderboard, parcoords_figure

POLL_SECONDS = 1.0
SWEEP_CHOSEN = "sweep_chosen"  # the session's chosen sweep id; Start sets it to the new sweep
LABELS = {
    "lr": "Learning rate",
    "batch_size": "Batch size",
    "optimizer": "Optimizer",
    "epochs": "Epochs",
    "model": "Model",
    "label_smoothing": "Label smoothing",
    "weight_decay": "Weight decay",
    "seed": "Random seed",
}


def _label(sweep: Sweep) -> str:
    """When it started, its size and what it varies. Not its state: the browser keeps a keyed
    selectbox's first labels, so a state in the label would still say "queued" when it is over."""
    status = sweep.status()
    count = len(status.get("trials") or [])
    try:
        spec = sweep.spec
        count = count or spec.count()  # not started yet: its trials exist only in its spec
        varied = ", ".join(LABELS.get(name, name).lower() for name in spec.varied)
    except (OSError, ValueError, TypeError, KeyError):  # a damaged spec.json still lists
        varied = "damaged settings"
    started = datetime.fromtimestamp(status.get("created_at", 0)).strftime("%b %d %H:%M:%S")
    return f"{started} · {count} trial{'s' if count != 1 else ''} · {varied}"


def live_sweep(count: int | None) -> None:
    sweeps = list_sweeps(runner().runs_dir)
    if not sweeps:
        makes = f"the {count} run{'s' if count != 1 else ''} set in the sweep form" if count else "several runs"
        st.info(
            f"**No sweeps yet.** A sweep trains {makes}, each an ordinary run with a few settings changed, "
            "on Ray Tune. Here you will see them ranked by validation accuracy, how each setting relates to "
            "the accuracy, and every trial's curve; each trial also appears in the run history below and "
            "can be opened in Mistakes or Draw.",
            icon=":material/tune:",
        )
        return
    by_id = {sweep.id: sweep for sweep in sweeps}
    if st.session_state.get(SWEEP_CHOSEN) not in by_id:  # a new session, or the chosen sweep was removed
        st.session_state[SWEEP_CHOSEN] = sweeps[0].id
    sweep = by_id[
        st.selectbox(
            "Sweep", list(by_id), key=SWEEP_CHOSEN, format_func=lambda i: _label(by_id[i]), help="Newest first."
        )
    ]
    active = sweep.current_status().get("state") in ACTIVE_STATES
    st.fragment(_sweep_panel, run_every=POLL_SECONDS if active else None)(sweep, active)  # poll only while it runs


def _sweep_panel(sweep: Sweep, was_active: bool) -> None:
    status = sweep.current_status()
    state = status.get("state", "?")
    if was_active and state not in ACTIVE_STATES:
        st.rerun()  # it just ended: redraw the whole page once (the history, the list of sweeps), and stop polling
    try:
        spec = sweep.spec
    except (OSError, ValueError, TypeError, KeyError) as error:
        st.error(f"This sweep's folder is damaged (its spec.json cannot be read: {plain_error(error)}).", icon=":material/error:")
        return
    runs = sweep.trial_runs()
    summaries = [summarize(run) for run in runs]
    numbers = [summary.trial or index for index, summary in enumerate(summaries, start=1)]
    _status(sweep, spec, status, summaries)
    if not runs:
        return
    names = spec.varied
    st.dataframe(
        leaderboard(summaries, numbers, names),
        hide_index=True,
        width="stretch",
        placeholder="",
        key=f"sweep_board_{sweep.id}",
        column_config={
            "trial": st.column_config.NumberColumn(format="%d", width="small"),
            "best val acc %": st.column_config.NumberColumn(format="%.2f", help=BEST_ACCURACY_HELP),
            "test acc %": st.column_config.NumberColumn(format="%.2f", help="After the last epoch."),
            "train s": st.column_config.NumberColumn(format="%.1f", help="Seconds of training."),
        },
    )
    if names and sum(s.best_val_accuracy is not None for s in summaries) >= 2:
        st.plotly_chart(parcoords_figure(summaries, names), width="stretch", key=f"sweep_parcoords_{sweep.id}",
                        config=CHART_CONFIG)
        st.caption(
            "Each line is a trial: drag along an axis to pick a band of values; the colour is its best "
            "validation accuracy."
        )
    curves = [
        (f"trial {n}: {describe(s.config, names)}" if s.config else f"trial {n}", run.events())
        for n, s, run in zip(numbers, summaries, runs)
    ]
    st.plotly_chart(curves_figure(curves), width="stretch", key=f"sweep_curves_{sweep.id}", config=CHART_CONFIG)
    _open_a_trial(runs, summaries, numbers, names, sweep)


def _status(sweep: Sweep, spec: SweepSpec, status: dict, summaries: list) -> None:
    state = status.get("state", "?")
    header, stop = st.columns([2.5, 1], vertical_alignment="bottom")
    header.markdown(
        f"**{preset_label(spec.preset) or 'Custom'} base, varying "
        f"{', '.join(LABELS.get(name, name).lower() for name in spec.varied) or 'nothing'}**"
        + (" · ASHA" if spec.asha else "")
    )
    # On a shared demo only the visitor who started a sweep may stop it (the runner refuses others).
    if state in ACTIVE_STATES and may_change(status.get("owner", "")) and stop.button(
        "Stop sweep", icon=":material/stop_circle:", width="stretch", key=f"sweep_stop_{sweep.id}"
    ):
        try:
            runner().cancel_sweep(sweep, by=visitor())
        except (OSError, NotYours) as error:
            st.error(f"Could not stop the sweep: {plain_error(error)}")
        else:
            st.toast("Stopping: running trials stop within a step, the rest never start.")
    total = len(status.get("trials") or []) or spec.count()
    ended = sum(s.state in ENDED_STATES or s.damaged for s in summaries)
    running = sum(s.state == "running" for s in summaries)
    text = {"queued": "Starting the sweep…", "running": f"Running: {ended} of {total} trials ended, {running} training"}
    st.progress(
        ended / total if total else 0.0, text=text.get(state, f"{state.capitalize()}: {ended} of {total} trials ended")
    )
    message, where = status.get("message", ""), status.get("where", "")
    message = message if not message or message.endswith((".", "…")) else f"{message}."
    detail = " ".join(part for part in (message, f"On {where}." if where and where not in message else "") if part)
    if state == "failed":
        st.error(detail or "The sweep failed.", icon=":material/error:")
    elif state in ("cancelled", "interrupted"):
        st.warning(detail or f"This sweep was {state}.", icon=":material/info:")
    elif detail:
        st.caption(detail)
    best = best_trial(summaries)
    if best is not None:
        st.success(
            f"{'Best so far' if state in ACTIVE_STATES else 'Best trial'}: {describe(best.config, spec.varied) or best.id}, {best.test_accuracy:.2f} % test accuracy.",
            icon=":material/trophy:",
        )


def _open_a_trial(runs: list, summaries: list, numbers: list[int], names: list[str], sweep: Sweep) -> None:
    """A finished trial, best first, to open in Mistakes or Draw."""
    ready = [
        (n, s, run) for n, s, run in zip(numbers, summaries, runs) if s.state in ENDED_STATES and run.has_checkpoint()
    ]
    if not ready:
        return
    ready.sort(key=lambda item: -(item[1].best_val_accuracy or 0.0))
    by_id = {run.id: (n, s, run) for n, s, run in ready}

    def label(run_id: str) -> str:
        n, s, _ = by_id[run_id]
        accuracy = f" · {s.best_val_accuracy:.2f} %" if s.best_val_accuracy is not None else ""
        return f"Trial {n}: {describe(s.config, names)}{accuracy}"

    chosen = st.selectbox(
        "Open a trial",
        list(by_id),
        format_func=label,
        key=f"sweep_open_{sweep.id}",
        help="Trials that ended with a checkpoint, best validation accuracy first.",
    )
    open_in_buttons(by_id[chosen][2], key="sweep")
