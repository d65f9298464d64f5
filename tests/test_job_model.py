"""The job model (mnist_core.job): liveness by pid and start time, why a job was interrupted,
status writing on a full disk for every kind, and a listing that reads each folder once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_core import job
from mnist_core.config import TrainConfig
from mnist_core.events import Cancelled, EpochEnd, Finished, Started
from mnist_core.map_job import MapBuild
from mnist_core.runs import create_run, list_runs
from mnist_core.sweep import SweepSpec, create_sweep
from tests.conftest import dead_pid, fill_disk


def test_a_reused_pid_is_not_the_job(runs_dir):
    """The pid names a live process, but one that started at another time: the job's own is gone."""
    run = create_run(TrainConfig(), runs_dir)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = job.process_start_time(other.pid)
        assert started is not None
        # What the job recorded: this pid, but the start time of the process that had it before.
        run.update_status(state="running", pid=other.pid, pid_started=started - 1)
        assert not run.alive()
        status = run.current_status()
        assert status["state"] == "interrupted" and "request" not in status["message"]
        # The same pid with its true start time is the job.
        run.update_status(state="running", pid=other.pid, pid_started=started)
        assert run.alive() and run.current_status()["state"] == "running"
    finally:
        other.kill()
        other.wait()


def test_giving_a_pid_records_its_start_time(runs_dir):
    run = create_run(TrainConfig(), runs_dir)
    status = run.status()
    assert status["pid"] == os.getpid() and status["pid_started"] == job.process_start_time(os.getpid())
    assert status["server"] == {"pid": os.getpid(), "pid_started": status["pid_started"]}


def test_a_vanished_worker_and_a_vanished_server_are_told_apart(runs_dir):
    run = create_run(TrainConfig(), runs_dir)  # created by this process, the "server", which lives on
    run.update_status(state="running", pid=dead_pid())
    assert "process was killed" in run.current_status()["message"]

    other = create_run(TrainConfig(), runs_dir)
    gone = dead_pid()
    other.update_status(state="running", pid=dead_pid(), server={"pid": gone, "pid_started": None})
    status = other.current_status()
    assert status["state"] == "interrupted" and "the server stopped" in status["message"]


def test_a_cancel_is_stopped_on_request_only_when_a_person_asked(runs_dir):
    asked = create_run(TrainConfig(), runs_dir)
    asked.record(Cancelled(2))
    assert asked.status()["state"] == "cancelled" and "Stopped on request" in asked.status()["message"]

    orphan = create_run(TrainConfig(), runs_dir)
    orphan.record(Cancelled(2), job.SERVER_STOPPED)
    status = orphan.status()
    assert status["state"] == "interrupted"
    assert "the server stopped" in status["message"] and "epoch 2 is kept" in status["message"]
    assert "request" not in status["message"]


def test_recording_events_moves_the_status_along(runs_dir):
    run = create_run(TrainConfig(), runs_dir)
    run.record(Started("CPU", "fast", 100, 1, 10, 640))
    assert run.status()["device"] == "CPU" and run.status()["phase"] == "training"
    run.record(EpochEnd(1, 0.5, 0.4, 90.0, 1.0))
    run.record(Finished(90.0, 1.0, 640.0, 1))
    assert run.status()["state"] == "finished"
    assert [type(event).__name__ for event in run.events()] == ["Started", "EpochEnd", "Finished"]


@pytest.fixture
def full_runs_dir(tmp_path, tiny_mount):
    return tiny_mount(tmp_path / "small", size="1m") / "runs"


