"""`python -m mnist_core runs`: every run and job of the runs folder, one row each, newest first.

A table on stdout (id, kind, state, model, key settings, test accuracy, time); `--json` prints
one JSON object per row, `--csv` the CSV that the Train page's history downloads
(`run_table.rows_csv`), with every column of `run_table.COLUMNS`.
"""

from __future__ import annotations

import argparse
import json
import sys


def run_runs_command(args: argparse.Namespace) -> int:
    from mnist_core.run_table import rows_csv, run_rows

    rows = run_rows(args.runs_dir)
    if args.csv:
        sys.stdout.write(rows_csv(rows))
        return 0
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no runs yet", file=sys.stderr)
        return 0
    for row in rows:
        accuracy = f"{row['test_accuracy']:.2f} %" if row["test_accuracy"] is not None else ""
        seconds = f"{row['train_seconds']:,.1f} s" if row["train_seconds"] else ""
        settings = (f"{row['model']} {row['epochs']} ep lr {row['lr']:g} bs {row['batch_size']}"
                    if row["model"] else "")
        print(f"{row['id']:42} {row['kind']:6} {row['state']:11} {settings:32} {accuracy:>8} {seconds:>9}")
    return 0
