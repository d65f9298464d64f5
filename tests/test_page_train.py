"""The Train page under AppTest: form validation, starting a (tiny) run, the history table."""

import time

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from mnist_core.config import TrainConfig
from mnist_core.events import GRAPH_METHOD, Compiled, EpochEnd, Finished
from mnist_core.runs import create_run, list_runs


@pytest.fixture
def app_env(monkeypatch, tiny_data_dir, runs_dir):
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("MNIST_STANDBY_WORKER", "0")  # no torch process per test's runner; tests/test_jobs.py covers it
    st.cache_resource.clear()  # a fresh job runner for this runs folder
    st.cache_data.clear()
    yield runs_dir
    st.cache_resource.clear()


def train_page() -> AppTest:
    return AppTest.from_file("../pages/train.py", default_timeout=60).run()


def field(at: AppTest, label: str):
    return next(widget for widget in at.number_input if widget.label == label)


def start_button(at: AppTest):
    return next(button for button in at.button if button.label == "Start training")


def test_page_loads_with_the_case_study_preset(app_env):
    at = train_page()
    assert not at.exception
    assert at.selectbox(key="form_preset").value == "case-study"
    assert field(at, "Epochs").value == 5 and field(at, "Batch size").value == 64
    assert at.select_slider(key="form_lr").value == 0.01
    assert not start_button(at).disabled


def test_invalid_values_are_explained_and_block_start(app_env):
    at = train_page()
    field(at, "Epochs").set_value(0)
    field(at, "Batch size").set_value(0)
    at.run()
    messages = [error.value for error in at.error]
    assert messages == ["must be from 1 to 100, got 0", "must be from 1 to 8192, got 0"]  # epochs, batch size
    assert start_button(at).disabled
    assert not at.exception


def test_choosing_a_preset_fills_the_form(app_env):
    at = train_page()
    at.selectbox(key="form_preset").set_value("fast").run()
    assert at.selectbox(key="form_model").value == "fast"
    assert field(at, "Epochs").value == 1 and field(at, "Batch size").value == 256


def test_start_runs_a_tiny_job_in_the_background_and_lists_it(app_env):
    at = train_page()
    at.selectbox(key="form_model").set_value("fast")
    field(at, "Epochs").set_value(1)
    field(at, "Batch size").set_value(64)
    start_button(at).click().run()
    assert not at.exception
    runs = list_runs(app_env)
    assert len(runs) == 1 and runs[0].config.model == "fast"
    deadline = time.monotonic() + 90
    while runs[0].status()["state"] != "finished" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert runs[0].status()["state"] == "finished"
    at.run()
    assert not at.exception
    accuracy = next(metric for metric in at.metric if metric.label == "Test accuracy")
    assert "also called test accuracy" in accuracy.help  # the glossary ties it to "Validation accuracy"
    table = at.dataframe[0].value
    assert list(table["run"]) == [runs[0].id] and "finished" in table["status"][0]
    captions = [caption for element in at.get("image") for caption in element.captions]
    # The fast model's layer 0 is a fixed whitening layer: the first one training shapes is layer 3.
    assert "Filters of the first trained convolution (layer 3) after epoch 1" in captions


def test_history_table_shows_every_run_with_its_results(app_env):
    done = create_run(TrainConfig(model="fast", epochs=2, lr=0.003), app_env)
    done.append_event(EpochEnd(1, 0.3, 0.2, 97.5, 1.0))
    done.append_event(EpochEnd(2, 0.2, 0.1, 98.25, 1.0))
    done.append_event(Finished(98.25, 2.0, 60000.0, 2))
    done.update_status(state="finished", device="CPU")
    failed = create_run(TrainConfig(), app_env)
    failed.update_status(state="failed", message="The training loss became nan")
    at = train_page()
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 2
    row = table[table["run"] == done.id].iloc[0]
    assert row["best val acc %"] == "98.25" and row["model"] == "fast" and row["epochs"] == "2/2"
    assert row["name"] == "fast · lr 0.003 · 2 epochs · 98.25\u00a0%"  # what tells it apart, not only its id
    assert "failed" in table[table["run"] == failed.id].iloc[0]["status"]
    # The CSV is made on the click (run_table.rows_csv, tested in test_run_table.py).
    assert [button.label for button in at.get("download_button")] == ["Download all runs as CSV"]


