"""Background jobs: child processes, the queue, cancel, crashes, and the foreground executor."""

import os
import signal
import subprocess
import sys

import pytest

from mnist_core import jobs, slots
from mnist_core.config import TrainConfig
from mnist_core.data import DatasetMissing
from mnist_core.events import EpochEnd, Finished
from mnist_core.jobs import JobRunner, execute_run
from mnist_core.policy import JobPolicy, QuotaExceeded
from mnist_core.runs import create_run, list_runs
from mnist_core.storage import StorageError
from tests.conftest import auto_device, wait_for

QUICK = TrainConfig(model="fast", epochs=1, batch_size=64, lr=0.003)
SLOW = TrainConfig(model="fast", epochs=100, batch_size=1, lr=0.001)  # would take minutes


def test_execute_run_records_everything_in_the_run_folder(tiny_data_dir, runs_dir):
    run = create_run(QUICK.replace(epochs=2), runs_dir)
    result = execute_run(run, tiny_data_dir)
    assert isinstance(result.outcome, Finished)
    status = run.status()
    assert status["state"] == "finished" and status["device"] == auto_device()
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
    quick = runner.submit(QUICK, owner="b", hold=True)  # would wait for a slot anyway: not held, and numbered
    assert runner.queue_position(quick) == 1 and runner.queue_position(slow) is None and not runner.is_held(quick)
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


def test_a_held_job_starts_when_its_page_lets_it_go_and_a_cancelled_one_never(tiny_data_dir, runs_dir, monkeypatch):
    monkeypatch.setattr(jobs, "HOLD_SECONDS", 60.0)  # only the release can start it within this test
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, standby=True)  # a job that would train at once
    try:
        run = runner.submit(QUICK, hold=True)
        runner._poll()  # what the watcher does every 0.2 s: a held job stays where it is
        assert runner.is_held(run) and run.status()["state"] == "queued" and runner._running == {}
        assert runner.queue_position(run) is None  # "starting", not "waiting for a slot"
        runner.release(run)
        assert not runner.is_held(run) and run.id in runner._running  # handed to the standby at once
        assert wait_for(lambda: run.status()["state"] == "finished")

        assert wait_for(lambda: runner._standby is not None, timeout=10)  # the next standby
        cancelled = runner.submit(QUICK, hold=True)
        assert runner.is_held(cancelled)
        runner.cancel(cancelled)
        assert not runner.is_held(cancelled) and cancelled.status()["state"] == "cancelled"
        runner.release(cancelled)  # the page's word comes after the Stop: nothing happens
        assert runner._running == {} and cancelled.events() == []
    finally:
        runner.close()


def test_a_held_job_that_is_never_let_go_starts_after_a_moment(tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, standby=True)
    try:
        run = runner.submit(QUICK, hold=True)  # its page never says it is drawn (a closed tab)
        assert runner.is_held(run)
        assert wait_for(lambda: run.status()["state"] == "finished")  # the watcher starts it after HOLD_SECONDS
    finally:
        runner.close()


def test_a_job_without_its_data_is_refused_before_any_run_folder_exists(tmp_path, tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tmp_path / "no-data-here", max_running=1)
    with pytest.raises(DatasetMissing, match="train-images-idx3-ubyte"):
        runner.submit(QUICK)
    assert list_runs(runs_dir) == []
    runner.data_dir = str(tiny_data_dir)
    fine = runner.submit(QUICK)
    assert wait_for(lambda: fine.status()["state"] == "finished")
    assert [r.id for r in list_runs(runs_dir)] == [fine.id]


