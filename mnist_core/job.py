"""The job model: one lifecycle for every kind of background work.

Five kinds of job run in the background: a training run, a sweep trial (a run made by a
sweep), a sweep, a label audit (a run folder of kind "audit") and an embedding-map build.
Each keeps a small JSON status file, and every kind reads and writes it here, one way:

    state      queued, running, finished, failed, cancelled or interrupted
    message    what a person is told
    pid        the process responsible for the job now (the server while it is queued,
               then its worker), with `pid_started`, that process's start time
    server     {"pid", "pid_started"} of the process that created the job
    owner      who started it

- **Writing** (`write_status`) reads the stored status afresh, merges the new fields and
  replaces the file atomically. With the disk full no new file can be made, so the file is then
  rewritten in place (up to the blocks it already owns): a job's final state must be recorded,
  or it would read as running forever. `only_if` writes only over the given states, so a reader
  recording "interrupted" never undoes an end the job recorded a moment before.
- **Liveness** (`is_alive`) is the pid *and* its process's start time. Process ids are reused:
  a pid alone can name some unrelated process that started later, and the job would then read
  as running forever.
- **A vanished process** (`live_status`) is recorded as "interrupted", with the reason as far
  as a reader can tell it: the server stopped, or its process was killed or crashed. A process
  that ended while its starter watched is recorded by `record_unexpected_end`, with its exit
  code. "Stopped on request" is written only when a person asked (the STOP file, Ctrl-C).
- **Events** (`JobFolder.record`) go one path for local and Ray jobs alike: appended to
  events.jsonl whole, and the status follows the events (the device once training starts, the
  final state when the outcome arrives).
- **Starting** (`start_process`) is one way for the worker, the standby worker, the sweep driver
  and the map build: a fresh interpreter in a session of its own, its output in a log file
  beside the job, lower CPU priority (`nice`), and a training slot handed over where it holds
  one (`mnist_core.slots`).
- **Stopping** is a STOP file beside the job (`request_stop`), which the job polls.

Ended jobs' status files are read through a small cache keyed by the file's identity (inode,
size and modification time), so a page that lists every job reads each once per change, not
once per look; an active job's status, which changes often, is read each time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mnist_core.events import Cancelled, Event, Failed, Finished, Started, from_dict, to_dict
from mnist_core.storage import (
    LogOutput,
    StorageError,
    append_line,
    atomic_write_bytes,
    is_disk_full,
    overwrite_small_file,
)

# The kinds of job, as `JobFolder.job_kind` and the listings name them.
RUN, TRIAL, SWEEP, AUDIT_JOB, MAP = "run", "trial", "sweep", "audit", "map"
KINDS = (RUN, TRIAL, SWEEP, AUDIT_JOB, MAP)

ACTIVE_STATES = ("queued", "running")
ENDED_STATES = ("finished", "failed", "cancelled", "interrupted")
DAMAGED = "damaged"  # never stored: what a status file that cannot be read reads as

# Why a job was interrupted: the reasons a person reads in the history.
SERVER_STOPPED = "the server stopped"
WORKER_KILLED = "its process was killed or crashed"
PROCESS_ENDED = "the process that started it stopped (the server, or the command line)"

NICE_ENV = "MNIST_JOB_NICE"  # set by start_process: the child lowers its own priority by this much
JOB_NICENESS = 5  # the server's script threads come first on a small machine


# ---------------------------------------------------------------- processes


def process_start_time(pid: int | None) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux), or None where unknown."""
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_bytes()
    except (OSError, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after the last ")".
    fields = stat[stat.rfind(b")") + 2:].split()
    try:
        return int(fields[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None


def identity(pid: int | None = None) -> dict[str, Any]:
    """{"pid", "pid_started"} of a process (this one by default), as stored in a status."""
    pid = pid or os.getpid()
    return {"pid": pid, "pid_started": process_start_time(pid)}


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is just not ours
        return True
    return True


def is_alive(pid: int | None, started: int | None = None) -> bool:
    """Whether process `pid` runs and is the one that started at `started` (when that is known)."""
    if not pid:
        return False
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if not _pid_exists(pid):
        return False
    if started is None:
        return True  # a status written before start times were recorded, or no /proc: the pid is all we have
    now = process_start_time(pid)
    if now is None:  # it ended between the two looks, or there is no /proc to ask (then the pid is all we have)
        return not Path("/proc").is_dir()
    # A zombie (ended, not yet reaped by its parent) keeps its pid and start time, but is gone all the same.
    return now == started and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] == b"Z"


def begin_job_process() -> None:
    """Called first thing by every background job's entry point (a run's worker, a sweep's
    process, a map build): nice it, if its starter asked (`start_process`), and make its output
    a `LogOutput`, so that a line its log has no room for is dropped rather than ending the job
    before it can record how it ended. Output a caller has replaced (a test capturing it) is
    left alone."""
    _lower_priority()
    for name, descriptor in (("stdout", 1), ("stderr", 2)):
        current = getattr(sys, name)
        if current is not None and current is getattr(sys, f"__{name}__"):
            try:
                current.flush()
            except OSError:
                pass  # what it held could not be written: the disk is already full
            setattr(sys, name, LogOutput(descriptor, getattr(current, "encoding", None) or "utf-8"))


def _lower_priority() -> None:
    try:
        amount = int(os.environ.get(NICE_ENV) or 0)
    except ValueError:
        amount = 0
    if amount:
        try:
            os.nice(amount)
        except OSError:
            pass


def start_process(command: Sequence[str], log_path: Path | None, pass_fds: Sequence[int] = (),
                  append: bool = True, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a background job's process: a fresh interpreter running `command`, its output in
    `log_path` (None: discarded, for a standby worker that has no job, and so no folder, yet).

    Not fork (unsafe in a threaded server) nor multiprocessing's spawn (it re-imports the parent's
    __main__, which under Streamlit is a page script). The child lowers its own priority
    (`begin_job_process`). `pass_fds` hands it descriptors, such as a held training slot; `env`
    adds variables to the ones it inherits.
    Raises OSError when the log cannot be opened or the process cannot start: nothing runs then."""
    env = {**os.environ, **(env or {}), NICE_ENV: str(JOB_NICENESS)}
    # A session of its own: Ctrl-C in the server's terminal (or a signal to its process group) must
    # not kill a job mid-write. The job sees its server gone and records itself interrupted.
    options = {"stdin": subprocess.DEVNULL, "pass_fds": tuple(pass_fds), "env": env, "start_new_session": True}
    if log_path is None:
        return subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **options)
    with open(log_path, "ab" if append else "wb") as log_file:
        return subprocess.Popen(list(command), stdout=log_file, stderr=subprocess.STDOUT, **options)


def python_module(module: str, *arguments: str) -> list[str]:
    """The command that runs `python -m module arguments...` in this interpreter."""
    return [sys.executable, "-m", module, *arguments]


# ---------------------------------------------------------------- status files


class ParsedFiles:
    """Small files parsed once per change: keyed by path, checked against the file's identity
    (inode, size, modification time) on every read, so a replaced or rewritten file is read again.

    Bounded (LRU) at `max_entries`; a status or config is about 1 kB parsed, so the default
    holds a runs folder of a few thousand jobs, more than anyone browses: older entries are
    simply read again. `parse(path)` returns the value or raises; errors are not cached, nor
    values `keep` turns down (an active job's status, which changes often: a rewrite within
    the file system's clock tick, at the same size, could otherwise read as the old one)."""

    def __init__(self, parse: Callable[[Path], Any], max_entries: int = 4096,
                 keep: Callable[[Any], bool] = lambda value: True) -> None:
        self._parse = parse
        self.max_entries = max_entries
        self._keep = keep
        self._entries: OrderedDict[Path, tuple[tuple, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path) -> Any:
        """The parsed value (shared: do not modify it); raises what `parse` or `stat` raises."""
        stat = path.stat()
        key = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        with self._lock:
            found = self._entries.get(path)
            if found is not None and found[0] == key:
                self._entries.move_to_end(path)
                return found[1]
        value = self._parse(path)
        if not self._keep(value):
            return value
        with self._lock:
            self._entries[path] = (key, value)
            self._entries.move_to_end(path)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value


class StatusDamaged(ValueError):
    """A status file cannot be read; the message says why."""


def _parse_status(path: Path) -> dict[str, Any]:
    try:
        status = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise StatusDamaged(f"its {path.name} is not valid JSON") from error
    if not isinstance(status, dict):
        raise StatusDamaged(f"its {path.name} does not hold a status")
    return status


_statuses = ParsedFiles(_parse_status, keep=lambda status: status.get("state") not in ACTIVE_STATES)


def read_status(path: Path) -> dict[str, Any]:
    """The status stored at `path` (a copy), or {"state": "damaged", "message": why}. No liveness check."""
    try:
        return dict(_statuses.get(Path(path)))
    except FileNotFoundError:
        return {"state": DAMAGED, "message": f"its {Path(path).name} is missing"}
    except OSError:
        return {"state": DAMAGED, "message": f"its {Path(path).name} cannot be read"}
    except StatusDamaged as error:
        return {"state": DAMAGED, "message": str(error)}


def _json_bytes(values: dict[str, Any]) -> bytes:
    return json.dumps(values, indent=1).encode()


def write_json(path: Path, values: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda file: file.write(_json_bytes(values)))


SMALL_FILE_BYTES = 4096  # one block: what a file already owns on disk and can be rewritten in place


def write_status(path: Path, only_if: Sequence[str] | None = None, replace: bool = False,
                 **fields: Any) -> dict[str, Any]:
    """Merge `fields` into the status at `path` and store it; returns the status as stored.

    The stored status is read afresh (never from the cache). With `only_if`, nothing is written
    unless the stored state is one of those (a reader recording "interrupted" must not undo an
    end its job recorded a moment before). `replace` starts from nothing instead of merging (a
    new build of the same map). Giving `pid` records that process's start time with it.
    Raises StorageError (an OSError) when it cannot be written even in place."""
    path = Path(path)
    try:
        stored = {} if replace else _parse_status(path)
    except (OSError, StatusDamaged):
        stored = {}  # a missing or unreadable status is replaced, not merged into
    if only_if is not None and stored.get("state") not in only_if:
        return stored
    if "pid" in fields and "pid_started" not in fields:
        fields["pid_started"] = process_start_time(fields["pid"])
    status = {**stored, **fields, "updated_at": time.time()}
    data = _json_bytes(status)
    try:
        atomic_write_bytes(path, lambda file: file.write(data))
    except StorageError as error:
        # With the disk full no new file can be made, but rewriting the blocks an existing file
        # already owns needs no new space: the job's state is still recorded.
        try:
            owned = max(SMALL_FILE_BYTES, path.stat().st_blocks * 512)
        except OSError:
            owned = 0
        if not is_disk_full(error) or len(data) > owned:
            raise
        try:
            overwrite_small_file(path, data)
        except OSError:
            raise error from None
    return status


def new_status(owner: str = "", **fields: Any) -> dict[str, Any]:
    """The status of a job just created by this process: queued, with this process responsible."""
    now = time.time()
    me = identity()
    return {"state": "queued", "message": "", **me, "server": me, "owner": owner, "created_at": now,
            "updated_at": now, **fields}


def vanished_reason(status: dict[str, Any]) -> str:
    """Why an active job's process is gone, as far as a reader can tell."""
    server = status.get("server") or {}
    if not server or server.get("pid") == status.get("pid"):
        return PROCESS_ENDED  # the process that created it (the CLI, or a server while it was queued) ended
    if not is_alive(server.get("pid"), server.get("pid_started")):
        return SERVER_STOPPED
    return WORKER_KILLED


def interrupted(reason: str, kept: str = "") -> dict[str, Any]:
    """The status fields of a job interrupted for `reason` (never a person's request)."""
    return {"state": "interrupted", "ended_at": time.time(),
            "message": f"Interrupted: {reason}." + (f" {kept}" if kept else "")}


def live_status(path: Path, kept: str = "") -> dict[str, Any]:
    """The status, with a queued or running job whose process is gone read as interrupted.

    The change is recorded when the file is writable; when it is not (a full disk, a read-only
    folder), the status still reads right and nothing fails."""
    status = read_status(path)
    if status.get("state") in ACTIVE_STATES and not is_alive(status.get("pid"), status.get("pid_started")):
        changes = interrupted(vanished_reason(status), kept)
        try:
            status = write_status(path, only_if=ACTIVE_STATES, **changes)
        except OSError:
            status = {**status, **changes}
    return status


def final_status(outcome: Event, interrupted_because: str | None = None) -> dict[str, Any]:
    """The status fields that record how a training job ended.

    A Cancelled outcome is "Stopped on request" only when no `interrupted_because` is given:
    a job stopped because its server went away was interrupted, not cancelled."""
    if isinstance(outcome, Finished):
        return {"state": "finished", "ended_at": time.time()}
    if isinstance(outcome, Cancelled):
        kept = (f"the checkpoint of epoch {outcome.epochs_completed} is kept" if outcome.epochs_completed
                else "no epoch was completed")
        if interrupted_because:
            return interrupted(interrupted_because, kept[0].upper() + kept[1:] + ".")
        return {"state": "cancelled", "ended_at": time.time(), "message": f"Stopped on request; {kept}."}
    message = outcome.message if isinstance(outcome, Failed) else f"unexpected outcome {outcome!r}"
    return {"state": "failed", "ended_at": time.time(), "message": message}


def unexpected_end(exit_code: int, what: str, log_name: str, kept: str = "") -> dict[str, Any]:
    """The status fields of a job whose process ended (`exit_code`, negative for a signal) without
    recording an end of its own. A stop signal (SIGTERM, SIGINT, SIGHUP) is an interruption; any
    other signal or exit code is a failure, with where to read more."""
    if exit_code < 0:
        number = -exit_code
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        if number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            return interrupted(f"its process was stopped ({name})", kept)
        return {"state": "failed", "ended_at": time.time(),
                "message": f"The {what} was killed ({name}); if nobody stopped it, it probably ran out of "
                           f"memory. Its output is in its {log_name}."}
    return {"state": "failed", "ended_at": time.time(),
            "message": f"The {what} ended unexpectedly (exit code {exit_code}). Its output is in its {log_name}."}


# ---------------------------------------------------------------- job folders


class _EventsCache:
    """Each events.jsonl's events so far, so a page polling a run parses only the new lines.

    Bounded (LRU) at MAX_FILES: a page watches a few runs at a time and the history caches
    ended runs' summaries itself; a run's events take up to a few hundred kB parsed."""

    MAX_FILES = 64

    def __init__(self) -> None:
        self._files: OrderedDict[Path, tuple[int, int, list[Event]]] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, path: Path) -> list[Event]:
        try:
            stat = path.stat()
        except FileNotFoundError:
            return []
        with self._lock:
            inode, offset, events = self._files.get(path, (stat.st_ino, 0, []))
            if inode != stat.st_ino or stat.st_size < offset:  # the file was replaced: start over
                offset, events = 0, []
            if stat.st_size > offset:
                with open(path, "rb") as file:
                    file.seek(offset)
                    chunk = file.read(stat.st_size - offset)
                whole = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next call
                parsed = (_parse_event(line) for line in whole.splitlines())
                events = events + [event for event in parsed if event is not None]
                offset += len(whole)
            self._files[path] = (stat.st_ino, offset, events)
            self._files.move_to_end(path)
            while len(self._files) > self.MAX_FILES:
                self._files.popitem(last=False)
            return list(events)


def _parse_event(line: bytes) -> Event | None:
    try:
        return from_dict(json.loads(line))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None  # a damaged line is skipped, not fatal


_events = _EventsCache()

STATUS_FILE = "status.json"
EVENTS_FILE = "events.jsonl"
STOP_FILE = "STOP"


class JobFolder:
    """What every job shares: its status, liveness, events and the stop request.

    Runs, trials and audits (`runs.Run`) and sweeps (`sweep.Sweep`) keep them in a folder of
    their own; a map build (`map_job.MapBuild`) keeps them beside its map, so it names its
    own `status_path` and `stop_path`."""

    path: Path
    KEPT = ""  # what an interrupted job of this kind keeps, said in its status message

    @property
    def job_kind(self) -> str:
        """One of KINDS."""
        raise NotImplementedError

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def status_path(self) -> Path:
        return self.path / STATUS_FILE

    @property
    def stop_path(self) -> Path:
        return self.path / STOP_FILE

    def status(self) -> dict[str, Any]:
        """The status as stored (no liveness check: see `current_status`)."""
        return read_status(self.status_path)

    def update_status(self, only_if: Sequence[str] | None = None, replace: bool = False,
                      **fields: Any) -> dict[str, Any]:
        """Write the status (see `write_status`)."""
        return write_status(self.status_path, only_if=only_if, replace=replace, **fields)

    def current_status(self) -> dict[str, Any]:
        """The status, with an active job whose process is gone read (and recorded) as interrupted."""
        return live_status(self.status_path, self.KEPT)

    def alive(self) -> bool:
        status = self.status()
        return status.get("state") in ACTIVE_STATES and is_alive(status.get("pid"), status.get("pid_started"))

    def request_stop(self) -> None:
        self.stop_path.touch()

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def events(self) -> list[Event]:
        """Every event so far. Only lines appended since the last call are parsed (pages poll this)."""
        return _events.read(self.path / EVENTS_FILE)

    def append_event(self, event: Event) -> None:
        append_line(self.path / EVENTS_FILE, json.dumps(to_dict(event)))

    def record(self, event: Event, interrupted_because: str | None = None) -> None:
        """Record one event of the job's training: the one path for local jobs and Ray's alike.

        The event is appended whole; the status follows it (the device when training starts,
        the final state when the outcome arrives). An end already recorded stands: a trial that
        failed at home (the server's disk filled) and then reports the stop it was sent is still
        failed, not "stopped on request". Raises StorageError when it cannot be written."""
        self.append_event(event)
        if isinstance(event, Started):
            self.update_status(device=event.device, phase="training")
        elif isinstance(event, (Finished, Failed, Cancelled)) and not self.ended():
            self.update_status(**final_status(event, interrupted_because))

    def ended(self) -> bool:
        return self.status().get("state") in ENDED_STATES

    def children(self) -> list[JobFolder]:
        """The jobs that end with this one (a sweep's trials); none for most kinds."""
        return []

    def record_unexpected_end(self, exit_code: int, what: str, log_name: str) -> None:
        """Record how the job's process ended when it ended without saying so (its starter saw the exit).

        "interrupted" is overwritten too: a page may have read the dead process first and recorded
        that, and the exit code says more. An end the job recorded itself stands."""
        only = (*ACTIVE_STATES, "interrupted") if exit_code != 0 else ACTIVE_STATES
        for child in self.children():
            child.update_status(only_if=only, **unexpected_end(exit_code, what, log_name, child.KEPT))
        self.update_status(only_if=only, **unexpected_end(exit_code, what, log_name, self.KEPT))
