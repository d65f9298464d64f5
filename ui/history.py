"""Run history: a table of every run, curves of the chosen runs overlaid, and per-run actions."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from mnist_core import export
from mnist_core.job import SWEEP
from mnist_core.listing import RUN_FOLDER_KINDS, any_active, list_jobs, run_jobs, runs_of
from mnist_core.run_table import rows_csv, run_rows
from mnist_core.runs import (
    ACTIVE_STATES,
    ENDED_STATES,
    Run,
    RunDamaged,
    RunSummary,
    delete_run,
    duration,
    run_name,
    settings_to_reuse,
    summarize,
)
from mnist_core.storage import plain_error
from mnist_core.visitors import NotYours
from ui.charts import CHART_CONFIG, compare_figures
from ui.hosted import NOT_YOURS_HELP, may_change, visitor
from ui.live_run import BEST_ACCURACY_HELP, TRAIN_TIME_HELP, open_in_buttons, watch, watched_id
from ui.state import DEFAULT, model_choices, runner, select_model, selected_model
from ui.train_form import CUSTOM, reuse_settings


@st.cache_data(show_spinner=False, max_entries=500)
def _ended_summary(run_path: str, updated_at: float) -> RunSummary:
    """An ended run never changes again (until its status does), so its summary is cached."""
    return summarize(Run(Path(run_path)))


def _summary(run: Run) -> RunSummary:
    status = run.status()
    if status.get("state") in ACTIVE_STATES:
        return summarize(run)
    return _ended_summary(str(run.path), status.get("updated_at", 0.0))


def _row(summary: RunSummary) -> dict:
    config = summary.config
    state = summary.state
    if state == "queued" and (position := runner().queue_position(Run(runner().runs_dir / summary.id))):
        state = f"queued (#{position})"
    started = datetime.fromtimestamp(summary.created_at).strftime("%b %d %H:%M:%S") if summary.created_at else ""
    if config is None:  # damaged: one row that says why, so it can be found and deleted
        return {"name": "damaged run", "status": "damaged", "model": "", "epochs": "", "batch": "", "lr": "", "optimizer": "",
                "best val acc %": "", "train time": "", "started": started, "run": summary.id,
                "note": summary.message.removeprefix("This run folder is damaged: ")}
    if summary.kind == "audit":  # a label audit: K fold models, no curve of its own
        return {"name": "label audit", "status": state, "model": config.model, "epochs": "", "batch": str(config.batch_size),
                "lr": f"{config.lr:g}", "optimizer": config.optimizer, "best val acc %": "",
                "train time": duration(summary.train_seconds) if summary.train_seconds else "",
                "started": started, "run": summary.id, "note": f"label audit: {summary.message}"}
    return {
        "name": run_name(summary),
        "status": state,
        "model": config.model,
        "epochs": f"{summary.epochs_done}/{config.epochs}",
        "batch": str(config.batch_size),
        "lr": f"{config.lr:g}",
        "optimizer": config.optimizer + ("" if config.schedule == "none" else f" + {config.schedule}"),
        # Text, so a run without a validated epoch yet shows an empty cell rather than a grey "None".
        "best val acc %": f"{summary.best_val_accuracy:.2f}" if summary.best_val_accuracy is not None else "",
        "train time": duration(summary.train_seconds) if summary.train_seconds else "",
        "started": started,
        "run": summary.id,
        "note": _note(summary),  # last: a long reason pushes no column away
    }


def _note(summary: RunSummary) -> str:
    """Which sweep a trial belongs to, and why a run failed or stopped."""
    parts = [f"sweep trial {summary.trial}" + (f" on {summary.node}" if summary.node else "")] if summary.sweep else []
    if summary.state in ("failed", "cancelled") and summary.message:
        parts.append(summary.message)
    return "; ".join(parts)


# Redrawing the table every 0.75 s (the live panel's old pace) made a 5 s fast-preset run take
# 3.5 s longer with the browser on the same 2 cores (bench/start_latency.py).
HISTORY_POLL_SECONDS = 2.0
# While the only active job is the run the live panel shows: that panel already follows it, so
# the table (its row, and jobs started elsewhere) catches up rarely, at almost no cost to the run.
QUIET_POLL_SECONDS = 10.0
DELETES = "history_deletes"  # session_state: how many runs this session deleted (the table's key)


NOTICE = "history_notice"


def run_history() -> None:
    """The history table. While a job the live panel does not show is queued or running, it
    refreshes every HISTORY_POLL_SECONDS; while only the panel's run is, every QUIET_POLL_SECONDS.

    The panel redraws the whole page, this table included, when its run ends, and each redraw of
    the table takes the cores from that run (bench/watch_cost.py). A running sweep counts as a job
    the panel does not show: its trials' run folders appear one by one."""
    st.subheader("Run history")
    jobs = list_jobs(kinds=(*RUN_FOLDER_KINDS, SWEEP))
    every = (HISTORY_POLL_SECONDS if any_active(jobs, besides=watched_id())
             else QUIET_POLL_SECONDS if any_active(jobs) else None)
    st.fragment(_history, run_every=every)()


