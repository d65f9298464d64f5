"""The Inside page, and Draw's "Show inside the network", under AppTest.

The shipped default model is replaced by an untrained `fast` checkpoint written here, the
test images are the tiny dataset's 200 (MNIST_DATA_DIR), and runs live in an empty folder.
AppTest cannot click a point on a WebGL chart: tests/e2e/test_inside.py does that in a browser.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from mnist_core import embedding
from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.data import load_split
from mnist_core.models import build_model
from tests.test_page_draw import digit_png, upload, use_default_model

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "inside.py")
FAST_LAYERS = 11  # conv, pool, relu, conv, pool, relu, flatten, linear, relu, linear, softmax


@pytest.fixture(scope="module")
def mapped_checkpoint(tmp_path_factory, tiny_data_dir) -> Path:
    """An untrained fast model with its map built on the tiny test images (kept for the module)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("inside-model") / "mapped.pt"
    save_checkpoint(path, make_checkpoint(build_model("fast"), TrainConfig(model="fast"), 1, {}))
    embedding.build_map(path, tiny_data_dir)
    return path


@pytest.fixture
def with_data(monkeypatch, tmp_path, tiny_data_dir):
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "empty-runs"))


@pytest.fixture
def mapped_model(with_data, monkeypatch, tmp_path, mapped_checkpoint) -> Path:
    """The default model, with a stored map beside it."""
    path = tmp_path / "default.pt"
    shutil.copy2(mapped_checkpoint, path)  # copy2 keeps the modification time the map was built for
    shutil.copy2(embedding.map_path(mapped_checkpoint), embedding.map_path(path))
    use_default_model(monkeypatch, path)
    return path


@pytest.fixture
def unmapped_model(with_data, monkeypatch, tmp_path) -> Path:
    torch.manual_seed(1)
    path = tmp_path / "default.pt"
    save_checkpoint(path, make_checkpoint(build_model("fast"), TrainConfig(model="fast"), 1, {}))
    use_default_model(monkeypatch, path)
    return path


def open_page() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception, app.exception
    return app


def captions(app: AppTest) -> list[str]:
    return [caption.value for caption in app.caption]


def map_figure(app: AppTest) -> dict | None:
    """The spec of the embedding map (the chart with WebGL traces), if one is shown."""
    for chart in app.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if any(trace.get("type") == "scattergl" for trace in spec["data"]):
            return spec
    return None


def test_the_page_shows_test_image_0_and_every_layer(mapped_model):
    app = open_page()
    assert app.number_input(key="inside_index").value == 0
    _, labels = load_split("mnist", False)
    assert app.image[0].captions == [f"Test image 0: a {int(labels[0])}"]
    layer_captions = [text for text in captions(app) if " params**" in text]
    assert len(layer_captions) == FAST_LAYERS
    assert layer_captions[0] == "**1. Conv2d · 8×24×24 · 208 params**"
    assert layer_captions[-1] == "**11. Softmax · 10 · 0 params**"
    assert "One score per class: 0 on the left to 9 on the right" in captions(app)  # the last Linear's bars
    assert "first 32 of" not in " ".join(captions(app))  # no layer of the fast model is wider than 32
    assert any(text.startswith("The answer: **") for text in captions(app))


def test_the_filters_toggle_shows_each_convolutions_filters(mapped_model):
    app = open_page()
    app.toggle(key="inside_filters").set_value(True).run()
    assert not app.exception, app.exception
    texts = captions(app)
    assert "**0 · 8 filters of 5×5**, one input channel" in texts
    assert "**3 · 32 filters of 3×3**, summed over its 8 input channels" in texts
    assert not [text for text in texts if " params**" in text]  # the layers make way for the filters


def test_with_a_stored_map_the_page_shows_it_with_the_image_as_a_star(mapped_model):
    app = open_page()
    figure = map_figure(app)
    assert figure is not None
    names = [trace.get("name") for trace in figure["data"]]
    assert names[0] == "0" and names[-1] == "image 0" and "nearest" in names
    assert figure["data"][-1]["marker"]["symbol"] == "star"
    nearest = [text for text in app.markdown if text.value == "**Nearest to image 0**"]
    assert nearest and "200 of 200 test images" in " ".join(captions(app))
    thumbnails = [image for image in app.image if image.captions and image.captions[0].startswith("#")]
    assert 1 <= len(thumbnails) <= 5  # its 5 nearest, itself left out


def test_the_map_filters_keep_the_chosen_digits(mapped_model):
    app = open_page()
    app.button_group(key="inside_map_classes").set_value([4]).run()
    assert not app.exception, app.exception
    _, labels = load_split("mnist", False)
    fours = int((labels == 4).sum())
    assert f"{fours} of 200 test images" in " ".join(captions(app))