def test_the_history_refreshes_quickly_only_for_jobs_the_live_panel_does_not_show(app_env, monkeypatch):
    """The watched run is followed by the live panel; the history table redrawing every 2 s beside it
    would take the cores from that run (bench/watch_cost.py). Jobs started elsewhere still show up quickly."""
    from ui.history import HISTORY_POLL_SECONDS, QUIET_POLL_SECONDS

    paces = []  # run_every of each history fragment the page draws
    real_fragment = st.fragment

    def spy(func=None, *, run_every=None):
        if getattr(func, "__name__", "") == "_history":
            paces.append(run_every)
        return real_fragment(func, run_every=run_every)

    monkeypatch.setattr(st, "fragment", spy)
    done = create_run(TrainConfig(model="fast", epochs=1), app_env)
    done.update_status(state="finished")
    at = train_page()
    assert not at.exception and paces[-1] is None  # nothing active: no polling at all
    other = create_run(TrainConfig(model="fast", epochs=1), app_env)  # queued, from another tab say: active
    at.run()
    assert at.session_state["watched_run"] == done.id  # this tab's panel still shows its own finished run...
    assert paces[-1] == HISTORY_POLL_SECONDS  # ...so the table follows the other job
    at.session_state["watched_run"] = other.id  # what Start does in this tab: the panel follows the new run
    at.run()
    assert paces[-1] == QUIET_POLL_SECONDS  # the table only catches up now and then
    assert not at.exception
    for run in list_runs(app_env):
        run.request_stop()


def test_hosted_mode_caps_epochs_and_allows_one_job_per_visitor(app_env, monkeypatch):
    monkeypatch.setenv("MNIST_HOSTED", "1")
    at = train_page()
    field(at, "Epochs").set_value(50)
    at.run()
    assert any("at most 5 epochs" in error.value for error in at.error)
    assert start_button(at).disabled
    field(at, "Epochs").set_value(1)
    field(at, "Batch size").set_value(1)  # slow enough to still be running below
    start_button(at.run()).click().run()
    assert not at.exception
    assert start_button(at).disabled
    assert any("one job per visitor" in info.value for info in at.info)
    for run in list_runs(app_env):
        run.request_stop()


def finished_run(app_env, config: TrainConfig, events: list, device: str) -> None:
    """A run folder that finished with `events`, as a worker would have left it."""
    done = create_run(config, app_env)
    for event in events:
        done.append_event(event)
    done.update_status(state="finished", device=device)


def test_a_compiled_run_shows_its_compile_time_apart_and_the_form_can_ask_for_one(app_env):
    finished_run(app_env, TrainConfig(model="fast", epochs=1, compile_model=True),
                 [EpochEnd(1, 0.3, 0.2, 98.5, 3.0), Finished(98.5, 3.0, 20000.0, 1, compile_seconds=42.0)], "CPU")
    at = train_page()
    assert not at.exception
    assert next(metric for metric in at.metric if metric.label == "Training time").value == "3 s"
    assert any("Compiling the model took 42 s more" in caption.value for caption in at.caption)
    assert at.checkbox(key="form_compile_model").value is False  # the case-study preset does not compile
    at.checkbox(key="form_compile_model").check().run()
    assert not at.exception and not at.error