def test_a_worker_told_not_to_download_fails_clearly_without_the_network(tmp_path, runs_dir):
    run = create_run(QUICK, runs_dir)
    done = subprocess.run([sys.executable, "-m", "mnist_core.worker", str(run.path), "--no-download",
                           "--data-dir", str(tmp_path / "empty")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    status = run.status()
    assert status["state"] == "failed" and "is not in" in status["message"] and "Traceback" not in status["message"]


def test_a_killed_training_process_marks_the_run_failed(tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1)
    run = runner.submit(SLOW)
    assert wait_for(lambda: run.status()["state"] == "running")
    os.kill(run.status()["pid"], signal.SIGKILL)  # as the kernel's out-of-memory killer would
    assert wait_for(lambda: run.status()["state"] == "failed", timeout=30)
    assert "was killed (SIGKILL)" in run.status()["message"] and "worker.log" in run.status()["message"]


def test_the_watcher_outlives_a_failed_write_and_records_it_later(tiny_data_dir, runs_dir, monkeypatch):
    from mnist_core.job import JobFolder

    failures = {"left": 3}
    real_record = JobFolder.record_unexpected_end

    def flaky_record(*args):
        if failures["left"]:
            failures["left"] -= 1
            raise StorageError("The disk holding runs is full")
        real_record(*args)

    monkeypatch.setattr(JobFolder, "record_unexpected_end", flaky_record)
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1)
    killed = runner.submit(SLOW)
    waiting = runner.submit(QUICK)
    assert wait_for(lambda: killed.status()["state"] == "running")
    os.kill(killed.status()["pid"], signal.SIGKILL)
    assert wait_for(lambda: failures["left"] == 0, timeout=30)
    assert wait_for(lambda: killed.status()["state"] == "failed", timeout=30)
    assert wait_for(lambda: waiting.status()["state"] == "finished")
    assert runner._watcher.is_alive()


def test_hosted_limits_are_enforced_by_the_runner_itself(tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, policy=JobPolicy.hosted(max_epochs=5))
    with pytest.raises(QuotaExceeded, match="at most 5 epochs"):
        runner.submit(QUICK.replace(epochs=6), owner="visitor-1")
    first = runner.submit(SLOW.replace(epochs=5), owner="visitor-1")
    with pytest.raises(QuotaExceeded, match="one job per visitor"):
        runner.submit(QUICK, owner="visitor-1")
    assert runner.start_problem("visitor-1") and runner.start_problem("visitor-2") is None
    others = [runner.submit(SLOW.replace(epochs=5), owner=f"visitor-{n}") for n in range(2, 9)]  # 8 in all
    with pytest.raises(QuotaExceeded, match="8 jobs are queued or running"):
        runner.submit(QUICK, owner="visitor-99")
    assert {r.id for r in list_runs(runs_dir)} == {first.id, *(r.id for r in others)}  # no folder for refusals
    for run in [*others, first]:
        runner.cancel(run)
    assert wait_for(lambda: first.status()["state"] == "cancelled", timeout=30)


def test_the_server_wide_cap_counts_every_kind_and_heavy_jobs_go_one_at_a_time(tiny_data_dir, runs_dir):
    from mnist_core.audit import AuditSpec

    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, standby=False, policy=JobPolicy.hosted())
    training = runner.submit(SLOW.replace(epochs=5), owner="visitor-1")
    audit = runner.submit_audit(AuditSpec(config=QUICK, folds=2), owner="visitor-2")  # waits for the slot
    assert runner.start_problem("visitor-3") is None  # another training run may queue
    for kind in ("sweep", "audit", "map"):  # but no second heavy job, whoever asks
        assert "one at a time" in runner.start_problem("visitor-3", kind)
    with pytest.raises(QuotaExceeded, match="one at a time"):
        runner.submit_map("default", owner="visitor-3")
    with pytest.raises(QuotaExceeded, match="one at a time"):
        runner.submit_audit(AuditSpec(config=QUICK, folds=2), owner="visitor-3")
    runner.cancel(audit)
    assert runner.start_problem("visitor-3", "audit") is None  # the audit's end frees its place
    runner.cancel(training)
    assert wait_for(lambda: training.status()["state"] == "cancelled", timeout=30)


def test_a_standby_worker_takes_the_next_job_with_its_slot_and_a_new_one_waits_after(tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, standby=True)
    try:
        standby = runner._standby.process
        assert wait_for(lambda: standby.poll() is None)
        run = runner.submit(SLOW)
        assert wait_for(lambda: run.status()["state"] == "running" and run.events())
        assert run.status()["pid"] == standby.pid  # the waiting process is the one that trains
        assert slots.holders(runs_dir) == 1  # it received the slot along with the run
        assert runner._standby is None  # no second torch process beside a training one
        runner.cancel(run)
        assert wait_for(lambda: run.status()["state"] == "cancelled", timeout=30)
        assert wait_for(lambda: slots.holders(runs_dir) == 0, timeout=10)
        assert (run.path / "worker.log").exists()  # its output goes where a fresh worker's would
        assert wait_for(lambda: runner._standby is not None and runner._standby.process.pid != standby.pid, 10)
    finally:
        runner.close()


def test_a_standby_has_imported_what_a_jobs_optimizer_imports(tiny_data_dir):
    # A job's first optimizer imports torch._dynamo: about 1 s of a 2-core machine, after Start,
    # unless the standby did it while it waited.
    script = (
        "import sys\n"
        "from mnist_core.worker import _preload\n"
        f"_preload({str(tiny_data_dir)!r})\n"
        "from mnist_core.config import TrainConfig\n"
        "from mnist_core.models import build_model\n"
        "from mnist_core.train_steps import make_optimizer, make_scheduler\n"
        "config = TrainConfig.preset('fast')\n"
        "before = set(sys.modules)\n"
        "optimizer = make_optimizer(config, build_model(config.model))\n"
        "make_scheduler(config, optimizer, 100)\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_a_standby_jobs_start_the_same_way(tiny_data_dir, runs_dir):
    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, standby=False)
    run = runner.submit(QUICK, hold=True)  # a fresh process takes longer to start than any page to draw
    assert runner._standby is None and not runner.is_held(run)
    assert wait_for(lambda: run.status()["state"] == "finished")
