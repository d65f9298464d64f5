"""Shared fixtures: a tiny MNIST written as real IDX files, so torchvision's loading path runs.

The tiny digits are easy on purpose: class k is a bright 6x6 square at a position that
depends on k, plus noise. A model that learns anything reaches high accuracy in one epoch.

The suite runs on two pytest-xdist workers (pyproject.toml's addopts), the browser tests all on
one of them (they share one server), and every PyTorch process it starts computes on one thread:
see docs/testing.md for why and what it measured.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

# Before anything imports torch; the processes the tests start (workers, servers, CLI runs) inherit
# it. Two test workers each beside their own training, server and browser processes share 2 cores:
# with torch's default of a thread per core they ran up to four compute threads at once, whose
# OpenMP threads spin while they wait, and the suite took no less time on two workers than on one.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# The threads that still share work (a Ray trial's 2, a t-SNE map built in a test's own process)
# sleep while they wait instead of spinning on cores that other processes of the suite need.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# No standby worker (a training process kept ready for the next job) unless a test asks for one
# (`standby=True`, or the variable set back): each runner's standby is one more process importing
# torch, and one is started again after every job. The browser tests' servers have theirs.
os.environ.setdefault("MNIST_STANDBY_WORKER", "0")

TINY_TRAIN = 512
TINY_TEST = 200


def tiny_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 40, size=(count, 28, 28), dtype=np.uint8)
    for image, label in zip(images, labels):
        row, column = 3 + 8 * (label // 4), 3 + 7 * (label % 4) - (label // 8)
        image[row : row + 6, column : column + 6] = 255
    return images, labels.astype(np.uint8)


def write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    with open(folder / f"{prefix}-images-idx3-ubyte", "wb") as file:
        file.write(struct.pack(">IIII", 0x0803, len(images), 28, 28) + images.tobytes())
    with open(folder / f"{prefix}-labels-idx1-ubyte", "wb") as file:
        file.write(struct.pack(">II", 0x0801, len(labels)) + labels.tobytes())


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny-data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw, "train", *tiny_digits(TINY_TRAIN, seed=1))
    write_idx(raw, "t10k", *tiny_digits(TINY_TEST, seed=2))
    return root


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def auto_device() -> str:
    """What a run with `device="auto"` reports on this machine: "CPU", the GPU's name, "Apple GPU (MPS)"."""
    from mnist_core.device import device_label

    return device_label("auto")


def real_data_dir() -> Path | None:
    """The folder in MNIST_DATA_DIR when it holds the real MNIST, else None."""
    folder = os.environ.get("MNIST_DATA_DIR")
    if folder and (Path(folder) / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        return Path(folder)
    return None


def _try_mount_tmpfs(folder: Path, size: str) -> str | None:
    """Mount a tmpfs of `size` at `folder`; the reason it cannot be done, or None."""
    if os.geteuid() != 0:
        return "mounting a small filesystem needs root"
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else f"cannot mount a tmpfs here: {done.stderr.strip()}"


@pytest.fixture
def tiny_mount():
    """`tiny_mount(folder, size="4m")` mounts a real, small tmpfs there (unmounted afterwards).

    Tests that inject a full disk or an undeletable folder use it; where mounting is not
    possible (not root, no mount permission) they are skipped with the reason."""
    mounted: list[Path] = []

    def mount(folder: Path, size: str = "4m") -> Path:
        problem = _try_mount_tmpfs(Path(folder), size)
        if problem:
            pytest.skip(problem)
        mounted.append(Path(folder))
        return Path(folder)

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the filesystem holding `folder` until at most `leave_bytes` are free; returns the filler
    file (delete it to free the space again)."""
    filler = Path(folder) / ".filler"
    chunk = b"\0" * (64 << 10)
    with open(filler, "wb", buffering=0) as file:
        while True:
            free = shutil.disk_usage(folder).free
            if free <= leave_bytes:
                break
            try:
                file.write(chunk[: max(4096, min(len(chunk), free - leave_bytes))])
            except OSError:
                break
    return filler


def wait_for(predicate, timeout: float = 120.0) -> bool:
    """Poll `predicate` every 0.1 s until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def studio(monkeypatch, tmp_path, tiny_data_dir, runs_dir):
    """The app on the tiny data, an empty runs folder, no shipped model and a fresh job runner."""
    import streamlit as st

    import mnist_core.inference
    import ui.state

    missing = tmp_path / "no-default.pt"
    monkeypatch.setattr(mnist_core.inference, "DEFAULT_MODEL_PATH", missing)
    monkeypatch.setattr(ui.state, "DEFAULT_MODEL_PATH", missing)
    monkeypatch.setenv("MNIST_DATA_DIR", str(tiny_data_dir))
    monkeypatch.setenv("MNIST_RUNS_DIR", str(runs_dir))
    monkeypatch.setenv("MNIST_STANDBY_WORKER", "0")
    st.cache_resource.clear()  # a job runner for this runs folder
    yield runs_dir
    st.cache_resource.clear()


@dataclass
class Command:
    """What a command run by `run_command` returned and printed (as subprocess.run's result names them)."""

    returncode: int
    stdout: str
    stderr: str


def run_command(*args: object) -> Command:
    """`python -m mnist_core ARGS`, run in this process: `mnist_core.cli.main`, the function that
    `python -m mnist_core` calls, with its stdout and stderr caught. For tests of what a command
    does and prints; the tests of the process itself (its exit status, Ctrl-C, a full disk under a
    running command) start one. A new process would spend 2-4 CPU-seconds importing PyTorch first.
    train, audit and sweep install their own Ctrl-C handler (`ctrl_c.StopOnCtrlC`): the test's is
    put back afterwards."""
    from mnist_core.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    handler = signal.getsignal(signal.SIGINT)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main([str(arg) for arg in args])
            except SystemExit as exit_:  # argparse's answer to an unknown option: usage on stderr, status 2
                code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)  # as Python prints sys.exit("message")
    finally:
        signal.signal(signal.SIGINT, handler)
    return Command(code, stdout.getvalue(), stderr.getvalue())