def test_a_run_trained_from_a_cuda_graph_says_so_and_shows_its_sub_second_times(app_env):
    finished_run(app_env, TrainConfig(model="fast", epochs=1),
                 [Compiled(0.04, GRAPH_METHOD), EpochEnd(1, 0.9, 0.1, 99.1, 0.07),
                  Finished(99.1, 0.07, 850000.0, 1, compile_seconds=0.04)], "NVIDIA H200")
    at = train_page()
    assert not at.exception
    assert next(metric for metric in at.metric if metric.label == "Training time").value == "0.07 s"
    caption = next(c for c in at.caption if "CUDA graph" in c.value)
    assert "Recording the training step as a CUDA graph took 0.04 s more" in caption.value
    assert "replayed with a single launch" in caption.help  # the glossary's plain words


def test_a_damaged_run_folder_is_one_row_that_says_why_and_can_be_deleted(app_env):
    fine = create_run(TrainConfig(model="fast", epochs=1), app_env)
    fine.update_status(state="finished")
    broken = create_run(TrainConfig(), app_env)
    broken.update_status(state="finished")
    (broken.path / "config.json").write_text('{"model": "seed", "epochs": ')
    at = train_page()  # the newest run, the damaged one, is the one the live panel shows
    assert not at.exception
    assert any("damaged" in error.value and "not valid JSON" in error.value for error in at.error)
    table = at.dataframe[0].value
    assert len(table) == 2
    broken_row = table[table["run"] == broken.id].iloc[0]
    assert broken_row["status"] == "damaged" and broken_row["note"].startswith("its config.json is not valid JSON")
    assert table[table["run"] == fine.id].iloc[0]["status"] == "finished"

    from mnist_core.runs import delete_run

    delete_run(broken)  # what the row's Delete button calls (AppTest cannot select dataframe rows)
    at = train_page()
    assert not at.exception and list(at.dataframe[0].value["run"]) == [fine.id]


def test_without_the_dataset_start_is_disabled_and_the_page_says_what_to_do(app_env, monkeypatch, tmp_path):
    from mnist_core import data

    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "no-data"))
    # Offline: every mirror refuses at once (a closed local port), as with no network at all.
    monkeypatch.setattr(data.torchvision_dataset("mnist"), "mirrors", ["http://127.0.0.1:9/a/", "http://127.0.0.1:9/b/"])
    at = train_page()
    assert not at.exception
    assert start_button(at).disabled
    warning = next(w.value for w in at.warning if "not on this machine" in w.value)
    assert str((tmp_path / "no-data" / "MNIST" / "raw").resolve()) in warning and "train-images-idx3-ubyte" in warning
    download = next(button for button in at.button if button.label == "Download MNIST now")
    download.click().run()
    assert not at.exception
    failure = next(e.value for e in at.error if "download failed" in e.value.lower())
    assert "refused the connection (2 mirrors tried)" in failure and "urlopen" not in failure
    assert list_runs(app_env) == []  # nothing was started, so no run folder exists


def test_the_form_offers_fashion_mnist_and_says_when_its_files_are_missing(app_env):
    at = train_page()
    assert at.session_state["form_dataset"] == "mnist"
    at.session_state["form_dataset"] = "fashion-mnist"  # what clicking "Fashion-MNIST clothes" does
    at.run()
    assert not at.exception
    assert any("FashionMNIST is not on this machine yet" in warning.value for warning in at.warning)
    assert start_button(at).disabled
    assert any(button.label == "Download FashionMNIST now" for button in at.button)


def test_on_a_hosted_demo_another_visitor_sees_a_run_but_not_its_stop(app_env, monkeypatch):
    monkeypatch.setenv("MNIST_HOSTED", "1")
    a = train_page()
    field(a, "Epochs").set_value(1)
    field(a, "Batch size").set_value(1)  # slow enough to still be running below
    start_button(a.run()).click().run()
    assert not a.exception
    assert any(button.label == "Stop" for button in a.button)
    b = train_page()  # another browser session, with no cookie: another visitor
    assert not b.exception
    assert any(f"Run {run.id}" in caption.value for run in list_runs(app_env) for caption in b.caption)
    assert not any(button.label == "Stop" for button in b.button)
    assert not start_button(b).disabled  # B may start a job of its own
    for run in list_runs(app_env):
        run.request_stop()
