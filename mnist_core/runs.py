"""Runs on disk: one folder per training run, the contract between the engine and the UI.

    runs/<run id>/config.json     the TrainConfig, as a plain dict
                  status.json     state (queued, running, finished, failed, cancelled,
                                  interrupted), message, pid, owner, times (`mnist_core.job`)
                  events.jsonl    every event `fit` reported, appended while training
                  checkpoint.pt   the model after the latest completed epoch
                  STOP            present when someone asked the run to stop

A label audit (mnist_core.audit) is a run folder too: its status.json says kind "audit", its
config is the fold models', and it holds audit.npz instead of a checkpoint. Beside the runs,
runs/sweeps/ holds the sweeps' folders (mnist_core.sweep), runs/label-marks/ the audit's
marks (mnist_core.marks) and runs/embeddings/ some embedding maps; listings skip them.

The runs folder is `MNIST_RUNS_DIR`, default `./runs`. JSON and checkpoint files are written
to a temporary file and renamed, so readers never see half a file, and an event line is
appended whole or not at all. Run ids start with the creation time to the microsecond, so
they sort in the order the runs were made.

A run is a job (`mnist_core.job.JobFolder`): its status, liveness, events and stop request
work as every background job's do. Reading never needs to write: a run that claims to be
queued or running while the process responsible for it is gone reads as interrupted (and is
recorded so when the folder is writable), and a folder whose config or status cannot be read
reads as "damaged" with the reason, so one broken folder never breaks a listing. A listing
reads each folder's config and status once per change of the file, not once per look.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mnist_core.config import TrainConfig
from mnist_core.events import EpochEnd, Event, Finished, Progress
from mnist_core.job import (
    ACTIVE_STATES,
    AUDIT_JOB,
    DAMAGED,
    ENDED_STATES,
    RUN,
    TRIAL,
    JobFolder,
    ParsedFiles,
    new_status,
    write_json,
)
from mnist_core.storage import StorageError, explain_write_error, shown_path
from mnist_core.visitors import Visitor

__all__ = ["ACTIVE_STATES", "DAMAGED", "ENDED_STATES", "write_json"]  # re-exported: the job model's words

SWEEPS_FOLDER = "sweeps"  # runs/sweeps/ holds the sweeps' own folders (mnist_core.sweep), not runs
MARKS_FOLDER = "label-marks"  # runs/label-marks/ holds the label audit's verdicts (mnist_core.marks)
EMBEDDINGS_FOLDER = "embeddings"  # maps of checkpoints whose own folder is read-only (mnist_core.embedding)
NOT_RUNS = (SWEEPS_FOLDER, MARKS_FOLDER, EMBEDDINGS_FOLDER)
LOCAL = Visitor.local()  # a private install's user: may change anything
AUDIT = "audit"  # the status "kind" of a label audit's run folder (mnist_core.audit)


ETA_AFTER_PROGRESS, ETA_AFTER_SECONDS = 0.05, 2.0  # a run's time left is estimated from 5 % and 2 s on


class RunDamaged(ValueError):
    """A run folder's config.json or status.json cannot be read; the message says which and why."""


def default_runs_dir() -> Path:
    return Path(os.environ.get("MNIST_RUNS_DIR") or "runs")


def _parse_config(path: Path) -> TrainConfig:
    try:
        values = json.loads(path.read_text())
        if not isinstance(values, dict):
            raise ValueError("it does not hold a set of settings")
        return TrainConfig.from_dict(values).validate_saved()
    except (OSError, UnicodeDecodeError) as error:
        raise RunDamaged(f"its config.json cannot be read ({error.__class__.__name__})") from error
    except json.JSONDecodeError as error:
        raise RunDamaged(f"its config.json is not valid JSON (line {error.lineno}: {error.msg})") from error
    except (ValueError, TypeError) as error:
        raise RunDamaged(f"its config.json has a bad setting: {error}") from error


_configs = ParsedFiles(_parse_config)  # a config never changes once written: parsed once per run


@dataclass(frozen=True)
class Run(JobFolder):
    """A training run's folder (a sweep trial's and a label audit's too)."""

    path: Path
    KEPT = "Its last saved checkpoint, if any, is kept."

    @property
    def config(self) -> TrainConfig:
        """The run's settings; raises RunDamaged when config.json is missing, not JSON or not valid."""
        try:
            return _configs.get(self.path / "config.json")
        except FileNotFoundError as error:
            raise RunDamaged("its config.json is missing") from error
        except OSError as error:
            raise RunDamaged(f"its config.json cannot be read ({error.__class__.__name__})") from error

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    @property
    def kind(self) -> str:
        """AUDIT for a label audit, "" for a training run."""
        return self.status().get("kind", "") or ""

    @property
    def job_kind(self) -> str:
        status = self.status()
        if status.get("kind") == AUDIT:
            return AUDIT_JOB
        return TRIAL if status.get("sweep") else RUN


