"""`python -m mnist_core export RUN --tensorboard DIR | --onnx FILE`: a run into other tools.

RUN is a run id or folder (`--onnx` also takes a checkpoint file or `default`). `--tensorboard`
writes the run's curves and settings as TensorBoard event files under DIR/<run id>; `--onnx`
writes the model as ONNX and checks it against PyTorch on the test split (`export.check_onnx`)
unless `--no-check`. The last stdout line is JSON: what was written, and the check's figures.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run_export_command(args: argparse.Namespace) -> int:
    from mnist_core.runs import Run, RunDamaged, model_source

    # The arguments first, before PyTorch is imported: a mistake is answered at once.
    if not args.tensorboard and not args.onnx:
        print("error: say what to write: --tensorboard DIR and/or --onnx FILE", file=sys.stderr)
        return 2
    try:
        source = model_source(args.run, args.runs_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.tensorboard and not Path(source).is_dir():
        print("error: --tensorboard exports a run (its id or folder), not a checkpoint file", file=sys.stderr)
        return 2
    from mnist_core.checkpoint import CheckpointError
    from mnist_core.data import DatasetCorrupt, DatasetMissing
    from mnist_core.export import ExportUnavailable, check_onnx, to_onnx, to_tensorboard

    result: dict = {"run": args.run}
    try:
        if args.tensorboard:
            result["tensorboard"] = str(to_tensorboard(Run(Path(source)), args.tensorboard))
            print(f"TensorBoard event files: {result['tensorboard']} (tensorboard --logdir {args.tensorboard})",
                  file=sys.stderr)
        if args.onnx:
            result["onnx"] = str(to_onnx(source, args.onnx))
            print(f"ONNX model: {result['onnx']}", file=sys.stderr)
            if not args.no_check:
                result["check"] = check_onnx(args.onnx, source, args.data_dir)
                check = result["check"]
                print(f"checked on the {check['images']:,} test images: the same class as PyTorch on "
                      f"{check['agreement']:.2f} %, probabilities within {check['max_probability_difference']:.1e}",
                      file=sys.stderr)
    except (FileNotFoundError, CheckpointError, RunDamaged, DatasetMissing, DatasetCorrupt, ExportUnavailable,
            OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
