"""Draw in a real browser: mouse-up -> the predicted digit on screen, with the inside view off and on.

A fresh server (no training job, nobody else on it) and one headless Chromium on this machine.
For each setting of Draw's "Show inside the network" toggle, draws `--strokes` single-stroke
digits (Clear between them, one warm-up stroke first) and prints the median and p95 of
mouse-up -> the new prediction shown. The canvas component itself waits about 200 ms after a
stroke before it sends, so that much of every figure is the component's.

    MNIST_DATA_DIR=/path/to/data python bench/draw_latency.py [--strokes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.load.browser import (  # noqa: E402
    CHROMIUM_FLAGS,
    CONTEXT_OPTIONS,
    DIGIT_STROKES,
    PAGE_PROBE,
    clear,
    default_browser,
    timed_stroke,
    wait_idle,
)
from bench.load.report import percentile  # noqa: E402
from bench.load.server import free_port, start_server, stop_server, wait_until_healthy  # noqa: E402


async def measure(url: str, browser_path: str, strokes: int) -> dict[str, list[float]]:
    from playwright.async_api import async_playwright

    results: dict[str, list[float]] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=browser_path, args=CHROMIUM_FLAGS)
        page = await (await browser.new_context(**CONTEXT_OPTIONS)).new_page()
        await page.add_init_script(PAGE_PROBE)
        await page.goto(f"{url}/draw")
        await wait_idle(page)
        for inside in (False, True):
            if inside:  # the toggle shows once there is a digit; it stays on after Clear
                await timed_stroke(page, DIGIT_STROKES[0][1])
                await page.get_by_text("Show inside the network").click()
                await wait_idle(page)
                await clear(page)
            times = []
            for number in range(strokes + 1):  # the first is a warm-up (the map and model load once)
                _, points = DIGIT_STROKES[number % len(DIGIT_STROKES)]
                probe = await timed_stroke(page, points)
                if number:
                    times.append(probe["shownAt"] - probe["upAt"])
                await clear(page)
            results["inside view on" if inside else "inside view off"] = times
        await browser.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=20)
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"),
                        required=not os.environ.get("MNIST_DATA_DIR"), help="folder holding MNIST/raw/")
    parser.add_argument("--browser", default=default_browser())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        port = free_port()
        server = start_server(port, Path(args.data_dir), Path(scratch) / "runs", Path(scratch) / "server.log",
                              hosted=False)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(url, server)
            results = asyncio.run(measure(url, args.browser, args.strokes))
        finally:
            stop_server(server)
    print(f"Draw, mouse-up -> prediction shown, {args.strokes} strokes each, 1 Chromium on this {os.cpu_count()}-core "
          f"machine, no job training (includes the canvas's ~200 ms wait):")
    for name, times in results.items():
        print(f"  {name:16} median {statistics.median(times):4.0f} ms   p95 {percentile(times, 0.95):4.0f} ms   "
              f"max {max(times):4.0f} ms")


if __name__ == "__main__":
    main()