def _say_after_rerun(message: str, icon: str) -> None:
    """A toast for the next run: one made just before st.rerun() would be lost with this run's output."""
    st.session_state[NOTICE] = (message, icon)


def _history() -> None:
    if NOTICE in st.session_state:
        message, icon = st.session_state.pop(NOTICE)
        st.toast(message, icon=icon)
    runs = runs_of(run_jobs())
    if not runs:
        st.caption("Finished, stopped and failed runs will be listed here.")
        return
    summaries = [_summary(run) for run in runs]
    table = st.dataframe(
        [_row(s) for s in summaries],
        width="stretch",
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        # A new key after each delete: the selection starts empty, so the next row is never chosen
        # under the pointer and a double click on "Yes, delete it" cannot delete a second run.
        key=f"history_table_{st.session_state.get(DELETES, 0)}",
        # What tells runs apart first, so a phone shows it without scrolling the table sideways.
        column_order=("name", "status", "train time", "started", "best val acc %", "epochs", "model", "batch", "lr",
                      "optimizer", "note", "run"),
        column_config={
            "name": st.column_config.TextColumn(help="Model · learning rate · epochs · test accuracy"),
            "train time": st.column_config.TextColumn(help=TRAIN_TIME_HELP),
            "best val acc %": st.column_config.TextColumn(help=BEST_ACCURACY_HELP),
            "note": st.column_config.TextColumn(width="large"),  # a whole reason, not its first words
        },
    )
    runs_dir = runner().runs_dir
    st.download_button(
        "Download all runs as CSV",
        data=lambda: rows_csv(run_rows(runs_dir)),  # made on the click, not on every refresh
        file_name="runs.csv",
        mime="text/csv",
        icon=":material/table_view:",
        on_click="ignore",
        key="history_csv",
        help="Every run and job with its settings, test accuracy and time: the same table as "
        "`python -m mnist_core runs --csv`, for a spreadsheet or a notebook.",
    )
    chosen = [runs[i] for i in table.selection.rows if i < len(runs)]
    if not chosen:
        st.caption("Select rows to compare their curves, or one row to reuse, download or delete it.")
        return
    loss, accuracy = compare_figures({run.id: run.events() for run in chosen})
    left, right = st.columns(2)
    left.plotly_chart(loss, width="stretch", key="compare_loss", config=CHART_CONFIG)
    right.plotly_chart(accuracy, width="stretch", key="compare_accuracy", config=CHART_CONFIG)
    if len(chosen) == 1:
        _actions(chosen[0], summaries[runs.index(chosen[0])])


