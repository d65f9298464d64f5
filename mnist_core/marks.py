"""A person's verdicts on suspected label errors: one small JSON file per dataset and split.

    runs/label-marks/<dataset>-<split>.json   {"marks": {"<image index>": "wrong" | "ambiguous" | "right"}}
    runs/label-marks/visitors/<id>/<dataset>-<split>.json   a hosted demo's visitor's own marks

Whose marks are read or written is named by a `Visitor` (`by=`): on a private install everyone
shares one set; on a hosted demo each visitor has their own, so one visitor's verdicts steer only
their own training, and the shared marks cannot be changed from a hosted page.

They live in the runs folder (the data folder may be read-only, as a shared one is), are
written atomically (a crash leaves the previous file whole) and survive restarts. Training can
leave out the images marked "wrong", and optionally "ambiguous" (`excluded_indices`); the run's
config then records exactly which indices it left out.

Each change is a read-modify-write of the whole file, and several processes may change the same
file at once (two app servers on one runs folder, the CLI beside the app). A `threading.Lock`
only orders the threads of one process, so `set_mark` also holds an exclusive `fcntl.flock` on
a lock file, runs/.locks/label-marks-<dataset>-<split>.lock, for the whole read-modify-write;
otherwise two processes read the same old marks and the second write drops the first one's
marks. The lock file is kept (it lives outside runs/label-marks/, so that folder holds only
marks); the kernel releases the lock when its process ends, however it ends, so a killed
process never leaves the marks locked.

An index outside the split is refused when it is written (`set_mark(..., count=...)`); marks
written before that check may still hold such indices, and `leave_out` reports them apart
instead of letting them into a config's `exclude`, which would refuse the whole list.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import numbers
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from mnist_core.runs import MARKS_FOLDER, default_runs_dir, write_json
from mnist_core.storage import shown_path
from mnist_core.visitors import NotYours, Visitor

try:
    import fcntl
except ImportError:  # Windows: no flock; the thread lock below then only orders one process's writes
    fcntl = None

VERDICTS = ("wrong", "ambiguous", "right")
VERDICT_LABELS = {"wrong": "label is wrong", "ambiguous": "ambiguous", "right": "label is right"}
VISITORS_FOLDER = "visitors"  # runs/label-marks/visitors/<id>/: a hosted demo's visitors' own marks
HOSTED_MAX_MARKS = 2000  # per visitor on a hosted demo: more than a class marks, far from a full disk
LOCAL = Visitor.local()
LOCKS_FOLDER = ".locks"  # in the runs folder; hidden, so it is not listed as a run
_lock = threading.Lock()  # the threads of one server, one at a time (flock alone is per open file)


class MarksDamaged(ValueError):
    """The marks file cannot be read; the message says which and why (it is left as it is)."""


def _owner(by: Visitor) -> str:
    """Whose marks `by` reads and writes: "" for the shared ones, else a hosted visitor's id."""
    if by.hosted and not by.id:
        raise NotYours("Label marks on this shared demo belong to a visitor, and this browser has no visitor "
                       "identity yet (are cookies blocked?). Reload the page to get one.")
    return by.marks_owner


def marks_path(dataset: str, split: str, runs_dir: str | Path | None = None, *, by: Visitor = LOCAL) -> Path:
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    owner = _owner(by)
    folder = root / MARKS_FOLDER / VISITORS_FOLDER / owner if owner else root / MARKS_FOLDER
    return folder / f"{dataset}-{split}.json"


