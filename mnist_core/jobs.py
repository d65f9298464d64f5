"""Running training jobs: in this process (`execute_run`, used by the CLI) or in the background
(`JobRunner`, used by the app).

The runner starts each job in a child process (`mnist_core.worker`), so training never blocks the Streamlit
script thread, a crash in training cannot take the server down, and GPU memory is freed when
the job ends. Everything a page needs to show a job lives in its run folder, so a job
outlives the browser session that started it and any tab can re-attach to it.

At most `MNIST_MAX_JOBS` jobs (default 1) train at once into one runs folder, counted across
every process that uses it (`slots`); the rest wait in a queue. While no job trains, the
runner keeps one standby worker that has already imported torch and read MNIST, so a job
handed to it starts without the seconds a fresh process spends importing torch and reading
MNIST (`worker --standby`). `submit` refuses, before any run folder exists, a job its policy
forbids (`policy.QuotaExceeded`) or whose dataset is not on disk (`data.DatasetMissing`). A
fault while watching the jobs (a full disk, a run folder removed by hand) is recorded in
`problem` and retried on the next poll; it never stops the queue.

Sweeps (`submit_sweep`) run on Ray Tune in a child process of their own
(`mnist_core.distributed.sweep_process`), so the server never imports Ray. With `MNIST_JOB_BACKEND=ray`,
single jobs train on the Ray cluster too: their worker process only drives the job there and
brings its events and checkpoints home (`cluster.run_job`); no standby worker is kept then.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mnist_core import slots
from mnist_core.audit import AuditSpec, create_audit
from mnist_core.checkpoint import save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.data import DatasetMissing, is_present, missing_message
from mnist_core.events import Event, Failed
from mnist_core.job import (
    ACTIVE_STATES,
    AUDIT_JOB,
    MAP,
    RUN,
    SERVER_STOPPED,
    SWEEP,
    final_status,
    interrupted,
    python_module,
    start_process,
)
from mnist_core.listing import list_jobs
from mnist_core.policy import JobPolicy
from mnist_core.runs import Run, create_run, default_runs_dir
from mnist_core.storage import explain_write_error
from mnist_core.sweep import Sweep, SweepSpec, create_sweep, ray_problem
from mnist_core.train import FitResult, fit
from mnist_core.visitors import Visitor

if TYPE_CHECKING:
    from mnist_core.map_job import MapBuild

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
HOLD_SECONDS = 1.0  # how long a page may hold the job it just submitted (JobRunner.release); the watcher adds up to POLL_SECONDS
STANDBY_RETRY_SECONDS = 30.0
STATUS_EVERY_SECONDS = 0.25
LOCAL = Visitor.local()


class RayMissing(RuntimeError):
    """A sweep or a Ray job was asked for where Ray Tune is not installed; the message says how to get it."""


def job_backend() -> str:
    """Where the runner's single jobs train: "local" (child processes, the default) or "ray"."""
    return "ray" if os.environ.get("MNIST_JOB_BACKEND", "").strip().lower() == "ray" else "local"


def execute_run(
    run: Run,
    data_dir: str | Path | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_event: Callable[[Event], None] = lambda event: None,
    download_missing: bool = True,
    interrupted_because: Callable[[], str | None] = lambda: None,
) -> FitResult:
    """Train `run` here and now, recording status, events and a checkpoint per epoch in its folder.

    `should_stop` is a person asking (Ctrl-C); `interrupted_because` names a reason the job must
    end that is not a person's (its server went away): it stops the run too, which is then
    recorded as interrupted, not cancelled.

    A fault in recording (a full disk) ends training with a Failed outcome whose message says
    so; the final state is still written when at all possible (see `job.write_status`), and
    the result is returned either way, so the caller can always report it."""
    try:
        run.update_status(state="running", pid=os.getpid(), started_at=time.time(), message="")
    except OSError as error:  # the run folder cannot be written: training could record nothing
        return FitResult(outcome=Failed(str(error)))
    last_download_report = 0.0

    def record(event: Event) -> None:
        run.record(event, interrupted_because())
        on_event(event)

    def on_download(done: int, total: int, file_name: str) -> None:
        nonlocal last_download_report
        if time.monotonic() - last_download_report >= STATUS_EVERY_SECONDS or done == total:
            last_download_report = time.monotonic()
            run.update_status(phase="downloading", download={"done": done, "total": total, "file": file_name})

    result = fit(
        run.config,
        on_event=record,
        should_stop=lambda: run.stop_requested() or should_stop() or interrupted_because() is not None,
        data_dir=data_dir,
        on_checkpoint=lambda checkpoint: save_checkpoint(run.checkpoint_path, checkpoint),
        on_download=on_download,
        download_missing=download_missing,
    )
    if not run.ended():  # recording the outcome failed (a full disk): try once more, in place if need be
        try:
            run.update_status(**final_status(result.outcome, interrupted_because()))
        except OSError as error:  # the outcome is still returned: the caller reports it
            log.warning("could not record the end of run %s: %s", run.id, error)
    return result


