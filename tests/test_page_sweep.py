"""The Train page's Sweep tab under AppTest, and its figures: a sweep is fabricated on disk, never run on Ray here."""

import dataclasses
import math

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from mnist_core.config import TrainConfig
from mnist_core.events import EpochEnd, Finished
from mnist_core.runs import RunSummary, create_run, summarize
from mnist_core.sweep import SweepSpec, create_sweep
from ui.sweep_charts import curves_figure, final_accuracy, leaderboard, parcoords_figure


@pytest.fixture
def app_env(monkeypatch, tiny_data_dir, runs_dir):
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("MNIST_STANDBY_WORKER", "0")  # no torch process per test's runner
    st.cache_resource.clear()  # a fresh job runner for this runs folder
    st.cache_data.clear()
    yield runs_dir
    st.cache_resource.clear()


def train_page() -> AppTest:
    return AppTest.from_file("../pages/train.py", default_timeout=60).run()


def start_sweep_button(at: AppTest):
    return next(button for button in at.button if button.label == "Start sweep")


def set_lr_values(at: AppTest, text: str) -> AppTest:
    return at.text_input(key="sweep_values_lr").set_value(text).run()


def fabricated_sweep(runs_dir, accuracies=((97.0, 98.0), (96.0, 98.6), (95.0, 97.1)), lrs=(0.01, 0.003, 0.001)):
    """A finished sweep over lr, as the Ray driver leaves it: trial runs with events, then the sweep's status."""
    base = TrainConfig.preset("fast").replace(epochs=2)
    spec = SweepSpec(base=base, preset="fast", grid={"lr": lrs, "optimizer": ("adam",)})
    sweep = create_sweep(spec, runs_dir)
    runs = []
    for number, (config, curve) in enumerate(zip(spec.configs(), accuracies), start=1):
        run = create_run(config, runs_dir, extra_status={"sweep": sweep.id, "trial": number})
        for epoch, accuracy in enumerate(curve, start=1):
            run.append_event(EpochEnd(epoch, 0.3, 0.2, accuracy, 1.5))
        run.append_event(Finished(curve[-1] - 0.1, 3.0 * number, 20000.0, len(curve)))
        run.update_status(state="finished", device="CPU")
        run.checkpoint_path.write_bytes(b"not read here")  # what "Open in Mistakes / Draw" looks for
        runs.append(run)
    sweep.update_status(
        state="finished", message="3 trials: 3 finished.", where="a local Ray instance", trials=[run.id for run in runs]
    )
    return sweep, runs


def test_the_sweep_tab_counts_its_runs_and_explains_a_bad_value(app_env):
    at = train_page()
    assert not at.exception
    assert [tab.label for tab in at.tabs] == ["Single run", "Sweep"]
    assert any("No sweeps yet" in info.value for info in at.info)  # the empty state says what a sweep is
    set_lr_values(at, "0.01, 0.003, 0.001, 0.0003")
    assert not at.exception
    assert any("makes 4 runs" in markdown.value for markdown in at.markdown)
    assert not start_sweep_button(at).disabled
    set_lr_values(at, "0.01, abc")
    assert not at.exception
    assert any("'abc' is not a number" in error.value for error in at.error)
    assert not any("makes" in markdown.value for markdown in at.markdown)
    assert start_sweep_button(at).disabled
    set_lr_values(at, "0.01, 20")  # parses, but no trial may train with it: its config's own check says why
    assert any("learning rate must be greater than 0 and at most 10" in error.value for error in at.error)
    assert start_sweep_button(at).disabled


def test_a_range_and_trials_multiply_into_the_count(app_env):
    at = train_page()
    at.segmented_control(key="sweep_mode_lr").set_value("Range").run()
    assert not at.exception
    assert at.checkbox(key="sweep_log_lr").value is True  # learning rates are drawn on a log scale
    assert any("makes 1 run**" in markdown.value for markdown in at.markdown)
    assert any("raise *Trials per grid point*" in caption.value for caption in at.caption)
    at.number_input(key="sweep_trials").set_value(3).run()
    assert any("makes 3 runs" in markdown.value for markdown in at.markdown)
    at.number_input(key="sweep_low_lr").set_value(0.0).run()  # no log scale reaches 0
    assert any("log-scale range must be above 0" in error.value for error in at.error)
    assert start_sweep_button(at).disabled