@pytest.mark.parametrize("kind", ["run", "sweep", "map"])
def test_every_kind_records_its_end_on_a_full_disk(full_runs_dir, kind):
    """Status is written one way for every kind: with no room for a new file, in place."""
    if kind == "run":
        status_path = create_run(TrainConfig(), full_runs_dir).status_path
    elif kind == "sweep":
        status_path = create_sweep(SweepSpec.from_preset("fast"), full_runs_dir).status_path
    else:
        full_runs_dir.mkdir(parents=True, exist_ok=True)
        build = MapBuild(full_runs_dir / "default.pt.map-test.npz")
        build.update_status(**job.new_status())
        status_path = build.status_path
    job.write_status(status_path, state="running", message="working")
    filler = fill_disk(full_runs_dir.parent)
    try:
        probe = full_runs_dir.parent / "probe"
        with pytest.raises(OSError):  # truly full: not even a small new file fits
            probe.write_bytes(b"x" * 8192)
        probe.unlink(missing_ok=True)
        job.write_status(status_path, state="failed", message="The disk is full.")
        assert job.read_status(status_path)["state"] == "failed"
        assert not [path for path in status_path.parent.iterdir() if path.name.endswith(".tmp")]
    finally:
        filler.unlink()


class _OpenCounter:
    """Counts files opened under a folder, through Python's audit hook (every open() raises one)."""

    def __init__(self, folder: Path) -> None:
        self.folder = str(folder)
        self.opened: list[str] = []
        self.on = False

    def hook(self, event: str, args: tuple) -> None:
        if self.on and event == "open" and isinstance(args[0], str) and args[0].startswith(self.folder):
            self.opened.append(args[0])


_current_counter: list[_OpenCounter] = []  # an audit hook cannot be removed: one per process, retargeted


def _audit(event: str, args: tuple) -> None:
    if _current_counter:
        _current_counter[0].hook(event, args)


@pytest.fixture
def open_counter():
    def make(folder: Path) -> _OpenCounter:
        if not getattr(sys, "_mnist_open_counter", False):
            sys.addaudithook(_audit)
            sys._mnist_open_counter = True
        _current_counter[:] = [_OpenCounter(folder)]
        return _current_counter[0]

    yield make
    _current_counter.clear()


def _finished_runs(runs_dir: Path, count: int) -> None:
    for number in range(count):
        run = create_run(TrainConfig(model="fast", epochs=1, lr=0.001 * (number + 1)), runs_dir)
        run.update_status(state="running", pid=os.getpid())
        run.record(Started("CPU", "fast", 100, 1, 10, 640))
        run.record(EpochEnd(1, 0.5, 0.4, 90.0 + number / 100, 1.0))
        run.record(Finished(90.0, 1.0, 640.0, 1))


def test_one_train_rerun_reads_each_run_folder_at_most_once(monkeypatch, tiny_data_dir, runs_dir, open_counter):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("MNIST_STANDBY_WORKER", "0")
    st.cache_resource.clear()
    st.cache_data.clear()
    _finished_runs(runs_dir, 50)
    assert len(list_runs(runs_dir)) == 50
    counter = open_counter(runs_dir.resolve())
    try:
        at = AppTest.from_file("../pages/train.py", default_timeout=120)
        for rerun in ("first", "second"):
            counter.opened.clear()
            counter.on = True
            at.run()
            counter.on = False
            assert not at.exception, at.exception
            by_file: dict[str, int] = {}
            for path in counter.opened:
                by_file[path] = by_file.get(path, 0) + 1
            twice = {path: times for path, times in by_file.items() if times > 1}
            assert not twice, f"{rerun} rerun read these more than once: {twice}"
            folders = {Path(path).parent.name for path in counter.opened}
            print(f"{rerun} rerun: {len(counter.opened)} files opened in {len(folders)} of 50 run folders")
        # Nothing changed between the two reruns: the second reads no run's status or config again.
        assert not [path for path in counter.opened if path.endswith(("status.json", "config.json"))]
    finally:
        st.cache_resource.clear()


# ---------------------------------------------------------------- map builds and the standby worker


@pytest.fixture
def untrained_checkpoint(tmp_path):
    from mnist_core.checkpoint import make_checkpoint, save_checkpoint
    from mnist_core.models import build_model

    config = TrainConfig(model="fast", epochs=1)
    path = tmp_path / "models" / "model.pt"
    path.parent.mkdir()
    save_checkpoint(path, make_checkpoint(build_model(config.model), config, 1, {"val_accuracy": 10.0}))
    return path


