"""A full disk, injected for real: a small tmpfs holds the runs folder and is filled up.

What a person must get: a message that says the disk is full and where, the CLI's JSON line,
no traceback, earlier events and checkpoints still readable, and a job queue that goes on
by itself once space is freed. Skipped (with the reason) where a tmpfs cannot be mounted.
"""

from __future__ import annotations

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
from mnist_core.storage import StorageError
from tests.conftest import fill_disk, wait_for

ROOT = Path(__file__).resolve().parent.parent
QUICK = TrainConfig(model="fast", epochs=1, batch_size=64, lr=0.003)
SLOW = TrainConfig(model="fast", epochs=100, batch_size=1, lr=0.001)


def every_event_line_parses(run_dir: Path) -> bool:
    path = run_dir / "events.jsonl"
    text = path.read_text() if path.exists() else ""
    return all(json.loads(line) for line in text.splitlines()) and (not text or text.endswith("\n"))


def cli_train(runs_dir: Path, data_dir: Path, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mnist_core", "train", "--model", "fast", "--lr", "0.001", "--data-dir",
         str(data_dir), "--runs-dir", str(runs_dir), *options],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


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
    process = cli_train(small_runs_dir, tiny_data_dir, "--epochs", "1")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed" and "full" in summary["error"] and str(small_runs_dir) in summary["error"]
    assert [p.name for p in small_runs_dir.iterdir() if p.name != ".filler"] == []  # no .creating folder


def test_cli_mid_epoch_records_the_failure_keeps_whole_lines_and_prints_json(small_runs_dir, tiny_data_dir):
    process = cli_train(small_runs_dir, tiny_data_dir, "--epochs", "100", "--batch-size", "1")
    assert wait_for(lambda: any(p.glob("events.jsonl") for p in small_runs_dir.iterdir() if p.is_dir()), 60)
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
    first = cli_train(small_runs_dir, tiny_data_dir, "--epochs", "1")
    first_out, _ = first.communicate(timeout=120)
    kept = Path(json.loads(first_out.strip().splitlines()[-1])["run_dir"]) / "checkpoint.pt"
    before = kept.read_bytes()

    fill_disk(small_runs_dir, leave_bytes=96 << 10)  # room for the run's small files, not for a 430 kB checkpoint
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
