"""`python -m mnist_core train`: train in the foreground, with a progress bar on stderr.

Ctrl-C stops it cleanly (the run is marked cancelled, the last epoch's checkpoint kept). The
last line on stdout is one JSON object with the results, for scripts and benchmarks. The run
holds one of the machine's training slots (`MNIST_MAX_JOBS`, see mnist_core.slots) while it trains.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mnist_core.cli import _config_from_args
from mnist_core.config import ConfigError, TrainConfig
from mnist_core.ctrl_c import StopOnCtrlC
from mnist_core.events import Compiled, EpochEnd, Event, Failed, Finished, Progress, Started


def run_train_command(args: argparse.Namespace) -> int:
    from mnist_core import slots
    from mnist_core.runs import create_run, default_runs_dir

    try:  # the options first, before PyTorch is imported (with mnist_core.jobs): a mistake is answered at once
        config = _config_from_args(args).validate()
        config = _exclude_marked(config, args)
    except (ConfigError, ValueError) as error:  # MarksDamaged is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    output_problem = _output_problem(args.output)
    if output_problem:
        print(f"error: --output: {output_problem}", file=sys.stderr)
        return 2
    from mnist_core.jobs import execute_run, final_status  # (before the run folder: a Ctrl-C meanwhile leaves none)

    runs_dir = args.runs_dir or default_runs_dir()
    try:
        run = create_run(config, runs_dir)
    except OSError as error:  # a full disk or a folder we may not write: nothing was left behind
        return _report_failure({"status": "failed", "model": config.model, "epochs": 0}, str(error))
    stop_requested = StopOnCtrlC()
    print(f"run folder: {run.path}", file=sys.stderr)
    base = {"run_dir": str(run.path), "model": config.model}
    # MNIST_MAX_JOBS counts every process training into this runs folder, the app's jobs included.
    try:
        slot = slots.acquire(
            runs_dir, slots.max_jobs(), holder=run.id, should_stop=stop_requested,
            on_wait=lambda: print(f"waiting for a free training slot: {slots.max_jobs()} job(s) already train "
                                  f"into {runs_dir} (MNIST_MAX_JOBS)...", file=sys.stderr),
        )
    except OSError as error:
        return _report_failure({**base, "status": "failed", "epochs": 0}, str(error))
    if slot is None:
        _record(run, state="cancelled", message="Cancelled before it started.")
        print(json.dumps({**base, "status": "cancelled", "epochs": 0}))
        return 130
    bar = ProgressBar(compiling=config.compile_model)
    with slot:
        result = execute_run(run, args.data_dir, should_stop=stop_requested, on_event=bar.show)
    outcome = result.outcome
    summary = {
        **base,
        "status": final_status(outcome)["state"],
        "device": run.status().get("device", ""),
        "epochs": len(result.epochs),
    }
    if isinstance(outcome, Finished):
        summary.update(
            test_accuracy=round(outcome.test_accuracy, 2),
            train_seconds=round(outcome.train_seconds, 3),
            images_per_second=round(outcome.images_per_second),
            epochs=outcome.epochs,
        )
        if outcome.compile_seconds:
            summary["compile_seconds"] = round(outcome.compile_seconds, 3)
    elif isinstance(outcome, Failed):
        return _report_failure(summary, outcome.message)
    if args.output and run.has_checkpoint():
        try:
            _copy_checkpoint(run.checkpoint_path, args.output)
        except OSError as error:
            return _report_failure({**summary, "status": "finished-not-copied"}, str(error))
    print(json.dumps(summary))
    return 0 if isinstance(outcome, Finished) else (130 if stop_requested() else 1)


def _exclude_marked(config: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """With --exclude-marked, the config that leaves out the images marked in the label audit."""
    if args.exclude_ambiguous and not args.exclude_marked:
        raise ConfigError("exclude_ambiguous", "goes with --exclude-marked")
    if not args.exclude_marked:
        return config
    from mnist_core.config import TRAIN_IMAGES
    from mnist_core.marks import leave_out, marks_path

    marked = leave_out(config.dataset, TRAIN_IMAGES, args.runs_dir, ambiguous=args.exclude_ambiguous)
    note = marked.note(config.dataset, TRAIN_IMAGES, args.runs_dir)
    if note:  # marks written before indices were checked: said, and left out of the exclusion
        print(f"note: {note}", file=sys.stderr)
    indices = marked.indices
    what = "'label is wrong' or 'ambiguous'" if args.exclude_ambiguous else "'label is wrong'"
    if not indices:
        print(f"note: no training image is marked {what} in {marks_path(config.dataset, 'train', args.runs_dir)}; "
              f"training on all of them", file=sys.stderr)
    else:
        print(f"leaving out {len(indices)} training images marked {what}", file=sys.stderr)
    return config.replace(exclude=tuple(sorted(set(config.exclude) | set(indices)))).validate()


def _report_failure(summary: dict, message: str) -> int:
    """The error on stderr and, as always, the JSON line last on stdout."""
    print(f"error: {message}", file=sys.stderr)
    print(json.dumps({**summary, "error": message}))
    return 1


def _record(run, **fields) -> None:
    try:
        run.update_status(**fields)
    except OSError:
        pass  # the JSON line says it all the same


def _output_problem(output: str | None) -> str | None:
    """Why the checkpoint could not be copied to `output`, found before any training is done."""
    if not output:
        return None
    from pathlib import Path

    target = Path(output)
    if target.is_dir():
        return f"{output} is a folder; give a file name, e.g. {target / 'model.pt'}"
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        return f"the folder {folder} does not exist"
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        return f"{output} cannot be written here (no permission)"
    return None


def _copy_checkpoint(source, output: str) -> None:
    from pathlib import Path

    from mnist_core.storage import atomic_write_bytes

    data = Path(source).read_bytes()
    atomic_write_bytes(Path(output), lambda file: file.write(data), needed_bytes=len(data))


class ProgressBar:
    """One updating line on stderr per epoch; a plain line per epoch when stderr is not a terminal."""

    def __init__(self, width: int = 30, compiling: bool = False) -> None:
        self.width = width
        self.compiling = compiling
        self.interactive = sys.stderr.isatty()
        self.epochs = 0

    def show(self, event: Event) -> None:
        if isinstance(event, Started):
            self.epochs = event.epochs
            print(
                f"training {event.model} ({event.parameters:,} parameters) on {event.device}: "
                f"{event.train_images:,} images, {event.steps_per_epoch} steps per epoch",
                file=sys.stderr,
            )
            if self.compiling:
                print("compiling the model with torch.compile (a minute or more on a CPU)...", file=sys.stderr)
        elif isinstance(event, Compiled):
            print(f"prepared with {event.method} in {event.seconds:.2f} s (not counted as training time)",
                  file=sys.stderr)
        elif isinstance(event, Progress) and self.interactive:
            done = event.step / event.steps_per_epoch
            filled = int(done * self.width)
            print(
                f"\repoch {event.epoch}/{self.epochs} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{done:4.0%} loss {event.loss:.4f} {event.images_per_second:,.0f} img/s ",
                end="",
                file=sys.stderr,
                flush=True,
            )
        elif isinstance(event, EpochEnd):
            print(
                f"\repoch {event.epoch}/{self.epochs}: train loss {event.train_loss:.4f}, "
                f"val loss {event.val_loss:.4f}, val accuracy {event.val_accuracy:.2f} %, "
                f"{event.seconds:.1f} s{' ' * 20}",
                file=sys.stderr,
            )
