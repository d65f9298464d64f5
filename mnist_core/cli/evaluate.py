"""`python -m mnist_core evaluate PATH`: a checkpoint's accuracy on a split, and its mistakes' count."""

from __future__ import annotations

import argparse
import json
import sys


def run_evaluate_command(args: argparse.Namespace) -> int:
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
