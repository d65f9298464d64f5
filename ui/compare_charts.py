"""Plotly figures of a comparison of two models (mnist_core.compare): plain arrays in, figures out.

A is the baseline, B the model compared with it. The colours keep one meaning: blue where B does
better than A, red where it does worse; A's bars are grey, B's the app's indigo.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from ui.mistakes_charts import DIGITS, GREY_TEXT, INDIGO, _compact

BETTER, WORSE = "#2563eb", "#dc2626"
# White at no change, blue where B gains, red where it loses; the middle of the scale is 0.
DIVERGING = [[0.0, WORSE], [0.5, "#ffffff"], [1.0, BETTER]]


def per_digit_figure(a: np.ndarray, b: np.ndarray, names: tuple[str, ...] = DIGITS, noun: str = "digit") -> go.Figure:
    """Each class's accuracy under A and under B, side by side; the y axis starts just below the
    worst bar, so the differences show (the axis title says where it starts)."""
    classes = list(range(len(a)))
    figure = go.Figure()
    for values, label, colour in ((a, "A (baseline)", "#c7cad1"), (b, "B", INDIGO)):
        figure.add_bar(x=classes, y=values, name=label, marker_color=colour,
                       customdata=list(names), hovertemplate=f"{label}, %{{customdata}}: %{{y:.2f}} %<extra></extra>")
    low = max(0.0, float(np.floor(min(np.min(a), np.min(b)))) - 1)
    figure.update_yaxes(range=[low, 100.5], title=f"accuracy % (axis from {low:.0f})", gridcolor="#f1f1f4")
    figure.update_xaxes(tickmode="array", tickvals=classes, ticktext=list(names), title=f"true {noun}")
    figure = _compact(figure, 300, f"Accuracy per {noun}: A and B")
    figure.update_layout(showlegend=True, barmode="group",
                         legend=dict(orientation="h", yanchor="bottom", y=-0.45, x=0))
    return figure


def confusion_change_figure(change: np.ndarray, names: tuple[str, ...] = DIGITS, noun: str = "digit") -> go.Figure:
    """B's confusion counts minus A's. Off the diagonal, fewer mistakes are blue and more are red;
    on it (right answers) more is blue. Unchanged cells stay white and blank."""
    change = np.asarray(change, dtype=float)
    classes = list(range(change.shape[0]))
    diagonal = np.eye(len(classes), dtype=bool)
    better = np.where(diagonal, change, -change)  # positive: B does better in this cell
    limit = max(1.0, float(np.abs(better).max()))
    text = np.where(change == 0, "", np.vectorize(lambda v: f"{v:+.0f}")(change))
    true_grid, predicted_grid = np.meshgrid(classes, classes, indexing="ij")
    hover = np.vectorize(
        lambda t, p, v: f"true {names[t]}, predicted {names[p]}: {v:+.0f} images under B")(true_grid, predicted_grid,
                                                                                            change)
    figure = go.Figure(go.Heatmap(
        z=better, x=classes, y=classes, zmin=-limit, zmax=limit, colorscale=DIVERGING, showscale=False,
        text=text, texttemplate="%{text}", textfont=dict(size=12), customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", xgap=2, ygap=2,
    ))
    axis = dict(tickmode="array", tickvals=classes, ticktext=list(names), showgrid=False, zeroline=False)
    figure.update_xaxes(title=f"predicted {noun}", side="top", constrain="domain", **axis)
    figure.update_yaxes(title=f"true {noun}", autorange="reversed", scaleanchor="x", constrain="domain", **axis)
    figure.update_layout(dragmode=False, font=dict(color="#374151"))
    figure = _compact(figure, 430, "")
    figure.add_annotation(text="blue: B better · red: B worse", showarrow=False, xref="paper", yref="paper",
                          x=0, y=-0.04, yanchor="top", font=dict(size=11, color=GREY_TEXT))
    return figure