def _actions(run: Run, summary: RunSummary) -> None:
    watch_column, compare_column, reuse, download, delete = st.columns(5)
    no_curves = summary.damaged or summary.kind == "audit"  # an audit is read on Mistakes' label-audit tab
    if watch_column.button("Show above", icon=":material/monitoring:", width="stretch", disabled=no_curves):
        watch(run)
        st.rerun()
    choices = model_choices()  # the models there are to compare with: listed once
    baseline = next((choice for choice in (selected_model(), DEFAULT, *choices) if choice
                     and choice != run.id and choice in choices), None)
    if compare_column.button("Compare with…", icon=":material/compare_arrows:", width="stretch",
                             disabled=no_curves or not run.has_checkpoint() or baseline is None,
                             help="Image by image against another model, on the Mistakes page: which digits "
                             "this run fixes and which it breaks."):
        select_model(run.id)
        st.switch_page("pages/mistakes.py", query_params={"run": run.id, "baseline": baseline})
    mine = may_change(summary.owner)  # on a shared demo: reuse and delete only your own runs
    if reuse.button("Reuse settings", icon=":material/replay:", width="stretch", disabled=no_curves or not mine,
                    help=None if mine else NOT_YOURS_HELP):
        try:
            preset = reuse_settings(settings_to_reuse(run, by=visitor()))
        except (NotYours, RunDamaged) as error:
            st.error(plain_error(error), icon=":material/block:")
        else:
            named = "custom settings" if preset == CUSTOM else f"the {preset.replace('-', ' ')} preset"
            _say_after_rerun(f"The form above now holds run {run.id}'s settings ({named}). Press Start training "
                             "to run them again.", ":material/replay:")
            st.rerun()
    if run.has_checkpoint() and not summary.damaged:
        try:
            checkpoint = run.checkpoint_path.read_bytes()
        except OSError:
            checkpoint = None
        if checkpoint is not None:
            download.download_button("Download checkpoint", data=checkpoint,
                                     file_name=f"{run.id}.pt", mime="application/octet-stream",
                                     icon=":material/download:", width="stretch")
        if summary.state in ENDED_STATES:
            if run.id != watched_id():  # the run shown above has its own "Open in" buttons there
                open_in_buttons(run, key="history")
            _export_buttons(run)
    if summary.state in ACTIVE_STATES or not mine:
        reason = "Stop the run before deleting it." if summary.state in ACTIVE_STATES else NOT_YOURS_HELP
        delete.button("Delete", icon=":material/delete:", disabled=True, width="stretch", help=reason)
        return
    with delete.popover("Delete", icon=":material/delete:", width="stretch"):
        st.write(f"Delete run **{run.id}** and its checkpoint? This cannot be undone.")
        if st.button("Yes, delete it", type="primary", key=f"confirm_delete_{run.id}"):
            try:
                delete_run(run, by=visitor())
            except (OSError, RuntimeError, NotYours) as error:
                st.error(plain_error(error))
            else:
                st.session_state[DELETES] = st.session_state.get(DELETES, 0) + 1
                _say_after_rerun(f"Deleted run {run.id}.", ":material/delete:")
                st.rerun()


def _export_buttons(run: Run) -> None:
    """The run for TensorBoard (a zip of event files) and its model as ONNX, each made on the click."""
    missing = export.available()
    tensorboard, onnx = st.columns(2)
    tensorboard.download_button(
        "Download for TensorBoard", data=lambda: export.tensorboard_zip(run), file_name=f"{run.id}-tensorboard.zip",
        mime="application/zip", icon=":material/insights:", width="stretch", on_click="ignore",
        key=f"history_tensorboard_{run.id}", disabled=missing is not None,
        help=missing or "The curves and settings as TensorBoard event files: unzip, then run "
        "`tensorboard --logdir` on the folder.",
    )
    onnx.download_button(
        "Download as ONNX", data=lambda: export.onnx_bytes(run.path), file_name=f"{run.id}.onnx",
        mime="application/octet-stream", icon=":material/deployed_code:", width="stretch", on_click="ignore",
        key=f"history_onnx_{run.id}", disabled=missing is not None,
        help=missing or "The model for onnxruntime or a web page: 0..1 pixels [N, 1, 28, 28] in, the ten "
        "probabilities out (normalization inside).",
    )
