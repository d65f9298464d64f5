"""Background jobs: child processes, the queue, cancel, crashes, and the foreground executor."""

import os
import signal
import time

from mnist_core.config import TrainConfig
from mnist_core.events import EpochEnd, Finished
from mnist_core.jobs import JobRunner, execute_run
from mnist_core.runs import create_run, list_runs

QUICK = TrainConfig(model="fast", epochs=1, batch_size=64, lr=0.003)
SLOW = TrainConfig(model="fast", epochs=100, batch_size=1, lr=0.001)  # would take minutes


def wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_execute_run_records_everything_in_the_run_folder(tiny_data_dir, runs_dir):
    run = create_run(QUICK.replace(epochs=2), runs_dir)
    result = execute_run(run, tiny_data_dir)
    assert isinstance(result.outcome, Finished)
    status = run.status()
    assert status["state"] == "finished" and status["device"] == "CPU"
    assert [type(e) for e in run.events()].count(EpochEnd) == 2
    assert run.has_checkpoint()


def test_a_stop_request_cancels_and_keeps_the_last_checkpoint(tiny_data_dir, runs_dir):
    run = create_run(QUICK.replace(epochs=3, batch_size=8), runs_dir)

    def stop_in_epoch_two():
        return any(isinstance(e, EpochEnd) for e in run.events())

    execute_run(run, tiny_data_dir, should_stop=stop_in_epoch_two)
    status = run.status()
    assert status["state"] == "cancelled" and "epoch 1" in status["message"]
    assert run.has_checkpoint()


def test_runner_trains_in_the_background_queues_and_cancels(tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1)
    slow = runner.submit(SLOW, owner="a")
    quick = runner.submit(QUICK, owner="b")
    assert runner.queue_position(quick) == 1 and runner.queue_position(slow) is None
    assert quick.status()["state"] == "queued"
    assert wait_for(lambda: slow.status()["state"] == "running" and slow.events())
    assert quick.status()["state"] == "queued"  # only one job trains at a time

    runner.cancel(slow)
    assert wait_for(lambda: slow.status()["state"] == "cancelled", timeout=30)
    assert wait_for(lambda: quick.status()["state"] == "finished")
    assert quick.has_checkpoint()
    assert wait_for(lambda: runner.active_runs() == [], timeout=5)


def test_cancelling_a_queued_job_never_starts_it(tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1)
    slow = runner.submit(SLOW)
    waiting = runner.submit(QUICK)
    runner.cancel(waiting)
    assert waiting.status()["state"] == "cancelled" and runner.queue_position(waiting) is None
    runner.cancel(slow)
    assert wait_for(lambda: slow.status()["state"] == "cancelled", timeout=30)
    assert waiting.events() == []


def test_a_failing_job_is_marked_failed_with_its_error_and_the_runner_goes_on(tmp_path, tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tmp_path / "no-data-here", max_running=1)
    broken = runner.submit(QUICK)
    assert wait_for(lambda: broken.status()["state"] == "failed")
    assert "train-images-idx3-ubyte" in broken.status()["message"]
    runner.data_dir = str(tiny_data_dir)
    fine = runner.submit(QUICK)
    assert wait_for(lambda: fine.status()["state"] == "finished")
    assert [r.id for r in list_runs(runs_dir)] == [fine.id, broken.id]


def test_a_killed_training_process_marks_the_run_failed(tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1)
    run = runner.submit(SLOW)
    assert wait_for(lambda: run.status()["state"] == "running")
    os.kill(run.status()["pid"], signal.SIGKILL)  # as the kernel's out-of-memory killer would
    assert wait_for(lambda: run.status()["state"] == "failed", timeout=30)
    assert "ended unexpectedly" in run.status()["message"]
