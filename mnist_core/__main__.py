"""Command line: `python -m mnist_core train|sweep|audit|embed|evaluate|presets|models`.

`train` runs the same engine as the app, in the foreground, with a progress bar on stderr;
Ctrl-C stops it cleanly (the run is marked cancelled, the last epoch's checkpoint kept). The
last line on stdout is one JSON object with the results, for scripts and benchmarks.
`sweep` runs a hyperparameter sweep on Ray (see mnist_core.sweep), one progress line per
trial on stderr. `audit` ranks a split's images by how likely their label is wrong
(mnist_core.audit); `train --exclude-marked` leaves out those a person marked wrong. `embed`
builds (or loads) a checkpoint's embedding map (mnist_core.embedding).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mnist_core.config import DEVICES, OPTIMIZERS, PRESETS, SCHEDULES, ConfigError, TrainConfig
from mnist_core.ctrl_c import StopOnCtrlC
from mnist_core.events import Compiled, EpochEnd, Event, Failed, Finished, Progress, Started


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mnist_core", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model in the foreground")
    train.add_argument("--preset", choices=PRESETS, help="start from a preset; other options override it")
    train.add_argument("--model")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--optimizer", choices=OPTIMIZERS)
    train.add_argument("--schedule", choices=SCHEDULES)
    train.add_argument("--cycle-momentum", action=argparse.BooleanOptionalAction, default=None,
                       help="with --schedule onecycle: also swing Adam's beta1 / SGD's momentum (default: yes)")
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None)
    train.add_argument("--label-smoothing", type=float)
    train.add_argument("--seed", type=int)
    train.add_argument("--device", choices=DEVICES)
    train.add_argument("--dataset", choices=("mnist", "fashion-mnist"))
    train.add_argument("--train-subset", type=int, help="train on the first N images only (0 = all)")
    train.add_argument("--compile", dest="compile_model", action=argparse.BooleanOptionalAction, default=None,
                       help="torch.compile the model first (helps on a GPU); its time is reported apart")
    train.add_argument("--data-dir", help="folder holding MNIST/raw (default: $MNIST_DATA_DIR or ./data)")
    train.add_argument("--runs-dir", help="where run folders go (default: $MNIST_RUNS_DIR or ./runs)")
    train.add_argument("--output", help="also copy the final checkpoint to this path")
    train.add_argument("--exclude-marked", action="store_true",
                       help="leave out the training images marked 'label is wrong' in the label audit")
    train.add_argument("--exclude-ambiguous", action="store_true",
                       help="with --exclude-marked: also those marked 'ambiguous'")

    sweep = commands.add_parser("sweep", help="a hyperparameter sweep on Ray: every trial is a run folder")
    sweep.add_argument("--preset", choices=PRESETS, default="fast", help="the base config (default: fast)")
    sweep.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                       help="try each value (repeat for more fields; every combination is a trial)")
    sweep.add_argument("--sample", action="append", default=[], metavar="FIELD=LOW:HIGH[:log]",
                       help="draw a value per trial from this range, on a log scale with :log")
    sweep.add_argument("--trials", type=int, default=1, help="samples per grid point (default 1)")
    sweep.add_argument("--max-concurrent", type=int, default=1, help="trials that train at once (default 1)")
    sweep.add_argument("--asha", action="store_true", help="stop poor trials early (ASHA, on validation accuracy)")
    sweep.add_argument("--seed", type=int, default=0, help="seed of the random samples (default 0)")
    sweep.add_argument("--data-dir", help="folder holding MNIST/raw (default: $MNIST_DATA_DIR or ./data)")
    sweep.add_argument("--runs-dir", help="where run folders go (default: $MNIST_RUNS_DIR or ./runs)")

    audit = commands.add_parser("audit", help="suspected label errors of a split (confident learning)")
    audit.add_argument("--split", choices=("train", "test"), default="train")
    audit.add_argument("--preset", choices=PRESETS, default="fast", help="how the fold models train (default: fast)")
    audit.add_argument("--folds", type=int, default=4, help="K of the K-fold cross-validation (default 4)")
    audit.add_argument("--seed", type=int, default=0, help="seed of the folds' shuffle (default 0)")
    audit.add_argument("--checkpoint", help="test split: judge it with this model (a run folder, a .pt file or "
                                            "'default') instead of the fold models' average")
    audit.add_argument("--fresh", action="store_true", help="train again even if a stored audit matches")
    audit.add_argument("--data-dir", help="folder holding MNIST/raw (default: $MNIST_DATA_DIR or ./data)")
    audit.add_argument("--runs-dir", help="where audits and marks are kept (default: $MNIST_RUNS_DIR or ./runs)")

    embed = commands.add_parser("embed", help="the 2-D map of a model's test digits (t-SNE), built or cached")
    embed.add_argument("checkpoint", help="a run folder, a checkpoint file, or 'default' for the shipped model")
    embed.add_argument("--split", choices=("test", "train"), default="test")
    embed.add_argument("--data-dir", help="folder holding MNIST/raw (default: $MNIST_DATA_DIR or ./data)")

    evaluate = commands.add_parser("evaluate", help="accuracy of a run folder, checkpoint or 'default'")
    evaluate.add_argument("path", help="a run folder, a checkpoint file, or 'default' for the shipped model")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--split", choices=("test", "train"), default="test")

    commands.add_parser("presets", help="list the training presets")
    commands.add_parser("models", help="list the models")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        return _train(args)
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "audit":
        from mnist_core.audit_cli import run_audit_command

        return run_audit_command(args)
    if args.command == "embed":
        from mnist_core.embed_cli import run_embed_command

        return run_embed_command(args)
    if args.command == "sweep":
        from mnist_core.sweep_cli import run_sweep_command

        return run_sweep_command(args)
    if args.command == "presets":
        for preset in PRESETS.values():
            settings = ", ".join(
                f"{k}={v}" for k, v in preset.config.to_dict().items() if v != getattr(TrainConfig(), k)
            )
            print(f"{preset.name:12} {preset.description}\n{'':12} {settings or 'the defaults'}")
        return 0
    from mnist_core.models import MODELS

    for spec in MODELS.values():
        print(f"{spec.name:8} {spec.parameters:>9,} parameters  {spec.description}")
    return 0


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    config = PRESETS[args.preset].config if args.preset else TrainConfig()
    overrides = {
        name: getattr(args, name)
        for name in (
            "model",
            "epochs",
            "batch_size",
            "lr",
            "optimizer",
            "schedule",
            "cycle_momentum",
            "weight_decay",
            "augment",
            "label_smoothing",
            "seed",
            "device",
            "dataset",
            "train_subset",
            "compile_model",
        )
        if getattr(args, name) is not None
    }
    return config.replace(**overrides)


def _train(args: argparse.Namespace) -> int:
    from mnist_core import slots
    from mnist_core.jobs import execute_run, final_status
    from mnist_core.runs import create_run, default_runs_dir

    try:
        config = _config_from_args(args).validate()
        config = _exclude_marked(config, args)
    except (ConfigError, ValueError) as error:  # MarksDamaged is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2
    output_problem = _output_problem(args.output)
    if output_problem:
        print(f"error: --output: {output_problem}", file=sys.stderr)
        return 2
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
        if config.compile_model:
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
    from mnist_core.marks import excluded_indices, marks_path

    indices = excluded_indices(config.dataset, args.runs_dir, ambiguous=args.exclude_ambiguous)
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


def _evaluate(args: argparse.Namespace) -> int:
    from mnist_core.checkpoint import CheckpointError
    from mnist_core.data import DatasetCorrupt, DatasetMissing
    from mnist_core.evaluate import evaluate
    from mnist_core.inference import resolve_checkpoint

    try:
        path = resolve_checkpoint(args.path)
        result = evaluate(path, train=args.split == "train", data_dir=args.data_dir)
    except (FileNotFoundError, CheckpointError, DatasetMissing, DatasetCorrupt) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    mistakes = len(result.mistakes)
    print(
        f"{path}: {result.accuracy:.2f} % on the {args.split} split ({mistakes} mistakes of {len(result.labels)})",
        file=sys.stderr,
    )
    print(
        json.dumps(
            {
                "checkpoint": str(path),
                "split": args.split,
                "accuracy": round(result.accuracy, 2),
                "mistakes": mistakes,
                "images": len(result.labels),
            }
        )
    )
    return 0


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
            print(f"compiled with torch.compile in {event.seconds:.1f} s (not counted as training time)",
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


if __name__ == "__main__":
    sys.exit(main())
