"""Record, once, what a real browser sends: a Train tab that starts a job, and a Draw tab drawing digits.

One headless Chromium (Playwright) opens the Train page, sets 5 epochs and presses Start (the
job then trains on the server for the rest of the test), and, with that tab still open and
polling, draws `digits` digits on the Draw page, pressing Clear after each. Every websocket
frame the pages send is kept (`page.on("websocket")` -> "framesent"), and sorted by content:

- a Draw step is the `rerun_script` whose canvas value (the `draw_canvas` widget's JSON: Fabric's
  objects and a PNG data URL) holds a stroke; then the Clear button's rerun (a `trigger_value`)
  and the canvas's own rerun with its emptied value, which it sends once the Clear run hands it
  a new initial drawing;
- the Train page's Start is its first rerun with a `trigger_value` (a click).

The same strokes, timed in the page, are the real-browser reference for the replayed ones.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

from streamlit.proto.BackMsg_pb2 import BackMsg

from bench.load import browser as chromium
from bench.load.server import read_status


@dataclass
class DrawStep:
    digit: str
    stroke: bytes  # the rerun carrying the drawing
    clear: tuple[bytes, ...]  # Clear's rerun, then the canvas's rerun with its emptied value


@dataclass
class BrowserStroke:
    digit: str
    predicted: str
    stroke_ms: float  # mouseup -> prediction shown (includes the canvas's ~200 ms debounce)
    arrive_ms: float | None  # the canvas value's websocket send -> the prediction's frame arrived
    send_ms: float  # the canvas value's websocket send -> prediction shown


@dataclass
class Recording:
    train_open: bytes
    train_start: bytes
    draw_open: bytes
    steps: list[DrawStep]
    browser: list[BrowserStroke]
    run_dir: Path  # the job the recording started


def _kind(payload: bytes) -> str:
    """'stroke', 'click', 'emptied', 'auto' (a fragment's timer) or 'other'.

    Draw's canvas and Clear live in a fragment, so their reruns name that fragment; a timer's
    rerun is told apart by `is_auto_rerun`."""
    message = BackMsg()
    message.ParseFromString(payload)
    if message.WhichOneof("type") != "rerun_script":
        return "other"
    state = message.rerun_script
    if state.is_auto_rerun:
        return "auto"
    if any(w.WhichOneof("value") == "trigger_value" and w.trigger_value for w in state.widget_states.widgets):
        return "click"
    for widget in state.widget_states.widgets:
        if widget.id.endswith("-draw_canvas") and widget.WhichOneof("value") == "json_value":
            objects = json.loads(widget.json_value).get("drawing", {}).get("raw", {}).get("objects", [])
            return "stroke" if objects else "emptied"
    return "other"


def draw_steps(sent: list[bytes], digits: list[str]) -> list[DrawStep]:
    steps: list[DrawStep] = []
    for payload in sent[1:]:
        kind = _kind(payload)
        if kind == "stroke":
            steps.append(DrawStep(digits[len(steps)], payload, ()))
        elif kind in ("click", "emptied") and steps:
            steps[-1].clear += (payload,)
    if len(steps) != len(digits) or any(len(step.clear) != 2 for step in steps):
        raise RuntimeError(f"unexpected Draw recording: {[(s.digit, len(s.clear)) for s in steps]} "
                           f"for digits {digits}; kinds sent: {[_kind(p) for p in sent]}")
    return steps


async def _recorded_page(browser, url: str, sent: list[bytes], probe: bool = False):
    context = await browser.new_context(**chromium.CONTEXT_OPTIONS)
    if probe:
        await context.add_init_script(chromium.PAGE_PROBE)
    page = await context.new_page()
    page.set_default_timeout(90_000)
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)
                                           if isinstance(payload, bytes) else None))
    await page.goto(url)
    await chromium.wait_idle(page)
    return page


async def _wait_for_training(runs_dir: Path, timeout_s: float = 120) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run_dir in runs_dir.iterdir() if runs_dir.exists() else []:
            status = read_status(run_dir)
            if status.get("state") == "running" and status.get("phase") == "training":
                return run_dir
            if status.get("state") in ("failed", "cancelled", "interrupted"):
                raise RuntimeError(f"the training job ended as {status.get('state')}: {status.get('message')}")
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the training job did not reach its training loop within {timeout_s:.0f} s")


async def record(url: str, executable: str, runs_dir: Path, digits: int = 4) -> Recording:
    from playwright.async_api import async_playwright

    chosen = [chromium.DIGIT_STROKES[i % len(chromium.DIGIT_STROKES)] for i in range(digits)]
    train_sent: list[bytes] = []
    draw_sent: list[bytes] = []
    timed: list[BrowserStroke] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=chromium.CHROMIUM_FLAGS)
        try:
            train = await _recorded_page(browser, url, train_sent)
            epochs = train.get_by_role("spinbutton", name="Epochs")
            await epochs.fill("5")
            await epochs.press("Enter")
            await chromium.wait_idle(train)
            await train.get_by_role("button", name="Start training").click()
            run_dir = await _wait_for_training(runs_dir)
            # The Train tab stays open (and polls the live view) while the Draw tab draws, as the
            # watcher session will during the load.
            draw = await _recorded_page(browser, f"{url}/draw", draw_sent, probe=True)
            for digit, points in chosen:
                probe = await chromium.timed_stroke(draw, points)
                sent = probe["sentAt"] or probe["upAt"]
                arrived = probe["arrivedAt"] - sent if probe["arrivedAt"] else None
                timed.append(BrowserStroke(digit, probe["digit"], probe["shownAt"] - probe["upAt"], arrived,
                                           probe["shownAt"] - sent))
                await chromium.clear(draw)
            await asyncio.sleep(0.5)  # let the last frame events reach this process
        finally:
            await browser.close()
    starts = [payload for payload in train_sent[1:] if _kind(payload) == "click"]
    if not starts:
        raise RuntimeError("the recording holds no Start click on the Train page")
    return Recording(train_sent[0], starts[0], draw_sent[0], draw_steps(draw_sent, [d for d, _ in chosen]),
                     timed, run_dir)