def test_a_digit_picks_a_random_test_image_of_it(mapped_model):
    app = open_page()
    _, labels = load_split("mnist", False)
    for _ in range(3):
        app.selectbox(key="inside_class").set_value(3).run()
        assert not app.exception, app.exception
        assert labels[app.number_input(key="inside_index").value] == 3
        app.selectbox(key="inside_class").set_value(None).run()
    next(button for button in app.button if button.label == "Random").click().run()
    assert not app.exception, app.exception


def test_the_drawn_digit_from_the_draw_page_can_be_inspected(mapped_model):
    app = AppTest.from_file(PAGE, default_timeout=60)
    drawn = np.zeros((28, 28), dtype=np.float32)
    drawn[5:23, 13:16] = 1.0
    app.session_state["drawn_digit"] = drawn
    app.run()
    app.segmented_control(key="inside_source").set_value("Your drawing").run()
    assert not app.exception, app.exception
    assert app.image[0].captions == ["Your drawing from the Draw page, as the model sees it"]
    assert map_figure(app)["data"][-1]["name"] == "your drawing"


def test_look_inside_a_clicked_image_switches_to_it_even_from_the_drawing(mapped_model):
    app = AppTest.from_file(PAGE, default_timeout=60)
    app.session_state["drawn_digit"] = np.zeros((28, 28), dtype=np.float32)
    app.run()
    app.segmented_control(key="inside_source").set_value("Your drawing").run()
    app.session_state["inside_pending_index"] = 17  # what the map's "Look inside this image" leaves
    app.run()
    assert not app.exception, app.exception
    assert app.segmented_control(key="inside_source").value == "Test image"
    assert app.number_input(key="inside_index").value == 17
    assert app.image[0].captions[0].startswith("Test image 17: a ")


def test_without_a_map_the_page_offers_to_build_it(unmapped_model, monkeypatch):
    started = []
    monkeypatch.setattr(embedding, "start_build",
                        lambda path, data_dir, split, owner: started.append((path, data_dir, owner)))
    app = open_page()
    assert map_figure(app) is None
    assert len(app.get("plotly_chart")) == 1  # the strip's probabilities only
    build = next(button for button in app.button if button.label.startswith("Build the map"))
    build.click().run()
    assert not app.exception, app.exception
    assert [(path, data_dir) for path, data_dir, _ in started] == [(unmapped_model, os.environ["MNIST_DATA_DIR"])]
    assert started[0][2]  # the visitor who asked owns the build


def test_while_the_map_is_built_a_progress_bar_and_then_a_preview_show(unmapped_model):
    # This process stands in for the builder: its pid is alive, and so the build is.
    embedding.map_build(unmapped_model).update_status(state="running", pid=os.getpid(), progress=0.4,
                                                      message="t-SNE, iteration 300")
    app = open_page()
    progress = app.get("progress")
    assert len(progress) == 1 and "t-SNE, iteration 300" in progress[0].proto.text
    # The preview is made in a thread; the progress fragment reruns the page when it is ready.
    deadline = time.monotonic() + 30
    while map_figure(app) is None and time.monotonic() < deadline:
        time.sleep(0.2)
        app.run()
        assert not app.exception, app.exception
    assert map_figure(app) is not None  # the PCA preview, with the progress bar still above it
    assert len(app.get("progress")) == 1
    assert any("quick stand-in" in text for text in captions(app))


def test_a_failed_build_is_explained_and_can_be_retried(unmapped_model):
    embedding.map_build(unmapped_model).update_status(state="failed", message="no room on the disk")
    app = open_page()
    assert "no room on the disk" in app.warning[0].value
    assert any(button.label.startswith("Build the map") for button in app.button)


def test_a_map_built_on_other_test_images_is_not_shown(mapped_model):
    stored = dict(np.load(embedding.map_path(mapped_model)))
    stored["labels"] = (stored["labels"] + 1) % 10  # as if made from another data folder
    np.savez(embedding.map_path(mapped_model), **stored)
    app = open_page()
    assert map_figure(app) is None
    assert embedding.load_cached(mapped_model) is None  # the core's check: its points are not these images
    assert any(button.label.startswith("Build the map") for button in app.button)


def test_draw_keeps_the_inside_view_off_until_asked(mapped_model):
    app = upload(AppTest.from_file(str(ROOT / "pages" / "draw.py"), default_timeout=60).run(), "seven.png", digit_png())
    assert app.toggle(key="draw_inside").value is False
    assert len(app.get("plotly_chart")) == 1 and len(app.image) == 2  # as before: nothing of the inside view
    assert app.session_state["drawn_digit"].shape == (28, 28)

    app.toggle(key="draw_inside").set_value(True).run()
    assert not app.exception, app.exception
    assert len([text for text in captions(app) if " params**" in text]) == FAST_LAYERS
    figure = map_figure(app)
    assert figure is not None and figure["data"][-1]["name"] == "your drawing"
    assert [text.value for text in app.markdown if text.value.startswith("**Nearest")] == [
        "**Nearest to your drawing**"
    ]
