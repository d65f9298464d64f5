"""Start and stop the Streamlit server under test, and read its training runs' status files.

The server is a fresh `streamlit run app.py` on a free port in hosted demo mode (MNIST_HOSTED=1)
with a temporary runs folder, as the hosted demo runs it. It gets its own process group, so the
JobRunner's standby worker and training process go down with it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.load.procfs import descendants, parent_pids

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, data_dir: Path, runs_dir: Path, log_path: Path, hosted: bool = True) -> subprocess.Popen:
    env = {**os.environ, "MNIST_HOSTED": "1" if hosted else "", "MNIST_DATA_DIR": str(data_dir),
           "MNIST_RUNS_DIR": str(runs_dir)}
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so the job's worker goes down with it
        )


def wait_until_healthy(url: str, server: subprocess.Popen, timeout_s: float = 60) -> None:
    """Until /_stcore/health answers "ok" (it opens no session: the server stays unvisited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Streamlit server exited with code {server.returncode}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the Streamlit server did not become healthy within {timeout_s:.0f} s")


def group_members(pgid: int) -> list[int]:
    members = []
    for pid in parent_pids():
        try:
            if os.getpgid(pid) == pgid:
                members.append(pid)
        except ProcessLookupError:
            pass
    return members


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, then SIGKILL whatever is left after 15 s."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and group_members(server.pid):
        time.sleep(0.2)
    if group_members(server.pid):
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if server.poll() is None:
        server.wait(timeout=5)


def leftovers(server_pid: int) -> set[int]:
    """Processes of the server's group and children of this script that are still there."""
    return (set(group_members(server_pid)) | set(descendants(os.getpid()))) - {os.getpid()}


def read_status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def stop_active_runs(runs_dir: Path) -> list[str]:
    """Ask every queued or running job to stop (STOP file); returns 'run: final state' lines."""
    lines = []
    for run_dir in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        if read_status(run_dir).get("state") in ("queued", "running"):
            (run_dir / "STOP").touch()  # the worker stops within one training step
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and read_status(run_dir).get("state") in ("queued", "running"):
                time.sleep(0.2)
            lines.append(f"job {run_dir.name} stopped: {read_status(run_dir).get('state')}")
    return lines
