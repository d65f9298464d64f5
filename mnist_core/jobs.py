"""Running training jobs: in this process (`execute_run`, used by the CLI) or in the background
(`JobRunner`, used by the app).

The runner starts each job in a child process (`mnist_core.worker`), so training never blocks the Streamlit
script thread, a crash in training cannot take the server down, and GPU memory is freed when
the job ends. Everything a page needs to show a job lives in its run folder, so a job
outlives the browser session that started it and any tab can re-attach to it. At most
`max_running` jobs train at once (`MNIST_MAX_JOBS`, default 1); the rest wait in a queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mnist_core.checkpoint import save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.events import Cancelled, Event, Failed, Finished, Started
from mnist_core.runs import Run, create_run, default_runs_dir
from mnist_core.train import FitResult, fit

POLL_SECONDS = 0.2
STATUS_EVERY_SECONDS = 0.25


def execute_run(
    run: Run,
    data_dir: str | Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_event: Callable[[Event], None] = lambda event: None,
) -> FitResult:
    """Train `run` here and now, recording status, events and a checkpoint per epoch in its folder."""
    run.update_status(state="running", pid=os.getpid(), started_at=time.time(), message="")
    last_download_report = 0.0

    def record(event: Event) -> None:
        run.append_event(event)
        if isinstance(event, Started):
            run.update_status(device=event.device, phase="training")
        on_event(event)

    def on_download(done: int, total: int, file_name: str) -> None:
        nonlocal last_download_report
        if time.monotonic() - last_download_report >= STATUS_EVERY_SECONDS or done == total:
            last_download_report = time.monotonic()
            run.update_status(phase="downloading", download={"done": done, "total": total, "file": file_name})

    result = fit(
        run.config,
        on_event=record,
        should_stop=lambda: run.stop_requested() or should_stop(),
        data_dir=data_dir,
        on_checkpoint=lambda checkpoint: save_checkpoint(run.checkpoint_path, checkpoint),
        on_download=on_download,
    )
    outcome = result.outcome
    if isinstance(outcome, Finished):
        run.update_status(state="finished", ended_at=time.time())
    elif isinstance(outcome, Cancelled):
        kept = (
            f"the checkpoint of epoch {outcome.epochs_completed} is kept"
            if outcome.epochs_completed
            else "no epoch was completed"
        )
        run.update_status(state="cancelled", ended_at=time.time(), message=f"Stopped on request; {kept}.")
    elif isinstance(outcome, Failed):
        run.update_status(state="failed", ended_at=time.time(), message=outcome.message)
    return result


class JobRunner:
    """A queue of training jobs, each run in its own child process; safe to share between threads."""

    def __init__(
        self,
        runs_dir: str | Path | None = None,
        data_dir: str | Path | None = None,
        max_running: int | None = None,
    ) -> None:
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.data_dir = str(data_dir) if data_dir is not None else None
        self.max_running = max_running or int(os.environ.get("MNIST_MAX_JOBS") or 1)
        self._queue: list[Run] = []
        self._running: dict[str, tuple[Run, subprocess.Popen]] = {}
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch, name="mnist-job-watcher", daemon=True)
        self._watcher.start()

    def submit(self, config: TrainConfig, owner: str = "") -> Run:
        """Queue a training job; it starts as soon as a slot is free. Raises ConfigError if invalid."""
        run = create_run(config, self.runs_dir, owner=owner)
        with self._lock:
            self._queue.append(run)
            self._start_waiting_jobs()
        return run

    def cancel(self, run: Run) -> None:
        """Stop a queued or running job; a running one stops within one training step."""
        with self._lock:
            if run in self._queue:
                self._queue.remove(run)
                run.update_status(state="cancelled", ended_at=time.time(), message="Cancelled before it started.")
                return
        run.request_stop()

    def queue_position(self, run: Run) -> int | None:
        """1 for the next job to start, None when not waiting in this runner's queue."""
        with self._lock:
            return self._queue.index(run) + 1 if run in self._queue else None

    def active_runs(self) -> list[Run]:
        with self._lock:
            return [run for run, _ in self._running.values()] + list(self._queue)

    def queued_count(self) -> int:
        with self._lock:
            return len(self._queue)

    def _start_waiting_jobs(self) -> None:  # called with the lock held
        while self._queue and len(self._running) < self.max_running:
            run = self._queue.pop(0)
            # A fresh interpreter, not fork (unsafe in a threaded server) nor multiprocessing's
            # spawn (it re-imports the parent's __main__, which under Streamlit is a page script).
            command = [sys.executable, "-m", "mnist_core.worker", str(run.path), "--parent-pid", str(os.getpid())]
            if self.data_dir:
                command += ["--data-dir", self.data_dir]
            with open(run.path / "worker.log", "ab") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            self._running[run.id] = (run, process)  # the child records its own pid when it starts

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            with self._lock:
                for run_id, (run, process) in list(self._running.items()):
                    if process.poll() is None:
                        continue
                    del self._running[run_id]
                    if run.status().get("state") in ("queued", "running"):
                        run.update_status(
                            state="failed",
                            ended_at=time.time(),
                            message=f"The training process ended unexpectedly (exit code {process.returncode}); "
                            f"it may have run out of memory. Its output is in {run.path / 'worker.log'}.",
                        )
                self._start_waiting_jobs()
