"""Runs on disk: one folder per training run, the contract between the engine and the UI.

    runs/<run id>/config.json     the TrainConfig, as a plain dict
                  status.json     state (queued, running, finished, failed, cancelled,
                                  interrupted), message, pid, owner, times
                  events.jsonl    every event `fit` reported, appended while training
                  checkpoint.pt   the model after the latest completed epoch
                  STOP            present when someone asked the run to stop

The runs folder is `MNIST_RUNS_DIR`, default `./runs`. JSON and checkpoint files are written
to a temporary file and renamed, so readers never see half a file. A run that claims to be
queued or running while the process responsible for it is gone is marked interrupted the
next time runs are listed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_core.checkpoint import atomic_write_bytes
from mnist_core.config import TrainConfig
from mnist_core.events import EpochEnd, Event, Finished, from_dict, to_dict

ACTIVE_STATES = ("queued", "running")
ENDED_STATES = ("finished", "failed", "cancelled", "interrupted")


def default_runs_dir() -> Path:
    return Path(os.environ.get("MNIST_RUNS_DIR") or "runs")


def write_json(path: Path, values: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda file: file.write(json.dumps(values, indent=1).encode()))


def _process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, it is just not ours
        return True
    return True


_events_cache: dict[Path, tuple[int, list[Event]]] = {}
_events_lock = threading.Lock()


def _parse(line: bytes) -> Event | None:
    try:
        return from_dict(json.loads(line))
    except (json.JSONDecodeError, KeyError, TypeError):
        return None  # a damaged line is skipped, not fatal


@dataclass(frozen=True)
class Run:
    path: Path

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(json.loads((self.path / "config.json").read_text()))

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "status.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"state": "interrupted", "message": "the run's status file is missing"}

    def update_status(self, **fields: Any) -> dict[str, Any]:
        status = {**self.status(), **fields, "updated_at": time.time()}
        write_json(self.path / "status.json", status)
        return status

    def append_event(self, event: Event) -> None:
        # One short write per line in append mode: readers see whole lines, or skip a torn last one.
        with open(self.path / "events.jsonl", "a") as file:
            file.write(json.dumps(to_dict(event)) + "\n")

    def events(self) -> list[Event]:
        """Every event so far. Only lines appended since the last call are parsed (pages poll this)."""
        path = self.path / "events.jsonl"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return []
        with _events_lock:
            offset, events = _events_cache.get(path, (0, []))
            if size < offset:  # the file was replaced: start over
                offset, events = 0, []
            if size > offset:
                with open(path, "rb") as file:
                    file.seek(offset)
                    chunk = file.read(size - offset)
                whole = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next call
                events = events + [_parse(line) for line in whole.splitlines()]
                events = [event for event in events if event is not None]
                _events_cache[path] = (offset + len(whole), events)
            return list(events)

    def request_stop(self) -> None:
        (self.path / "STOP").touch()

    def stop_requested(self) -> bool:
        return (self.path / "STOP").exists()

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()


def create_run(config: TrainConfig, runs_dir: str | Path | None = None, owner: str = "") -> Run:
    """A new run folder holding `config`, with state queued and this process responsible for it."""
    config.validate()
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    root.mkdir(parents=True, exist_ok=True)
    run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{config.model}-{secrets.token_hex(2)}"
    staging = root / f".{run_id}.creating"
    staging.mkdir()
    write_json(staging / "config.json", config.to_dict())
    now = time.time()
    write_json(
        staging / "status.json",
        {"state": "queued", "message": "", "pid": os.getpid(), "owner": owner, "created_at": now, "updated_at": now},
    )
    staging.rename(root / run_id)  # the run appears whole or not at all
    return Run(root / run_id)


def list_runs(runs_dir: str | Path | None = None) -> list[Run]:
    """All runs, newest first; stale queued/running runs are marked interrupted on the way."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not root.is_dir():
        return []
    runs = [Run(path) for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")]
    runs.sort(key=lambda run: run.id, reverse=True)
    for run in runs:
        mark_if_interrupted(run)
    return runs


def mark_if_interrupted(run: Run) -> dict[str, Any]:
    status = run.status()
    if status.get("state") in ACTIVE_STATES and not _process_alive(status.get("pid")):
        status = run.update_status(
            state="interrupted",
            message="The process that ran this job stopped (the server was restarted or killed). "
            "Its last saved checkpoint, if any, is kept.",
            ended_at=time.time(),
        )
    return status


def get_run(run_id: str, runs_dir: str | Path | None = None) -> Run:
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    path = root / run_id
    if "/" in run_id or run_id.startswith(".") or not (path / "config.json").is_file():
        raise FileNotFoundError(f"no run {run_id!r} in {root}")
    return Run(path)


def delete_run(run: Run) -> None:
    if run.status().get("state") in ACTIVE_STATES and _process_alive(run.status().get("pid")):
        raise RuntimeError(f"run {run.id} is still {run.status()['state']}; stop it before deleting it")
    # Rename first so a half-deleted folder is never listed as a run.
    doomed = run.path.with_name(f".{run.id}.deleting")
    run.path.rename(doomed)
    shutil.rmtree(doomed, ignore_errors=True)


@dataclass(frozen=True)
class RunSummary:
    """One row of the run history."""

    id: str
    state: str
    message: str
    config: TrainConfig
    best_val_accuracy: float | None
    test_accuracy: float | None
    epochs_done: int
    train_seconds: float
    images_per_second: float | None
    device: str
    created_at: float
    owner: str


def summarize(run: Run, events: list[Event] | None = None) -> RunSummary:
    status = mark_if_interrupted(run)
    events = run.events() if events is None else events
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    finished = next((e for e in events if isinstance(e, Finished)), None)
    return RunSummary(
        id=run.id,
        state=status.get("state", "interrupted"),
        message=status.get("message", ""),
        config=run.config,
        best_val_accuracy=max((e.val_accuracy for e in epochs), default=None),
        test_accuracy=finished.test_accuracy if finished else None,
        epochs_done=len(epochs),
        train_seconds=sum(e.seconds for e in epochs),
        images_per_second=finished.images_per_second if finished else None,
        device=status.get("device", ""),
        created_at=status.get("created_at", 0.0),
        owner=status.get("owner", ""),
    )
