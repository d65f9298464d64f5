"""`python -m mnist_core compare A B`: two models judged image by image on the same split.

A and B are run ids, run folders, checkpoint files or `default`. stderr says the two accuracies
and how many images B fixes and breaks; the last stdout line (with `--json`, the only one) is
the comparison as JSON (`compare.Comparison.to_dict`): `a_accuracy`, `b_accuracy`, `images`,
`fixed` and `broken` (image indices, B's most confident first) and `per_class`.
"""

from __future__ import annotations

import argparse
import json
import sys


def run_compare_command(args: argparse.Namespace) -> int:
    from mnist_core.runs import model_source

    try:  # before PyTorch is imported: a mistyped run id is answered at once
        a, b = model_source(args.a, args.runs_dir), model_source(args.b, args.runs_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from mnist_core.checkpoint import CheckpointError
    from mnist_core.compare import CompareError, compare
    from mnist_core.data import DatasetCorrupt, DatasetMissing

    try:
        comparison = compare(a, b, train=args.split == "train", data_dir=args.data_dir)
    except (FileNotFoundError, CheckpointError, CompareError, DatasetMissing, DatasetCorrupt) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    result = comparison.to_dict()
    if not args.json:
        print(f"{args.a}: {result['a_accuracy']:.2f} %, {args.b}: {result['b_accuracy']:.2f} % on the "
              f"{result['images']:,} {args.split} images; B fixes {len(result['fixed'])} of A's mistakes and "
              f"breaks {len(result['broken'])} images A got right", file=sys.stderr)
        for row in result["per_class"]:
            if row["change"]:
                print(f"  digit {row['class']}: {row['a_accuracy']:.2f} % -> {row['b_accuracy']:.2f} % "
                      f"({row['change']:+.2f})", file=sys.stderr)
    print(json.dumps(result))
    return 0