class JobRunner:
    """A queue of training jobs, each run in its own child process; safe to share between threads."""

    def __init__(
        self,
        runs_dir: str | Path | None = None,
        data_dir: str | Path | None = None,
        max_running: int | None = None,
        policy: JobPolicy | None = None,
        standby: bool | None = None,
    ) -> None:
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.data_dir = str(data_dir) if data_dir is not None else None
        self.max_running = max_running or slots.max_jobs()
        self.policy = policy or JobPolicy()
        self.problem: str | None = None  # why jobs cannot start or be recorded right now, for the page
        self._queue: list[Run] = []
        self._running: dict[str, tuple[Run, subprocess.Popen]] = {}
        self._unrecorded: list[tuple[Run, int]] = []  # ended jobs whose end could not be written yet
        self._sweeps: dict[str, tuple[Sweep, subprocess.Popen]] = {}
        self._held: dict[str, float] = {}  # run id -> when it starts anyway, unless released before
        self.backend = job_backend()
        self._lock = threading.Lock()
        # On by default; MNIST_STANDBY_WORKER=0 turns it off. While it waits it holds what a job would
        # (measured: 600 MiB PSS with MNIST loaded and torch._dynamo imported; a fast-preset job peaks at
        # 720), but never beside a job, so the peak is unchanged.
        self.use_standby = standby if standby is not None else os.environ.get("MNIST_STANDBY_WORKER", "1") != "0"
        self.use_standby = self.use_standby and self.backend == "local"  # a Ray job loads nothing here
        self._standby: _Standby | None = None
        self._next_standby_at = 0.0  # after a standby dies on its own, wait before the next (no respawn loop)
        with self._lock:
            self._keep_a_standby()
        self._watcher = threading.Thread(target=self._watch, name="mnist-job-watcher", daemon=True)
        self._watcher.start()

    def submit(self, config: TrainConfig, owner: str = "", hold: bool = False) -> Run:
        """Queue a training job; it starts as soon as a slot is free.

        With `hold`, a job that would start training at once (a free slot, the standby worker
        ready) also waits for `release(run)`, or about HOLD_SECONDS: the page that started it
        holds it while the browser draws that page, so the run's first second does not share a
        small machine's cores with the drawing (on 2 cores, the page's redraw after Start cost
        the browser 0.3-0.5 core-seconds). Nothing is lost if the page never releases it.

        Raises, and creates no run folder: ConfigError for invalid settings, QuotaExceeded when
        the policy forbids it, DatasetMissing when the data is not on disk, StorageError when
        the runs folder cannot be written."""
        config.validate()
        if self.backend == "ray" and ray_problem():
            raise RayMissing(f"MNIST_JOB_BACKEND=ray: {ray_problem()}")
        return self._enqueue(config, owner, lambda: create_run(config, self.runs_dir, owner=owner), hold=hold)

    def submit_audit(self, spec: AuditSpec, owner: str = "") -> Run:
        """Queue a label audit: a job like a training run (the same queue, slots and quotas),
        whose run folder has kind "audit". Raises as `submit` does."""
        spec.validate()
        return self._enqueue(spec.config, owner, lambda: create_audit(spec, self.runs_dir, owner=owner), AUDIT_JOB)

    def submit_map(self, checkpoint: str | Path | None, data_dir: str | Path | None = None, split: str = "test",
                   owner: str = "") -> MapBuild:
        """Build a checkpoint's map in the background (`embedding.start_build`): a job under the same
        quotas as the rest, which waits for a training slot. Raises QuotaExceeded, OSError."""
        from mnist_core import embedding  # its t-SNE library: only when a map is asked for

        with self._lock:
            self.policy.check(None, owner, self._active_jobs(), MAP)
            return embedding.start_build(checkpoint, data_dir or self.data_dir, split, owner=owner)

    def _enqueue(self, config: TrainConfig, owner: str, create: Callable[[], Run], kind: str = RUN,
                 hold: bool = False) -> Run:
        with self._lock:  # one check-and-create at a time, so two quick clicks cannot both pass a quota
            self.policy.check(config, owner, self._active_jobs(), kind)
            if not is_present(config.dataset, self.data_dir):
                raise DatasetMissing(missing_message(config.dataset, self.data_dir))
            run = create()
            self._queue.append(run)
            if hold and self._starts_training_at_once():
                self._held[run.id] = time.monotonic() + HOLD_SECONDS
            self._start_waiting_jobs()
        return run

    def release(self, run: Run) -> None:
        """Let a job submitted with `hold` start (at once, if a slot is free); nothing for any other."""
        with self._lock:
            if self._held.pop(run.id, None) is not None:
                self._start_waiting_jobs()

    def is_held(self, run: Run) -> bool:
        """Whether `run` waits for its page to be drawn (`submit`'s `hold`) before it starts."""
        with self._lock:
            return self._held_now(run)

    def _held_now(self, run: Run) -> bool:  # called with the lock held
        return self._held.get(run.id, 0.0) > time.monotonic()

    def _starts_training_at_once(self) -> bool:  # called with the lock held, the new job just queued
        """Whether the job just queued would be training within moments: first in the queue, a slot
        free, and the standby worker there to take it (a fresh process spends 2-3 s starting, by
        which time any page has been drawn)."""
        return (len(self._queue) == 1 and len(self._running) < self.max_running and self._standby is not None
                and not self._others_hold_the_machine())

    def submit_sweep(self, spec: SweepSpec, owner: str = "") -> Sweep:
        """Start a sweep on Ray in a child process; its trials appear as runs as soon as it starts.

        Raises, and creates nothing: ConfigError for a bad spec, QuotaExceeded when the policy
        forbids it, RayMissing without Ray Tune, DatasetMissing, StorageError."""
        spec.validate()
        with self._lock:
            self.policy.check_sweep(spec, owner, self._active_jobs())
            missing = ray_problem()
            if missing:
                raise RayMissing(missing)
            if not is_present(spec.base.dataset, self.data_dir):
                raise DatasetMissing(missing_message(spec.base.dataset, self.data_dir))
            sweep = create_sweep(spec, self.runs_dir, owner=owner)
            command = python_module("mnist_core.distributed.sweep_process", str(sweep.path), "--parent-pid", str(os.getpid()))
            command += ["--data-dir", self.data_dir] if self.data_dir else []
            self._let_standby_go()  # the sweep will hold the machine: no idle worker beside it
            try:
                process = start_process(command, sweep.path / "driver.log")
            except OSError as error:
                sweep.update_status(state="failed", ended_at=time.time(), message=f"Could not start the sweep: {error}")
                raise
            self._sweeps[sweep.id] = (sweep, process)
        return sweep

    def cancel_sweep(self, sweep: Sweep, by: Visitor = LOCAL) -> None:
        """Stop every trial of a sweep (running ones within a step) and the trials still to come.
        Raises NotYours when `by` may not stop it (a hosted demo's other visitor)."""
        by.require(sweep.status().get("owner", ""), "stop this sweep")
        sweep.request_stop()

    def cancel(self, run: Run, by: Visitor = LOCAL) -> None:
        """Stop a queued or running job; a running one stops within one training step.
        Raises NotYours when `by` may not stop it (a hosted demo's other visitor)."""
        by.require(run.status().get("owner", ""), "stop this job")
        with self._lock:
            if run in self._queue:
                self._queue.remove(run)
                self._held.pop(run.id, None)
                run.update_status(state="cancelled", ended_at=time.time(), message="Cancelled before it started.")
                return
        run.request_stop()

    def queue_position(self, run: Run) -> int | None:
        """1 for the next job to start, None when not waiting in this runner's queue (or held by its
        page for a moment: it is starting, not waiting for a slot)."""
        with self._lock:
            if run not in self._queue or self._held_now(run):
                return None
            return self._queue.index(run) + 1

    def active_runs(self) -> list[Run]:
        with self._lock:
            return [run for run, _ in self._running.values()] + list(self._queue)

    def queued_count(self) -> int:
        with self._lock:
            return len(self._queue)

    def start_problem(self, owner: str, kind: str = RUN) -> str | None:
        """Why `owner` may not start a job of `kind` now under the policy, or None (for the page, before Start)."""
        with self._lock:
            return self.policy.start_problem(owner, self._active_jobs(), kind)

    def _active_jobs(self) -> list[tuple[str, str]]:  # called with the lock held
        """(kind, owner) of every queued or running job in the runs folder, whoever started it (this
        server, another one, the CLI); a sweep's trials count as their sweep. Only a policy with
        limits needs them, so a private install never lists its runs folder here."""
        if not self.policy.limited:
            return []
        entries = list_jobs(self.runs_dir, (RUN, SWEEP, AUDIT_JOB, MAP))
        return [(entry.kind, entry.status.get("owner", "")) for entry in entries
                if entry.status.get("state") in ACTIVE_STATES]

    def _start_waiting_jobs(self) -> None:  # called with the lock held
        while self._queue and len(self._running) < self.max_running:
            run = self._queue[0]
            if self._held_now(run):  # its page is still being drawn: the watcher comes back
                return
            self._held.pop(run.id, None)
            try:
                slot = slots.try_acquire(self.runs_dir, self.max_running, holder=run.id)
            except OSError as error:
                self.problem = f"Queued jobs cannot start: {explain_write_error(error, self.runs_dir / slots.SLOTS_FOLDER)}"
                return
            if slot is None:  # every slot is taken by another process training into this runs folder
                return
            try:
                process = self._spawn(run, slot)
            except OSError as error:
                self.problem = f"Queued jobs cannot start: {explain_write_error(error, run.path / 'worker.log')}"
                return
            finally:
                slot.release()  # the child holds the slot now, for as long as it trains
            self._queue.pop(0)
            self._running[run.id] = (run, process)  # the child records its own pid when it starts
            self.problem = None

    def _worker_command(self) -> list[str]:
        # The data was checked at submit: a job never downloads behind the page's back.
        command = python_module("mnist_core.worker", "--parent-pid", str(os.getpid()), "--no-download")
        command += ["--ray"] if self.backend == "ray" else []
        return command + (["--data-dir", self.data_dir] if self.data_dir else [])

    def _spawn(self, run: Run, slot: slots.Slot) -> subprocess.Popen:
        standby, self._standby = self._standby, None
        if standby is not None:
            process = standby.hand_over(run, slot, self.data_dir)
            if process is not None:
                return process
        return start_process([*self._worker_command(), str(run.path)], run.path / "worker.log",
                             pass_fds=(slot.descriptor,))

    def _others_hold_the_machine(self) -> bool:  # called with the lock held
        """Whether a job that is not this runner's own single job holds the machine: a sweep, or
        another process's job (a map build, the CLI), which all hold a training slot while they work."""
        if any(process.poll() is None for _, process in self._sweeps.values()):
            return True
        try:
            return slots.holders(self.runs_dir) > len(self._running)  # each running job of ours holds one
        except OSError:
            return False

    def _let_standby_go(self) -> None:  # called with the lock held
        if self._standby is not None:
            self._standby.close()
            self._standby = None

    def _keep_a_standby(self) -> None:  # called with the lock held
        """Start a standby worker when none is waiting and no job holds the machine; let it go
        when one does (a sweep, an audit elsewhere, a map build), so memory peaks no higher than
        one job's."""
        if not self.use_standby:
            return
        if self._others_hold_the_machine():
            self._let_standby_go()
            return
        if self._running or self._queue:  # never beside a job; a queued one is about to be handed to it
            return
        if self._standby is not None and self._standby.alive(self.data_dir):
            return
        if self._standby is not None:
            if self._standby.process.poll() is not None:  # it died with no job: something is wrong, go slowly
                self._next_standby_at = time.monotonic() + STANDBY_RETRY_SECONDS
            self._standby.close()
            self._standby = None
        if time.monotonic() < self._next_standby_at:
            return
        try:
            self._standby = _Standby.start(self._worker_command(), self.data_dir)
        except OSError as error:  # no standby: jobs start the slow way
            log.warning("could not start a standby worker: %s", error)
            self._standby = None

    def close(self) -> None:
        """The runner is going away (its server stops): let the standby worker go, and record the
        jobs still waiting in its queue as interrupted, since nothing will start them now.
        Running jobs are not touched: their workers see the server gone, stop within a step and
        record themselves interrupted, their checkpoints kept."""
        with self._lock:
            self.use_standby = False
            self._let_standby_go()
            waiting, self._queue = self._queue, []
            self._held.clear()
        for run in waiting:
            try:
                run.update_status(**interrupted(SERVER_STOPPED, "It never started."))
            except OSError as error:  # read later, it is still interrupted: its pid is this stopped server's
                log.warning("could not record that queued run %s will not start: %s", run.id, error)

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_SECONDS)
            try:
                self._poll()
            except Exception as error:  # noqa: BLE001 - the watcher must outlive any fault, or the queue stalls
                self.problem = f"The job watcher hit a problem and will retry: {error}"
                log.exception("job watcher")

    def _poll(self) -> None:
        with self._lock:
            for run_id, (run, process) in list(self._running.items()):
                if process.poll() is not None:
                    del self._running[run_id]
                    self._unrecorded.append((run, process.returncode))
            for ended in list(self._unrecorded):
                try:
                    run, exit_code = ended
                    run.record_unexpected_end(exit_code, "training process", "worker.log")
                except FileNotFoundError:  # the folder was removed by hand: nothing left to record
                    pass
                except OSError as error:
                    self.problem = f"A finished job could not be recorded yet: {error}"
                    continue
                self._unrecorded.remove(ended)
            for sweep_id, (sweep, process) in list(self._sweeps.items()):
                if process.poll() is not None:
                    try:
                        sweep.record_unexpected_end(process.returncode, "sweep's Ray driver", "driver.log")
                    except FileNotFoundError:
                        pass
                    except OSError as error:  # kept, and tried again on the next poll
                        self.problem = f"A finished sweep could not be recorded yet: {error}"
                        continue
                    del self._sweeps[sweep_id]
            self._start_waiting_jobs()
            self._keep_a_standby()
            if not self._unrecorded and not self._queue:
                self.problem = None  # whatever it was has passed


