"""`python -m mnist_core sweep`: a sweep on Ray from the command line.

One line per trial on stderr as it starts and ends; the last stdout line is one JSON object:
`sweep_dir`, `trials` (each with `run_dir`, its varied settings, `status`, `test_accuracy`),
`best` (the best finished trial's entry) and `seconds`. Ctrl-C stops every trial within a
step; finished trials and the last checkpoint of stopped ones are kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

from mnist_core.config import ConfigError
from mnist_core.ctrl_c import StopOnCtrlC
from mnist_core.runs import Run, summarize
from mnist_core.sweep import Sweep, SweepSpec, best_trial, create_sweep, describe, parse_grid, parse_sample, ray_problem


def run_sweep_command(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    try:
        spec = SweepSpec.from_preset(
            args.preset, grid=dict(parse_grid(text) for text in args.grid),
            sample=dict(parse_sample(text) for text in args.sample), trials=args.trials,
            max_concurrent=args.max_concurrent, asha=args.asha, seed=args.seed,
        ).validate()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    missing = ray_problem()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    if not spec.varied:
        print("note: nothing varies (no --grid or --sample): every trial uses the same settings", file=sys.stderr)
    try:
        sweep = create_sweep(spec, args.runs_dir)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        print(json.dumps({"sweep_dir": None, "trials": [], "best": None, "error": str(error)}))
        return 1
    print(f"sweep folder: {sweep.path} ({spec.count()} trials, {spec.max_concurrent} at a time)", file=sys.stderr)
    stop_requested = StopOnCtrlC("stopping every trial after its step")
    from mnist_core.distributed import private_network

    private_network.isolate_for_ray()  # this process only runs the sweep from here on
    from mnist_core.distributed import cluster, sweep_driver  # Ray, imported only now

    total = spec.count()
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Tune prints tables: stdout keeps only the JSON line
            sweep_driver.run_sweep(sweep, args.data_dir, should_stop=stop_requested,
                                   on_trial=lambda number, run, status: _show(number, total, run, status, spec))
    except OSError as error:  # the sweep's own folder cannot be written (a full disk)
        print(f"error: {error}", file=sys.stderr)
        print(json.dumps({"sweep_dir": str(sweep.path), "trials": [], "best": None, "error": str(error)}))
        return 1
    finally:
        cluster.shutdown()
    status = sweep.status()
    summary = sweep_summary(sweep, seconds=time.perf_counter() - start)
    print(json.dumps(summary))
    if status.get("state") == "failed":
        print(f"error: {status.get('message')}", file=sys.stderr)
        return 1
    if status.get("state") == "cancelled":
        return 130
    return 0 if summary["best"] else 1


def sweep_summary(sweep: Sweep, seconds: float) -> dict:
    """The JSON the CLI prints (and `bench/sweep.py` reads)."""
    spec = sweep.spec
    entries, summaries = [], []
    for run in sweep.trial_runs():
        summary = summarize(run)
        summaries.append(summary)
        entries.append({
            "trial": run.status().get("trial"),
            "run_dir": str(run.path),
            "config": {name: getattr(summary.config, name) for name in spec.varied} if summary.config else {},
            "status": summary.state,
            "test_accuracy": round(summary.test_accuracy, 2) if summary.test_accuracy is not None else None,
            "best_val_accuracy": round(summary.best_val_accuracy, 2) if summary.best_val_accuracy is not None else None,
            "train_seconds": round(summary.train_seconds, 3),
            "message": summary.message,
        })
    best = best_trial(summaries)
    status = sweep.status()
    return {
        "sweep_dir": str(sweep.path),
        "status": status.get("state"),
        "where": status.get("where", ""),
        "trials": entries,
        "best": next((entry for entry in entries if best and entry["run_dir"].endswith(best.id)), None),
        "seconds": round(seconds, 2),
    }


def _show(number: int, total: int, run: Run, status: dict, spec: SweepSpec) -> None:
    try:
        settings = describe(run.config, spec.varied) if spec.varied else "base settings"
    except ValueError:
        settings = "damaged settings"
    state = status.get("state")
    line = f"trial {number}/{total} ({settings}): {state}"
    if state == "running" and status.get("host"):
        line += f" on {status['host']}"
    elif state == "finished":
        summary = summarize(run)
        if summary.test_accuracy is not None:
            line += f", {summary.test_accuracy:.2f} % test accuracy, {summary.train_seconds:.1f} s"
    elif state in ("failed", "cancelled") and status.get("message"):
        line += f": {status['message']}"
    print(line, file=sys.stderr, flush=True)
