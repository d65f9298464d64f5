"""Pictures and figures for the "inside the network" views: plain numpy in, RGB arrays or Plotly out.

A layer's feature maps become one composed picture (channels tiled in a grid, each scaled to
its own range, coloured through a numpy lookup table, enlarged with sharp pixels) rather than
one Plotly heatmap per channel: a 128-channel layer would otherwise be 128 charts, which the
browser takes seconds to draw, while one PNG takes a millisecond to make. Nothing here
imports Streamlit or touches a model, so it is tested on its own.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.colors import hex_to_rgb, qualitative, sequential

from ui.mistakes_charts import INDIGO, MUTED, RED

MAX_CHANNELS = 32  # the first 32 of a wider layer: more tiles would be too small to read in a panel
PANEL_WIDTH = 240  # pixels: a 32-channel grid of 28x28 maps fits at full size; three panels a row on a laptop
GAP = 2  # pixels of white between tiles
MAX_PICTURE_HEIGHT = 240  # pixels: a taller grid would make the whole strip tall
GAP_COLOUR = (255, 255, 255)
FILTER_GAP_COLOUR = (107, 114, 128)  # grey: white lines would vanish against the white of zero weights
# One hue per digit: D3's ten (Category10). Tableau 10 was tried first, but its 2 (red) and 7
# (pink) looked alike, and 2 and 7 are often confused digits, side by side on the map.
DIGIT_COLOURS = list(qualitative.D3)


def _lookup(stops: list[str]) -> np.ndarray:
    """A 256 x 3 uint8 colour table interpolated through Plotly's colour stops."""
    rgb = np.array([hex_to_rgb(stop) if stop.startswith("#") else _rgb(stop) for stop in stops], dtype=float)
    where = np.linspace(0, 1, len(stops))
    steps = np.linspace(0, 1, 256)
    return np.stack([np.interp(steps, where, rgb[:, channel]) for channel in range(3)], 1).round().astype(np.uint8)


def _rgb(text: str) -> tuple[int, int, int]:
    return tuple(int(part) for part in text[text.index("(") + 1 : text.index(")")].split(","))


VIRIDIS = _lookup(sequential.Viridis)  # perceptually even, readable in greyscale: activations (low to high)
BLUE_WHITE_RED = _lookup(["#2563eb", "#f7f7f7", "#dc2626"])  # weights: negative, zero, positive


def colour(values: np.ndarray, table: np.ndarray = VIRIDIS) -> np.ndarray:
    """0..1 values of any shape -> RGB uint8 of that shape + 3, through a colour table."""
    return table[np.clip(np.nan_to_num(values) * 255, 0, 255).round().astype(np.intp)]


def scale_each(maps: np.ndarray) -> np.ndarray:
    """C x H x W -> 0..1, each channel stretched to its own range (a flat channel stays 0)."""
    maps = np.asarray(maps, dtype=np.float32)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


def centre_each(weights: np.ndarray) -> np.ndarray:
    """C x H x W -> 0..1 with zero at 0.5, each channel scaled by its own largest magnitude, so the
    sign of a weight shows as its colour (blue negative, red positive)."""
    weights = np.asarray(weights, dtype=np.float32)
    reach = np.abs(weights).max(axis=(1, 2), keepdims=True)
    return 0.5 + 0.5 * np.divide(weights, reach, out=np.zeros_like(weights), where=reach > 0)


