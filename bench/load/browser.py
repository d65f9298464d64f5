"""Driving the app in a real headless Chromium (Playwright): the digits, the in-page clock, a stroke.

Used once per load test, to record a Train and a Draw session and to time a real browser's
strokes for comparison (the load itself never runs a browser), and by the benchmarks that drive
a browser (`draw_latency`, `start_latency`, `watch_cost`): its flags, and which Chromium
(`default_browser`).
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
CONTEXT_OPTIONS = {"viewport": {"width": 1100, "height": 850}, "reduced_motion": "reduce"}
CANVAS = "canvas.upper-canvas"  # Fabric's drawing layer


def default_browser() -> str:
    """The Chromium the benchmarks drive unless told (`--browser`): E2E_BROWSER, as for the tests;
    else Debian's full `chromium`, with which the published figures were taken; else its headless
    shell, all that a machine set up the CI way (`.ci/run`) has. Neither there: the launch says so."""
    candidates = ("/usr/bin/chromium", "/usr/bin/chromium-headless-shell")
    return os.environ.get("E2E_BROWSER") or next((path for path in candidates if Path(path).exists()), candidates[0])


def _arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, steps: int):
    return [(cx + rx * math.cos(math.radians(start_deg + (end_deg - start_deg) * i / steps)),
             cy + ry * math.sin(math.radians(start_deg + (end_deg - start_deg) * i / steps))) for i in range(steps + 1)]


# One mouse stroke per digit, as fractions of the canvas's width and height.
DIGIT_STROKES: list[tuple[str, list[tuple[float, float]]]] = [
    ("1", [(0.5, 0.15 + 0.07 * i) for i in range(11)]),  # a vertical bar
    ("0", _arc(0.5, 0.5, 0.22, 0.32, -90, 270, 24)),  # an oval
    ("7", [(0.28, 0.2), (0.5, 0.2), (0.72, 0.2), (0.6, 0.45), (0.48, 0.7), (0.42, 0.85)]),  # two segments
    ("2", _arc(0.5, 0.35, 0.2, 0.17, 190, 380, 10) + [(0.45, 0.6), (0.3, 0.82), (0.5, 0.82), (0.72, 0.82)]),
    ("3", _arc(0.48, 0.32, 0.18, 0.15, 200, 450, 10) + _arc(0.48, 0.64, 0.2, 0.18, -90, 150, 10)),
    ("4", [(0.45, 0.15), (0.3, 0.6), (0.72, 0.6), (0.6, 0.6), (0.6, 0.35), (0.6, 0.88)]),
    ("6", [(0.6, 0.15), (0.45, 0.35)] + _arc(0.5, 0.65, 0.18, 0.18, 180, 540, 16)),
]

# Installed before the app's scripts: on the page's clock (epoch ms) it stamps the mouseup that
# ends an armed stroke, the first websocket send after it (the canvas value, which the component
# sends ~200 ms later), the arrival of the first frame holding the prediction's markdown (the
# same moment the replay times; the text is plain UTF-8 inside the protobuf) and the moment the
# prediction element appears. The frame listener is added in the constructor, so it runs before
# Streamlit's own handler.
PAGE_PROBE = """
window.__probe = {armed: false, upAt: null, sentAt: null, arrivedAt: null, shownAt: null, digit: null};
const now = () => performance.timeOrigin + performance.now();
window.addEventListener('mouseup', () => {
  const p = window.__probe;
  if (p.armed) { p.upAt = now(); p.armed = false; }
}, true);
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  const p = window.__probe;
  if (p.upAt !== null && p.sentAt === null) p.sentAt = now();
  return send.call(this, data);
};
const decoder = new TextDecoder();
window.WebSocket = class extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', (event) => {
      const p = window.__probe;
      if (p.sentAt === null || p.arrivedAt !== null || !(event.data instanceof ArrayBuffer)) return;
      if (decoder.decode(event.data).includes('predicted-digit')) p.arrivedAt = now();
    });
  }
};
new MutationObserver(() => {
  const p = window.__probe;
  if (p.upAt === null || p.shownAt !== null) return;
  const digit = document.querySelector('.predicted-digit');
  if (digit) { p.shownAt = now(); p.digit = digit.textContent.trim(); }
}).observe(document, {childList: true, subtree: true, characterData: true});
"""
ARM_PROBE = "() => Object.assign(window.__probe, {armed: true, upAt: null, sentAt: null, arrivedAt: null, shownAt: null, digit: null})"


async def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Until Streamlit has finished running the page's script (as tests/e2e/conftest.py does)."""
    await page.wait_for_selector("[data-testid='stApp']", timeout=timeout_ms)
    await page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " || !document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
        timeout=timeout_ms,
    )
    await page.wait_for_timeout(300)


async def wait_until_drawable(page, timeout_s: float = 60) -> None:
    """Until the canvas accepts a stroke.

    The component switches on Fabric's drawing mode only after it has loaded its (empty) initial
    drawing, asynchronously; a stroke made before is lost. In drawing mode Fabric shows a
    crosshair cursor as soon as the mouse moves over the canvas."""
    canvas = page.locator(CANVAS).first
    await canvas.wait_for()
    deadline = time.monotonic() + timeout_s
    nudge = 0
    while True:
        box = await canvas.bounding_box()
        await page.mouse.move(box["x"] + 4 + nudge % 4, box["y"] + 4)  # a corner, and a new position each time
        if await canvas.evaluate("canvas => canvas.style.cursor") == "crosshair":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the canvas did not enter drawing mode within {timeout_s:.0f} s")
        nudge += 1
        await asyncio.sleep(0.1)


async def draw_stroke(page, points: list[tuple[float, float]]) -> None:
    """One mouse stroke through `points`, given as fractions of the canvas's width and height."""
    box = await page.locator(CANVAS).first.bounding_box()
    xs = [box["x"] + fx * box["width"] for fx, _ in points]
    ys = [box["y"] + fy * box["height"] for _, fy in points]
    await page.mouse.move(xs[0], ys[0])
    await page.mouse.down()
    for x, y in zip(xs[1:], ys[1:]):
        await page.mouse.move(x, y, steps=3)
    await page.mouse.up()


async def timed_stroke(page, points: list[tuple[float, float]], timeout_ms: int = 60_000) -> dict:
    """Draw one digit and wait for its prediction; returns the probe (upAt, sentAt, arrivedAt, shownAt, digit)."""
    await wait_until_drawable(page)
    await page.evaluate(ARM_PROBE)
    await draw_stroke(page, points)
    await page.wait_for_function("() => window.__probe.shownAt !== null", timeout=timeout_ms, polling=50)
    return await page.evaluate("() => window.__probe")


async def clear(page) -> None:
    """Press Clear and wait until the prediction is gone and the page is idle again."""
    await wait_idle(page)
    await page.get_by_role("button", name="Clear").click()
    await page.locator(".predicted-digit").wait_for(state="detached")
    await wait_idle(page)
