"""A full disk, injected for real: a small tmpfs holds the runs folder and is filled up.

What a person must get: a message that says the disk is full and where, the CLI's JSON line,
no traceback, earlier events and checkpoints still readable, and a job queue that goes on
by itself once space is freed. Skipped (with the reason) where a tmpfs cannot be mounted.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from mnist_core.checkpoint import make_checkpoint, save_checkpoint
from mnist_core.config import TrainConfig
from mnist_core.jobs import JobRunner
from mnist_core.models import build_model
from mnist_core.runs import create_run, list_runs, summarize
from mnist_core.storage import StorageError, is_disk_full
from tests.conftest import fill_disk, run_command, start_command, train_command, wait_for

ROOT = Path(__file__).resolve().parent.parent
QUICK = TrainConfig(model="fast", epochs=1, batch_size=64, lr=0.003)
SLOW = TrainConfig(model="fast", epochs=100, batch_size=1, lr=0.001)


def every_event_line_parses(run_dir: Path) -> bool:
    path = run_dir / "events.jsonl"
    text = path.read_text() if path.exists() else ""
    return all(json.loads(line) for line in text.splitlines()) and (not text or text.endswith("\n"))


def cli_train(runs_dir: Path, data_dir: Path, *options: str) -> subprocess.Popen:
    """`train_command` in a process of its own, for the tests that change the disk under it."""
    return start_command(*train_command(runs_dir, data_dir, *options))


@pytest.fixture
def small_runs_dir(tmp_path, tiny_mount) -> Path:
    return tiny_mount(tmp_path / "small-disk", "8m")


def test_the_queue_goes_on_after_a_full_disk_without_a_restart(small_runs_dir, tiny_data_dir):
    runner = JobRunner(small_runs_dir, tiny_data_dir, max_running=1)
    training = runner.submit(SLOW)
    waiting = runner.submit(QUICK)
    assert wait_for(lambda: training.status()["state"] == "running" and training.events())
    filler = fill_disk(small_runs_dir)

    # The running job's next event cannot be written: it fails, saying why, and its state is recorded.
    assert wait_for(lambda: training.status()["state"] == "failed", timeout=60)
    assert "disk" in training.status()["message"] and "full" in training.status()["message"]
    assert every_event_line_parses(training.path)
    # The queued job starts, meets the same full disk, and fails the same clear way: no stall.
    assert wait_for(lambda: waiting.status()["state"] == "failed", timeout=60)
    assert "full" in waiting.status()["message"]

    filler.unlink()  # space is freed: the next job just runs
    after = runner.submit(QUICK)
    assert wait_for(lambda: after.status()["state"] == "finished")
    assert wait_for(lambda: runner.active_runs() == [], timeout=10) and runner._watcher.is_alive()


def test_a_full_or_read_only_runs_folder_still_lists_and_every_page_opens(small_runs_dir, tiny_data_dir, monkeypatch):
    finished = create_run(QUICK, small_runs_dir)
    finished.update_status(state="finished")
    save_checkpoint(finished.checkpoint_path, make_checkpoint(build_model("fast"), QUICK, 1, {}))
    stale = create_run(QUICK, small_runs_dir)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale.update_status(state="running", pid=dead.pid)  # its process is gone: it must read as interrupted
    fill_disk(small_runs_dir)

    assert {r.id for r in list_runs(small_runs_dir)} == {finished.id, stale.id}
    assert summarize(stale).state == "interrupted"
    with pytest.raises(StorageError, match="full"):
        create_run(QUICK, small_runs_dir)
    assert not [p for p in small_runs_dir.iterdir() if p.name.endswith(".creating")]

    subprocess.run(["mount", "-o", "remount,ro", str(small_runs_dir)], check=True)
    assert summarize(stale).state == "interrupted"
    monkeypatch.setenv("MNIST_RUNS_DIR", str(small_runs_dir))
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    try:
        for page in ("draw", "train", "mistakes"):
            at = AppTest.from_file("../app.py", default_timeout=60)
            at.switch_page(f"pages/{page}.py") if page != "train" else None
            at.run()
            assert not at.exception, (page, at.exception)
    finally:
        st.cache_resource.clear()


def test_cli_at_start_reports_a_full_disk_and_leaves_nothing_behind(small_runs_dir, tiny_data_dir):
    fill_disk(small_runs_dir)
    done = run_command(*train_command(small_runs_dir, tiny_data_dir, "--epochs", "1"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed" and "full" in summary["error"] and str(small_runs_dir) in summary["error"]
    assert [p.name for p in small_runs_dir.iterdir() if p.name != ".filler"] == []  # no .creating folder


def test_cli_mid_epoch_records_the_failure_keeps_whole_lines_and_prints_json(small_runs_dir, tiny_data_dir):
    process = cli_train(small_runs_dir, tiny_data_dir, "--epochs", "100", "--batch-size", "1")
    # The run has started: its first event (Started, just before the first step) is being written, so create_run
    # and the "running" status are done. Not merely a folder, which create_run may still be filling.
    assert wait_for(lambda: any(small_runs_dir.glob("*/events.jsonl")), 60)
    fill_disk(small_runs_dir)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed" and "full" in summary["error"]
    run_dir = Path(summary["run_dir"])
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "full" in status["message"]
    assert every_event_line_parses(run_dir)


def test_cli_at_a_checkpoint_says_how_much_room_it_needs_and_keeps_the_last_one(small_runs_dir, tiny_data_dir):
    first = run_command(*train_command(small_runs_dir, tiny_data_dir, "--epochs", "1"))
    kept = Path(json.loads(first.stdout.strip().splitlines()[-1])["run_dir"]) / "checkpoint.pt"
    before = kept.read_bytes()

    fill_disk(small_runs_dir, leave_bytes=96 << 10)  # room for the run's small files, not for a 430 kB checkpoint
    # A process of its own: PyTorch's C++ code writes its errors ("enforce fail") straight to the descriptor.
    process = cli_train(small_runs_dir, tiny_data_dir, "--epochs", "2")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in stderr and "enforce fail" not in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert "checkpoint.pt needs about" in summary["error"] and "is free" in summary["error"]
    assert str(small_runs_dir) in summary["error"]
    run_dir = Path(summary["run_dir"])
    assert not (run_dir / "checkpoint.pt").exists() and not list(run_dir.glob(".*.tmp"))
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"
    assert kept.read_bytes() == before  # the earlier run's checkpoint is untouched and still loads
    assert torch.load(kept, weights_only=True)["epoch"] == 1


# A background job's last words on a full disk: a traceback longer than the room its log has left.
JOB_ON_A_FULL_DISK = """
import os, sys, time, traceback
from mnist_core.job import begin_job_process
if sys.argv[1] == "begin":
    begin_job_process()
