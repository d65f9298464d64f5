"""`python -m mnist_core jobs`: every background job in the runs folder, of every kind.

A table on stdout (kind, state, age, id, message), newest first; `--json` prints one JSON object
per job instead, for scripts. A job whose process is gone reads (and is recorded) as
interrupted, exactly as the pages show it (mnist_core.listing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mnist_core.job import KINDS


def _age(seconds: float | None) -> str:
    if not seconds:
        return ""
    ago = max(0.0, time.time() - seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if ago >= size:
            return f"{ago / size:.0f} {unit} ago"
    return f"{ago:.0f} s ago"


def run_jobs_command(args: argparse.Namespace) -> int:
    from mnist_core.listing import list_jobs

    entries = list_jobs(args.runs_dir, kinds=args.kind or KINDS)
    if args.json:
        for entry in entries:
            print(json.dumps(entry.to_dict()))
        return 0
    if not entries:
        print("no jobs yet", file=sys.stderr)
        return 0
    for entry in entries:
        row = entry.to_dict()
        message = " ".join(row["message"].split())
        print(f"{row['kind']:6} {row['state']:11} {_age(row['created_at']):>10}  {row['id']}"
              + (f"  {message[:100]}" if message else ""))
    return 0
