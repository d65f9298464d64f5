"""The Mistakes page's figures and helpers: plain numpy in, Plotly figures and numbers out."""

import numpy as np
import pytest

from ui.mistakes_charts import (
    clicked_cell,
    confusion_figure,
    fit_square,
    page_bounds,
    per_class_accuracy_figure,
    probabilities_figure,
    saliency_overlay,
    thumbnail,
)


def confusion() -> np.ndarray:
    counts = np.diag(np.full(10, 1000))
    counts[4, 9] = 12  # true 4 read as 9
    counts[7, 2] = 1
    return counts


def trace(figure, name):
    return next(t for t in figure.data if t.name == name)


def test_confusion_colours_only_the_mistakes():
    figure = confusion_figure(confusion())
    mistakes = np.array(trace(figure, "mistakes").z, dtype=float)
    assert np.isnan(np.diag(mistakes)).all()  # ~1,000 correct per class would swamp the colour scale
    assert mistakes[4, 9] == 12 and mistakes[7, 2] == 1
    assert np.isnan(mistakes[0, 1])  # no mistakes: left blank
    correct_text = np.array(trace(figure, "correct").text)
    assert correct_text[3, 3] == "1000" and correct_text[4, 9] == ""  # the diagonal is annotated (in grey)
    assert trace(figure, "correct").textfont.color == "#9ca3af"


def test_confusion_cells_are_clickable_and_the_filter_is_outlined():
    figure = confusion_figure(confusion(), true_class=4, predicted_class=9)
    cells = trace(figure, "cells")
    assert len(cells.x) == 100
    cell = list(zip(cells.y, cells.x)).index((4, 9))
    assert cells.customdata[cell] == 12
    (outline,) = figure.layout.shapes
    assert (outline.x0, outline.x1, outline.y0, outline.y1) == (8.5, 9.5, 3.5, 4.5)
    (row,) = confusion_figure(confusion(), true_class=4).layout.shapes  # a whole row when only the truth is chosen
    assert (row.x0, row.x1, row.y0, row.y1) == (-0.5, 9.5, 3.5, 4.5)
    assert not confusion_figure(confusion()).layout.shapes


def test_clicked_cell():
    assert clicked_cell([{"x": 9, "y": 4, "curve_number": 2}]) == (4, 9)
    assert clicked_cell([{"x": 3, "y": 3}]) is None  # the diagonal holds no mistakes
    assert clicked_cell([]) is None
    assert clicked_cell([{"point_index": 5}]) is None


@pytest.mark.parametrize(
    "total, page, expected",
    [
        (0, 0, (0, 0, 1)),
        (10, 0, (0, 10, 1)),
        (24, 0, (0, 24, 1)),
        (25, 1, (24, 25, 2)),
        (60, 2, (48, 60, 3)),
        (60, 7, (48, 60, 3)),  # a page past the end (the filter shrank) shows the last page
        (60, -1, (0, 24, 3)),
    ],
)
def test_page_bounds(total, page, expected):
    assert page_bounds(total, page, per_page=24) == expected


def test_thumbnail_is_dark_ink_on_white_with_sharp_pixels():
    image = np.zeros((28, 28), dtype=np.uint8)
    image[10, 12] = 255
    small = thumbnail(image, scale=3)
    assert small.shape == (84, 84) and small.dtype == np.uint8
    assert small[0, 0] == 255 and (small[30:33, 36:39] == 0).all() and small[33, 36] == 255


def test_other_figures_build():
    per_class = per_class_accuracy_figure(np.array([99.0, 98.5, 97.0, *[99.5] * 7]), np.full(10, 1000))
    assert list(per_class.data[0].y[:3]) == [99.0, 98.5, 97.0]
    assert per_class.layout.yaxis.range[0] < 97.0


def test_probabilities_have_a_legend_for_truth_and_prediction():
    chances = np.array([0.0, 0.1, 0, 0, 0.2, 0, 0, 0, 0, 0.7])
    figure = probabilities_figure(chances, true_class=4, predicted_class=9)
    assert figure.layout.showlegend and figure.layout.legend.orientation == "h"  # one row: fits a phone
    named = [(t.name, list(t.x), t.marker.color) for t in figure.data if t.showlegend]
    assert named == [("truth: 4", [4], "#4f46e5"), ("prediction: 9", [9], "#dc2626")]
    others = trace(figure, "other digits")
    assert others.showlegend is False and list(others.x) == [0, 1, 2, 3, 5, 6, 7, 8]
    bars = {x: y for t in figure.data for x, y in zip(t.x, t.y)}  # every digit once, in percent
    assert sorted(bars) == list(range(10)) and bars[9] == pytest.approx(70) and bars[4] == pytest.approx(20)
    assert figure.layout.barmode == "overlay"  # one trace per digit: bars stay centred, not grouped
    assert figure.layout.legend.y >= 1 and figure.layout.margin.t >= 60  # above the bars, below the title


def test_probabilities_when_the_prediction_is_right_have_one_entry():
    figure = probabilities_figure(np.array([0.9, *[0.1 / 9] * 9]), true_class=0, predicted_class=0)
    assert [t.name for t in figure.data if t.showlegend] == ["prediction = truth: 0"]


@pytest.mark.parametrize("height, width", [(300, 400), (400, 100), (28, 28), (1024, 1024)])
def test_fit_square_keeps_the_whole_picture_and_its_proportions(height, width):
    picture = np.full((height, width, 3), 255, dtype=np.uint8)
    picture[: height // 2] = 0  # top half black
    square = fit_square(picture, 140)
    assert square.shape == (140, 140, 3) and square.dtype == np.uint8
    drawn = (square != (240, 242, 246)).any(axis=2)  # the background is light grey
    rows, cols = np.nonzero(drawn)
    long, short = max(height, width), min(height, width)
    extent = sorted([np.ptp(rows) + 1, np.ptp(cols) + 1])
    assert extent[1] == 140 and abs(extent[0] - 140 * short / long) <= 2
    assert abs((rows.min() + rows.max()) / 2 - 69.5) <= 1 and abs((cols.min() + cols.max()) / 2 - 69.5) <= 1


def test_fit_square_shows_transparency_over_white_and_accepts_grey():
    ink_only_in_alpha = np.zeros((50, 50, 4), dtype=np.uint8)
    ink_only_in_alpha[20:30, 20:30, 3] = 255  # black strokes on a transparent page (the canvas's kind)
    square = fit_square(ink_only_in_alpha, 100)
    assert tuple(square[5, 5]) == (255, 255, 255) and tuple(square[50, 50]) == (0, 0, 0)
    assert fit_square(np.zeros((10, 20), dtype=np.uint8), 40).shape == (40, 40, 3)


def test_saliency_overlay_is_red_for_and_blue_against():
    image = np.zeros((28, 28), dtype=np.uint8)
    image[3, 3] = 255
    attribution = np.zeros((28, 28))
    attribution[5, 5], attribution[6, 6] = 1.0, -1.0
    overlay = saliency_overlay(image, attribution, scale=2)
    assert overlay.shape == (56, 56, 3) and overlay.dtype == np.uint8
    assert tuple(overlay[10, 10]) == (220, 38, 38) and tuple(overlay[12, 12]) == (37, 99, 235)
    assert tuple(overlay[0, 0]) == (255, 255, 255)  # no ink, no push: white paper
    assert len(set(overlay[6, 6])) == 1 and overlay[6, 6, 0] < 255  # ink without a push: grey
