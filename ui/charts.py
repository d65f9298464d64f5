"""Plotly figures for training curves: one run live, or several runs overlaid."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from mnist_core.config import lowest_loss
from mnist_core.events import EpochEnd, Event, Progress

GREY = "#6b7280"
PALETTE = ["#4f46e5", "#e11d48", "#059669", "#d97706", "#0891b2", "#7c3aed", "#65a30d", "#db2777"]


def smooth(values, weight: float = 0.85) -> np.ndarray:
    """Exponential moving average, debiased at the start (as TensorBoard does)."""
    smoothed, average = np.empty(len(values)), 0.0
    for count, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        smoothed[count - 1] = average / (1 - weight**count)
    return smoothed


# No toolbar over the charts: on a phone it covers their titles. Dragging still zooms, and a
# double click (a double tap) goes back to the whole chart.
CHART_CONFIG = {"displayModeBar": False}
MAX_POINTS = 600  # per line: more is invisible on screen and slows every live redraw


def loss_points(events: list[Event]) -> tuple[np.ndarray, np.ndarray]:
    """(x in fractional epochs, training loss) of every Progress event, thinned to MAX_POINTS.

    numpy arrays, not lists: Plotly validates and serialises them many times faster.
    """
    progress = [e for e in events if isinstance(e, Progress)]
    x = np.array([e.epoch - 1 + e.step / e.steps_per_epoch for e in progress])
    loss = np.array([e.loss for e in progress])
    if len(x) > MAX_POINTS:  # average neighbours rather than skip them, so spikes still count
        groups = np.array_split(np.arange(len(x)), MAX_POINTS)
        x = np.array([x[g[-1]] for g in groups])
        loss = np.array([loss[g].mean() for g in groups])
    return x, loss


def _layout(figure: go.Figure, title: str, y_title: str, epochs: int | None) -> go.Figure:
    figure.update_layout(
        title=dict(text=title, font=dict(size=15)),
        height=320,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="epoch",
        yaxis_title=y_title,
        legend=dict(orientation="h", yanchor="top", y=-0.28, xanchor="left", x=0),  # below: titles stay readable
        uirevision="keep",  # keep zoom and hidden traces while new points arrive
        hovermode="x unified",
    )
    if epochs:
        figure.update_xaxes(range=[0, epochs])
    return figure


def training_loss_figure(events: list[Event], epochs: int | None = None, label_smoothing: float = 0.0) -> go.Figure:
    """The training loss per step (faint) and smoothed. The axis goes from 0 to a little above the
    smoothed curve's highest point, so the first steps' spikes do not flatten the rest. With label
    smoothing, a dashed line marks the lowest loss it allows (`config.lowest_loss`)."""
    x, loss = loss_points(events)
    smoothed = smooth(loss)
    figure = go.Figure()
    figure.add_scatter(x=x, y=loss, mode="lines", name="per step", line=dict(color=PALETTE[0], width=1), opacity=0.3)
    figure.add_scatter(x=x, y=smoothed, mode="lines", name="smoothed", line=dict(color=PALETTE[0], width=2.5))
    floor = lowest_loss(label_smoothing)
    if floor:
        figure.add_hline(y=floor, line=dict(color=GREY, width=1, dash="dash"),
                         annotation_text=f"lowest possible with label smoothing {label_smoothing:g}",
                         annotation_position="bottom right", annotation_font=dict(size=11, color=GREY))
    if len(x):
        figure.update_yaxes(range=[0, max(float(np.max(smoothed)), floor) * 1.15])  # cross-entropy is never negative
    else:  # no point yet: say so, rather than draw an axis from -1 to 4 with nothing on it
        figure.add_annotation(text="Appears a few seconds into training", showarrow=False, x=0.5, y=0.5,
                              xref="paper", yref="paper", font=dict(color="#888", size=14))
        figure.update_yaxes(range=[0, 2.5], showticklabels=False)
    return _layout(figure, "Training loss", "cross-entropy", epochs)


def validation_figure(events: list[Event], epochs: int | None = None) -> go.Figure:
    """Validation accuracy (left axis) and loss (right axis) after each epoch."""
    ends = [e for e in events if isinstance(e, EpochEnd)]
    x = [e.epoch for e in ends]
    figure = go.Figure()
    # The latest accuracy is written beside its point: a one-epoch run has nothing else to read.
    # Above the point when the line climbs into it from below, else below it, so it never sits on the line.
    labels = [""] * (len(ends) - 1) + [f"{ends[-1].val_accuracy:.2f} %"] if ends else []
    climbing = len(ends) > 1 and ends[-1].val_accuracy >= ends[-2].val_accuracy
    figure.add_scatter(x=x, y=[e.val_accuracy for e in ends], mode="lines+markers+text", name="accuracy %",
                       text=labels, textposition="top left" if climbing else "bottom left", cliponaxis=False,
                       line=dict(color=PALETTE[2], width=2.5))
    figure.add_scatter(x=x, y=[e.val_loss for e in ends], mode="lines+markers", name="loss", yaxis="y2",
                       line=dict(color=PALETTE[1], width=2, dash="dot"))
    # Loss from zero, with headroom: with one point, autoscaling would centre it on the accuracy
    # point and invent negative losses. Streamlit's theme syncs a second axis's ticks to the
    # first one's grid (0.056, 0.128, ...); its own round ticks read better.
    top = max((e.val_loss for e in ends), default=1.0) * 1.2
    figure.update_layout(yaxis2=dict(title="loss", overlaying="y", side="right", showgrid=False, range=[0, top],
                                     tickmode="auto", nticks=5))
    if not ends:
        figure.add_annotation(text="Appears after the first epoch", showarrow=False, x=0.5, y=0.5,
                              xref="paper", yref="paper", font=dict(color="#888", size=14))
        figure.update_yaxes(showticklabels=False)
    figure = _layout(figure, "Validation after each epoch (10,000 images)", "accuracy %", epochs)
    last = epochs or len(ends) or 1
    # Whole epochs only, and a little room right of the last one so its markers are not cut.
    return figure.update_xaxes(dtick=max(1, round(last / 8)), range=[0, last + 0.02 * last + 0.1])


def compare_figures(runs: dict[str, list[Event]]) -> tuple[go.Figure, go.Figure]:
    """Smoothed training loss and validation accuracy of several runs, one colour per run."""
    loss, accuracy = go.Figure(), go.Figure()
    for index, (name, events) in enumerate(runs.items()):
        color = PALETTE[index % len(PALETTE)]
        x, values = loss_points(events)
        loss.add_scatter(x=x, y=smooth(values), mode="lines", name=name, line=dict(color=color, width=2))
        ends = [e for e in events if isinstance(e, EpochEnd)]
        accuracy.add_scatter(x=[e.epoch for e in ends], y=[e.val_accuracy for e in ends], mode="lines+markers",
                             name=name, line=dict(color=color, width=2))
    return (_layout(loss, "Training loss (smoothed)", "cross-entropy", None),
            _layout(accuracy, "Validation accuracy", "accuracy %", None))
