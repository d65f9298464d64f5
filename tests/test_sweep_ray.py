"""Sweeps and jobs on real Ray: stopping, a crashed trial, ASHA, and a two-node cluster. (The CLI's
sweep end to end is in tests/test_ray_loopback.py, which watches that sweep's Ray too.)

Each test starts a Ray of its own (a local one inside the CLI, or a `ray.cluster_utils.Cluster`)
and shuts it down, on failure too. Ray Tune must be installed (the README's test command
installs it); without it these tests are skipped, or fail under CI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mnist_core.distributed.address import remove_session_dir
from mnist_core.events import EpochEnd, Finished
from mnist_core.runs import list_runs
from mnist_core.sweep import list_sweeps, ray_problem
from tests.conftest import needs, start_sweep, wait_for

pytestmark = needs(ray_problem())  # each test skips without Ray Tune, or fails under CI


def finish(process: subprocess.Popen, timeout: float = 240) -> tuple[dict, str]:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return json.loads(stdout.strip().splitlines()[-1]), stderr


def test_stopping_one_trial_then_the_sweep_stops_each_within_moments(tiny_data_dir, runs_dir):
    process = start_sweep(tiny_data_dir, runs_dir, "--grid", "epochs=100", "--grid", "batch_size=4",
                          "--grid", "seed=0,1,2")

    def trained_an_epoch(number: int) -> bool:
        runs = list_runs(runs_dir)[::-1]  # oldest first: trial order
        return len(runs) == 3 and any(isinstance(event, EpochEnd) for event in runs[number - 1].events())

    try:
        assert wait_for(lambda: trained_an_epoch(1), timeout=180), "the first trial never completed an epoch"
        first, second, third = list_runs(runs_dir)[::-1]
        first.request_stop()  # what the Stop button does for one run: only that trial stops
        assert wait_for(lambda: first.status().get("state") == "cancelled", timeout=30)
        assert wait_for(lambda: trained_an_epoch(2), timeout=120), "the next trial did not start"
        (sweep,) = list_sweeps(runs_dir)
        sweep.request_stop()  # what the Sweep tab's Stop button does
        summary, stderr = finish(process, timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, stderr
    assert summary["status"] == "cancelled" == sweep.status()["state"]
    assert [trial["status"] for trial in summary["trials"]] == ["cancelled"] * 3, summary
    for run in (first, second):  # stopped mid-way, the last epoch's checkpoint kept
        epochs = [event for event in run.events() if isinstance(event, EpochEnd)]
        assert 1 <= len(epochs) < 100 and run.has_checkpoint()
    assert not any(isinstance(event, EpochEnd) for event in third.events())  # never started


def test_a_trial_whose_process_is_killed_is_failed_and_the_others_go_on(tiny_data_dir, runs_dir):
    process = start_sweep(tiny_data_dir, runs_dir, "--grid", "epochs=12", "--grid", "batch_size=8",
                          "--grid", "seed=0,1")
    try:
        def first_trial_training():
            runs = list_runs(runs_dir)
            return len(runs) == 2 and runs[-1].status().get("worker_pid") and runs[-1].events()

        if not wait_for(first_trial_training, timeout=180):
            process.kill()
            statuses = [run.status() for run in list_runs(runs_dir)]
            pytest.fail(f"the first trial never started: {statuses}\nthe sweep's output:\n{process.communicate()[1][-4000:]}")
        victim = list_runs(runs_dir)[-1]
        os.kill(victim.status()["worker_pid"], signal.SIGKILL)  # a real crash: the trial's process dies
        summary, stderr = finish(process)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    first, second = summary["trials"]
    assert first["status"] == "failed" and "failed" in first["message"], first
    assert second["status"] == "finished" and summary["best"] == second
    assert victim.status()["state"] == "failed"


def test_asha_stops_the_poor_trials_early_and_lets_the_good_ones_finish(tiny_data_dir, runs_dir):
    process = start_sweep(tiny_data_dir, runs_dir, "--grid", "lr=0.01,0.00001,0.003,0.000003", "--grid", "epochs=6",
                          "--grid", "batch_size=32", "--asha")
    summary, stderr = finish(process)
    assert process.returncode == 0, stderr
    states = {trial["config"]["lr"]: (trial["status"], trial["message"]) for trial in summary["trials"]}
    for good in (0.01, 0.003):  # the first trial and one better than the first rung's median
        assert states[good][0] == "finished", states
    for poor in (0.00001, 0.000003):  # far too small a learning rate: behind after the first epoch
        assert states[poor][0] == "cancelled" and "ASHA" in states[poor][1], states
    stopped = next(run for run in list_runs(runs_dir) if run.config.lr == 0.000003)
    assert 1 <= sum(isinstance(event, EpochEnd) for event in stopped.events()) < 6 and stopped.has_checkpoint()


def test_a_sweep_waits_for_a_training_slot_and_can_be_stopped_while_it_waits(runs_dir, monkeypatch):
    """On a local Ray a sweep is one of the machine's MNIST_MAX_JOBS jobs: it waits while another trains."""
    import threading

    import ray

    from mnist_core import slots
    from mnist_core.distributed.sweep_driver import run_sweep
    from mnist_core.sweep import SweepSpec, create_sweep

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MNIST_MAX_JOBS", "1")
    sweep = create_sweep(SweepSpec.from_preset("fast", grid={"lr": (0.01, 0.003)}), runs_dir)
    held = slots.try_acquire(runs_dir, 1, holder="a single job")
    stop = threading.Event()
    driver = threading.Thread(target=run_sweep, args=(sweep,), kwargs={"should_stop": stop.is_set})
    try:
        driver.start()
        assert wait_for(lambda: "Waiting for a free training slot" in sweep.status().get("message", ""), timeout=30)
        assert not ray.is_initialized()  # nothing started while it waits
        stop.set()
        driver.join(timeout=30)
    finally:
        held.release()
        stop.set()
    assert not driver.is_alive()
    assert sweep.status()["state"] == "cancelled"
    assert [run.status()["state"] for run in sweep.trial_runs()] == ["cancelled", "cancelled"]


