"""Plotly figures and small pure helpers for the Mistakes page.

Everything here takes plain numpy arrays and returns figures or numbers, so it can be
tested without Streamlit or a model.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from PIL import Image

INDIGO = "#4f46e5"  # the app's primary colour (.streamlit/config.toml)
MUTED = "#c7cad1"
GREY_TEXT = "#9ca3af"
RED = "#dc2626"
RED_RGB, BLUE_RGB = (220, 38, 38), (37, 99, 235)
# Light to strong red: a cell with a single mistake is still visibly tinted.
ERROR_SCALE = [[0.0, "#fde8e8"], [0.35, "#f8a5a5"], [1.0, "#b91c1c"]]
PER_PAGE = 24


def page_bounds(total: int, page: int, per_page: int = PER_PAGE) -> tuple[int, int, int]:
    """(start, stop, page count) of a 0-based page, clamped so a stale page number never shows nothing."""
    pages = max(1, -(-total // per_page))
    page = min(max(page, 0), pages - 1)
    return page * per_page, min(total, (page + 1) * per_page), pages


def clicked_cell(points: list[dict]) -> tuple[int, int] | None:
    """(true, predicted) of the confusion cell a chart selection points at; None off the diagonal's mistakes.

    Correct predictions (the diagonal) are not mistakes, so clicking them filters nothing.
    """
    if not points or "x" not in points[0] or "y" not in points[0]:
        return None
    true_class, predicted_class = int(points[0]["y"]), int(points[0]["x"])
    return None if true_class == predicted_class else (true_class, predicted_class)


def thumbnail(image: np.ndarray, scale: int = 3) -> np.ndarray:
    """A 28x28 uint8 digit as dark ink on white paper, enlarged with sharp (nearest) pixels."""
    ink = 255 - np.asarray(image, dtype=np.uint8)
    return ink.repeat(scale, axis=0).repeat(scale, axis=1)


def fit_square(image: np.ndarray, side: int, background: tuple[int, int, int] = (240, 242, 246)) -> np.ndarray:
    """A picture of any shape scaled (keeping its proportions) into a side x side RGB uint8 square.

    It is centred on a light grey background, so its own edges show even when it is white
    paper; transparent parts are shown over white, as a browser shows them on the page.
    Small pictures are enlarged with sharp pixels, big ones shrunk smoothly.
    """
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if picture.mode in ("RGBA", "LA"):
        paper = Image.new("RGBA", picture.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(paper, picture.convert("RGBA"))
    picture = picture.convert("RGB")
    scale = side / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.LANCZOS)
    square = Image.new("RGB", (side, side), background)
    square.paste(picture, ((side - size[0]) // 2, (side - size[1]) // 2))
    return np.asarray(square)


def _compact(figure: go.Figure, height: int, title: str) -> go.Figure:
    figure.update_layout(
        title=dict(text=title, font=dict(size=15)),
        height=height,
        margin=dict(l=10, r=10, t=40, b=10),
        plot_bgcolor="white",
        showlegend=False,
    )
    return figure


DIGITS = tuple(str(digit) for digit in range(10))


def per_class_accuracy_figure(
    per_class: np.ndarray, class_sizes: np.ndarray, names: tuple[str, ...] = DIGITS, noun: str = "digit"
) -> go.Figure:
    """Accuracy of each true class; the y axis starts near the worst class so differences show,
    and its title says where it starts."""
    per_class = np.asarray(per_class, dtype=float)
    classes = list(range(len(per_class)))
    worst = int(per_class.argmin())
    figure = go.Figure(
        go.Bar(
            x=classes,
            y=per_class,
            marker_color=[INDIGO if c == worst else "#a5b4fc" for c in classes],
            text=[f"{value:.1f}" for value in per_class],
            textposition="outside",
            customdata=np.column_stack([np.asarray(class_sizes), names]),
            hovertemplate="%{customdata[1]}: %{y:.2f} % of %{customdata[0]} images<extra></extra>",
        )
    )
    low = max(0.0, np.floor(per_class.min()) - 2)
    # Said on the axis: bars that start at 96 % would otherwise read as a model that gets a third wrong.
    figure.update_yaxes(range=[low, 100.9], title=f"accuracy % (axis from {low:.0f})", gridcolor="#f1f1f4")
    figure.update_xaxes(tickmode="array", tickvals=classes, ticktext=list(names), title=f"true {noun}")
    return _compact(figure, 300, f"Accuracy per {noun}")


def confusion_figure(
    confusion: np.ndarray, true_class: int | None = None, predicted_class: int | None = None,
    names: tuple[str, ...] = DIGITS, noun: str = "digit",
) -> go.Figure:
    """Counts heatmap, rows = true class, columns = predicted class.

    The diagonal (correct predictions, ~1,000 each) would swamp the colour scale, so it is left
    out of the colour data and only annotated in grey: the colour goes to the mistakes. An
    invisible marker on every cell makes cells clickable, which Streamlit does not support on
    heatmaps themselves. The current filter is outlined.
    """
    counts = np.asarray(confusion)
    classes = list(range(counts.shape[0]))
    diagonal = np.eye(len(classes), dtype=bool)
    mistakes = counts.astype(float)
    mistakes[diagonal | (counts == 0)] = np.nan  # empty cells stay blank instead of faint red
    mistake_text = np.where(~diagonal & (counts > 0), counts.astype(str), "")
    correct_text = np.where(diagonal, counts.astype(str), "")

    figure = go.Figure()
    figure.add_heatmap(  # pale tiles under every cell; the diagonal a shade darker, with grey counts
        z=diagonal.astype(float), x=classes, y=classes, colorscale=[[0, "#f8f9fb"], [1, "#eceef2"]],
        showscale=False, text=correct_text, texttemplate="%{text}", textfont=dict(color=GREY_TEXT, size=11),
        hoverinfo="skip", xgap=2, ygap=2, name="correct",
    )
    figure.add_heatmap(
        z=mistakes, x=classes, y=classes, colorscale=ERROR_SCALE, zmin=0, showscale=False,
        text=mistake_text, texttemplate="%{text}", textfont=dict(size=12),
        hoverinfo="skip", xgap=2, ygap=2, name="mistakes",
    )
    true_grid, predicted_grid = np.meshgrid(classes, classes, indexing="ij")
    figure.add_scatter(
        x=predicted_grid.ravel(), y=true_grid.ravel(), mode="markers", name="cells",
        marker=dict(symbol="square", size=26, opacity=0),
        selected=dict(marker=dict(opacity=0)), unselected=dict(marker=dict(opacity=0)),
        customdata=counts.ravel(),
        text=[f"true {names[t]}, predicted {names[p]}" for t, p in zip(true_grid.ravel(), predicted_grid.ravel())],
        hovertemplate="%{text}: %{customdata} images<extra></extra>",
    )
    if true_class is not None or predicted_class is not None:
        low, high = -0.5, len(classes) - 0.5
        figure.add_shape(
            type="rect", line=dict(color=INDIGO, width=2.5),
            x0=low if predicted_class is None else predicted_class - 0.5,
            x1=high if predicted_class is None else predicted_class + 0.5,
            y0=low if true_class is None else true_class - 0.5,
            y1=high if true_class is None else true_class + 0.5,
        )
    axis = dict(tickmode="array", tickvals=classes, ticktext=list(names), showgrid=False, zeroline=False)
    figure.update_xaxes(title=f"predicted {noun}", side="top", constrain="domain", **axis)
    figure.update_yaxes(title=f"true {noun}", autorange="reversed", scaleanchor="x", constrain="domain", **axis)
    figure.update_layout(dragmode=False, hovermode="closest")
    return _compact(figure, 470, "")


def probabilities_figure(
    probabilities: np.ndarray, true_class: int, predicted_class: int, names: tuple[str, ...] = DIGITS,
    noun: str = "digit",
) -> go.Figure:
    """The model's probability for each class: the prediction in red, the right answer in indigo.

    One bar trace per colour, so a legend above the plot names them; the other classes stay
    grey and out of the legend. Clicking the legend hides nothing: every bar stays in view.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    classes = np.arange(len(probabilities))
    if true_class == predicted_class:
        groups = [(f"prediction = truth: {names[predicted_class]}", RED, classes == predicted_class)]
    else:
        groups = [(f"truth: {names[true_class]}", INDIGO, classes == true_class),
                  (f"prediction: {names[predicted_class]}", RED, classes == predicted_class)]
    others = ~np.isin(classes, [true_class, predicted_class])
    figure = go.Figure()
    for name, colour, chosen in [*groups, (f"other {noun}es" if noun.endswith("s") else f"other {noun}s", MUTED, others)]:
        shown = probabilities[chosen]
        figure.add_bar(
            x=classes[chosen], y=shown * 100, name=name, marker_color=colour, showlegend=colour != MUTED,
            text=[f"{p:.0%}" if p >= 0.005 else "" for p in shown], textposition="outside", cliponaxis=False,
            customdata=np.asarray(names)[chosen], hovertemplate="%{customdata}: %{y:.2f} %<extra></extra>",
        )
    figure.update_yaxes(range=[0, 112], title="probability %", gridcolor="#f1f1f4")
    figure.update_xaxes(tickmode="array", tickvals=list(classes), ticktext=list(names), title=noun,
                        range=[-0.6, len(classes) - 0.4])
    _compact(figure, 290, "What the model thought")
    figure.update_layout(
        barmode="overlay",  # one trace per x: bars stay centred on their digit, not grouped side by side
        showlegend=True,
        # A row of its own between the title and the plot, left-aligned, so it fits a phone's width.
        legend=dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom", font=dict(size=13),
                    itemclick=False, itemdoubleclick=False, traceorder="normal"),
        margin=dict(t=70),
        title=dict(y=0.97, yanchor="top"),
    )
    return figure


def saliency_overlay(image: np.ndarray, attribution: np.ndarray, scale: int = 8) -> np.ndarray:
    """RGB uint8 picture of a saliency map: the digit in light grey, red where pixels pushed the model
    toward the explained class, blue where they pushed against it, stronger colour for stronger pushes."""
    ink = np.asarray(image, dtype=float) / 255
    paper = np.repeat((1 - 0.35 * ink)[..., None], 3, axis=2)  # light grey ink: the colour on top stays readable
    attribution = np.clip(np.asarray(attribution, dtype=float), -1, 1)
    # A power below 1 lifts the weaker pixels, which the single strongest one would otherwise wash out.
    strength = (np.abs(attribution) ** 0.6)[..., None]
    colour = np.where(attribution[..., None] > 0, np.array(RED_RGB), np.array(BLUE_RGB)) / 255
    rgb = np.round((paper * (1 - strength) + colour * strength) * 255).astype(np.uint8)
    return rgb.repeat(scale, axis=0).repeat(scale, axis=1)