_last_id_time = 0.0
_id_lock = threading.Lock()


def _new_run_id(model: str) -> str:
    """Creation time to the microsecond, first, so ids sort in creation order (also within a second)."""
    global _last_id_time
    with _id_lock:
        now = max(time.time(), _last_id_time + 1e-6)  # two runs in one microsecond still get two times
        _last_id_time = now
    stamp = datetime.fromtimestamp(now)
    return f"{stamp:%Y%m%d-%H%M%S-%f}-{model}-{secrets.token_hex(2)}"


def create_run(config: TrainConfig, runs_dir: str | Path | None = None, owner: str = "",
               extra_status: dict[str, Any] | None = None) -> Run:
    """A new run folder holding `config`, with state queued and this process responsible for it.

    `extra_status` adds fields to status.json (a sweep's trials record their sweep's id there).

    Raises ConfigError for an invalid config and StorageError when the folder cannot be
    written (a full disk, no permission); nothing is left behind then."""
    config.validate()
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    run_id = _new_run_id(config.model)
    staging = root / f".{run_id}.creating"
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        write_json(staging / "config.json", config.to_dict())
        write_json(staging / "status.json", new_status(owner, **(extra_status or {})))
        staging.rename(root / run_id)  # the run appears whole or not at all
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, StorageError):
            raise
        raise StorageError(explain_write_error(error, staging / "config.json")) from error
    return Run(root / run_id)


def list_runs(runs_dir: str | Path | None = None) -> list[Run]:
    """All runs, newest first. Only reads: a full or read-only runs folder lists as well as any."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    try:
        runs = [Run(path) for path in root.iterdir()
                if path.is_dir() and not path.name.startswith(".") and path.name not in NOT_RUNS]
    except (FileNotFoundError, NotADirectoryError):
        return []
    runs.sort(key=lambda run: run.id, reverse=True)
    return runs


def get_run(run_id: str, runs_dir: str | Path | None = None) -> Run:
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    path = root / run_id
    if "/" in run_id or run_id.startswith(".") or not path.is_dir():
        raise FileNotFoundError(f"no run {run_id!r} in {shown_path(root)}")
    return Run(path)


def model_source(spec: str, runs_dir: str | Path | None = None) -> str | Path:
    """What `inference.resolve_checkpoint` takes, from what a person types: "default", a path that
    exists (a run folder or a checkpoint file), or a run id in the runs folder. FileNotFoundError
    says which it could not find."""
    if spec == "default" or Path(spec).exists():
        return spec
    return get_run(spec, runs_dir).path


class DeleteError(OSError):
    """A run folder could not be removed; the run is still listed and can be deleted again."""


def delete_run(run: Run, by: Visitor = LOCAL) -> None:
    """Remove a run that is not training. Raises NotYours when `by` may not (a hosted demo's other
    visitor), RuntimeError for an active run, DeleteError when the folder cannot be removed (then
    the run stays listed, as a damaged run if part of it went)."""
    by.require(run.status().get("owner", ""), f"delete run {run.id}")
    if run.alive():
        raise RuntimeError(f"run {run.id} is still {run.status().get('state')}; stop it before deleting it")
    # Rename first so a half-deleted folder is never listed as a whole run.
    doomed = run.path.with_name(f".{run.id}.deleting")
    try:
        run.path.rename(doomed)
    except OSError as error:
        raise DeleteError(f"Could not delete run {run.id}: {error.strerror or error}.") from error
    failures = _remove_tree(doomed)
    if failures:
        try:
            doomed.rename(run.path)  # still listed, so it can be looked at and deleted again
        except OSError:
            pass
        raise DeleteError(f"Could not delete all of run {run.id} ({failures[0]}). What is left is still listed.")


def settings_to_reuse(run: Run, by: Visitor = LOCAL) -> TrainConfig:
    """The run's settings, to start a new run from them. Raises NotYours when `by` may not (on a
    hosted demo a visitor reuses only their own runs: their settings can name images left out by
    that visitor's own label marks), RunDamaged when the settings cannot be read."""
    by.require(run.status().get("owner", ""), f"reuse the settings of run {run.id}")
    return run.config


def _remove_tree(folder: Path) -> list[str]:
    """Remove what can be removed of `folder`; return what could not be, as "name: reason"."""
    failures: list[str] = []

    def note(function, path, error) -> None:
        error = error[1] if isinstance(error, tuple) else error  # onerror passes exc_info, onexc the error
        failures.append(f"{Path(path).name}: {getattr(error, 'strerror', None) or error}")

    if sys.version_info >= (3, 12):
        shutil.rmtree(folder, onexc=note)
    else:
        shutil.rmtree(folder, onerror=note)
    return failures


