"""MNIST_MAX_JOBS holds for the whole runs folder, across processes, and a killed holder frees its slot."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from mnist_core import slots
from mnist_core.config import TrainConfig
from mnist_core.jobs import JobRunner
from mnist_core.runs import list_runs
from tests.conftest import start_command, train_command, wait_for

SLOW = ["--epochs", "100", "--batch-size", "1"]


def cli_train(runs_dir: Path, data_dir: Path, *options: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    """`train_command` in a process of its own, on one training slot whatever the caller's MNIST_MAX_JOBS."""
    return start_command(*train_command(runs_dir, data_dir, *options), env={**os.environ, "MNIST_MAX_JOBS": "1"},
                         stderr=stderr)


def states(runs_dir: Path) -> list[str]:
    return sorted(run.status()["state"] for run in list_runs(runs_dir))


def test_two_processes_on_one_runs_folder_train_one_at_a_time(tiny_data_dir, runs_dir, tmp_path):
    first = cli_train(runs_dir, tiny_data_dir, *SLOW)
    assert wait_for(lambda: states(runs_dir) == ["running"])
    log = tmp_path / "second.stderr"
    with open(log, "w") as stderr_file:  # a file, so the test can read it while the process runs
        second = cli_train(runs_dir, tiny_data_dir, "--epochs", "1", stderr=stderr_file)
    try:
        # The second has found the slot taken and says it waits: it is past the point where it
        # would have started training, had it been allowed to.
        assert wait_for(lambda: "waiting for a free training slot" in log.read_text())
        assert states(runs_dir) == ["queued", "running"]

        first.send_signal(signal.SIGKILL)  # the holder dies without a word: the kernel frees its slot
        first.wait(timeout=30)
        stdout, _ = second.communicate(timeout=120)
        assert second.returncode == 0, log.read_text()
        assert json.loads(stdout.strip().splitlines()[-1])["status"] == "finished"
    finally:
        for process in (first, second):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_app_runner_waits_for_a_slot_held_by_the_command_line(tiny_data_dir, runs_dir):
    outside = cli_train(runs_dir, tiny_data_dir, *SLOW)
    try:
        assert wait_for(lambda: states(runs_dir) == ["running"])
        runner = JobRunner(runs_dir, tiny_data_dir, max_running=1)
        # submit tries the slot at once, and finds it held by the command line's run.
        queued = runner.submit(TrainConfig(model="fast", epochs=1, lr=0.003))
        assert queued.status()["state"] == "queued" and runner.queue_position(queued) == 1
        outside.send_signal(signal.SIGINT)  # Ctrl-C: the CLI stops after this step and lets go
        outside.communicate(timeout=60)
        assert wait_for(lambda: queued.status()["state"] == "finished")
    finally:
        if outside.poll() is None:
            outside.kill()
            outside.wait()


def test_slots_allow_exactly_max_jobs_holders(runs_dir):
    held = [slots.try_acquire(runs_dir, 2, holder=f"job {n}") for n in range(3)]
    assert held[0] is not None and held[1] is not None and held[2] is None
    assert slots.holders(runs_dir) == 2
    held[0].release()
    again = slots.try_acquire(runs_dir, 2)
    assert again is not None and again.path == held[0].path
    again.release()
    held[1].release()
    assert slots.holders(runs_dir) == 0