class _Standby:
    """A worker process that has loaded everything and waits for a run on a Unix socket."""

    def __init__(self, process: subprocess.Popen, channel: socket.socket, data_dir: str | None) -> None:
        self.process = process
        self.channel = channel
        self.data_dir = data_dir

    @classmethod
    def start(cls, command: list[str], data_dir: str | None) -> _Standby:
        ours, theirs = socket.socketpair()
        try:
            process = start_process([*command, "--standby", str(theirs.fileno())], None, pass_fds=(theirs.fileno(),))
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, ours, data_dir)

    def alive(self, data_dir: str | None) -> bool:
        return self.process.poll() is None and self.data_dir == data_dir

    def hand_over(self, run: Run, slot: slots.Slot, data_dir: str | None) -> subprocess.Popen | None:
        """Give it `run` and the slot; None (and it is closed) if it cannot take them."""
        if not self.alive(data_dir):
            self.close()
            return None
        try:
            socket.send_fds(self.channel, [str(run.path).encode()], [slot.descriptor])
        except OSError:
            self.close()
            return None
        self.channel.close()
        return self.process

    def close(self) -> None:
        self.channel.close()
        if self.process.poll() is None:  # it holds no job and no slot: nothing is lost by ending it now
            self.process.terminate()


_server_runner: tuple[tuple, JobRunner] | None = None
_server_runner_lock = threading.Lock()