print("before the disk filled", flush=True)
open(sys.argv[2], "w").close()  # the test fills the disk now
while not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
try:
    raise OSError(28, "No space left on device")
except OSError:
    for _ in range(200):
        traceback.print_exc()
print("x" * 100_000)
open(sys.argv[4], "w").write("recorded")  # its status, say, on another disk
"""


@pytest.mark.parametrize("begin", ["begin", "without"])
def test_a_jobs_log_on_a_full_disk_does_not_end_the_job(small_runs_dir, tmp_path, begin):
    log_path = small_runs_dir / "worker.log"
    ready, filled, recorded = tmp_path / "ready", tmp_path / "filled", tmp_path / "recorded"
    with open(log_path, "wb") as log:
        job = subprocess.Popen([sys.executable, "-c", JOB_ON_A_FULL_DISK, begin, str(ready), str(filled), str(recorded)],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(ready.exists, timeout=60)
        fill_disk(small_runs_dir)
        filled.touch()
        job.wait(timeout=60)
    finally:
        job.kill()
    assert log_path.read_text().startswith("before the disk filled\n")
    if begin == "begin":  # what could not be written was dropped, and the job went on to record its end
        assert job.returncode == 0 and recorded.read_text() == "recorded"
    else:  # the reason for the mechanism: Python's own output raises on a full disk
        assert job.returncode != 0 and not recorded.exists()


def test_a_full_disk_is_recognised_in_a_librarys_own_error_too():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    try:  # how Ray's storage layer reports pyarrow's failed write: the errno is gone, the words remain
        try:
            raise OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
        except OSError as cause:
            raise RuntimeError("Could not save the experiment state") from cause
    except RuntimeError as error:
        assert is_disk_full(error)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(RuntimeError("Ray could not start"))
