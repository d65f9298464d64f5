"""Running a sweep on Ray Tune: `run_sweep(sweep)`.

On a local Ray the sweep holds one of the machine's training slots (`MNIST_MAX_JOBS`, see
`slots`) while it runs, like any job. The CLI's `sweep` command calls `run_sweep` in its own
process; the app starts `sweep_process` as a child process (`JobRunner.submit_sweep`), which
waits for the slot before it imports this module, so Ray is never imported into the Streamlit
server, and a hosted demo pays Ray's memory only while a sweep runs, never while it waits.

Ray Tune schedules the trials (at most `max_concurrent` at once, each with the resources of
`cluster.trial_resources`) and, with `asha`, stops poor ones early on their validation
accuracy per epoch. Each trial is `cluster.train_remotely`, that is `fit`, reporting to Tune
after every epoch. The configs come from `SweepSpec.configs()`, expanded before Tune starts,
so Tune's search space is simply the list of trial run folders to fill.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # trials write nothing on their node, so no folder is needed
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C is the CLI's: it stops the trials cleanly

from ray import tune  # noqa: E402 - after the settings above, which Tune reads on import
from ray.tune.schedulers import ASHAScheduler  # noqa: E402

from mnist_core import slots  # noqa: E402
from mnist_core.distributed import cluster  # noqa: E402
from mnist_core.job import ENDED_STATES, interrupted  # noqa: E402
from mnist_core.runs import Run, create_run  # noqa: E402
from mnist_core.storage import explain_write_error, is_disk_full  # noqa: E402
from mnist_core.sweep import WAITING_FOR_A_SLOT, Sweep  # noqa: E402

TrialWatcher = Callable[[int, Run, dict], None]  # (trial number, run, its status) on each change of state


def run_sweep(sweep: Sweep, data_dir: str | None = None, should_stop: Callable[[], bool] = lambda: False,
              on_trial: TrialWatcher | None = None, num_cpus: int | None = None,
              interrupted_because: Callable[[], str | None] = lambda: None,
              slot: slots.Slot | None = None) -> Sweep:
    """Run every trial of `sweep` on Ray, recording each in its run folder; returns the sweep.

    `slot`: a training slot the caller already holds (the app's sweep process waits for it before
    it imports Ray, `sweep_process`); None: on a local Ray, one is taken here, and given back.

    The sweep ends finished (whatever its trials' outcomes), cancelled when a person stopped it
    (its STOP file, `should_stop`), interrupted when it had to end for another reason
    (`interrupted_because`: the server that started it went away), or failed when Ray itself
    could not run it; its status message says which trials did what."""
    spec = sweep.spec
    owner = sweep.status().get("owner", "")
    runs: dict[str, Run] = {}
    sweep.update_status(state="running", pid=os.getpid(), started_at=time.time(), message="Starting Ray…")
    try:
        for number, config in enumerate(spec.configs(), start=1):
            run = create_run(config, sweep.runs_dir, owner=owner, extra_status={"sweep": sweep.id, "trial": number})
            runs[run.id] = run
            sweep.update_status(trials=list(runs))  # each trial listed as soon as it exists: none is orphaned
    except OSError as error:  # a full disk: the trials made so far end with the sweep
        _end_unstarted(sweep, runs, "failed", f"The sweep's trials could not be created: {error}")
        return sweep
    stopping = lambda: sweep.stop_requested() or should_stop() or interrupted_because() is not None  # noqa: E731
    taken = None  # a slot taken here, given back at the end
    if slot is None and not os.environ.get("RAY_ADDRESS", "").strip():
        # On this machine a sweep is one of its MNIST_MAX_JOBS training jobs, so a sweep and a
        # single job never train side by side on a small machine (or a hosted demo's memory).
        taken = slots.acquire(sweep.runs_dir, slots.max_jobs(), holder=sweep.id, should_stop=stopping,
                              on_wait=lambda: sweep.update_status(message=WAITING_FOR_A_SLOT))
        if taken is None:
            _end_stopped(sweep, runs, interrupted_because(), "before it started")
            return sweep
    try:
        where = cluster.connect(num_cpus, should_stop=stopping)
        resources = cluster.trial_resources(spec.max_concurrent)
        sweep.update_status(where=where, message=f"Running on {where}, {cluster.describe_resources(resources)} "
                                                 f"per trial, {spec.max_concurrent} at a time.")
        _tune(sweep, runs, resources, data_dir, stopping, on_trial, interrupted_because)
    except cluster.ConnectStopped:  # stopped while the named cluster had not answered yet
        _end_stopped(sweep, runs, interrupted_because(), "before it started")
        return sweep
    except cluster.ClusterUnreachable as error:  # its message says what to check: no traceback
        _end_unstarted(sweep, runs, "failed", f"The sweep could not run on Ray: {error}")
        return sweep
    except Exception as error:  # noqa: BLE001 - Ray could not run the sweep: record it, leave no trial "queued"
        traceback.print_exc()  # for driver.log (dropped if its disk is full: `begin_job_process`)
        # A full disk: Tune could not save its own state beside the sweep; anything else is Ray's to say.
        message = (f"The sweep failed. {explain_write_error(error, sweep.path / 'tune')}" if is_disk_full(error)
                   else f"The sweep could not run on Ray: {cluster.last_error_line(error)}.")
        _end_unstarted(sweep, runs, "failed", message)
        return sweep
    finally:
        if taken is not None:
            taken.release()
    states = [run.status().get("state") for run in runs.values()]
    counts = ", ".join(f"{states.count(state)} {state}" for state in ENDED_STATES if states.count(state))
    summary = f"{len(states)} trials: {counts}."
    reason = interrupted_because()
    if reason:
        sweep.update_status(**interrupted(reason, summary))
    else:
        sweep.update_status(state="cancelled" if stopping() else "finished", ended_at=time.time(), message=summary)
    return sweep


def _end_stopped(sweep: Sweep, runs: dict[str, Run], reason: str | None, when: str) -> None:
    """End a sweep stopped `when` (e.g. "before it started"): interrupted for `reason`, or cancelled on request."""
    if reason:
        changes = interrupted(reason, f"It stopped {when}.")
        _end_unstarted(sweep, runs, changes["state"], changes["message"])
    else:
        _end_unstarted(sweep, runs, "cancelled", f"Stopped on request {when}.")


def _end_unstarted(sweep: Sweep, runs: dict[str, Run], state: str, message: str) -> None:
    """End the sweep, and every trial that has not ended, with `state` and `message`."""
    for run in runs.values():
        if run.status().get("state") not in ENDED_STATES:
            run.update_status(state=state, ended_at=time.time(), message=message)
    sweep.update_status(state=state, ended_at=time.time(), message=message)


def _tune(sweep: Sweep, runs: dict[str, Run], resources: dict[str, float], data_dir: str | None,
          stopping: Callable[[], bool], on_trial: TrialWatcher | None,
          interrupted_because: Callable[[], str | None]) -> None:
    spec = sweep.spec
    channel = cluster.Channel.remote()
    home = cluster.Homecoming(channel, runs, sweep_stop=stopping, interrupted_because=interrupted_because)
    trials = [{"run_id": run.id, "config": run.config.to_dict()} for run in runs.values()]
    scheduler = None
    if spec.asha:
        scheduler = ASHAScheduler(time_attr="epoch", metric="val_accuracy", mode="max", grace_period=1,
                                  reduction_factor=2, max_t=max(trial["config"]["epochs"] for trial in trials))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trial, channel=channel, data_dir=data_dir), resources),
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(
            num_samples=1, max_concurrent_trials=spec.max_concurrent, scheduler=scheduler, reuse_actors=True,
            trial_name_creator=_run_id_of, trial_dirname_creator=_run_id_of,
        ),
        # Tune's own files beside the sweep; through Ray Client its loop runs on the head node, which
        # has its own disk: the default folder there.
        run_config=tune.RunConfig(name="tune", storage_path=None if _through_client() else str(sweep.path.resolve()),
                                  verbose=0, callbacks=[_Settle(channel)]),
    )
    done = threading.Event()
    seen: dict[str, str] = {}  # each trial's last reported state
    pumping = threading.Thread(target=_pump, args=(home, runs, on_trial, done, seen), name="sweep-homecoming",
                               daemon=True)
    pumping.start()
    try:
        tuner.fit()
    finally:
        done.set()
        pumping.join()
        _collect_ends(home, runs)
        _report_changes(runs, on_trial, seen)
        cluster.ray.kill(channel)


def _collect_ends(home: cluster.Homecoming, runs: dict[str, Run], wait_seconds: float = 5.0) -> None:
    """Write what is still on its way (Tune's last "ended" notes travel asynchronously); a trial
    still not ended after that never said how, and is marked failed."""
    deadline = time.monotonic() + wait_seconds
    unended = lambda: [run for run in runs.values() if run.status().get("state") not in ENDED_STATES]  # noqa: E731
    while True:
        home.pump()
        if not unended() or time.monotonic() > deadline:
            break
        time.sleep(cluster.PUMP_SECONDS)
    for run in unended():
        home.settle(run.id, "The trial ended without reporting how (see the sweep's driver.log).")


def _through_client() -> bool:
    return os.environ.get("RAY_ADDRESS", "").strip().startswith("ray://")


def _trial(config: dict, channel=None, data_dir: str | None = None) -> None:
    """One Tune trial: `fit` through `cluster.train_remotely`, reporting each epoch to Tune (for ASHA)."""
    trial = config["trial"]

    def report(epoch) -> None:
        # Not the last epoch: ASHA stops a trial that reaches max_t, and stopped there, it would
        # never record its Finished event. Its rungs all lie before the last epoch anyway.
        if epoch.epoch < trial["config"]["epochs"]:
            tune.report({"val_accuracy": epoch.val_accuracy, "epoch": epoch.epoch})

    cluster.train_remotely(trial["run_id"], trial["config"], channel, data_dir, on_epoch=report)


def _run_id_of(trial) -> str:
    return trial.config["trial"]["run_id"]


class _Settle(tune.Callback):
    """Tells the server how a trial ended, for trials that could not say so themselves (their
    process died, or ASHA stopped them). Through the channel, because Tune's own loop may run on
    the cluster (with Ray Client it does), not in the server's process."""

    def __init__(self, channel) -> None:
        self.channel = channel

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.channel.ended.remote(_run_id_of(trial), None)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        error = trial.get_error() if hasattr(trial, "get_error") else None
        reason = cluster.last_error_line(error) if error else "its process died"
        self.channel.ended.remote(_run_id_of(trial), f"The trial's training process failed: {reason}. "
                                                     f"The other trials go on.")


def _pump(home: cluster.Homecoming, runs: dict[str, Run], on_trial: TrialWatcher | None,
          done: threading.Event, seen: dict[str, str]) -> None:
    while not done.wait(cluster.PUMP_SECONDS):
        try:
            home.pump()
        except Exception as error:  # noqa: BLE001 - keep pumping: a passing fault must not lose the trials' results
            print(f"sweep: could not record trial results yet: {error}", file=sys.stderr)
        _report_changes(runs, on_trial, seen)


def _report_changes(runs: dict[str, Run], on_trial: TrialWatcher | None, seen: dict[str, str]) -> None:
    if on_trial is None:
        return
    for number, run in enumerate(runs.values(), start=1):
        status = run.status()
        if seen.get(run.id) != status.get("state"):
            seen[run.id] = status.get("state", "")
            on_trial(number, run, status)
