"""What watching costs a run: a preset's own training time, watched live in a browser against
the same run from the command line, measured side by side in one run of this script.

- unwatched: `python -m mnist_core train --preset PRESET` on a temporary runs folder, nobody
  looking; its `train_seconds`;
- watched: `streamlit run app.py` on another temporary runs folder, headless Chromium on this
  machine with the Train page open, the preset picked and Start pressed; the run's
  `train_seconds` from its Finished event, once the summary is on screen.

The fast preset (about 1.3 s of training) is the hard case: the page's fixed costs (its first
redraws) fall inside a short run. `--preset case-study` (about 12 s of training) shows the steady cost.

It also prints the browser's CPU while it watched (Chromium's processes, from /proc, per second
from the click to the summary): a figure far steadier on a noisy machine than the ratio, which
rests on two training times that each vary by a quarter from run to run there.

The two alternate, an unwatched run before the first watched one and after each (`--runs`
watched, one more unwatched), so a machine that warms up or slows down weighs on both. Two
figures: the ratio of the medians, and the median of each watched run against the mean of the
unwatched runs on either side of it. The second is the steadier on a machine whose speed drifts:
the 2-core cloud machine trains the fast preset in about 1.5 s or about 2.5 s (the CLI alone,
nothing else running), sometimes for minutes on end, sometimes switching from one run to the
next, and a ratio of medians over 10 runs moves by a tenth or more with how the runs fall. The run's own time is what the issue's target is
about (watched <= 1.15 x unwatched); the browser and the server share the same 2 cores with it.

    MNIST_DATA_DIR=/path/to/data python bench/watch_cost.py [--runs 3] [--preset fast] [--browser /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import procfs  # noqa: E402
from bench.load.browser import CHROMIUM_FLAGS, default_browser  # noqa: E402
from bench.load.server import start_server, stop_server, wait_until_healthy  # noqa: E402
from bench.start_latency import MEASURE, free_port, open_train_on  # noqa: E402
from mnist_core.config import PRESETS  # noqa: E402
from mnist_core.events import Finished  # noqa: E402
from mnist_core.runs import list_runs  # noqa: E402


def unwatched(data_dir: Path, preset: str = "fast") -> float:
    with tempfile.TemporaryDirectory() as runs_dir:
        done = subprocess.run([sys.executable, "-m", "mnist_core", "train", "--preset", preset, "--data-dir",
                               str(data_dir), "--runs-dir", runs_dir], cwd=ROOT, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the CLI run failed:\n{done.stderr[-2000:]}")
        return float(json.loads(done.stdout.strip().splitlines()[-1])["train_seconds"])


def cpu_seconds(name: str) -> float:
    """CPU seconds used so far by the live processes whose command line contains `name`."""
    return sum(procfs.cpu_seconds(pid) or 0.0 for pid in procfs.parent_pids() if name in procfs.command_line(pid))


def watched(page, runs_dir: Path, browser_name: str = "chrom") -> tuple[float, float, float]:
    """Press Start on the open Train page; the run's train_seconds, click -> summary (s), and the
    browser's CPU meanwhile (cores)."""
    before = {run.id for run in list_runs(runs_dir)}
    browser_before = cpu_seconds(browser_name)
    times = page.evaluate(MEASURE)
    browser_cores = (cpu_seconds(browser_name) - browser_before) / max(times.get("summary", 0) / 1000, 1e-3)
    new = [run for run in list_runs(runs_dir) if run.id not in before]
    finished = next((e for e in new[0].events() if isinstance(e, Finished)), None) if new else None
    if finished is None:
        raise SystemExit(f"the watched run did not finish: {times}")
    return finished.train_seconds, times.get("summary", float("nan")) / 1000, browser_cores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--preset", default="fast", choices=list(PRESETS))
    parser.add_argument("--settle", type=float, default=6.0, help="seconds between runs (the standby worker reloads)")
    parser.add_argument("--browser", default=default_browser())
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR") or "data")
    args = parser.parse_args()
    data_dir = Path(args.data_dir).resolve()
    from playwright.sync_api import sync_playwright

    alone, seen, waited, browser_use, pairs = [], [], [], [], []
    with tempfile.TemporaryDirectory() as runs_dir, sync_playwright() as playwright:
        port = free_port()
        server = start_server(port, data_dir, Path(runs_dir), Path(runs_dir) / "server.log", hosted=False)
        browser = playwright.chromium.launch(executable_path=args.browser, args=CHROMIUM_FLAGS)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(url, server)
            page = open_train_on(browser, url, args.preset)
            time.sleep(args.settle)
            alone.append(unwatched(data_dir, args.preset))
            print(f"  unwatched {alone[-1]:.2f} s", flush=True)
            for number in range(1, args.runs + 1):
                time.sleep(args.settle)
                train_seconds, summary, cores = watched(page, Path(runs_dir), Path(args.browser).name[:6])
                seen.append(train_seconds)
                waited.append(summary)
                browser_use.append(cores)
                time.sleep(args.settle)
                alone.append(unwatched(data_dir, args.preset))
                pairs.append(seen[-1] / statistics.mean(alone[-2:]))
                print(f"  run {number}: watched {seen[-1]:.2f} s of training (click -> summary {summary:.2f} s, the "
                      f"browser meanwhile {cores:.2f} cores), then unwatched {alone[-1]:.2f} s: "
                      f"{pairs[-1]:.2f} x its neighbours", flush=True)
        finally:
            browser.close()
            stop_server(server)
    ratio = statistics.median(seen) / statistics.median(alone)
    print(f"\n{args.preset} preset, {args.runs} watched, {len(alone)} unwatched (median): unwatched "
          f"{statistics.median(alone):.2f} s, watched {statistics.median(seen):.2f} s of training: watched / unwatched = "
          f"{ratio:.2f}, each watched run against its neighbours {statistics.median(pairs):.2f} (target <= 1.15); "
          f"Start -> summary on screen {statistics.median(waited):.2f} s" + (" (target <= 5 s)" if args.preset == "fast" else "")
          + f"; the browser used {statistics.median(browser_use):.2f} cores meanwhile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
