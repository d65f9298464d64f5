"""Inside the network in a real browser: Draw's inside view for a drawn 7, and a point clicked on
the Inside page's embedding map.

The map of the shipped model may not be stored yet (a clean checkout): the tests then press
"Build the map" and wait for the background build (t-SNE, about a minute on a CI runner).

Clicking a point: the map is WebGL, so there is no element per point to click. The test reads
the figure's decoded data and axes from the page (Plotly keeps them on the chart's element)
and clicks at the pixel of a point that has no other point within a few pixels, so the click
cannot land on a neighbour; Plotly then reports that point, and Streamlit the selection.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import assert_no_errors, open_page, wait_idle
from tests.e2e.test_browser import draw_stroke, predicted_digit

pytestmark = pytest.mark.e2e

BUILD_TIMEOUT_MS = 300_000  # about a minute alone; several on a runner that is busy with other tests

TRACE_NAMES = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .flatMap(plot => (plot.data || []).map(trace => trace.name))"""

MAP_PLOT = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .find(p => (p._fullData || []).some(t => t.type === 'scattergl'))"""

# The pixel of a lone point of the map: of up to 400 points spread over the digits' traces, the one whose
# nearest other point (of every trace) is furthest away; with its dataset index (customdata[0]).
LONE_POINT = """() => {
  const plot = (MAP_PLOT)();
  const layout = plot._fullLayout, box = plot.getBoundingClientRect();
  const points = [];
  plot._fullData.forEach(trace => {
    if (!trace.x || !trace.customdata) return;
    const xs = Array.from(trace.x), ys = Array.from(trace.y);
    xs.forEach((x, i) => points.push({
      x: box.left + layout.xaxis._offset + layout.xaxis.l2p(x),
      y: box.top + layout.yaxis._offset + layout.yaxis.l2p(ys[i]),
      index: Number(trace.customdata[i][0]), pickable: /^[0-9]$/.test(trace.name),
    }));
  });
  const all = points.filter(p => p.y > 0 && p.y < window.innerHeight);
  const candidates = all.filter(p => p.pickable);
  const step = Math.max(1, Math.floor(candidates.length / 400));
  let best = null, bestGap = -1;
  for (let i = 0; i < candidates.length; i += step) {
    const p = candidates[i];
    let gap = Infinity;
    for (const q of all) {
      if (q === p) continue;
      gap = Math.min(gap, Math.hypot(p.x - q.x, p.y - q.y));
    }
    if (gap > bestGap) { bestGap = gap; best = p; }
  }
  return {...best, gap: bestGap};
}""".replace("MAP_PLOT", MAP_PLOT)


def the_map(tab, star_name: str) -> None:
    """Wait for the embedding map with `star_name` on it, building the map first when there is none."""
    build = tab.get_by_role("button", name="Build the map")
    map_or_button = "() => document.body.innerText.includes('Build the map') || " + (
        "Array.from(document.querySelectorAll('.js-plotly-plot')).some(p => (p.data || []).some(t => t.type === 'scattergl'))"
    )
    tab.wait_for_function(map_or_button, timeout=60_000)
    if build.count():
        build.click()
        tab.get_by_text("Building the map").first.wait_for(timeout=60_000)
    building = tab.get_by_text("Building the map")
    if building.count():  # this test's build, or one another page started: the preview stands in until it ends
        building.first.wait_for(state="detached", timeout=BUILD_TIMEOUT_MS)
    tab.wait_for_function(f"() => ({TRACE_NAMES})().includes({star_name!r})", timeout=60_000)
    wait_idle(tab)
    assert tab.get_by_text("quick stand-in").count() == 0  # the map itself, not the preview


def test_draw_a_seven_and_look_inside(page, app_server):
    open_page(page, app_server, "draw")
    page.locator("canvas.upper-canvas").first.wait_for()
    draw_stroke(page, [(0.25 + 0.05 * i, 0.2) for i in range(11)])  # the 7's top bar
    wait_idle(page)
    draw_stroke(page, [(0.75 - 0.035 * i, 0.2 + 0.065 * i) for i in range(11)])  # and its stem, down to the left
    # The first stroke alone was read as some digit already: wait for the answer to the whole 7.
    page.wait_for_function("() => (document.querySelector('.predicted-digit') || {}).innerText === '7'")
    assert predicted_digit(page) == "7"

    page.get_by_text("Show inside the network").click()
    wait_idle(page)
    page.get_by_role("heading", name="Inside the network").wait_for()
    the_map(page, "your drawing")
    # The strip: one panel per layer, each a picture under its label.
    panels = page.locator("[data-testid='stCaptionContainer']").filter(has_text=" params")
    assert panels.count() >= 10
    assert page.locator("[data-testid='stImage'] img").count() >= 10
    assert page.get_by_text("The answer: 7").count() == 1
    # The star on the map, and the drawing's nearest test images beside it, mostly 7s.
    page.get_by_text("Nearest to your drawing").wait_for()
    nearest = page.locator("[data-testid='stImage']").filter(has_text="#")
    assert nearest.count() == 5
    sevens = [text.strip().endswith("· 7") for text in nearest.all_inner_texts()]
    assert sum(sevens) >= 3, nearest.all_inner_texts()
    assert_no_errors(page)


def test_click_a_point_on_the_map_and_look_inside_it(page, app_server):
    open_page(page, app_server, "inside")
    page.get_by_role("heading", name="Layer by layer").wait_for()
    the_map(page, "image 0")
    page.evaluate(f"() => ({MAP_PLOT})().scrollIntoView({{block: 'center'}})")  # the whole map on screen
    page.wait_for_timeout(500)
    point = page.evaluate(LONE_POINT)  # after the scroll: the pixel positions are the viewport's
    assert point["gap"] > 3, point  # no neighbour under the cursor
    page.mouse.move(point["x"], point["y"])  # hover first, as a person does: Plotly picks the point under it
    page.wait_for_timeout(200)
    page.mouse.click(point["x"], point["y"])
    detail = page.get_by_text(f"Image {point['index']}", exact=True)
    detail.wait_for(timeout=30_000)
    wait_idle(page)
    assert page.get_by_text("True:").count() == 1 and page.get_by_text("sure").count() >= 1

    page.get_by_role("button", name="Look inside this image").click()
    wait_idle(page)
    page.get_by_text(f"Test image {point['index']}:").wait_for()
    assert page.get_by_role("spinbutton").first.input_value() == str(point["index"])
    assert_no_errors(page)


def test_a_mistake_can_be_looked_inside_from_the_mistakes_page(page, app_server):
    open_page(page, app_server, "mistakes")
    page.get_by_text("Show inside the network for image").click()
    wait_idle(page)
    page.get_by_text("Conv2d").first.wait_for()  # the layer panels, titled like ConvNetJS
    page.get_by_text(". Softmax · 10").first.wait_for()
    assert_no_errors(page)
