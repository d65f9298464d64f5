"""Every run and job of a runs folder as rows of one table: for `python -m mnist_core runs` and the
Train page's CSV download, so both say the same thing.

Each job of every kind (`listing.list_jobs`, newest first) is a row: its id, kind and state, and,
for the run folders (runs, trials, audits), the dataset, model and key hyperparameters, the test
accuracy, the best validation accuracy and the training time. A damaged run folder is still a row,
with what could be read.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mnist_core.listing import list_jobs
from mnist_core.runs import Run, summarize

COLUMNS = ("id", "kind", "state", "dataset", "model", "epochs", "batch_size", "lr", "optimizer", "schedule",
           "augment", "label_smoothing", "seed", "left_out", "test_accuracy", "best_val_accuracy", "train_seconds",
           "created_at", "sweep", "message")


def run_rows(runs_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """One dict per job, newest first, with every key of COLUMNS (None where it does not apply)."""
    rows = []
    for entry in list_jobs(runs_dir):
        base = entry.to_dict()
        row: dict[str, Any] = dict.fromkeys(COLUMNS)
        row.update(id=base["id"], kind=base["kind"], state=base["state"], message=base["message"],
                   created_at=_when(base["created_at"]))
        if isinstance(entry.job, Run):
            summary = summarize(entry.job)
            row.update(state=summary.state, message=summary.message, sweep=summary.sweep or None,
                       test_accuracy=_rounded(summary.test_accuracy), best_val_accuracy=_rounded(summary.best_val_accuracy),
                       train_seconds=round(summary.train_seconds, 2) if summary.train_seconds else None)
            config = summary.config
            if config is not None:
                row.update(dataset=config.dataset, model=config.model, epochs=config.epochs,
                           batch_size=config.batch_size, lr=config.lr, optimizer=config.optimizer,
                           schedule=config.schedule, augment=config.augment,
                           label_smoothing=config.label_smoothing, seed=config.seed, left_out=len(config.exclude))
        row["message"] = " ".join(str(row["message"] or "").split())
        rows.append(row)
    return rows


def rows_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, COLUMNS in order. A cell that a spreadsheet would run as a formula (it
    starts with = + - @) is quoted with a leading apostrophe: messages can hold any text."""
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in COLUMNS})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return "" if value is None else value


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _when(seconds: float | None) -> str | None:
    """A time as ISO 8601 in UTC, or None."""
    if not isinstance(seconds, (int, float)):
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="seconds")
