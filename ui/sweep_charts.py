"""The Sweep tab's leaderboard rows and figures: trials' summaries and events in, rows and Plotly figures out."""

from __future__ import annotations

import math

import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from mnist_core.events import EpochEnd, Event
from mnist_core.runs import RunSummary

COLORSCALE = "Viridis"  # dark for the worst trial, yellow for the best; readable on white and for colour-blind eyes
LOG_RATIO = 10  # a setting whose values span this factor or more gets a log axis (learning rates, batch sizes)
MAX_TICKS = 8  # up to this many distinct values are each labelled on their axis; more get a few round ticks


def leaderboard(summaries: list[RunSummary], numbers: list[int], names: list[str]) -> list[dict]:
    """One row per trial, best validation accuracy first (trials without one last, in trial order)."""
    rows = []
    for number, summary in zip(numbers, summaries):
        config = summary.config
        row = {"trial": number}
        row.update({name: getattr(config, name) if config is not None else None for name in names})
        row.update(
            {
                "state": summary.state,
                "best val acc %": summary.best_val_accuracy,
                "test acc %": summary.test_accuracy,
                "epochs": f"{summary.epochs_done}/{config.epochs}" if config is not None else "",
                "train s": round(summary.train_seconds, 1) if summary.train_seconds else None,
                "node": summary.node,
                # Last, so a long reason pushes no column away; a finished trial needs none.
                "note": summary.message if summary.state != "finished" else "",
            }
        )
        rows.append(row)
    for column in ("node", "note"):  # one machine, or nothing to note: the column would be empty
        if not any(row[column] for row in rows):
            for row in rows:
                del row[column]
    missing = [row for row in rows if row["best val acc %"] is None]
    ranked = sorted(
        (row for row in rows if row["best val acc %"] is not None),
        key=lambda row: (-row["best val acc %"], row["trial"]),
    )
    return ranked + missing


def _apart(points: list[float]) -> bool:
    """Whether labels at these sorted points clear each other: each gap at least 1/12 of the axis."""
    span = points[-1] - points[0]
    return all(b - a >= span / 12 for a, b in zip(points, points[1:]))


def _numeric_dimension(label: str, values: list[float]) -> dict:
    """A parallel axis for numbers: each value labelled when they are few and apart (a grid), else round
    ticks (sampled values); on a log scale, labelled with the real values, when they span a decade or more."""
    low, high = min(values), max(values)
    distinct = sorted(set(values))
    if low > 0 and high / low >= LOG_RATIO:
        if len(distinct) <= MAX_TICKS and _apart([math.log10(value) for value in distinct]):
            ticks = distinct
        else:  # 1, 3, 10, 30, ... times a power of ten, within the values' span
            decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
            ticks = [m * 10.0**e for e in decades for m in (1, 3) if low <= m * 10.0**e <= high] or [low, high]
        return dict(
            label=f"{label} (log)",
            values=[math.log10(value) for value in values],
            tickvals=[math.log10(tick) for tick in ticks],
            ticktext=[f"{tick:.3g}" for tick in ticks],
        )
    dimension = dict(label=label, values=values)
    if len(distinct) <= MAX_TICKS and _apart(distinct):  # otherwise Plotly's own round ticks
        dimension.update(tickvals=distinct, ticktext=[f"{value:.3g}" for value in distinct])
    if low == high:  # one value: give the axis some height, or Plotly draws every line through a point
        dimension["range"] = [low - 1, high + 1] if low == 0 else [low * 0.5, high * 1.5]
    return dimension


def _choice_dimension(label: str, values: list[str]) -> dict:
    """A parallel axis for choices (optimizer, model): each choice a tick, drawn as a number."""
    choices = sorted(set(values))
    return dict(
        label=label,
        values=[choices.index(value) for value in values],
        tickvals=list(range(len(choices))),
        ticktext=choices,
        range=[-0.5, len(choices) - 0.5],
    )


