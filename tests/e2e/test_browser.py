"""The app in a real browser, used the way a person uses it."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from mnist_core.runs import Run, run_name, summarize
from tests.e2e.conftest import assert_no_errors, open_page, wait_idle

pytestmark = pytest.mark.e2e


# How many points the live training-loss chart shows (its first trace): the first chart of the
# Single run tab (the Sweep tab's charts come after it, and may be all there is while a run starts).
LOSS_POINTS = ("() => { const plot = document.querySelector('[role=\"tabpanel\"] .js-plotly-plot');"
               " return plot && plot._fullData && plot._fullData[0] ? plot._fullData[0].x.length : 0; }")


def loss_points(tab) -> int:
    return tab.evaluate(LOSS_POINTS)


def set_number(tab, label: str, value: int) -> None:
    field = tab.get_by_role("spinbutton", name=label)
    field.fill(str(value))
    field.press("Enter")
    wait_idle(tab)


@pytest.mark.parametrize("path, heading", [("", "Train"), ("mistakes", "Mistakes"), ("draw", "Draw"), ("inside", "Inside")])
def test_every_page_loads_without_errors(page, app_server, path, heading):
    open_page(page, app_server, path)
    page.get_by_role("heading", name=heading).first.wait_for()
    assert_no_errors(page)


def start_short_run(page, app_server, batch: int = 16, images: int = 20_000) -> None:
    """Open Train and start one epoch on the browser tests' 20,000 training images: about 4 s on
    2 cores at batch 16, long enough to see the progress line move; about twice that at batch 8.
    Fewer `images` make it shorter still."""
    open_page(page, app_server)
    set_number(page, "Epochs", 1)
    set_number(page, "Batch size", batch)
    page.get_by_text("More settings").click()
    set_number(page, "Train on the first N images only (0 = all 60,000)", images)
    page.get_by_role("button", name="Start training").click()


def test_a_short_run_ends_in_its_summary_and_history_row(page, app_server):
    # The run waits until the page that started it is drawn: the browser says so (ui/live_feed.py).
    with page.expect_request(lambda request: request.method == "POST" and request.url.endswith("/drawn")) as drawn:
        start_short_run(page, app_server)
    assert drawn.value.response().status == 204
    page.locator(".mnist-live").wait_for()  # the new run (an earlier test's summary may still be on screen)
    page.get_by_text("Test accuracy", exact=True).wait_for(timeout=180_000)
    assert_no_errors(page)
    assert loss_points(page) >= 2  # the whole curve (test_train_live.py follows it while it grows)
    history = page.locator("[data-testid='stDataFrame']").last  # below both tabs (Sweep may hold a leaderboard)
    history.wait_for()
    page.wait_for_function(
        "() => { const t = document.querySelectorAll('[data-testid=\"stDataFrame\"]');"
        " return t[t.length - 1].textContent.includes('finished'); }"
    )
    # The summary's "Open in Draw" (drawn inside the Train page's fragment) opens Draw with this run
    # chosen: its name and the second it started, which tell it from the other tests' runs.
    caption = page.get_by_test_id("stCaptionContainer").filter(has_text=re.compile(r"^Run \d{8}-\d{6}")).first
    run_id = caption.inner_text().split()[1]  # "Run <id>" under the run's name
    assert drawn.value.url.endswith(f"/api/live/{run_id}/drawn")
    summary = summarize(Run(app_server[2] / run_id))
    started = datetime.fromtimestamp(summary.created_at).strftime("%H:%M:%S")
    page.get_by_role("button", name="Open in Draw").first.click()
    page.wait_for_url("**/draw")
    wait_idle(page)
    page.get_by_role("heading", name="Draw").first.wait_for()
    chosen = page.get_by_role("combobox", name="Model").input_value()
    assert chosen.startswith(run_name(summary)) and started in chosen, (chosen, run_id)
    assert_no_errors(page)


CELL_POSITION = """([trueClass, predictedClass]) => {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const plot = plots.find(p => (p.data || []).some(t => t.name === 'cells'));
  const cells = plot._fullData.find(t => t.name === 'cells');  // decoded arrays, unlike plot.data
  const counts = {};
  const ys = Array.from(cells.y), custom = Array.from(cells.customdata);
  Array.from(cells.x).forEach((x, i) => { counts[ys[i] + ',' + x] = custom[i]; });
  let target = [trueClass, predictedClass];
  if (!counts[target.join(',')]) {  // that pair has no mistakes here: take the most common confusion
    let best = -1;
    for (const [key, count] of Object.entries(counts)) {
      const [t, p] = key.split(',').map(Number);
      if (t !== p && count > best) { best = count; target = [t, p]; }
    }
  }
  const layout = plot._fullLayout, box = plot.getBoundingClientRect();
  return {
    x: box.left + layout.xaxis._offset + layout.xaxis.l2p(target[1]),
    y: box.top + layout.yaxis._offset + layout.yaxis.l2p(target[0]),
    trueClass: target[0], predictedClass: target[1], count: counts[target.join(',')],
  };
}"""


def test_mistakes_click_a_confusion_cell_filters_the_gallery(page, app_server):
    open_page(page, app_server, "mistakes")
    page.get_by_text("Confusion matrix").wait_for(timeout=120_000)  # the first evaluation takes a moment
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.js-plotly-plot'))"
        ".some(p => (p.data || []).some(t => t.name === 'cells'))"
    )
    wait_idle(page)
    cell = page.evaluate(CELL_POSITION, [4, 9])
    assert cell["count"] > 0
    page.mouse.click(cell["x"], cell["y"])
    label = f"{cell['trueClass']} → {cell['predictedClass']}"
    page.wait_for_function(
        "(count) => document.body.innerText.includes(count + ' mistakes, showing')", arg=cell["count"]
    )
    wait_idle(page)
    labels = page.locator("[data-testid='stButton'] button").filter(has_text="·").all_inner_texts()
    assert labels and all(text.startswith(label) for text in labels), labels
    # Open one: its enlarged view and saliency map appear.
    page.locator("[data-testid='stButton'] button").filter(has_text=label).first.click()
    wait_idle(page)
    assert page.get_by_text("saliency", exact=False).count() > 0
    assert_no_errors(page)


def draw_stroke(tab, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through `points`, given as fractions of the canvas's width and height."""
    canvas = tab.locator("canvas.upper-canvas").first
    box = canvas.bounding_box()
    x, y = [box["x"] + fx * box["width"] for fx, _ in points], [box["y"] + fy * box["height"] for _, fy in points]
    tab.mouse.move(x[0], y[0])
    tab.mouse.down()
    for px, py in zip(x[1:], y[1:]):
        tab.mouse.move(px, py, steps=3)
    tab.mouse.up()


def predicted_digit(tab, timeout_ms: int = 30_000) -> str:
    digit = tab.locator(".predicted-digit")
    digit.wait_for(timeout=timeout_ms)
    wait_idle(tab)
    return digit.inner_text().strip()


def test_draw_a_one_and_a_zero_and_clear(page, app_server):
    import math

    open_page(page, app_server, "draw")
    page.locator("canvas.upper-canvas").first.wait_for()
    draw_stroke(page, [(0.5, 0.15 + 0.07 * i) for i in range(11)])  # a vertical bar: 1
    assert predicted_digit(page) == "1"

    page.get_by_role("button", name="Clear").click()
    page.locator(".predicted-digit").wait_for(state="detached")
    assert page.get_by_text("the prediction appears here").count() == 1

    oval = [(0.5 + 0.22 * math.sin(a / 20 * 2 * math.pi), 0.5 - 0.32 * math.cos(a / 20 * 2 * math.pi)) for a in range(21)]
    page.locator("canvas.upper-canvas").first.wait_for()
    draw_stroke(page, oval)
    assert predicted_digit(page) == "0"
    assert_no_errors(page)
