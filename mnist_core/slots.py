"""Training slots shared by every process that trains into one runs folder.

`MNIST_MAX_JOBS` is a limit for the machine, not for one server: two servers on one runs
folder, or the CLI beside the app, must not each start their own jobs (on 2 cores two
jobs each run about ten times slower than one). A slot is a lock file,
`<runs folder>/.slots/<n>.lock`, held with `fcntl.flock`. The kernel releases the lock when
the holding process ends, however it ends (SIGKILL included), so a killed process never
leaves a slot taken. The holder's pid and run id are written into the file for people to read;
the lock, not the text, is what counts.

The job runner takes a slot and hands its file descriptor to the training process it
starts, then closes its own copy: the slot is held exactly as long as the training runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; each process keeps to its own limit
    fcntl = None

SLOTS_FOLDER = ".slots"
WAIT_POLL_SECONDS = 0.25


def max_jobs() -> int:
    """`MNIST_MAX_JOBS`, at least 1 (default 1)."""
    try:
        return max(1, int(os.environ.get("MNIST_MAX_JOBS") or 1))
    except ValueError:
        return 1


class Slot:
    """One held training slot; `release()` (or the process ending) frees it."""

    def __init__(self, descriptor: int, path: Path) -> None:
        self.descriptor = descriptor
        self.path = path

    def release(self) -> None:
        if self.descriptor >= 0:
            os.close(self.descriptor)  # closing the last descriptor releases the lock
            self.descriptor = -1

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def try_acquire(runs_dir: Path, slots: int, holder: str = "") -> Slot | None:
    """A free slot of `slots` in `runs_dir`, or None when all are held by running jobs.

    Raises OSError when the runs folder cannot be written (the caller reports it)."""
    folder = Path(runs_dir) / SLOTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(slots):
        path = folder / f"{number}.lock"
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return Slot(descriptor, path)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        try:  # who holds it, for people reading the folder; the lock is what counts
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"pid {os.getpid()} {holder}\n".encode(), 0)
        except OSError:
            pass  # a full disk must not stop training that needs no new space
        return Slot(descriptor, path)
    return None


def acquire(
    runs_dir: Path,
    slots: int,
    holder: str = "",
    should_stop: Callable[[], bool] = lambda: False,
    on_wait: Callable[[], None] = lambda: None,
) -> Slot | None:
    """Wait for a free slot; None if `should_stop()` turns true first. `on_wait` is called once
    when the wait begins, so the caller can say why nothing is happening."""
    told = False
    while True:
        slot = try_acquire(runs_dir, slots, holder)
        if slot is not None:
            return slot
        if should_stop():
            return None
        if not told:
            on_wait()
            told = True
        time.sleep(WAIT_POLL_SECONDS)


def holders(runs_dir: Path) -> int:
    """How many slots are held right now, by any process (a read-only look: a few lock files, cheap
    enough for the job runner's poll, which lets its standby worker go while others hold slots)."""
    folder = Path(runs_dir) / SLOTS_FOLDER
    if fcntl is None or not folder.is_dir():
        return 0
    held = 0
    for path in folder.glob("*.lock"):
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            held += 1
        finally:
            os.close(descriptor)
    return held
