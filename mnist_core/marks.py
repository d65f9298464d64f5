"""A person's verdicts on suspected label errors: one small JSON file per dataset and split.

    runs/label-marks/<dataset>-<split>.json   {"marks": {"<image index>": "wrong" | "ambiguous" | "right"}}

They live in the runs folder (the data folder may be read-only, as a shared one is), are
written atomically (a crash leaves the previous file whole) and survive restarts. Training can
leave out the images marked "wrong", and optionally "ambiguous" (`excluded_indices`); the run's
config then records exactly which indices it left out.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

from mnist_core.runs import MARKS_FOLDER, default_runs_dir, write_json

VERDICTS = ("wrong", "ambiguous", "right")
VERDICT_LABELS = {"wrong": "label is wrong", "ambiguous": "ambiguous", "right": "label is right"}
_lock = threading.Lock()  # one read-modify-write at a time within a server


class MarksDamaged(ValueError):
    """The marks file cannot be read; the message says which and why (it is left as it is)."""


def marks_path(dataset: str, split: str, runs_dir: str | Path | None = None) -> Path:
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    return root / MARKS_FOLDER / f"{dataset}-{split}.json"


def load_marks(dataset: str, split: str, runs_dir: str | Path | None = None) -> dict[int, str]:
    """Image index -> verdict; empty when nothing was marked yet. Raises MarksDamaged."""
    path = marks_path(dataset, split, runs_dir)
    try:
        stored = json.loads(path.read_text())
        marks = stored["marks"]
        return {int(index): verdict for index, verdict in marks.items() if verdict in VERDICTS}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise MarksDamaged(f"{path.name} in {path.parent} cannot be read ({type(error).__name__}); "
                           f"move it away to start over") from error


def set_mark(dataset: str, split: str, index: int, verdict: str | None,
             runs_dir: str | Path | None = None) -> dict[int, str]:
    """Record (or, with None, clear) one verdict; returns all marks. Raises StorageError, MarksDamaged."""
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    with _lock:
        marks = load_marks(dataset, split, runs_dir)
        if verdict is None:
            marks.pop(int(index), None)
        else:
            marks[int(index)] = verdict
        path = marks_path(dataset, split, runs_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"dataset": dataset, "split": split,
                          "marks": {str(i): marks[i] for i in sorted(marks)}})
    return marks


def excluded_indices(dataset: str, runs_dir: str | Path | None = None, ambiguous: bool = False) -> tuple[int, ...]:
    """The training images marked "wrong" (and "ambiguous" if asked), sorted: a config's `exclude`."""
    leave_out = {"wrong", "ambiguous"} if ambiguous else {"wrong"}
    return tuple(sorted(i for i, verdict in load_marks(dataset, "train", runs_dir).items() if verdict in leave_out))


def marks_csv(dataset: str, split: str, rows: dict[int, dict], runs_dir: str | Path | None = None) -> str:
    """The marks as CSV: index, verdict, and any extra columns per index (given label, suggestion…)."""
    marks = load_marks(dataset, split, runs_dir)
    extra = sorted({key for values in rows.values() for key in values})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["dataset", "split", "index", "verdict", *extra])
    for index in sorted(marks):
        values = rows.get(index, {})
        writer.writerow([dataset, split, index, marks[index], *(values.get(key, "") for key in extra)])
    return out.getvalue()