def start_command(*args: object, env: dict[str, str] | None = None, stderr=subprocess.PIPE) -> subprocess.Popen:
    """`python -m mnist_core ARGS` in a process of its own, from the checkout, its output captured
    (text): `run_command`'s twin for the tests where the process is the point (a signal, a disk
    filled under it, another process beside it). `env`: its whole environment, when not this
    process's; `stderr`: where its errors go, when not to a pipe."""
    return subprocess.Popen([sys.executable, "-m", "mnist_core", *map(str, args)], cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)


def train_command(runs_dir: Path, data_dir: Path, *options: str) -> list[str]:
    """A small `train` command (the fast model, a low learning rate) on `data_dir`, into `runs_dir`."""
    return ["train", "--model", "fast", "--lr", "0.001", "--data-dir", str(data_dir), "--runs-dir", str(runs_dir),
            *options]


def start_sweep(data_dir: Path, runs_dir: Path, *options: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m mnist_core sweep` on `data_dir` into `runs_dir` (`start_command`)."""
    return start_command("sweep", "--data-dir", data_dir, "--runs-dir", runs_dir, *options, env=env)


def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's: without it (`-p no:xdist`), unused
def pytest_xdist_make_scheduler(config, log):
    """The browser tests all go to one pytest-xdist worker, as one unit of work; the other tests go
    one by one to whichever worker is free. The browser tests share one server and one browser
    there (session fixtures, per worker), and are heavy enough that two side by side would slow
    each other past their waits. (Not `--dist loadgroup`: its groups are lost on pytest 9.2,
    pytest-xdist issue #1386.) Only for the default distribution: a `--dist` given is kept."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class BrowserTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "e2e" if Path(nodeid.split("::")[0]).parent.name == "e2e" else nodeid

    return BrowserTestsTogether(config, log)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` need a CUDA GPU: elsewhere they are skipped, and say so (`-ra`)."""
    gpu_tests = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_tests:
        return
    import torch

    if not torch.cuda.is_available():
        reason = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none (the CPU path is tested elsewhere)")
        for item in gpu_tests:
            item.add_marker(reason)


def under_ci() -> bool:
    """CI sets CI=true; it installs every optional dependency (requirements-dev.txt) and a browser."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """What a test does without something it needs: skip with the reason, but fail under CI, where
    everything is installed and a skip would hide tests that never ran."""
    if under_ci():
        pytest.fail(f"CI installs everything the tests need, but {reason}", pytrace=False)
    pytest.skip(reason)


def needs(problem: str | None) -> pytest.MarkDecorator:
    """`pytestmark = needs(problem)` for tests that need an optional dependency: `problem` says why
    it cannot be used here (None when it can); each test then skips, or fails under CI, with it."""
    return pytest.mark.needs(problem=problem)


def missing_module(*modules: str, install: str) -> str | None:
    """Why the first absent module of `modules` cannot be imported, or None when all are there."""
    from importlib.util import find_spec

    absent = [module for module in modules if find_spec(module) is None]
    return f"{absent[0]} is not installed ({install})" if absent else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    for mark in item.iter_markers("needs"):
        if mark.kwargs.get("problem"):
            skip_or_fail(mark.kwargs["problem"])
