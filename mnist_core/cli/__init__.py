"""Command line: `python -m mnist_core train|sweep|audit|embed|evaluate|compare|runs|export|jobs|presets|models`.

One module per command beside this one (`cli/train.py`, `cli/sweep.py`, ...); this one parses
the arguments and hands over. `mnist_core/__main__.py` calls `main`, and turns a Ctrl-C that
aborts a command into one line instead of a traceback.

`train` runs the same engine as the app, in the foreground, with a progress bar on stderr;
Ctrl-C stops it cleanly (the run is marked cancelled, the last epoch's checkpoint kept). The
last line on stdout is one JSON object with the results, for scripts and benchmarks.
`sweep` runs a hyperparameter sweep on Ray (see mnist_core.sweep), one progress line per
trial on stderr. `audit` ranks a split's images by how likely their label is wrong
(mnist_core.audit); `train --exclude-marked` leaves out those a person marked wrong. `embed`
builds (or loads) a checkpoint's embedding map (mnist_core.embedding). `compare` judges two
models image by image (mnist_core.compare); `runs` lists every run with its settings and results
(mnist_core.run_table); `export` writes a run as TensorBoard event files or its model as ONNX
(mnist_core.export). `jobs` lists every background job of every kind (mnist_core.listing).
"""

from __future__ import annotations

import argparse

from mnist_core.config import DEVICES, OPTIMIZERS, PRESETS, SCHEDULES, TrainConfig
from mnist_core.job import KINDS


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
    audit.add_argument("--preset", choices=PRESETS, default="fast", help="how the fold models train (default: fast, for 3 epochs)")
    audit.add_argument("--folds", type=int, default=4, help="K of the K-fold cross-validation (default 4)")
    audit.add_argument("--rounds", type=int, default=2,
                       help="rounds of K-fold cross-validation, each with its own folds, averaged (default 2)")
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
    embed.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # the app's server: end with it

    evaluate = commands.add_parser("evaluate", help="accuracy of a run folder, checkpoint or 'default'")
    evaluate.add_argument("path", help="a run folder, a checkpoint file, or 'default' for the shipped model")
    evaluate.add_argument("--data-dir")
    evaluate.add_argument("--split", choices=("test", "train"), default="test")

    compare = commands.add_parser("compare", help="two models image by image: what B fixes and breaks")
    compare.add_argument("a", help="the baseline: a run id or folder, a checkpoint file, or 'default'")
    compare.add_argument("b", help="the model compared with it, given the same way")
    compare.add_argument("--split", choices=("test", "train"), default="test")
    compare.add_argument("--json", action="store_true", help="only the JSON line")
    compare.add_argument("--data-dir", help="folder holding MNIST/raw (default: $MNIST_DATA_DIR or ./data)")
    compare.add_argument("--runs-dir", help="where run ids are looked up (default: $MNIST_RUNS_DIR or ./runs)")

    runs = commands.add_parser("runs", help="every run and job: settings, accuracy, time (table, JSON or CSV)")
    shown = runs.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="one JSON object per row")
    shown.add_argument("--csv", action="store_true", help="CSV, as the Train page's history downloads it")
    runs.add_argument("--runs-dir", help="the runs folder (default: $MNIST_RUNS_DIR or ./runs)")

    export = commands.add_parser("export", help="a run as TensorBoard event files, or its model as ONNX")
    export.add_argument("run", help="a run id or folder (--onnx: also a checkpoint file or 'default')")
    export.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard event files under DIR/<run id>")
    export.add_argument("--onnx", metavar="FILE", help="write the model as ONNX: 0..1 pixels in, probabilities out")
    export.add_argument("--no-check", action="store_true", help="skip checking the ONNX model against PyTorch")
    export.add_argument("--data-dir", help="folder holding MNIST/raw, for the ONNX check")
    export.add_argument("--runs-dir", help="where run ids are looked up (default: $MNIST_RUNS_DIR or ./runs)")

    jobs = commands.add_parser("jobs", help="every background job (runs, trials, sweeps, audits, map builds)")
    jobs.add_argument("--kind", action="append", choices=KINDS, help="only jobs of this kind (repeat for more)")
    jobs.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    jobs.add_argument("--runs-dir", help="the runs folder (default: $MNIST_RUNS_DIR or ./runs)")

    commands.add_parser("presets", help="list the training presets")
    commands.add_parser("models", help="list the models")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        from mnist_core.cli.train import run_train_command

        return run_train_command(args)
    if args.command == "evaluate":
        from mnist_core.cli.evaluate import run_evaluate_command

        return run_evaluate_command(args)
    if args.command == "compare":
        from mnist_core.cli.compare import run_compare_command

        return run_compare_command(args)
    if args.command == "runs":
        from mnist_core.cli.runs import run_runs_command

        return run_runs_command(args)
    if args.command == "export":
        from mnist_core.cli.export import run_export_command

        return run_export_command(args)
    if args.command == "jobs":
        from mnist_core.cli.jobs import run_jobs_command

        return run_jobs_command(args)
    if args.command == "audit":
        from mnist_core.cli.audit import run_audit_command

        return run_audit_command(args)
    if args.command == "embed":
        from mnist_core.cli.embed import run_embed_command

        return run_embed_command(args)
    if args.command == "sweep":
        from mnist_core.cli.sweep import run_sweep_command

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
