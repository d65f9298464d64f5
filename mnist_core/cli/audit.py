"""`python -m mnist_core audit`: suspected label errors of a split, from the command line.

A stored audit with the same settings is read back rather than trained again (`cached`:
true). Otherwise the audit runs here, as a run folder of kind "audit", waiting for a training
slot like `train` does, with a progress bar on stderr; Ctrl-C stops it. The last stdout line
is one JSON object: `ranked_indices` (every image of the split, most suspicious first),
`seconds`, `folds`, `models`, `out_of_sample_accuracy`, `temperature` (how the fold models'
probabilities were rescaled to be honest, `audit.fit_temperature`), `estimated_label_errors` (confident learning's
estimate of how many labels are wrong: that many images, from the top, are flagged), `ranked_by`
(the ranking score), `top` (the first 20 with their labels and probabilities), `run_dir` and
`cached`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mnist_core.config import ConfigError
from mnist_core.ctrl_c import StopOnCtrlC
from mnist_core.storage import CacheDamaged

TOP = 20


def run_audit_command(args: argparse.Namespace) -> int:
    from mnist_core import slots
    from mnist_core.audit import (
        RANKED_BY,
        AuditSpec,
        create_audit,
        execute_audit,
        find_cached,
        fold_config,
        result_for,
    )
    from mnist_core.data import is_present, missing_message
    from mnist_core.runs import default_runs_dir

    start = time.perf_counter()
    try:
        spec = AuditSpec(split=args.split, config=fold_config(args.preset), folds=args.folds, seed=args.seed,
                         checkpoint=args.checkpoint or "", rounds=args.rounds).validate()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not is_present(spec.config.dataset, args.data_dir):
        print(f"error: {missing_message(spec.config.dataset, args.data_dir)}", file=sys.stderr)
        return 1
    runs_dir = args.runs_dir or default_runs_dir()
    cached = None if args.fresh else find_cached(spec, runs_dir)
    if cached is not None:
        try:
            result, run = result_for(spec, cached), cached
            print(f"using the stored audit {cached.path}", file=sys.stderr)
        except CacheDamaged as error:  # its message names audit.npz and the run, and says what is wrong
            print(f"The stored {error}; auditing again.", file=sys.stderr)
            cached = None
        except OSError as error:  # gone since it was found (deleted meanwhile): audit again
            print(f"The stored audit of run {cached.id} cannot be read ({error.strerror or error}); auditing again.",
                  file=sys.stderr)
            cached = None
    if cached is None:
        try:
            run = create_audit(spec, runs_dir)
        except OSError as error:
            print(f"error: {error}", file=sys.stderr)
            print(json.dumps({"ranked_indices": [], "error": str(error)}))
            return 1
        stop_requested = StopOnCtrlC()
        print(f"audit folder: {run.path}", file=sys.stderr)
        slot = slots.acquire(runs_dir, slots.max_jobs(), holder=run.id, should_stop=stop_requested,
                             on_wait=lambda: print("waiting for a free training slot (MNIST_MAX_JOBS)...",
                                                   file=sys.stderr))
        if slot is None:
            run.update_status(state="cancelled", message="Cancelled before it started.")
            return 130
        with slot:
            result = execute_audit(run, args.data_dir, should_stop=stop_requested, on_progress=_bar)
        print(file=sys.stderr)
        if result is None:
            status = run.status()
            print(f"error: {status.get('message')}" if status["state"] == "failed" else status.get("message"),
                  file=sys.stderr)
            print(json.dumps({"ranked_indices": [], "status": status["state"], "run_dir": str(run.path),
                              "error": status.get("message")}))
            return 1 if status["state"] == "failed" else 130
    ranking = result.ranking
    order = ranking["order"].tolist()
    estimated = int(ranking["estimated"])
    top = [{"index": i, "given": int(result.labels[i]), "suggested": int(ranking["suggested"][i]),
            "given_probability": round(float(ranking["given_probability"][i]), 4),
            "suggested_probability": round(float(ranking["suggested_probability"][i]), 4),
            "score": round(float(ranking["score"][i]), 4)} for i in order[:TOP]]
    print(f"about {estimated:,} of the {len(order):,} {spec.split} labels are likely wrong (confident learning's "
          f"estimate); ranked by {RANKED_BY.replace('_', ' ')}, the first {estimated:,} are flagged", file=sys.stderr)
    print(json.dumps({
        "split": spec.split, "folds": spec.folds if not spec.checkpoint else 0, "models": spec.models,
        "run_dir": str(run.path),
        "cached": cached is not None, "seconds": round(time.perf_counter() - start, 2),
        "audit_seconds": round(float(run.status().get("seconds") or 0), 2),
        "out_of_sample_accuracy": round(result.out_of_sample_accuracy, 2), "temperature": round(result.temperature, 3),
        "estimated_label_errors": estimated, "ranked_by": RANKED_BY, "top": top, "ranked_indices": order,
    }))
    return 0


def _bar(fraction: float, text: str, width: int = 30) -> None:
    filled = int(width * fraction)
    print(f"\r[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}% {text:40}", end="", file=sys.stderr,
          flush=True)