def test_trials_and_jobs_on_a_second_node_send_their_results_home(tiny_data_dir, tmp_path, monkeypatch):
    """A head node with no CPUs (the server's) and a worker node with its own working folder."""
    import ray
    from ray.cluster_utils import Cluster

    from mnist_core.distributed.sweep_driver import run_sweep
    from mnist_core.jobs import JobRunner
    from mnist_core.sweep import SweepSpec, create_sweep

    server_runs, node_folder = tmp_path / "server-runs", tmp_path / "node-2"
    node_folder.mkdir()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        worker = cluster.add_node(num_cpus=2, env_vars={"MNIST_RUNS_DIR": str(node_folder / "runs"),
                                                         "MNIST_DATA_DIR": str(tiny_data_dir)})
        cluster.wait_for_nodes()
        monkeypatch.setenv("RAY_ADDRESS", cluster.address)

        sweep = create_sweep(SweepSpec.from_preset("fast", grid={"lr": (0.01, 0.003)}), server_runs)
        # The server's data folder does not exist on the node: the node uses its own MNIST_DATA_DIR.
        run_sweep(sweep, data_dir=str(tmp_path / "only-on-the-server"))
        trials = sweep.trial_runs()
        assert sweep.status()["state"] == "finished" and len(trials) == 2
        for run in trials:
            status = run.status()
            assert status["state"] == "finished" and status["node"] == worker.node_id
            assert run.has_checkpoint() and any(isinstance(event, Finished) for event in run.events())
        ray.shutdown()

        # A single job from the Train page with MNIST_JOB_BACKEND=ray goes to the cluster too.
        monkeypatch.setenv("MNIST_JOB_BACKEND", "ray")
        runner = JobRunner(server_runs, data_dir=tiny_data_dir)
        from mnist_core.config import TrainConfig

        run = runner.submit(TrainConfig.preset("fast"))
        assert wait_for(lambda: run.status().get("state") in ("finished", "failed"), timeout=180)
        status = run.status()
        assert status["state"] == "finished", status.get("message")
        assert status["node"] == worker.node_id and run.has_checkpoint()
        assert any(isinstance(event, Finished) for event in run.events())
        assert not (node_folder / "runs").exists()  # the node wrote no run of its own
    finally:
        ray.shutdown()
        session = Path(cluster.head_node.get_session_dir_path())  # the nodes' logs: not left in /tmp/ray
        cluster.shutdown()
        remove_session_dir(session)