def test_a_map_build_waits_for_a_training_slot_and_stops_on_request(untrained_checkpoint, tiny_data_dir, runs_dir,
                                                                     monkeypatch):
    from mnist_core import embedding, slots
    from tests.conftest import wait_for

    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("MNIST_MAX_JOBS", "1")
    held = slots.try_acquire(runs_dir, 1, holder="a training job")  # the machine is busy
    try:
        build = embedding.start_build(untrained_checkpoint, tiny_data_dir)
        assert build.job_kind == "map"
        assert wait_for(lambda: "waiting for a free training slot" in build.status().get("message", ""), timeout=60)
        status = build.current_status()
        assert status["state"] == "queued" and status["pid"] != os.getpid()  # its own process, alive
        build.request_stop()
        assert wait_for(lambda: build.status().get("state") == "cancelled", timeout=30), build.status()
    finally:
        held.release()
    assert not embedding.map_path(untrained_checkpoint).exists()


def test_a_map_build_on_a_full_disk_says_why_in_its_status(untrained_checkpoint, tiny_data_dir, tmp_path, tiny_mount,
                                                           monkeypatch):
    import shutil

    from mnist_core import embedding
    from tests.conftest import wait_for

    small = tiny_mount(tmp_path / "small", size="2m")
    checkpoint = small / "model.pt"
    shutil.copy(untrained_checkpoint, checkpoint)
    monkeypatch.setenv("MNIST_RUNS_DIR", str(small / "runs"))
    build = embedding.start_build(checkpoint, tiny_data_dir)
    filler = fill_disk(small)
    try:
        assert wait_for(lambda: build.status().get("state") in job.ENDED_STATES, timeout=120), build.status()
        status = build.status()
    finally:
        filler.unlink()
    assert status["state"] == "failed" and "full" in status["message"], status


def test_the_standby_worker_goes_while_another_job_holds_the_machine(tiny_data_dir, runs_dir):
    from mnist_core import slots
    from mnist_core.jobs import JobRunner
    from tests.conftest import wait_for

    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, standby=True)
    try:
        assert wait_for(lambda: runner._standby is not None and runner._standby.process.poll() is None, timeout=30)
        standby = runner._standby.process
        held = slots.try_acquire(runs_dir, 1, holder="a map build in another process")
        try:
            assert wait_for(lambda: standby.poll() is not None, timeout=30)  # it let go of its memory
            runner._poll()  # one more look by the watcher while the machine is held...
            assert runner._standby is None  # ...starts no new one
        finally:
            held.release()
        assert wait_for(lambda: runner._standby is not None and runner._standby.process.poll() is None, timeout=30)
    finally:
        runner.close()


def test_the_history_polls_for_active_jobs_other_than_the_one_the_live_panel_shows(runs_dir):
    from mnist_core.listing import any_active, list_jobs

    finished = create_run(TrainConfig(), runs_dir)
    finished.record(Finished(90.0, 1.0, 640.0, 1))
    assert not any_active(list_jobs(runs_dir))
    queued = create_run(TrainConfig(), runs_dir)  # queued is active
    assert any_active(list_jobs(runs_dir))
    assert any_active(list_jobs(runs_dir), besides=finished.id)
    assert not any_active(list_jobs(runs_dir), besides=queued.id)  # the panel shows it: no quick poll
    create_sweep(SweepSpec.from_preset("fast"), runs_dir)  # a sweep's trials appear while it runs
    assert any_active(list_jobs(runs_dir), besides=queued.id)