def lock_path(dataset: str, split: str, runs_dir: str | Path | None = None, *, by: Visitor = LOCAL) -> Path:
    """The file `set_mark` locks while it changes these marks (see the module docstring)."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    owner = _owner(by)
    return root / LOCKS_FOLDER / f"{MARKS_FOLDER}-{owner + '-' if owner else ''}{dataset}-{split}.lock"


@contextlib.contextmanager
def _exclusive(dataset: str, split: str, runs_dir: str | Path | None, by: Visitor) -> Iterator[None]:
    """Hold these marks against every other writer: threads here, and other processes via flock."""
    with _lock:
        if fcntl is None:  # no cross-process lock on this platform: only this process's threads wait
            yield
            return
        path = lock_path(dataset, split, runs_dir, by=by)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)  # waits for the other process's write to finish
            yield
        finally:
            os.close(descriptor)  # closing releases the lock


def load_marks(dataset: str, split: str, runs_dir: str | Path | None = None, *, by: Visitor = LOCAL) -> dict[int, str]:
    """Image index -> verdict, as `by` sees them (a hosted visitor: their own); empty when nothing
    was marked yet. Raises MarksDamaged."""
    path = marks_path(dataset, split, runs_dir, by=by)
    try:
        stored = json.loads(path.read_text())
        marks = stored["marks"]
        return {int(index): verdict for index, verdict in marks.items() if verdict in VERDICTS}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise MarksDamaged(f"{path.name} in {shown_path(path.parent)} cannot be read ({type(error).__name__}); "
                           f"move it away to start over") from error


def check_index(dataset: str, split: str, index: object, count: int | None) -> int:
    """`index` as an int if it names an image of the split (of `count` images; None: any index >= 0),
    else ValueError with a message for people."""
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise ValueError(f"an image is named by a whole number, got {index!r}")
    index = int(index)
    if index < 0 or (count is not None and index >= count):
        if count is None:
            has = "images are numbered from 0"
        else:
            has = f"it has {count:,} images: 0–{count - 1:,}" if count else "it has no images"
        raise ValueError(f"image {index} is not in {dataset} {split} ({has})")
    return index


def set_mark(dataset: str, split: str, index: int, verdict: str | None,
             runs_dir: str | Path | None = None, *, count: int | None = None, by: Visitor = LOCAL) -> dict[int, str]:
    """Record (or, with None, clear) one verdict of `by`'s; returns all of `by`'s marks.

    On a private install the marks are shared; on a hosted demo each visitor writes only their
    own (`Visitor.marks_owner`), at most HOSTED_MAX_MARKS of them, so nobody can change the shared
    marks, which steer everyone's training, nor fill the server's disk.
    `count` is the split's number of images: an index outside it is refused (ValueError) before
    anything is written. Raises StorageError, MarksDamaged, ValueError, NotYours."""
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {verdict!r}")
    if verdict is not None:  # clearing a mark is always allowed: it is how a stray one is removed
        index = check_index(dataset, split, index, count)
    elif isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise ValueError(f"an image is named by a whole number, got {index!r}")
    with _exclusive(dataset, split, runs_dir, by):
        marks = load_marks(dataset, split, runs_dir, by=by)
        if verdict is None:
            marks.pop(int(index), None)
        else:
            if by.hosted and int(index) not in marks and len(marks) >= HOSTED_MAX_MARKS:
                raise ValueError(f"This shared demo keeps at most {HOSTED_MAX_MARKS:,} marks per visitor; "
                                 f"clear some to mark others.")
            marks[int(index)] = verdict
        path = marks_path(dataset, split, runs_dir, by=by)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"dataset": dataset, "split": split,
                          "marks": {str(i): marks[i] for i in sorted(marks)}})
    return marks


class LeaveOut(NamedTuple):
    """The training images the marks leave out, and the marked indices that name no training image."""

    indices: tuple[int, ...]  # sorted, each inside the split: a config's `exclude`
    outside: tuple[int, ...]  # sorted; marked before indices were checked, and ignored

    def note(self, dataset: str, count: int, runs_dir: str | Path | None = None, *, by: Visitor = LOCAL) -> str | None:
        """What to tell a person about `outside`; None when every mark names a training image."""
        if not self.outside:
            return None
        shown = ", ".join(str(i) for i in self.outside[:10]) + (", …" if len(self.outside) > 10 else "")
        many = len(self.outside) != 1
        return (f"{len(self.outside):,} mark{'s' if many else ''} point{'' if many else 's'} at "
                f"{'images' if many else 'an image'} that {'are' if many else 'is'} not in the {dataset} training set "
                f"({shown}); {'they are' if many else 'it is'} ignored. The training set has {count:,} images "
                f"(0–{count - 1:,}); the marks are in {self._where(dataset, runs_dir, by)} in the runs folder.")

    @staticmethod
    def _where(dataset: str, runs_dir: str | Path | None, by: Visitor) -> str:
        """The marks file, relative to the runs folder: a message never shows a server's own paths."""
        root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        return marks_path(dataset, "train", root, by=by).relative_to(root).as_posix()


def leave_out(dataset: str, count: int, runs_dir: str | Path | None = None, ambiguous: bool = False,
              *, by: Visitor = LOCAL) -> LeaveOut:
    """The training images marked "wrong" (and "ambiguous" if asked), split into those inside the
    training set (of `count` images) and those outside it. Raises MarksDamaged."""
    leave = {"wrong", "ambiguous"} if ambiguous else {"wrong"}
    marked = sorted(i for i, verdict in load_marks(dataset, "train", runs_dir, by=by).items() if verdict in leave)
    return LeaveOut(tuple(i for i in marked if 0 <= i < count), tuple(i for i in marked if not 0 <= i < count))


def excluded_indices(dataset: str, runs_dir: str | Path | None = None, ambiguous: bool = False,
                     *, count: int | None = None, by: Visitor = LOCAL) -> tuple[int, ...]:
    """The training images marked "wrong" (and "ambiguous" if asked), sorted: a config's `exclude`.

    With `count` (the training set's size), indices outside it are dropped; `leave_out` says which."""
    if count is not None:
        return leave_out(dataset, count, runs_dir, ambiguous, by=by).indices
    leave = {"wrong", "ambiguous"} if ambiguous else {"wrong"}
    return tuple(sorted(i for i, verdict in load_marks(dataset, "train", runs_dir, by=by).items() if verdict in leave))


def marks_csv(dataset: str, split: str, rows: dict[int, dict], runs_dir: str | Path | None = None,
              *, by: Visitor = LOCAL) -> str:
    """`by`'s marks as CSV: index, verdict, and any extra columns per index (given label, suggestion…)."""
    marks = load_marks(dataset, split, runs_dir, by=by)
    extra = sorted({key for values in rows.values() for key in values})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["dataset", "split", "index", "verdict", *extra])
    for index in sorted(marks):
        values = rows.get(index, {})
        writer.writerow([dataset, split, index, marks[index], *(values.get(key, "") for key in extra)])
    return out.getvalue()
