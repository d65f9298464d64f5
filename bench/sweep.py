"""Ray's overhead on a small sweep: a 4-trial grid on local Ray against the same 4 runs in a row.

Both sides are whole commands, as a person runs them: `python -m mnist_core sweep --grid
lr=...` (Ray starts, schedules the 4 fast-preset trials one at a time, and stops), and four
`python -m mnist_core train --preset fast --lr ...` one after another. Prints both wall times,
their ratio (target <= 1.3x), the best accuracy, the wall time with 2 trials at once, and the
peak memory (PSS: shared pages counted once) of everything the sweep command started, Ray's
own processes included. On a GPU machine it also prints trials per minute.

    MNIST_DATA_DIR=/path/to/data python bench/sweep.py [--lrs 0.02,0.015,0.01,0.005]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.load.procfs import descendants, proportional_kib  # noqa: E402  (Ray's raylet, GCS, workers: the driver's)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mnist_core", *args]


def timed(args: list[str], env: dict, sample_memory: bool = False) -> tuple[float, dict, float]:
    """Wall seconds, the JSON line, and (when asked) the peak PSS in MiB of the command's process tree."""
    start = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = [0.0]
    done = threading.Event()
    if sample_memory:
        threading.Thread(target=_sample, args=(process.pid, peak, done), daemon=True).start()
    stdout, _ = process.communicate()
    seconds = time.perf_counter() - start
    done.set()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed with exit code {process.returncode}:\n{stdout}")
    return seconds, json.loads(stdout.strip().splitlines()[-1]), peak[0]


def _sample(root_pid: int, peak: list[float], done: threading.Event) -> None:
    while not done.wait(0.2):
        peak[0] = max(peak[0], sum((proportional_kib(pid) or 0) / 1024 for pid in descendants(root_pid)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lrs", default="0.02,0.015,0.01,0.005", help="the 4 (or any number of) learning rates")
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DATA_DIR"))
    args = parser.parse_args()
    lrs = args.lrs.split(",")
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as runs:
        runs_dir = ["--runs-dir", runs]
        sequential = 0.0
        for lr in lrs:
            seconds, _, _ = timed(command("train", "--preset", "fast", "--lr", lr, *data, *runs_dir), env)
            sequential += seconds
        grid = ["--preset", "fast", "--grid", f"lr={','.join(lrs)}", *data, *runs_dir]
        one, summary, _ = timed(command("sweep", *grid, "--max-concurrent", "1"), env)
        two, summary_two, peak = timed(command("sweep", *grid, "--max-concurrent", "2"), env, sample_memory=True)
    best = summary["best"]
    print(f"{len(lrs)} fast-preset runs, lr in {{{args.lrs}}}, on {summary['where']} (this machine: "
          f"{os.cpu_count()} CPUs)")
    print(f"sequential CLI runs:        {sequential:6.1f} s")
    print(f"Ray sweep, 1 at a time:     {one:6.1f} s   overhead {one / sequential:.2f}x (target <= 1.3x)")
    print(f"Ray sweep, 2 at a time:     {two:6.1f} s   ({two / sequential:.2f}x); peak memory {peak:,.0f} MiB PSS")
    print(f"best: lr={best['config']['lr']} at {best['test_accuracy']:.2f} % (2 at a time: "
          f"{summary_two['best']['test_accuracy']:.2f} %)")
    import torch

    if torch.cuda.is_available():
        print(f"GPU {torch.cuda.get_device_name()}: {len(lrs) / one * 60:.1f} trials per minute (1 at a time)")


if __name__ == "__main__":
    main()