def test_a_finished_sweep_shows_its_leaderboard_charts_and_best_trial(app_env):
    sweep, runs = fabricated_sweep(app_env)
    at = train_page()
    assert not at.exception
    board = next(frame.value for frame in at.dataframe if "trial" in frame.value.columns)
    assert list(board["trial"]) == [2, 1, 3]  # best validation accuracy first
    assert list(board["lr"]) == [0.003, 0.01, 0.001]
    assert list(board["best val acc %"]) == [98.6, 98.0, 97.1]
    assert list(board["test acc %"]) == pytest.approx([98.5, 97.9, 97.0])
    assert set(board["state"]) == {"finished"} and "note" not in board.columns  # nothing to note
    charts = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert any('"parcoords"' in chart for chart in charts)
    assert any("Validation accuracy per epoch" in chart for chart in charts)
    assert any("Best trial: lr=0.003" in success.value and "98.50 %" in success.value for success in at.success)
    assert any("3 of 3 trials ended" in bar.proto.text for bar in at.get("progress"))
    # Each ended trial can be opened in Mistakes or Draw, the best one offered first.
    assert at.selectbox(key=f"sweep_open_{sweep.id}").value == runs[1].id
    assert any(button.label == "Open in Mistakes" for button in at.button)
    assert not any(button.label == "Stop sweep" for button in at.button)  # it is over


def test_hosted_mode_turns_sweeps_off_unless_its_setting_turns_them_on(app_env, monkeypatch):
    monkeypatch.setenv("MNIST_HOSTED", "1")
    at = train_page()
    assert any("turned off on this shared demo" in error.value for error in at.error)
    assert start_sweep_button(at).disabled


def test_hosted_mode_caps_a_sweep_and_disables_start(app_env, monkeypatch):
    monkeypatch.setenv("MNIST_HOSTED", "1")
    monkeypatch.setenv("MNIST_HOSTED_SWEEPS", "1")
    at = train_page()
    assert any("at most 4 runs, 1 at a time" in caption.value for caption in at.caption)
    set_lr_values(at, "0.01, 0.005, 0.003, 0.002, 0.001")
    assert not at.exception
    assert any("at most 4 trials; this one makes 5" in error.value for error in at.error)
    assert start_sweep_button(at).disabled
    set_lr_values(at, "0.01, 0.005")
    assert not start_sweep_button(at).disabled


def test_without_ray_the_tab_says_how_to_install_it_and_start_is_disabled(app_env, monkeypatch):
    import ui.sweep_tab

    message = "Sweeps run on Ray Tune, which is not installed here (missing: ray). Install it with: pip install x"
    monkeypatch.setattr(ui.sweep_tab, "ray_problem", lambda: message)
    at = train_page()
    assert not at.exception
    assert any("not installed here (missing: ray)" in info.value for info in at.info)
    assert any(code.value == 'pip install "ray[tune,client]"' for code in at.code)
    assert start_sweep_button(at).disabled


# The figures and the table, from summaries and events alone.


def summaries_of(runs):
    return [summarize(run) for run in runs]


def test_leaderboard_ranks_by_validation_accuracy_and_keeps_unscored_trials_last(runs_dir):
    sweep, runs = fabricated_sweep(runs_dir)
    waiting = create_run(runs[0].config.replace(lr=0.0003), runs_dir, extra_status={"sweep": sweep.id, "trial": 4})
    waiting.update_status(state="running", pid=None)  # no process: it reads as interrupted, with no accuracy yet
    rows = leaderboard(summaries_of([*runs, waiting]), [1, 2, 3, 4], ["lr", "optimizer"])
    assert [row["trial"] for row in rows] == [2, 1, 3, 4]
    assert rows[-1]["best val acc %"] is None and rows[-1]["note"]  # the reason it ended is in the last column
    assert list(rows[-1])[-1] == "note"
    assert rows[0]["optimizer"] == "adam" and rows[0]["epochs"] == "2/2"
    assert "node" not in rows[0]  # all on this machine: no empty column


