"""The Mistakes page, driven through Streamlit's AppTest on the tiny data set.

Runs live in a temporary MNIST_RUNS_DIR and the shipped default model is hidden, so the
page sees exactly the runs made here. The model is trained on 32 images only, so it makes
enough mistakes (tens) to filter and to fill more than one gallery page.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

import mnist_core.data
import mnist_core.inference
import ui.state
from mnist_core.config import TrainConfig
from mnist_core.data import DatasetMissing
from mnist_core.evaluate import evaluate
from mnist_core.jobs import execute_run
from mnist_core.runs import Run, create_run, run_name, summarize

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "mistakes.py")
WEAK = TrainConfig(model="fast", epochs=1, batch_size=32, lr=0.003, train_subset=32)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory, tiny_data_dir) -> Path:
    """A runs folder with two finished runs (trained once for the whole module)."""
    runs = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        execute_run(create_run(WEAK.replace(seed=seed), runs), tiny_data_dir)
    return runs


@pytest.fixture
def studio(monkeypatch, tmp_path, tiny_data_dir):
    """Point the app at the tiny data and hide the shipped model; returns a function that sets the runs folder."""
    missing = tmp_path / "no-default.pt"
    monkeypatch.setattr(mnist_core.inference, "DEFAULT_MODEL_PATH", missing)
    monkeypatch.setattr(ui.state, "DEFAULT_MODEL_PATH", missing)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "empty-runs"))
    return lambda runs: monkeypatch.setenv("MNIST_RUNS_DIR", str(runs))


def open_page(**state) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=30)
    for key, value in state.items():
        app.session_state[key] = value
    app.run()
    assert not app.exception, app.exception
    return app


def gallery(app: AppTest) -> list[str]:
    """The labels under the thumbnails shown, e.g. '0 → 1 · 87%' (the inspected one's without its highlight)."""
    labels = [button.label for button in app.button if button.key and button.key.startswith("inspect_")]
    return [label.removeprefix(":primary[**").removesuffix("**]") for label in labels]


def shown_count(app: AppTest) -> int:
    """The number of mistakes the gallery says match the filters."""
    caption = next(c.value for c in app.caption if " mistakes, showing " in c.value)
    return int(caption.split()[0].replace(",", ""))


def newest_run(runs: Path) -> Path:
    return max(path for path in runs.iterdir() if path.is_dir())


def test_no_model_yet_points_to_train(studio):
    app = open_page()
    assert "No model yet" in app.info[0].value
    assert not app.selectbox and not app.metric


def test_choosing_a_model(studio, trained_runs):
    studio(trained_runs)
    newest, older = sorted((p.name for p in trained_runs.iterdir() if p.is_dir()), reverse=True)
    app = open_page()
    picker = app.selectbox(key="mistakes_model")
    # Each run by what tells it apart: model, learning rate, epochs, test accuracy, when it started.
    expected = [f"{run_name(summarize(Run(trained_runs / run)))} (" for run in (newest, older)]
    assert [option[: len(prefix)] for option, prefix in zip(picker.options, expected)] == expected
    assert all(option.startswith("fast · lr 0.003 · 1 epoch · ") and option.count("\u00a0%") == 1
               for option in picker.options)
    assert picker.value == newest

    result = evaluate(trained_runs / older)
    picker.set_value(older).run()
    assert not app.exception
    assert app.session_state["selected_model"] == older  # Draw preselects the same model
    assert app.metric[0].value == f"{result.accuracy:.2f} %"
    assert app.metric[1].value == f"{len(result.mistakes):,} of {len(result.labels):,}"

    # The run chosen elsewhere (the Train page's "Open in Mistakes") is preselected.
    assert open_page(selected_model=older).selectbox(key="mistakes_model").value == older


def test_filters_change_the_gallery(studio, trained_runs):
    studio(trained_runs)
    result = evaluate(newest_run(trained_runs))
    assert len(result.mistakes) > 24, "the weak model should make more mistakes than one page holds"
    app = open_page()
    assert shown_count(app) == len(result.mistakes) and len(gallery(app)) == 24

    true_class = int(result.labels[result.mistakes[0]])
    predicted_class = int(result.predictions[result.mistakes[0]])
    app.selectbox(key="mistakes_true").set_value(true_class).run()
    assert shown_count(app) == len(result.mistakes_where(true_class=true_class))
    assert all(label.startswith(f"{true_class} → ") for label in gallery(app))

    app.selectbox(key="mistakes_predicted").set_value(predicted_class).run()
    pair = result.mistakes_where(true_class, predicted_class)
    assert shown_count(app) == len(pair) and len(gallery(app)) == min(24, len(pair))
    assert all(label.startswith(f"{true_class} → {predicted_class} ") for label in gallery(app))

    app.button(key="mistakes_clear").click().run()
    assert shown_count(app) == len(result.mistakes)
    assert not app.exception


def test_pages_order_and_inspect(studio, trained_runs):
    studio(trained_runs)
    result = evaluate(newest_run(trained_runs))
    app = open_page()
    first_page = gallery(app)
    app.button(key="mistakes_next").click().run()
    assert gallery(app) != first_page and len(gallery(app)) == min(24, len(result.mistakes) - 24)

    app.radio(key="mistakes_least_first").set_value(True).run()  # back to page 1, least confident first
    least = result.mistakes[-1]
    assert gallery(app)[0].endswith(f"{result.confidence[least]:.0%}")

    index = int(result.mistakes[::-1][3])  # on the page shown
    app.button(key=f"inspect_{index}").click().run()
    assert not app.exception
    assert any(m.value.startswith(f"**Image {index}**") for m in app.markdown)


def test_the_inspected_mistake_can_be_looked_inside_layer_by_layer(studio, trained_runs):
    studio(trained_runs)
    result = evaluate(newest_run(trained_runs))
    index = int(result.mistakes[2])
    app = open_page()
    app.button(key=f"inspect_{index}").click().run()
    inside = app.toggle(key="mistakes_inside")
    assert inside.value is False  # off by default: no layer pictures are made
    before = len(app.get("image"))  # the gallery's thumbnails and the detail's two pictures
    inside.set_value(True).run()
    assert not app.exception
    assert inside.label == f"Show inside the network for image {index}"
    assert len(app.get("image")) > before + 3  # a picture per layer of the fast model
    assert any("Conv2d" in text for text in [m.value for m in app.markdown] + [c.value for c in app.caption])


def test_missing_dataset_is_an_error_message(studio, trained_runs, tmp_path, monkeypatch):
    studio(trained_runs)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "no-data"))

    def offline(dataset, data_dir=None, on_progress=None):
        raise DatasetMissing(mnist_core.data.missing_message(dataset, data_dir, "offline"))

    monkeypatch.setattr(mnist_core.data, "download", offline)
    app = open_page()
    assert "MNIST is not in" in app.error[0].value


