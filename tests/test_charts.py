"""The Train page's curves: what a one-epoch run (the fast preset) shows."""

import pytest

from mnist_core.events import EpochEnd, Progress
from ui.charts import validation_figure


def test_one_epoch_run_writes_its_accuracy_and_keeps_the_loss_axis_honest():
    figure = validation_figure([EpochEnd(1, 0.9, 0.28, 98.97, 3.7)], epochs=1)
    accuracy, loss = figure.data
    assert list(accuracy.text) == ["98.97 %"] and list(loss.y) == [0.28]
    assert figure.layout.yaxis2.range[0] == 0 < 0.28 < figure.layout.yaxis2.range[1]  # no negative losses
    assert figure.layout.xaxis.range[1] > 1  # the point is not cut by the right edge
    assert figure.layout.xaxis.dtick == 1  # whole epochs, not 0.5


def test_only_the_latest_accuracy_is_labelled():
    ends = [EpochEnd(epoch, 0.5, 0.1, 97 + epoch / 20, 1.0) for epoch in range(1, 31)]
    figure = validation_figure(ends, epochs=30)
    assert list(figure.data[0].text) == [""] * 29 + ["98.50 %"]
    assert figure.layout.xaxis.dtick == 4


def test_the_latest_accuracy_label_stays_off_the_line():
    rising = [EpochEnd(1, 0.5, 0.2, 97.0, 1.0), EpochEnd(2, 0.4, 0.1, 98.0, 1.0)]
    falling = [*rising, EpochEnd(3, 0.4, 0.1, 97.5, 1.0)]
    assert validation_figure(rising, epochs=3).data[0].textposition == "top left"  # the line comes from below
    assert validation_figure(falling, epochs=3).data[0].textposition == "bottom left"  # the line comes from above
    # The loss axis picks its own round ticks (Streamlit's theme would sync them to the accuracy grid).
    assert validation_figure(falling, epochs=3).layout.yaxis2.tickmode == "auto"


def test_the_loss_chart_before_its_first_point_has_no_negative_axis_and_says_what_comes():
    from ui.charts import training_loss_figure

    empty = training_loss_figure([], epochs=1)
    assert tuple(empty.layout.yaxis.range) == (0, 2.5) and empty.layout.yaxis.showticklabels is False
    assert "a few seconds into training" in empty.layout.annotations[0].text
    drawn = training_loss_figure([Progress(1, 1, 10, 2.3, 1000.0, 0.1), Progress(1, 2, 10, 1.9, 1000.0, 0.2)], 1)
    assert drawn.layout.yaxis.range[0] == 0 and not drawn.layout.annotations


def test_a_spike_does_not_flatten_the_loss_chart_and_label_smoothing_shows_its_floor():
    from mnist_core.config import lowest_loss
    from ui.charts import smooth, training_loss_figure

    losses = [2.3, 1.2, 10.0, 0.9, 0.6, 0.5, 0.45, 0.4] + [0.35] * 40  # one wild step, as the case study has
    events = [Progress(1, step, 48, loss, 1000.0, step / 10) for step, loss in enumerate(losses, start=1)]
    figure = training_loss_figure(events, 1)
    low, high = figure.layout.yaxis.range
    assert low == 0 and high == pytest.approx(max(smooth(losses)) * 1.15) and high < 10
    assert lowest_loss(0.0) == 0.0 and lowest_loss(0.2) == pytest.approx(0.867, abs=1e-3)
    smoothed = training_loss_figure(events, 1, label_smoothing=0.2)
    (floor,) = [shape for shape in smoothed.layout.shapes if shape.type == "line"]
    assert floor.y0 == pytest.approx(lowest_loss(0.2))
    assert "lowest possible with label smoothing 0.2" in smoothed.layout.annotations[0].text