@dataclass(frozen=True)
class RunSummary:
    """One run as the pages show it: its state, its settings and what it has achieved so far.

    `train_seconds` is one definition everywhere: time spent training, including the model's
    data-dependent preparation step and excluding data loading, compiling and evaluation, as
    measured by `fit` (the Finished event, or the latest progress report of a run that did not finish).
    """

    id: str
    state: str
    message: str
    config: TrainConfig | None  # None when the run is damaged
    best_val_accuracy: float | None
    test_accuracy: float | None
    epochs_done: int
    train_seconds: float
    images_per_second: float | None
    device: str
    created_at: float
    owner: str
    finished: Finished | None = None
    last_progress: Progress | None = None
    sweep: str = ""  # the id of the sweep this run is a trial of, or ""
    trial: int | None = None  # its number in that sweep
    kind: str = ""  # AUDIT for a label audit (mnist_core.audit), "" for a training run
    status_progress: float | None = None  # an audit's progress, 0..1, which it records in its status
    node: str = ""  # where it trained, when that was another machine (Ray)

    @property
    def damaged(self) -> bool:
        return self.state == DAMAGED

    @property
    def progress(self) -> float:
        """How much of the training is done, 0..1, from the latest progress report."""
        last = self.last_progress
        if self.finished:
            return 1.0
        if self.status_progress is not None:
            return self.status_progress
        if last is None or self.config is None:
            return 0.0
        done = (last.epoch - 1) * last.steps_per_epoch + last.step
        return min(done / (self.config.epochs * last.steps_per_epoch), 1.0)

    @property
    def seconds_left(self) -> float | None:
        """Training time left at the pace so far (evaluation after each epoch not included); None
        until the pace means something: the first steps also warm up (allocation, caches), so an
        estimate made then is several times too long."""
        if (self.last_progress is None or self.progress < ETA_AFTER_PROGRESS
                or self.last_progress.elapsed < ETA_AFTER_SECONDS):
            return None
        return self.last_progress.elapsed * (1 - self.progress) / self.progress


def run_name(summary: RunSummary) -> str:
    """A run as a person tells it apart from the others: model, learning rate, epochs and, once
    known, its test accuracy ("fast · lr 0.015 · 1 epoch · 98.99 %"). Ids stay for links and files."""
    config = summary.config
    if config is None:
        return "damaged run"
    parts = [config.model, f"lr {config.lr:g}", f"{config.epochs} epoch{'s' if config.epochs != 1 else ''}"]
    if summary.test_accuracy is not None:
        parts.append(f"{summary.test_accuracy:.2f}\u00a0%")  # a no-break space: "%" never wraps onto a line alone
    return " · ".join(parts)


def duration(seconds: float) -> str:
    """A length of time as a person reads it: "0.07 s", "42 s", "3 min 05 s", "1 h 02 min"."""
    if seconds < 0.995:  # a GPU trains the fast preset in 0.07 s: "0 s" would say nothing
        return f"{max(0.0, seconds):.2f} s"
    minutes, seconds = divmod(max(0, round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _other_machine(host: str | None) -> str:
    """The host a run trained on, when that was not this machine (a Ray worker node)."""
    return host if host and host != socket.gethostname() else ""


def summarize(run: Run, events: list[Event] | None = None) -> RunSummary:
    """A run's summary; a damaged run gets one with state "damaged" and the reason as message."""
    status = run.current_status()
    damage = status.get("message") if status.get("state") == DAMAGED else None  # status.json unreadable
    try:
        config = run.config
    except RunDamaged as error:
        config, damage = None, str(error)
    if damage is not None:
        status = {**status, "state": DAMAGED, "message": f"This run folder is damaged: {damage}."}
    events = run.events() if events is None else events
    epochs = [e for e in events if isinstance(e, EpochEnd)]
    finished = next((e for e in events if isinstance(e, Finished)), None)
    last_progress = next((e for e in reversed(events) if isinstance(e, Progress)), None)
    if finished:
        train_seconds = finished.train_seconds
    else:
        train_seconds = max(last_progress.elapsed if last_progress else 0.0, sum(e.seconds for e in epochs))
    if status.get("kind") == AUDIT:  # an audit trains K models and records its whole time itself
        train_seconds = float(status.get("seconds") or 0.0)
    return RunSummary(
        id=run.id,
        state=status.get("state", "interrupted"),
        message=status.get("message", ""),
        config=config,
        best_val_accuracy=max((e.val_accuracy for e in epochs), default=None),
        test_accuracy=finished.test_accuracy if finished else None,
        epochs_done=len(epochs),
        train_seconds=train_seconds,
        images_per_second=finished.images_per_second if finished else None,
        device=status.get("device", ""),
        created_at=status.get("created_at", 0.0),
        owner=status.get("owner", ""),
        finished=finished,
        last_progress=last_progress,
        sweep=status.get("sweep", "") or "",
        trial=status.get("trial"),
        kind=status.get("kind", "") or "",
        status_progress=status.get("progress"),
        node=_other_machine(status.get("host", "")),
    )