def test_parcoords_puts_the_learning_rate_on_a_log_axis_and_names_each_choice(runs_dir):
    _, runs = fabricated_sweep(runs_dir)
    summaries = summaries_of(runs)
    summaries[2] = dataclasses.replace(summaries[2], config=summaries[2].config.replace(optimizer="sgd"))
    figure = parcoords_figure(summaries, ["lr", "optimizer"])
    lr, optimizer, accuracy = figure.data[0].dimensions
    assert lr.label == "lr (log)" and list(lr.ticktext) == ["0.001", "0.003", "0.01"]
    assert list(lr.values) == pytest.approx([math.log10(v) for v in (0.01, 0.003, 0.001)])
    assert list(optimizer.ticktext) == ["adam", "sgd"] and list(optimizer.values) == [0, 0, 1]
    assert list(accuracy.values) == [98.0, 98.6, 97.1]
    assert list(figure.data[0].line.color) == [98.0, 98.6, 97.1]  # each trial coloured by its accuracy


def scored(**settings_and_accuracy):
    """A finished trial's summary with these settings and best validation accuracy (`accuracy=`)."""
    accuracy = settings_and_accuracy.pop("accuracy")
    return RunSummary(
        "r", "finished", "", TrainConfig(**settings_and_accuracy), accuracy, None, 1, 1.0, None, "", 0.0, ""
    )


def test_parcoords_keeps_a_linear_axis_for_a_narrow_range():
    trials = [scored(label_smoothing=0.1, accuracy=98.0), scored(label_smoothing=0.2, accuracy=98.4)]
    trials.append(scored(label_smoothing=0.0, accuracy=None))  # no epoch yet: left out
    smoothing, _ = parcoords_figure(trials, ["label_smoothing"]).data[0].dimensions
    assert smoothing.label == "label_smoothing" and list(smoothing.values) == [0.1, 0.2]
    assert list(smoothing.ticktext) == ["0.1", "0.2"]


def test_parcoords_gives_sampled_values_round_ticks_rather_than_crowded_labels():
    lrs = (0.0011, 0.0042, 0.0047, 0.0133, 0.0177)
    lr = parcoords_figure([scored(lr=v, accuracy=98.0) for v in lrs], ["lr"]).data[0].dimensions[0]
    assert lr.label == "lr (log)" and list(lr.ticktext) == ["0.003", "0.01"]  # 0.0042 and 0.0047 would collide
    narrow = [scored(lr=v, accuracy=98.0) for v in (0.0042, 0.0047, 0.0133)]
    assert parcoords_figure(narrow, ["lr"]).data[0].dimensions[0].tickvals is None  # Plotly's own round ticks


def test_curves_are_coloured_by_final_accuracy_with_one_colour_bar():
    one_epoch = [
        ("trial 1", [EpochEnd(1, 0.3, 0.2, 97.0, 1.0)]),
        ("trial 2", [EpochEnd(1, 0.3, 0.2, 99.0, 1.0)]),
        ("trial 3", []),
    ]  # not through its first epoch yet: no line
    figure = curves_figure(one_epoch)
    assert [trace.name for trace in figure.data] == ["trial 1", "trial 2"]
    assert all(trace.mode == "lines+markers" for trace in figure.data)  # a one-epoch curve is a visible point
    assert [trace.marker.showscale for trace in figure.data] == [True, False]
    assert figure.data[0].line.color != figure.data[1].line.color
    assert figure.data[1].line.color == "rgb(253, 231, 37)"  # the best trial is the top of Viridis
    assert figure.layout.xaxis.range[0] < 1 < figure.layout.xaxis.range[1]  # the points are not cut by the edges


def test_curves_before_any_epoch_say_when_they_appear():
    figure = curves_figure([("trial 1", [])])
    assert not figure.data and "first epoch" in figure.layout.annotations[0].text
    assert final_accuracy([EpochEnd(1, 0.3, 0.2, 97.0, 1.0), EpochEnd(2, 0.3, 0.2, 96.5, 1.0)]) == 96.5
