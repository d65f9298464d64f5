"""The Draw page in a real browser: upload a picture of a digit, see it previewed and classified."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from tests.e2e.conftest import assert_no_errors, open_page, wait_idle

pytestmark = pytest.mark.e2e


def one_png(path) -> str:
    """A thick black '1' (with its flag and foot) on white paper, off-centre in a 300 x 400 picture."""
    paper = Image.new("RGB", (300, 400), "white")
    pen = ImageDraw.Draw(paper)
    pen.line([(170, 60), (170, 330)], fill="black", width=30)
    pen.line([(170, 65), (120, 110)], fill="black", width=24)
    pen.line([(125, 330), (215, 330)], fill="black", width=22)
    paper.save(path)
    return str(path)


def image_box(tab, caption: str) -> dict:
    """Where the image captioned `caption` is drawn, and whether its picture has loaded."""
    figure = tab.locator("[data-testid='stImage']").filter(has_text=caption)
    figure.wait_for()
    picture = figure.locator("img")
    picture.wait_for()
    tab.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=picture.element_handle())
    return {**picture.bounding_box(), "natural": picture.evaluate("img => img.naturalWidth")}


@pytest.mark.parametrize("viewport", [{"width": 1400, "height": 1000}, {"width": 390, "height": 844}],
                         ids=["desktop", "phone"])
def test_an_uploaded_digit_is_previewed_and_predicted(page, app_server, tmp_path, viewport):
    page.set_viewport_size(viewport)
    open_page(page, app_server, "draw")
    page.get_by_role("radio", name="Upload").click()
    wait_idle(page)
    page.get_by_text("Upload a picture of one digit").wait_for()
    assert page.locator("canvas.upper-canvas").count() == 0  # the canvas is gone in Upload mode

    page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(one_png(tmp_path / "one.png"))
    digit = page.locator(".predicted-digit")
    digit.wait_for(timeout=60_000)
    wait_idle(page)
    assert digit.inner_text().strip() == "1"
    assert page.get_by_text("sure").count() >= 1
    # On a phone the columns stack and the big answer is far down: one line above the input says it,
    # within the first screen. On a desktop the answer is beside the input and that line is hidden.
    phone_answer = page.locator(".st-key-draw_phone_answer")
    if viewport["width"] < 640:
        page.evaluate("() => window.scrollTo(0, 0)")
        assert phone_answer.is_visible() and "Reads as 1" in phone_answer.inner_text()
        assert phone_answer.bounding_box()["y"] + phone_answer.bounding_box()["height"] <= viewport["height"]
    else:
        assert not phone_answer.is_visible()

    preview = image_box(page, "Your picture")
    model_view = image_box(page, "What the model sees")
    assert preview["natural"] == 144 and round(preview["width"]) == 144  # the upload, scaled down to fit
    assert round(model_view["width"]) == 200
    # Side by side, top-aligned, at both widths, and inside the page.
    assert abs(preview["y"] - model_view["y"]) < 2 and preview["x"] + preview["width"] <= model_view["x"]
    assert model_view["x"] + model_view["width"] <= viewport["width"]

    # Saliency on: the picture of what the model sees keeps its size.
    page.get_by_text("Show which pixels drove the prediction").click()
    wait_idle(page)
    overlay, preview = image_box(page, "Red pushed toward"), image_box(page, "Your picture")  # after any scroll
    assert round(overlay["width"]) == 200 and abs(overlay["y"] - preview["y"]) < 2
    assert_no_errors(page)