def _current_runner() -> JobRunner | None:
    """This server's runner if a page has made it, else None. Makes none (one would start a
    standby worker): the live view's routes ask through it for any visitor."""
    with _server_runner_lock:
        return _server_runner[1] if _server_runner is not None else None


def queue_position(run: Run) -> int | None:
    """`run`'s place in this server's job queue (1 = next), None when it waits in none."""
    runner = _current_runner()
    return runner.queue_position(run) if runner is not None else None


def release(run: Run) -> None:
    """Let `run` start if this server's runner holds it (`JobRunner.release`). The live view's
    route calls it once the browser has drawn the page that started the run."""
    runner = _current_runner()
    if runner is not None:
        runner.release(run)


def server_runner(policy: JobPolicy) -> JobRunner:
    """The one JobRunner of this server process, for its runs folder (`MNIST_RUNS_DIR`) and `policy`.

    Kept here, not in a Streamlit cache: any client may ask Streamlit to clear its caches, and a
    cached runner would then be built again, with a second standby worker beside the first and the
    queue forgotten. A new runner is made only when its settings change (the tests' runs folders);
    the old one is closed then. When the server stops, the runner closes (mnist_core.shutdown)."""
    global _server_runner
    from mnist_core import shutdown

    key = (str(default_runs_dir().resolve()), os.environ.get("MNIST_DATA_DIR", ""),
           os.environ.get("MNIST_STANDBY_WORKER", ""), os.environ.get("MNIST_JOB_BACKEND", ""), policy)
    with _server_runner_lock:
        if _server_runner is not None and _server_runner[0] == key:
            return _server_runner[1]
        if _server_runner is not None:
            _server_runner[1].close()
        runner = JobRunner(policy=policy)
        shutdown.on_stop(runner.close)
        _server_runner = (key, runner)
        return runner
