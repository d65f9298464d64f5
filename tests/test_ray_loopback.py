"""A sweep's embedded Ray is reachable from nowhere: every listener on loopback, a token on every call.

Ray binds its gRPC servers (GCS, raylet, object manager, workers) to every interface; started by
`cluster.connect`, it runs inside a network namespace of its own whose only interface is loopback
(`private_network`), and with token authentication on, the token in a file only its user can read.

The test runs a real sweep with the CLI and, while it runs, reads from /proc every listening TCP
socket held by the sweep's processes: each process's own /proc/<pid>/net/tcp{,6} (the table of
the network it is in), matched to the sockets among its open files. Then it checks that the
token file's folder is gone. The same sweep is the CLI's end-to-end test: each trial is an
ordinary run in the history (one Ray sweep for both, about 18 CPU-seconds less).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import struct
import threading
from pathlib import Path

from bench.load import procfs
from mnist_core.evaluate import evaluate
from mnist_core.events import EpochEnd, Finished
from mnist_core.runs import list_runs
from mnist_core.sweep import ray_problem
from tests.conftest import needs, start_sweep

LISTEN = "0A"  # the TCP state "listen" in /proc/net/tcp

pytestmark = needs(ray_problem())  # each test skips without Ray Tune, or fails under CI


def _address(hex_address: str) -> str:
    """An address as /proc/net/tcp{,6} writes it (the bytes of each 32-bit word reversed), in words."""
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(hex_address, 16)))
    return socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def _loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1") or address.startswith("::ffff:127.")


def listeners(pid: int) -> set[tuple[str, int]]:
    """The TCP sockets process `pid` listens on: (address, port), read in the network it is in."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
        found = set()
        for table in ("tcp", "tcp6"):
            with open(f"/proc/{pid}/net/{table}") as file:
                for line in file.read().splitlines()[1:]:
                    fields = line.split()
                    if fields[3] == LISTEN and fields[9] in inodes:
                        address, port = fields[1].split(":")
                        found.add((_address(address), int(port, 16)))
        return found
    except OSError:  # the process ended
        return set()


def _environment(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            pairs = file.read().split(b"\0")
    except OSError:
        return {}
    return dict(pair.decode(errors="replace").split("=", 1) for pair in pairs if b"=" in pair)


class _Watch(threading.Thread):
    """Every 0.1 s, while the sweep runs: the listeners of each of its processes, their networks,
    and the token file each names (with the file's and its folder's modes)."""

    def __init__(self, root: int) -> None:
        super().__init__(name="ray-listeners", daemon=True)
        self.root = root
        self.listening: dict[tuple[str, int], str] = {}  # (address, port) -> the command that held it
        self.networks: set[str] = set()
        self.tokens: dict[str, tuple[int, int]] = {}  # path -> (file mode, folder mode)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            for pid in procfs.descendants(self.root):
                if pid == self.root:
                    continue  # the CLI itself, before it starts Ray, is still on the machine's network
                held = listeners(pid)
                command = procfs.command_line(pid)
                for listener in held:
                    self.listening.setdefault(listener, command[:80])
                if held:
                    try:
                        self.networks.add(os.readlink(f"/proc/{pid}/ns/net"))
                    except OSError:
                        pass
                path = _environment(pid).get("RAY_AUTH_TOKEN_PATH")
                if path and path not in self.tokens:
                    try:
                        self.tokens[path] = (stat.S_IMODE(os.stat(path).st_mode),
                                             stat.S_IMODE(os.stat(Path(path).parent).st_mode))
                    except OSError:
                        pass


def test_a_cli_sweep_runs_each_trial_as_an_ordinary_run_on_a_ray_reachable_from_nowhere(tiny_data_dir, runs_dir):
    process = start_sweep(tiny_data_dir, runs_dir, "--grid", "lr=0.01,0.003", "--max-concurrent", "2",
                          env={key: value for key, value in os.environ.items()
                               if key not in ("RAY_ADDRESS", "MNIST_RAY_PRIVATE_NETWORK")})
    watch = _Watch(process.pid)
    watch.start()
    try:
        stdout, stderr = process.communicate(timeout=240)
    finally:
        watch.done.set()
        watch.join(timeout=10)
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]

    # The sweep: each trial an ordinary run, in the run history, reporting what its checkpoint scores.
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["seconds"] > 0
    assert [trial["config"] for trial in summary["trials"]] == [{"lr": 0.01}, {"lr": 0.003}]
    assert summary["best"] in summary["trials"]
    assert summary["best"]["test_accuracy"] == max(trial["test_accuracy"] for trial in summary["trials"])
    runs = {str(run.path): run for run in list_runs(runs_dir)}
    for trial in summary["trials"]:
        run = runs[trial["run_dir"]]  # a run folder like any other, in the run history
        assert trial["status"] == "finished" == run.status()["state"]
        assert run.status()["sweep"] == Path(summary["sweep_dir"]).name and run.has_checkpoint()
        assert any(isinstance(event, EpochEnd) for event in run.events())
        finished = [event for event in run.events() if isinstance(event, Finished)]
        assert round(finished[0].test_accuracy, 2) == trial["test_accuracy"]
        # Mistakes and Draw load a trial like any run: its checkpoint scores what the trial reported.
        assert round(evaluate(run.path, data_dir=tiny_data_dir).accuracy, 2) == trial["test_accuracy"]
    assert "trial 1/2 (lr=0.01): finished" in stderr and "trial 2/2 (lr=0.003): finished" in stderr
    assert "Traceback" not in stderr

    # Its Ray, reachable from nowhere.
    print(f"\nlisteners seen: {sorted(watch.listening)}; networks {sorted(watch.networks)}; tokens {watch.tokens}")

    # Ray's own servers were seen: at least the GCS, the raylet and a worker.
    assert len(watch.listening) >= 3, f"too few listeners seen to judge: {watch.listening}"
    outside = {listener: command for listener, command in watch.listening.items() if not _loopback(listener[0])}
    assert not outside, f"listening beyond loopback: {outside}"
    if "Ray's listeners stay on this machine's network" not in stderr:  # a namespace could be made here
        assert os.readlink("/proc/self/ns/net") not in watch.networks, "Ray ran on this machine's network"

    # Every Ray process was told to ask for the token, kept where only this user can read it.
    assert len(watch.tokens) == 1, f"token files named by Ray's processes: {watch.tokens}"
    (path, (file_mode, folder_mode)), = watch.tokens.items()
    assert (file_mode, folder_mode) == (0o600, 0o700), f"{path}: file {file_mode:o}, folder {folder_mode:o}"
    assert not Path(path).parent.exists(), "the token's folder outlived the sweep"