def test_one_listing_shows_every_kind_and_the_cli_prints_it(runs_dir, capsys):
    import json

    from mnist_core.audit import AuditSpec, create_audit
    from mnist_core.cli import main
    from mnist_core.listing import list_jobs

    run = create_run(TrainConfig(), runs_dir)
    run.record(Finished(90.0, 1.0, 640.0, 1))
    (run.checkpoint_path).write_bytes(b"")  # the map build below belongs to this run's checkpoint
    sweep = create_sweep(SweepSpec.from_preset("fast"), runs_dir)
    trial = create_run(TrainConfig(), runs_dir, extra_status={"sweep": sweep.id, "trial": 1})
    audit = create_audit(AuditSpec(), runs_dir)
    build = MapBuild(run.path / "checkpoint.pt.map-test.npz")
    build.update_status(**job.new_status(progress=0.5))
    build.update_status(pid=dead_pid())  # its process is gone: it reads as interrupted
    listed = {entry.kind: entry for entry in list_jobs(runs_dir)}
    assert set(listed) == set(job.KINDS)
    assert listed["run"].job == run and listed["trial"].job == trial and listed["audit"].job == audit
    assert listed["sweep"].job == sweep and listed["map"].id == f"{run.id}/checkpoint.pt.map-test.npz"
    assert listed["map"].status["state"] == "interrupted"
    assert [entry.kind for entry in list_jobs(runs_dir, kinds=["sweep", "map"])] == ["map", "sweep"]

    assert main(["jobs", "--json", "--runs-dir", str(runs_dir)]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(row["kind"] for row in printed) == sorted(job.KINDS)
    assert next(row for row in printed if row["kind"] == "run")["state"] == "finished"
    assert main(["jobs", "--kind", "sweep", "--runs-dir", str(runs_dir)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 1 and table[0].startswith("sweep") and sweep.id in table[0]


def test_a_map_build_whose_server_is_killed_ends_interrupted(untrained_checkpoint, tiny_data_dir, runs_dir):
    import signal
    import textwrap

    from mnist_core import embedding, slots
    from tests.conftest import wait_for

    server_code = textwrap.dedent(f"""
        import time
        from mnist_core import embedding
        embedding.start_build({str(untrained_checkpoint)!r}, {str(tiny_data_dir)!r})
        time.sleep(600)
    """)
    env = {**os.environ, "MNIST_RUNS_DIR": str(runs_dir), "MNIST_MAX_JOBS": "1"}
    held = slots.try_acquire(runs_dir, 1, holder="a training job")  # the build waits its turn meanwhile
    server = subprocess.Popen([sys.executable, "-c", server_code], env=env, cwd=Path(__file__).parent.parent)
    build = embedding.map_build(untrained_checkpoint)
    try:
        assert wait_for(lambda: "waiting" in build.status().get("message", "") and build.alive(), timeout=60)
        os.kill(server.pid, signal.SIGKILL)
        server.wait()
        assert wait_for(lambda: build.status().get("state") in job.ENDED_STATES, timeout=30), build.status()
    finally:
        held.release()
        server.kill()
    status = build.status()
    assert status["state"] == "interrupted" and "the server stopped" in status["message"], status


def test_jobs_still_queued_when_the_runner_closes_are_interrupted_not_left_queued(tiny_data_dir, runs_dir):
    from mnist_core.jobs import JobRunner
    from tests.conftest import wait_for

    runner = JobRunner(runs_dir, tiny_data_dir, max_running=1, standby=False)
    slow = runner.submit(TrainConfig(model="fast", epochs=100, batch_size=1, lr=0.001))
    waiting = runner.submit(TrainConfig(model="fast", epochs=1))
    assert wait_for(lambda: slow.status()["state"] == "running", timeout=60)
    runner.close()  # the server stops (mnist_core.shutdown calls this)
    status = waiting.status()
    assert status["state"] == "interrupted" and "the server stopped" in status["message"], status
    assert runner.queued_count() == 0
    runner.cancel(slow)
    assert wait_for(lambda: slow.status()["state"] == "cancelled", timeout=60)


def test_a_map_build_killed_before_it_could_say_anything_is_not_left_waiting(untrained_checkpoint, tiny_data_dir,
                                                                            runs_dir, monkeypatch):
    import signal

    from mnist_core import embedding
    from tests.conftest import wait_for

    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    build = embedding.start_build(untrained_checkpoint, tiny_data_dir)
    child = embedding._builders[build.status_path]
    assert build.status()["pid"] == child.pid  # its own from the start, before it imported anything
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    status = embedding.building_status(untrained_checkpoint)
    assert status["state"] == "failed" and "killed (SIGKILL)" in status["message"], status
    embedding.start_build(untrained_checkpoint, tiny_data_dir)  # it can be built again
    again = embedding._builders[build.status_path]
    assert again.pid != child.pid
    assert wait_for(lambda: build.status().get("state") == "finished", timeout=120), build.status()