def test_unreadable_checkpoint_is_an_error_message(studio, tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    execute_run(create_run(WEAK, runs), tiny_data_dir)
    newest_run(runs).joinpath("checkpoint.pt").write_bytes(b"not a checkpoint")
    studio(runs)
    app = open_page()
    assert "could not be loaded" in app.error[0].value


def test_a_checkpoint_with_invalid_settings_is_an_error_message_not_a_key_error(studio, tiny_data_dir, tmp_path):
    runs = tmp_path / "runs"
    execute_run(create_run(WEAK, runs), tiny_data_dir)
    path = newest_run(runs) / "checkpoint.pt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["config"]["dataset"] = "xyz"
    torch.save(checkpoint, path)
    studio(runs)
    app = open_page()
    message = app.error[0].value
    assert "could not be loaded" in message and "dataset: 'xyz' is not allowed" in message
    assert str(tmp_path) not in message  # never the server's absolute path


@pytest.mark.skipif(
    not all((ROOT / "pages" / name).is_file() for name in ("train.py", "draw.py")), reason="the app's pages are not all there"
)
def test_inside_the_app_the_empty_state_links_to_train(studio):
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    app.switch_page("pages/mistakes.py").run()
    assert not app.exception, app.exception
    assert "No model yet" in app.info[0].value
    assert app.get("page_link")


def test_a_fashion_mnist_model_shows_class_names(studio, tmp_path, monkeypatch):
    from tests.conftest import tiny_digits, write_idx

    data = tmp_path / "data"
    raw = data / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw, "train", *tiny_digits(512, seed=5))
    write_idx(raw, "t10k", *tiny_digits(200, seed=6))
    runs = tmp_path / "runs"
    execute_run(create_run(WEAK.replace(dataset="fashion-mnist"), runs), data)
    monkeypatch.setenv("MNIST_DATA_DIR", str(data))
    studio(runs)
    app = open_page()
    hardest = next(metric for metric in app.metric if metric.label.startswith("Hardest"))
    assert hardest.label == "Hardest class" and hardest.value in mnist_core.data.CLASS_NAMES["fashion-mnist"]
    assert app.selectbox(key="mistakes_true").label == "True class"
    labels = gallery(app)
    assert labels and all(" → " in label and label.split(" → ")[0] in mnist_core.data.CLASS_NAMES["fashion-mnist"]
                          for label in labels)
    assert "Sneaker" in app.selectbox(key="mistakes_true").options


def test_the_sidebar_shows_the_model_picked_on_mistakes_in_the_same_rerun(studio, trained_runs, monkeypatch):
    monkeypatch.setenv("MNIST_STANDBY_WORKER", "0")
    studio(trained_runs)
    newest, older = sorted((p.name for p in trained_runs.iterdir() if p.is_dir()), reverse=True)
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    app.switch_page("pages/mistakes.py").run()
    assert any(ui.state.model_label(newest) in markdown.value for markdown in app.sidebar.markdown)
    app.selectbox(key="mistakes_model").set_value(older).run()
    assert not app.exception
    assert any(ui.state.model_label(older) in markdown.value for markdown in app.sidebar.markdown)  # not one rerun late
