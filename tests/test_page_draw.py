"""The Draw page under AppTest: no model, a model, uploads good and bad, Clear, the saliency toggle,
the upload's preview beside what the model sees.

The shipped default model is replaced by an untrained checkpoint written here, and runs live
in an empty temporary folder, so the page never depends on models/default.pt. AppTest cannot
draw on the canvas; drawings go through the same `canvas_to_mnist` + `probabilities` path as
uploads, and tests/test_predict.py covers canvas pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
import torch
from PIL import Image, ImageDraw
from streamlit.testing.v1 import AppTest

import mnist_core.inference
import ui.state
from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.inference import predict
from mnist_core.models import build_model
from mnist_core.preprocess import read_image

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "draw.py")


def use_default_model(monkeypatch, path: Path) -> None:
    monkeypatch.setattr(mnist_core.inference, "DEFAULT_MODEL_PATH", path)
    monkeypatch.setattr(ui.state, "DEFAULT_MODEL_PATH", path)


@pytest.fixture
def no_model(monkeypatch, tmp_path):
    use_default_model(monkeypatch, tmp_path / "no-default.pt")
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "empty-runs"))


@pytest.fixture
def default_model(monkeypatch, tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "default.pt"
    save_checkpoint(path, make_checkpoint(build_model("fast"), TrainConfig(model="fast"), 1, {}))
    use_default_model(monkeypatch, path)
    monkeypatch.setenv("MNIST_RUNS_DIR", str(tmp_path / "empty-runs"))
    return path


@pytest.fixture
def shown_images(monkeypatch) -> list[dict]:
    """Every st.image call of the runs that follow: caption, picture shape and display width."""
    shown, real = [], st.image

    def spy(image, caption=None, width="content", **kwargs):
        shown.append({"caption": caption, "shape": np.asarray(image).shape, "width": width})
        return real(image, caption=caption, width=width, **kwargs)

    monkeypatch.setattr(st, "image", spy)
    return shown


def open_page() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception, app.exception
    return app


def upload(app: AppTest, name: str, data: bytes) -> AppTest:
    app.segmented_control(key="draw_source").set_value("Upload").run()
    app.file_uploader(key="draw_upload").set_value((name, data, "image/png")).run()
    assert not app.exception, app.exception
    return app


def digit_png() -> bytes:
    """A '7' in black ink on white paper, small and off-centre in a big picture."""
    paper = Image.new("RGB", (400, 300), "white")
    ImageDraw.Draw(paper).line([(250, 40), (330, 40), (280, 160)], fill="black", width=9)
    buffer = io.BytesIO()
    paper.save(buffer, "PNG")
    return buffer.getvalue()


def shown_digit(app: AppTest) -> int:
    big = [block.value for block in app.markdown if "font-size:6rem" in block.value]
    assert len(big) == 1
    return int(big[0].split(">")[1].split("<")[0])


def test_without_any_model_the_app_points_to_the_train_page(no_model):
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    app.switch_page("pages/draw.py").run()
    assert not app.exception, app.exception
    assert "Train" in app.info[0].value and "no model" in app.info[0].value
    assert [link.label for link in app.main.page_link] == ["Go to Train"]  # the sidebar's menu aside
    assert not app.file_uploader  # nothing to draw for


def test_without_any_model_the_page_alone_does_not_fail(no_model):
    app = open_page()
    assert "no model" in app.info[0].value


def test_page_loads_with_a_model_and_asks_for_a_drawing(default_model):
    app = open_page()
    assert app.selectbox(key="draw_model").value == "default"
    assert app.slider(key="draw_pen").value == 18
    assert "Draw a digit" in app.info[0].value
    assert any(m.value.startswith("Draw a digit below") for m in app.markdown)  # the phone's answer line, waiting


def test_clear_starts_a_new_empty_canvas(default_model):
    app = open_page()
    next(button for button in app.button if button.label == "Clear").click().run()
    assert not app.exception
    assert app.session_state["draw_canvas_round"] == 1


def test_an_uploaded_digit_is_predicted_like_predict_does(default_model):
    app = upload(open_page(), "seven.png", digit_png())
    expected = predict(read_image(digit_png()), default_model)
    assert shown_digit(app) == int(expected.argmax())
    assert any(f"{expected.max():.1%} sure" in caption.value for caption in app.caption)
    assert len(app.get("plotly_chart")) == 1
    assert [image.captions for image in app.image] == [["Your picture"], ["What the model sees (28×28)"]]
    # The line a phone shows above the input says the same answer.
    assert any(m.value.startswith(f"Reads as **{int(expected.argmax())}** · {expected.max():.0%} sure") for m in app.markdown)


def test_the_upload_is_previewed_small_and_whole_beside_what_the_model_sees(default_model, shown_images):
    upload(open_page(), "seven.png", digit_png())  # 400 x 300: wider than tall
    preview, model_view = shown_images[-2:]
    assert preview["caption"] == "Your picture" and model_view["caption"].startswith("What the model sees")
    assert preview["shape"] == (144, 144, 3) and preview["width"] == 144  # 140 square + its 2-pixel frame
    assert model_view["shape"][:2] == (200, 200) and model_view["width"] == 200
    assert preview["width"] + model_view["width"] + 8 <= 358  # side by side on a 390-pixel phone


def test_a_drawing_shows_no_upload_preview(default_model):
    app = open_page()
    assert app.segmented_control(key="draw_source").value == "Draw"
    assert not app.image  # nothing drawn yet, and no upload preview in Draw mode


def test_the_saliency_toggle_shows_the_overlay_at_the_same_size(default_model, shown_images):
    app = upload(open_page(), "seven.png", digit_png())
    plain = shown_images[-1]
    app.toggle(key="draw_saliency").set_value(True).run()
    assert not app.exception, app.exception
    assert len(app.image) == 2 and "Red pushed toward" in app.image[1].captions[0]
    overlay = shown_images[-1]
    assert "Red pushed toward" in overlay["caption"]
    # The same picture size and an explicit pixel width: a longer caption no longer widens the image.
    assert overlay["shape"][:2] == plain["shape"][:2] and overlay["width"] == plain["width"] == 200


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("digit.png", b"this is not an image", "not a readable PNG or JPEG"),
        ("notes.txt", b"hello", "not a readable PNG or JPEG"),
        ("digit.png", b"\x89PNG" + b"x" * (2 * 1024 * 1024), "limit is 2 MB"),
    ],
)
def test_a_bad_upload_is_explained_without_a_traceback(default_model, name, data, message):
    app = upload(open_page(), name, data)
    assert len(app.error) == 1 and message in app.error[0].value


def test_a_blank_upload_says_no_digit_was_found(default_model):
    buffer = io.BytesIO()
    Image.new("L", (100, 100), 255).save(buffer, "PNG")
    app = upload(open_page(), "blank.png", buffer.getvalue())
    assert "No digit found" in app.warning[0].value
    assert [image.captions for image in app.image] == [["Your picture"]]  # so the user sees what was read


def test_a_broken_checkpoint_is_a_message(default_model):
    default_model.write_bytes(b"not a checkpoint")
    app = open_page()
    assert "could not be loaded" in app.error[0].value


def test_a_checkpoint_broken_while_the_page_is_open_is_a_message(default_model):
    # The drawing part is a fragment that looks the model up on each of its runs: a model
    # deleted or damaged from another tab is explained at the next interaction with it.
    app = open_page()
    assert not app.error
    default_model.write_bytes(b"not a checkpoint")
    app.segmented_control(key="draw_source").set_value("Upload").run()
    assert not app.exception
    assert "could not be loaded" in app.error[0].value


def test_uploads_of_huge_dimensions_are_refused(default_model):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 5000), dtype=np.uint8)).save(buffer, "PNG")
    app = upload(open_page(), "wide.png", buffer.getvalue())
    assert "at most 4096 pixels" in app.error[0].value
