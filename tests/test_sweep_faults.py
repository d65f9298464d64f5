"""Faults injected for real into sweeps on a real local Ray: the server SIGKILLed mid-sweep, and
the disk filling up under a running trial. Nothing may read "Stopped on request" when nobody
asked, nothing may be left "running", and the driver must record its end.

Ray Tune must be installed (CI installs it); elsewhere without it these tests are skipped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mnist_core.events import EpochEnd
from mnist_core.job import ACTIVE_STATES, ENDED_STATES, is_alive
from mnist_core.sweep import list_sweeps, ray_problem
from tests.conftest import fill_disk, needs, wait_for

ROOT = Path(__file__).resolve().parent.parent

pytestmark = needs(ray_problem())  # each test skips without Ray Tune, or fails under CI

# The app's server, reduced to what matters: a job runner that started a sweep, then waits.
SERVER = textwrap.dedent("""
    import sys, time
    from mnist_core.jobs import JobRunner
    from mnist_core.sweep import SweepSpec
    runner = JobRunner(sys.argv[1], sys.argv[2], standby=False)
    spec = SweepSpec.from_preset("fast", grid={"epochs": (50,), "batch_size": (8,), "seed": (0, 1)})
    runner.submit_sweep(spec)
    print("started", flush=True)
    time.sleep(600)
""")


def start_server(runs_dir: Path, data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SERVER, str(runs_dir), str(data_dir)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def driver_log(runs_dir: Path) -> str:
    """The end of the sweep's driver.log, for a failure's message: the tmpfs holding it is gone by then."""
    sweep = the_sweep(runs_dir)
    try:
        return (sweep.path / "driver.log").read_text(errors="replace")[-3000:] if sweep else "(no sweep)"
    except OSError as error:
        return f"(driver.log unreadable: {error})"


def the_sweep(runs_dir: Path):
    sweeps = list_sweeps(runs_dir)
    return sweeps[0] if sweeps else None


def a_trial_trained_an_epoch(runs_dir: Path) -> bool:
    sweep = the_sweep(runs_dir)
    return bool(sweep) and any(isinstance(event, EpochEnd) for run in sweep.trial_runs() for event in run.events())


def test_a_sweep_whose_server_is_killed_is_interrupted_not_stopped_on_request(tiny_data_dir, runs_dir):
    server = start_server(runs_dir, tiny_data_dir)
    try:
        assert wait_for(lambda: a_trial_trained_an_epoch(runs_dir), timeout=240), server.stdout.read()
        os.kill(server.pid, signal.SIGKILL)  # the server dies with no chance to say anything
        server.wait()
        sweep = the_sweep(runs_dir)
        assert wait_for(lambda: sweep.status().get("state") in ENDED_STATES, timeout=120), sweep.status()
    finally:
        server.kill()
    status = sweep.status()
    assert status["state"] == "interrupted", status
    assert "the server stopped" in status["message"] and "request" not in status["message"]
    trials = [run.status() for run in sweep.trial_runs()]
    assert all(trial["state"] == "interrupted" for trial in trials), trials
    assert not any("request" in trial["message"] for trial in trials), trials
    trained = sweep.trial_runs()[0]
    assert trained.has_checkpoint()  # the epochs it completed are kept
    # The driver recorded all that itself, then ended: nothing trains on for nobody.
    assert wait_for(lambda: not is_alive(status["pid"], status.get("pid_started")), timeout=60)


@pytest.fixture
def small_runs_dir(tmp_path, tiny_mount):
    return tiny_mount(tmp_path / "small", size="24m") / "runs"


def test_a_disk_that_fills_during_a_trial_is_recorded_and_the_sweep_ends(tiny_data_dir, small_runs_dir):
    server = start_server(small_runs_dir, tiny_data_dir)
    filler = None
    try:
        assert wait_for(lambda: a_trial_trained_an_epoch(small_runs_dir), timeout=240), server.stdout.read()
        filler = fill_disk(small_runs_dir.parent)  # the disk is full from the next checkpoint on
        sweep = the_sweep(small_runs_dir)
        assert wait_for(lambda: sweep.status().get("state") in ENDED_STATES, timeout=240), sweep.status()
        status = sweep.status()
        trials = [run.status() for run in sweep.trial_runs()]
        # The driver recorded the end itself and exited: it did not crash on the full disk.
        assert wait_for(lambda: not is_alive(status["pid"], status.get("pid_started")), timeout=60)
        log = driver_log(small_runs_dir)
    finally:
        server.kill()
        if filler is not None:
            filler.unlink()
    assert not any(trial["state"] in ACTIVE_STATES for trial in trials), trials
    first = trials[0]
    assert first["state"] == "failed" and "full" in first["message"], (first, log)
    assert status["state"] in ("finished", "failed"), (status, log)
    assert "Traceback" not in status["message"] and "failed" in status["message"], (status, log)
