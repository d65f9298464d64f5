"""Joining a Ray cluster (`cluster.connect`): an address where nobody answers, Stop and Ctrl-C
while it waits, and an embedded local Ray leaving no session folder behind.

Ray must be installed (CI installs it: requirements-ray.txt); without it the module is skipped.
Every wait runs under a generous guard (a thread joined, or a subprocess waited on, for at most
60 s), so a regression fails here instead of hanging the suite. Each local Ray started here
uses 2 CPUs and no dashboard, and is shut down, on failure too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
from importlib.util import find_spec
from pathlib import Path

import pytest

from mnist_core.distributed import address as ray_address
from mnist_core.runs import Run, create_run
from mnist_core.sweep import list_sweeps
from tests.conftest import missing_module, needs, start_sweep, wait_for

pytestmark = needs(missing_module("ray", install="pip install -r requirements-ray.txt"))

ROOT = Path(__file__).resolve().parent.parent
GUARD_SECONDS = 60  # far above any give-up used here, far below Ray's own 14 minutes
NOBODY = "127.0.0.1:1"  # port 1: refused at once on any machine


def guarded(function, *args, **kwargs) -> BaseException | object:
    """Call `function` in a thread; what it returned or raised. Fails the test if it is still
    running after GUARD_SECONDS (the thread is a daemon: it cannot hold pytest open)."""
    outcome: list = []

    def target() -> None:
        try:
            outcome.append(function(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(GUARD_SECONDS)
    assert not thread.is_alive(), f"{function.__name__} still waiting after {GUARD_SECONDS} s"
    return outcome[0]


@pytest.fixture(autouse=True)
def cluster():
    """mnist_core.distributed.cluster, which imports Ray (so only once `needs` has let the test run).
    Whatever a test started, Ray is shut down after it (and its session folder removed)."""
    from mnist_core.distributed import cluster

    yield cluster
    cluster.shutdown()


@pytest.mark.parametrize("address", [NOBODY, f"ray://{NOBODY}"])
def test_an_address_where_nobody_answers_gives_up_with_a_clear_message(monkeypatch, address, cluster):
    import ray

    monkeypatch.setenv("RAY_ADDRESS", address)
    monkeypatch.setenv(ray_address.CONNECT_SECONDS_ENV, "2")
    error = guarded(cluster.connect, 2)
    assert isinstance(error, cluster.ClusterUnreachable), error
    message = str(error)
    if address.startswith("ray://") and find_spec("grpc") is None:  # Ray Client's package missing: said at once
        assert isinstance(error, ray_address.RayClientMissing) and 'pip install "ray[client]"' in message
        return
    assert f"answers at {address} (tried for 2 s" in message
    assert "Check RAY_ADDRESS, or unset it to train on this machine." in message
    assert not ray.is_initialized()


def test_stop_ends_the_wait_for_a_cluster_that_does_not_answer(monkeypatch, cluster):
    monkeypatch.setenv("RAY_ADDRESS", NOBODY)
    monkeypatch.setenv(ray_address.CONNECT_SECONDS_ENV, "120")  # longer than the guard: only Stop can end it in time
    stop = threading.Event()
    asked = threading.Event()

    def should_stop() -> bool:
        asked.set()
        return stop.is_set()

    timer = threading.Timer(1.0, stop.set)
    timer.start()
    try:
        error = guarded(cluster.connect, 2, should_stop=should_stop)
    finally:
        timer.cancel()
    assert asked.is_set() and stop.is_set()
    assert isinstance(error, cluster.ConnectStopped), error


def test_stop_already_requested_joins_nothing(monkeypatch, cluster):
    import ray

    monkeypatch.setenv("RAY_ADDRESS", NOBODY)
    monkeypatch.setenv(ray_address.CONNECT_SECONDS_ENV, "120")
    error = guarded(cluster.connect, 2, should_stop=lambda: True)
    assert isinstance(error, cluster.ConnectStopped), error
    assert not ray.is_initialized()


def test_ctrl_c_interrupts_the_wait():
    script = textwrap.dedent("""
        import logging, signal, sys
        # Ctrl-C raises KeyboardInterrupt, as in a terminal, even when this test's runner was started
        # in the background with SIGINT ignored (a child inherits that, and Python then keeps it).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from mnist_core.distributed import cluster
        retries = logging.getLogger("mnist_core.distributed.address")  # says each failed attempt
        retries.setLevel(logging.DEBUG)
        retries.addHandler(logging.StreamHandler(sys.stdout))
        try:
            cluster.connect(2)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(130)
        print("connect returned", flush=True)
    """)
    env = {**os.environ, "RAY_ADDRESS": NOBODY, ray_address.CONNECT_SECONDS_ENV: "120", "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        # Inside connect's wait: it has tried the address at least once and will try again.
        assert any("no answer at" in line for line in iter(process.stdout.readline, "")), "connect never waited"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=GUARD_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    assert "interrupted" in stdout


def test_the_sweep_command_reports_an_unreachable_cluster_plainly(tiny_data_dir, runs_dir):
    env = {**os.environ, "RAY_ADDRESS": NOBODY, ray_address.CONNECT_SECONDS_ENV: "2"}
    done = subprocess.run([sys.executable, "-m", "mnist_core", "sweep", "--data-dir", str(tiny_data_dir),
                           "--runs-dir", str(runs_dir), "--grid", "lr=0.01,0.003"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=GUARD_SECONDS * 2)
    assert done.returncode == 1, done.stderr
    assert f"error: The sweep could not run on Ray: No Ray cluster answers at {NOBODY}" in done.stderr
    assert "Traceback" not in done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["status"] == "failed"
    assert [trial["status"] for trial in summary["trials"]] == ["failed", "failed"]


def test_ctrl_c_stops_a_sweep_waiting_for_its_cluster(tiny_data_dir, runs_dir):
    env = {**os.environ, "RAY_ADDRESS": NOBODY, ray_address.CONNECT_SECONDS_ENV: "120"}
    process = start_sweep(tiny_data_dir, runs_dir, env=env)
    try:
        # "running" is written after the CLI's Ctrl-C handler is in place, just before it joins the cluster.
        assert wait_for(lambda: any(sweep.status().get("state") == "running" for sweep in list_sweeps(runs_dir)),
                        timeout=GUARD_SECONDS)
        process.send_signal(signal.SIGINT)  # the first Ctrl-C asks the sweep to stop
        stdout, stderr = process.communicate(timeout=GUARD_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr
    (sweep,) = list_sweeps(runs_dir)
    assert sweep.status()["state"] == "cancelled"
    assert sweep.status()["message"] == "Stopped on request before it started."
    assert "Traceback" not in stderr


def test_a_ray_job_whose_cluster_does_not_answer_fails_with_the_reason(tiny_data_dir, runs_dir):
    from mnist_core.config import TrainConfig

    run = create_run(TrainConfig.preset("fast"), runs_dir)
    env = {**os.environ, "RAY_ADDRESS": NOBODY, ray_address.CONNECT_SECONDS_ENV: "2"}
    done = subprocess.run([sys.executable, "-m", "mnist_core.worker", str(run.path), "--ray", "--data-dir",
                           str(tiny_data_dir)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=GUARD_SECONDS * 2)
    assert done.returncode == 0, done.stderr
    status = Run(run.path).status()
    assert status["state"] == "failed"
    assert status["message"].startswith(f"No Ray cluster answers at {NOBODY} (tried for 2 s")


def test_a_ray_job_stopped_while_its_cluster_does_not_answer_is_cancelled(tiny_data_dir, runs_dir):
    from mnist_core.config import TrainConfig

    run = create_run(TrainConfig.preset("fast"), runs_dir)
    env = {**os.environ, "RAY_ADDRESS": NOBODY, ray_address.CONNECT_SECONDS_ENV: "120"}
    process = subprocess.Popen([sys.executable, "-m", "mnist_core.worker", str(run.path), "--ray", "--data-dir",
                                str(tiny_data_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: Run(run.path).status().get("state") == "running", timeout=GUARD_SECONDS)
        Run(run.path).request_stop()  # the Stop button
        _, stderr = process.communicate(timeout=GUARD_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    status = Run(run.path).status()
    assert status["state"] == "cancelled" and status["message"] == "Stopped on request before it started."


def test_an_embedded_local_ray_is_its_own_and_leaves_no_session_folder_behind(monkeypatch, cluster):
    """Its own even when another Ray on this machine was started last (`ray start --head`, a test's
    `ray.cluster_utils.Cluster`): Ray keeps that one's address in <temp>/ray/ray_current_cluster, and
    a `ray.init()` given no address joins it. Here that file names an address where nobody answers."""
    import ray

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", str(temp))
    (temp / "ray").mkdir()
    (temp / "ray" / "ray_current_cluster").write_text(NOBODY)
    try:
        assert cluster.connect(2) == "local Ray"
        session = cluster._own_session
        try:
            assert session is not None and session.is_dir() and session.parent == temp / "ray"
            assert session.name.endswith(f"_{os.getpid()}")  # this process's own
            assert ray.get(ray.remote(lambda: 1 + 1).remote()) == 2  # a worker ran, and wrote its logs there
        finally:
            cluster.shutdown()
        assert not ray.is_initialized()
        assert not os.path.lexists(session)
        latest = session.parent / ray_address.SESSION_LATEST
        assert not (latest.is_symlink() and os.path.realpath(latest) == os.path.realpath(session))
    finally:
        shutil.rmtree(temp, ignore_errors=True)


# ------------------------------------------------------------ the helpers alone (no Ray started)


def test_only_this_processes_session_folder_is_its_own(tmp_path):
    ours = f"session_2026-01-01_00-00-00_000001_{os.getpid()}"
    assert ray_address.own_session_dir(str(tmp_path), ours) == tmp_path / ours
    assert ray_address.own_session_dir(str(tmp_path), f"session_2026-01-01_00-00-00_000001_{os.getpid() + 1}") is None
    assert ray_address.own_session_dir(str(tmp_path), "session_latest") is None


def test_removing_a_session_folder_spares_the_others(tmp_path):
    ours, theirs = tmp_path / "session_a_1", tmp_path / "session_b_2"
    for folder in (ours, theirs):
        (folder / "logs").mkdir(parents=True)
        (folder / "logs" / "raylet.out").write_text("log")
    latest = tmp_path / ray_address.SESSION_LATEST
    latest.symlink_to(ours)
    assert ray_address.remove_session_dir(ours)
    assert not ours.exists() and not latest.is_symlink()  # the link to ours went with it
    assert (theirs / "logs" / "raylet.out").read_text() == "log"

    latest.symlink_to(theirs)
    (ours / "logs").mkdir(parents=True)
    assert ray_address.remove_session_dir(ours)
    assert latest.is_symlink() and latest.resolve() == theirs.resolve()  # pointing at another's: kept
    assert not ray_address.remove_session_dir(latest)  # never the link itself, nor what it points to
    assert theirs.is_dir()


@pytest.mark.parametrize(("address", "target"), [
    ("127.0.0.1:6379", ("127.0.0.1", 6379)),
    ("ray://head.example:10001", ("head.example", 10001)),
    ("[::1]:6379", ("::1", 6379)),
    ("auto", None),
    ("local", None),
    ("head", None),  # no port: Ray's own error says so
    ("http://head:8265", None),
    ("head:port", None),
])
def test_which_addresses_get_a_tcp_check(address, target):
    assert ray_address.tcp_target(address) == target


def test_the_give_up_time_can_be_set(monkeypatch):
    monkeypatch.delenv(ray_address.CONNECT_SECONDS_ENV, raising=False)
    assert ray_address.connect_give_up_seconds() == ray_address.CONNECT_GIVE_UP_SECONDS == 25
    monkeypatch.setenv(ray_address.CONNECT_SECONDS_ENV, "2.5")
    assert ray_address.connect_give_up_seconds() == 2.5
    monkeypatch.setenv(ray_address.CONNECT_SECONDS_ENV, "soon")
    assert ray_address.connect_give_up_seconds() == 25


def test_a_listening_port_counts_as_an_answer():
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert guarded(ray_address.wait_until_reachable, f"127.0.0.1:{port}", give_up_seconds=5) is None