def grid_layout(
    count: int, height: int, width: int, panel: int = PANEL_WIDTH, most_height: int = MAX_PICTURE_HEIGHT
) -> tuple[int, int]:
    """(tiles per row, whole enlargement factor) for `count` maps of height x width in a panel.

    The largest tiles that fit the panel's width without the grid growing taller than
    `most_height`; where no layout is that short, the shortest one."""
    layouts = []
    for columns in (1, 2, 4, 8, 16, 32):
        if columns >= 2 * count:  # one row holds them all already
            break
        factor = (panel - (columns - 1) * GAP) // (columns * width)
        if factor < 1:
            break
        rows = -(-count // columns)
        layouts.append((rows * (height * factor + GAP) - GAP, factor, columns))
    if not layouts:  # wider than the panel even at one tile per row: one row, natural size
        return count, 1
    short = [layout for layout in layouts if layout[0] <= most_height]
    _, factor, columns = max(short, key=lambda layout: layout[1]) if short else min(layouts)
    return columns, factor


def tile(
    pictures: np.ndarray, columns: int, factor: int = 1, gap_colour: tuple[int, int, int] = GAP_COLOUR
) -> np.ndarray:
    """N x H x W x 3 uint8 pictures, each enlarged `factor` times (sharp pixels), in a grid with
    GAP-pixel lines between them."""
    pictures = pictures.repeat(factor, axis=1).repeat(factor, axis=2)
    count, height, width, _ = pictures.shape
    rows = -(-count // columns)
    sheet = np.empty((rows * (height + GAP) - GAP, columns * (width + GAP) - GAP, 3), dtype=np.uint8)
    sheet[:] = gap_colour
    for number, picture in enumerate(pictures):
        row, column = divmod(number, columns)
        top, left = row * (height + GAP), column * (width + GAP)
        sheet[top : top + height, left : left + width] = picture
    return sheet


def enlarge(picture: np.ndarray, width: int = PANEL_WIDTH) -> np.ndarray:
    """Enlarged by the largest whole factor that fits `width`: sharp pixels, never blurred."""
    factor = max(1, width // picture.shape[1])
    return picture.repeat(factor, axis=0).repeat(factor, axis=1)


def tiled(values: np.ndarray, table: np.ndarray, gap_colour: tuple[int, int, int] = GAP_COLOUR) -> np.ndarray:
    """C x H x W values in 0..1 -> one picture: coloured, enlarged and tiled to fit a panel."""
    columns, factor = grid_layout(*values.shape)
    return tile(colour(values, table), columns, factor, gap_colour)


def feature_maps_picture(maps: np.ndarray, limit: int = MAX_CHANNELS) -> tuple[np.ndarray, int]:
    """A C x H x W layer output as one picture of its first `limit` channels; (picture, channels shown)."""
    shown = np.asarray(maps)[:limit]
    return tiled(scale_each(shown), VIRIDIS), len(shown)


def filters_picture(weights: np.ndarray, limit: int = MAX_CHANNELS) -> tuple[np.ndarray, int, str]:
    """A convolution's weights (out, in, kh, kw) as one picture of its first `limit` filters.

    A filter over one input channel is shown as it is; one over several is shown summed over
    them, which is what it responds to when all its inputs agree. Returns (picture, filters
    shown, a note saying which)."""
    weights = np.asarray(weights)[:limit]
    inputs = weights.shape[1]
    flat = weights[:, 0] if inputs == 1 else weights.sum(axis=1)
    note = "one input channel" if inputs == 1 else f"summed over its {inputs} input channels"
    return tiled(centre_each(flat), BLUE_WHITE_RED, FILTER_GAP_COLOUR), len(flat), note


BAR_HEIGHT = 72  # pixels, each half (above and below zero) of a bar picture
MAX_BARS = 160  # longer vectors (a flattened layer) are drawn as a grid of coloured cells instead


def bars_picture(values: np.ndarray, height: int = BAR_HEIGHT, width: int = PANEL_WIDTH) -> np.ndarray:
    """A vector as a bar chart picture: indigo bars up for positive values, red down for negative,
    all on one scale, with a grey zero line. Drawn in numpy: instant, no chart to lay out."""
    values = np.asarray(values, dtype=np.float32).ravel()
    reach = float(np.abs(values).max()) or 1.0
    bar = max(1, width // len(values))
    has_negative = bool((values < 0).any())
    below = height // 2 if has_negative else 0
    above = height - below
    canvas = np.full((height + 1, bar * len(values), 3), 255, dtype=np.uint8)
    zero = above  # the row of the zero line
    for number, value in enumerate(values):
        left, right = number * bar, (number + 1) * bar - (1 if bar > 2 else 0)  # a gap between wide bars
        size = round(abs(value) / reach * (above if value >= 0 else below))
        if value >= 0:
            canvas[zero - size : zero, left:right] = hex_to_rgb(INDIGO)
        else:
            canvas[zero + 1 : zero + 1 + size, left:right] = hex_to_rgb(RED)
    canvas[zero] = hex_to_rgb(MUTED)
    return canvas


def cells_picture(values: np.ndarray, width: int = PANEL_WIDTH) -> np.ndarray:
    """A long vector as a grid of coloured cells (viridis, one scale for all), row after row."""
    values = np.asarray(values, dtype=np.float32).ravel()
    columns = int(np.ceil(np.sqrt(len(values) * 2)))  # about twice as wide as tall
    cells = np.full(-(-len(values) // columns) * columns, np.nan, dtype=np.float32)
    cells[: len(values)] = values
    low, high = float(values.min()), float(values.max())
    scaled = (cells - low) / (high - low) if high > low else np.zeros_like(cells)
    picture = colour(scaled.reshape(-1, columns))
    picture[np.isnan(cells).reshape(-1, columns)] = GAP_COLOUR  # the unused end of the last row
    return enlarge(picture, width)


def probability_bars_figure(chances: np.ndarray) -> go.Figure:
    """The final probabilities, the predicted class in indigo: a small, static chart. The classes
    are numbered 0-9 (Fashion-MNIST's names would not fit under a panel's bars)."""
    chances = np.asarray(chances, dtype=float)
    predicted = int(chances.argmax())
    classes = list(range(len(chances)))
    figure = go.Figure(
        go.Bar(
            x=classes,
            y=chances,
            marker_color=[INDIGO if c == predicted else MUTED for c in classes],
            text=[f"{p:.0%}" if c == predicted else "" for c, p in enumerate(chances)],
            textposition="outside",
            cliponaxis=False,
        )
    )
    figure.update_layout(height=150, margin=dict(l=0, r=0, t=18, b=0), plot_bgcolor="white", showlegend=False)
    figure.update_yaxes(range=[0, 1], visible=False)
    figure.update_xaxes(tickmode="linear", tickfont=dict(size=11), fixedrange=True)
    return figure


STAR_NAME = "your drawing"


def embedding_figure(
    xy: np.ndarray,
    labels: np.ndarray,
    predictions: np.ndarray,
    confidences: np.ndarray,
    shown: np.ndarray,
    names: tuple[str, ...],
    star: tuple[float, float] | None = None,
    star_name: str = STAR_NAME,
    nearest: np.ndarray | None = None,
    height: int = 520,
) -> go.Figure:
    """The map: the `shown` points (dataset indices) coloured by true class, mistakes as rings.

    One WebGL trace per class and kind (right, wrong), so the legend names the classes: a click
    on a class hides its points, a click on "mistake (ring)" hides the rings. Every point carries its dataset index as customdata[0], which
    is what a selection reports. `star` is a new image's place ("your drawing"), `nearest` the
    test images closest to it, circled in black.
    """
    shown = np.asarray(shown, dtype=np.int64)
    wrong = predictions[shown] != labels[shown]
    figure = go.Figure()
    for digit in range(len(names)):
        for mistaken in (False, True):
            chosen = shown[(labels[shown] == digit) & (wrong == mistaken)]
            if not len(chosen):  # Plotly leaves an empty trace out of the legend anyway
                continue
            marker = (
                dict(symbol="circle-open", size=9, line=dict(width=1.5), color=DIGIT_COLOURS[digit])
                if mistaken
                else dict(size=4, color=DIGIT_COLOURS[digit], opacity=0.75)
            )
            read_as = "%{text}" if mistaken else names[digit]
            # The digit's legend entry goes with its right answers; under "Mistakes only" there are
            # none, and the rings carry it, so the colours are still named.
            only_rings = mistaken and not ((labels[shown] == digit) & ~wrong).any()
            figure.add_scattergl(
                x=xy[chosen, 0],
                y=xy[chosen, 1],
                mode="markers",
                marker=marker,
                # A click selects a point; the others keep their look (Plotly would fade them).
                unselected=dict(marker=dict(opacity=marker.get("opacity", 1.0))),
                name=names[digit] if only_rings or not mistaken else f"{names[digit]} (mistakes)",
                legendgroup=str(digit) if only_rings or not mistaken else "mistakes",
                showlegend=only_rings or not mistaken,
                customdata=np.column_stack([chosen, confidences[chosen]]),
                text=[names[p] for p in predictions[chosen]] if mistaken else None,
                hovertemplate=f"image %{{customdata[0]}}<br>true {names[digit]}, read as {read_as}"
                "<br>%{customdata[1]:.0%} sure<extra></extra>",
            )
    if len(shown) and wrong.any():  # the rings' legend entry, without points of its own
        figure.add_scattergl(
            x=[None],
            y=[None],
            mode="markers",
            name="mistake (ring)",
            legendgroup="mistakes",
            marker=dict(symbol="circle-open", size=9, line=dict(width=1.5), color="#555"),
        )
    if nearest is not None and len(nearest):
        figure.add_scattergl(
            x=xy[nearest, 0],
            y=xy[nearest, 1],
            mode="markers",
            name="nearest",
            marker=dict(symbol="circle-open", size=13, line=dict(width=2), color="#111"),
            customdata=np.column_stack([nearest, confidences[nearest]]),
            hovertemplate="image %{customdata[0]}: one of the nearest<extra></extra>",
        )
    if star is not None:
        figure.add_scattergl(
            x=[float(star[0])],
            y=[float(star[1])],
            mode="markers",
            name=star_name,
            marker=dict(symbol="star", size=24, color="#111", line=dict(width=1.5, color="white")),
            hovertemplate=f"{star_name}<extra></extra>",
        )
    figure.update_layout(
        height=height,
        margin=dict(l=0, r=0, t=8, b=0),
        plot_bgcolor="white",
        hovermode="closest",
        legend=dict(
            orientation="h", x=0, xanchor="left", y=1.0, yanchor="bottom", font=dict(size=13), itemsizing="constant"
        ),
        uirevision="map",  # keep the zoom when a filter or the selection changes
    )
    # t-SNE's axes have no meaning of their own: no ticks, no grid, one scale for both.
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, scaleanchor="x")
    return figure
