"""What a person waits for after pressing Start: click -> first point, and click -> summary.

One run of this script starts `streamlit run app.py` twice on a temporary runs folder, once
with the standby worker (the default) and once without (`MNIST_STANDBY_WORKER=0`), and in
each opens the Train page in headless Chromium, picks the Fast preset and presses Start
`--runs` times. It measures, on the browser's clock, from the click to:

- the first point: the progress line "Epoch 1/1 · step …" appears (a run that ends before the
  progress line's next redraw never shows one: then there is no figure);
- the summary: the "Test accuracy" metric appears.

Between runs it waits a few seconds, as a person reading the result would, so the standby
worker is ready again. The browser runs on this machine, as it does when someone uses the
app locally, so the figures include its share of the 2 cores.

    MNIST_DATA_DIR=/path/to/data python bench/start_latency.py [--runs 3] [--browser /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load.browser import CHROMIUM_FLAGS, default_browser  # noqa: E402
from bench.load.server import start_server, stop_server, wait_until_healthy  # noqa: E402
from mnist_core.config import PRESETS, preset_label  # noqa: E402

# The probe should cost the browser as little as a person looking does: it looks again only when
# the page's DOM changes (a MutationObserver), and reads textContent, which needs no layout (it
# used to read body.innerText on every animation frame). On the 2-core machine this changed the
# watched/unwatched ratio little (1.85 with it, 1.91 before): the page's own work is the cost.
MEASURE = """async () => {
  // The page may still show the previous run: only the new run's id, under the live panel's name, counts.
  const header = () => Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]')).map(c => c.textContent).find(t => t.startsWith('Run '));
  const before = header();
  const started = performance.now();
  const fresh = text => header() && header() !== before && document.body.textContent.includes(text);
  // For a moment the new header stands above the old run's summary, which Streamlit marks stale
  // until the redraw ends: only a summary that is not stale, with no Stop button left, counts.
  const current = element => element.closest('[data-stale="true"]') === null;
  // The live panel's "Stop" (its icon's name comes first in the text), not the Sweep tab's "Stop sweep".
  const stop = () => Array.from(document.querySelectorAll('button')).some(b => b.textContent.trim().endsWith('Stop') && current(b));
  const summary = () => header() && header() !== before && !stop() && Array.from(
    document.querySelectorAll('[data-testid="stMetricLabel"]')).some(label => label.textContent.includes('Test accuracy') && current(label));
  const times = {};
  await new Promise(resolve => {
    const check = () => {
      const now = performance.now();
      if (!times.first && fresh('Epoch 1/')) times.first = now - started;
      if (summary()) { times.summary = now - started; return true; }
      return now - started > 300000;
    };
    const observer = new MutationObserver(() => { if (check()) { observer.disconnect(); resolve(); } });
    // data-stale too: an element that stops being stale changes only that attribute.
    observer.observe(document.body, {childList: true, subtree: true, characterData: true,
                                     attributes: true, attributeFilter: ['data-stale']});
    document.querySelector('[data-testid="stBaseButton-primary"]').click();
  });
  return times;
}"""


def median_seconds(milliseconds: list[float]) -> float:
    """The median in seconds of the runs that have the figure (nan if none has)."""
    return statistics.median(milliseconds) / 1000 if milliseconds else float("nan")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def open_train_on(browser, url: str, preset: str = "fast"):
    """A new desktop-sized tab on the Train page with `preset` (a PRESETS name) picked; returns the tab."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_role("button", name="Start training").wait_for()
    page.get_by_role("combobox", name="Preset").click()
    page.get_by_role("option", name=preset_label(preset), exact=True).click()
    page.get_by_text(PRESETS[preset].description[:30]).first.wait_for()
    return page


def measure(browser, data_dir: Path, runs: int, standby: bool, settle_s: float) -> list[dict]:
    os.environ["MNIST_STANDBY_WORKER"] = "1" if standby else "0"  # start_server passes the environment on
    port = free_port()
    with tempfile.TemporaryDirectory() as runs_dir:
        server = start_server(port, data_dir, Path(runs_dir), Path(runs_dir) / "server.log", hosted=False)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, server)
            page = open_train_on(browser, url)
            time.sleep(settle_s)  # the server's first runner has just started its standby: let it load
            results = []
            for _ in range(runs):
                times = page.evaluate(MEASURE)
                results.append(times)
                first, summary = (times.get(key, float("nan")) / 1000 for key in ("first", "summary"))
                print(f"  standby {'on ' if standby else 'off'}: click -> first point {first:.2f} s, "
                      f"click -> summary {summary:.2f} s", flush=True)
                time.sleep(settle_s)
            page.close()
            return results
        finally:
            stop_server(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds between runs")
    parser.add_argument("--browser", default=default_browser())
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR") or "data")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.browser, args=CHROMIUM_FLAGS)
        try:
            found = {standby: measure(browser, Path(args.data_dir), args.runs, standby, args.settle)
                     for standby in (True, False)}
        finally:
            browser.close()
    print(f"\nFast preset, {args.runs} runs each, browser on this machine (median):")
    for standby, results in found.items():
        first, summary = (median_seconds([r[key] for r in results if key in r]) for key in ("first", "summary"))
        print(f"  standby worker {'on ' if standby else 'off'}: click -> first point {first:.2f} s, "
              f"click -> summary {summary:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