def parcoords_figure(summaries: list[RunSummary], names: list[str]) -> go.Figure:
    """The varied settings of every trial with a validation accuracy, against its best validation accuracy."""
    scored = [s for s in summaries if s.best_val_accuracy is not None and s.config is not None]
    dimensions = []
    for name in names:
        values = [getattr(s.config, name) for s in scored]
        if all(isinstance(value, str) for value in values):
            dimensions.append(_choice_dimension(name, values))
        else:
            dimensions.append(_numeric_dimension(name, [float(value) for value in values]))
    accuracy = [s.best_val_accuracy for s in scored]
    dimensions.append(dict(label="best val acc %", values=accuracy))
    figure = go.Figure(
        go.Parcoords(
            dimensions=dimensions,
            # No colour bar: the last axis is the scale, and on a phone a bar would cover its ticks.
            line=dict(color=accuracy, colorscale=COLORSCALE),
            labelangle=0,
            labelside="top",
            labelfont=dict(size=13),
            tickfont=dict(size=12),
            rangefont=dict(size=10, color="#888"),
        )
    )
    # Room above for the axis labels and either side for the outer axes' ticks; the tab says what this is.
    return figure.update_layout(height=340, margin=dict(l=50, r=50, t=50, b=20))


def final_accuracy(events: list[Event]) -> float | None:
    """The validation accuracy after the latest epoch, or None before the first."""
    ends = [e for e in events if isinstance(e, EpochEnd)]
    return ends[-1].val_accuracy if ends else None


def curves_figure(trials: list[tuple[str, list[Event]]]) -> go.Figure:
    """Every trial's validation accuracy per epoch, in one figure, each line coloured by its final accuracy.

    `trials` is (name, events) per trial; a trial without a finished epoch has no line yet."""
    drawn = [(name, events, final_accuracy(events)) for name, events in trials]
    drawn = [(name, events, final) for name, events, final in drawn if final is not None]
    figure = go.Figure()
    low = min((final for *_, final in drawn), default=0.0)
    high = max((final for *_, final in drawn), default=100.0)
    span = high - low or 1.0
    for index, (name, events, final) in enumerate(drawn):
        ends = [e for e in events if isinstance(e, EpochEnd)]
        color = sample_colorscale(COLORSCALE, [(final - low) / span if high > low else 1.0])[0]
        figure.add_scatter(
            x=[e.epoch for e in ends],
            y=[e.val_accuracy for e in ends],
            mode="lines+markers",
            name=name,
            line=dict(color=color, width=2),
            # The markers carry the scale, so the colour bar is drawn once, by the first trace.
            marker=dict(
                size=7,
                color=[final] * len(ends),
                colorscale=COLORSCALE,
                cmin=low,
                cmax=high,
                showscale=index == 0,
                colorbar=dict(title=dict(text="final val acc %", side="right"), thickness=12),
            ),
            hovertemplate=f"{name}<br>epoch %{{x}}: %{{y:.2f}} %<extra></extra>",
        )
    if not drawn:
        figure.add_annotation(
            text="Appears after a trial's first epoch",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
            font=dict(color="#888", size=14),
        )
        figure.update_yaxes(showticklabels=False)
    last = max((len([e for e in events if isinstance(e, EpochEnd)]) for _, events, _ in drawn), default=1)
    figure.update_layout(
        title=dict(text="Validation accuracy per epoch, every trial", font=dict(size=15)),
        height=340,
        margin=dict(l=10, r=10, t=40, b=10),
        showlegend=False,  # the colour and the hover say which
        xaxis_title="epoch",
        yaxis_title="accuracy %",
        hovermode="closest",
        uirevision="keep",
    )
    # Whole epochs, with room either side so a one-epoch sweep's points are not cut by the edges.
    return figure.update_xaxes(dtick=max(1, round(last / 8)), range=[0.5, last + 0.5])
