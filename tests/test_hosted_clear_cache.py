"""A hosted server keeps one job runner and one standby worker however often a client clears its caches.

Any visitor of a public link can send Streamlit's `clear_cache` BackMsg; it empties
`st.cache_resource` for the whole server. When the JobRunner lived there, every such message and
the next page run built a new runner, with a standby worker of its own beside the old ones (five
messages: 7 processes and 3.5 GB instead of 2 and 1.4 GB). `mnist_core.jobs.server_runner` keeps
the runner outside Streamlit's caches now.

The server is a real `streamlit run app.py` with MNIST_HOSTED=1 (bench/load/server.py), on the
tiny digits: what is counted does not depend on the data, and on the real MNIST each page rerun
after a clear_cache read it and evaluated the model again (the test took 11.7 CPU-seconds, now
7). One websocket session that speaks Streamlit's protocol (bench/load/session.py) sends
clear_cache then a rerun of the next page of Train, Mistakes, Draw, Inside, waiting for each run
to finish, CLEARS times.

What is counted, from outside the server:
- standby workers: the server's descendants whose command line has `mnist_core.worker` and
  `--standby`, read from /proc before, after, and every 50 ms while the messages go (a new
  runner starts its standby at once, and the old one's is never let go);
- job runners: each JobRunner starts one thread named "mnist-job-watcher". CPython 3.11 does not
  give a thread's name to the OS (3.14 does), so the server runs with a `sitecustomize` on its
  PYTHONPATH that does what 3.14 does: each thread's name, cut to 15 bytes, becomes its name in
  /proc/<pid>/task/<tid>/comm. Nothing else in the server changes;
- the app's processes below the server (`_our_processes`), at most as many as before: a helper that
  a library runs for a moment (`ldconfig -p`, git) is not one of them. Once, on CI under load, a
  third process was counted for a moment when every process was; the message now names each one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import time
from pathlib import Path

from bench.load import procfs, server
from bench.load.hostile import PAGES, clear_cache, page_rerun
from bench.load.session import Session
from tests.conftest import wait_for

CLEARS = 8  # two rounds of the four pages
WATCHER_COMM = "mnist-job-watcher"[:15]  # the kernel keeps 15 bytes of a thread's name

# Runs at the start of every Python process of the server (site imports it from PYTHONPATH).
SITECUSTOMIZE = '''
"""Test instrumentation: a thread's name becomes its OS name, as CPython 3.14's threading does."""
import ctypes
import threading

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None
_bootstrap_inner = threading.Thread._bootstrap_inner


def _named_bootstrap_inner(self):
    if _prctl is not None:
        try:
            _prctl(15, self.name.encode(errors="replace")[:15], 0, 0, 0)  # PR_SET_NAME: the calling thread
        except Exception:
            pass
    _bootstrap_inner(self)


threading.Thread._bootstrap_inner = _named_bootstrap_inner
'''


def _standby_workers(server_pid: int) -> list[int]:
    parents = procfs.parent_pids()
    found = {pid for pid in procfs.descendants(server_pid, parents)
             if "mnist_core.worker" in (command := procfs.command_line(pid)) and "--standby" in command.split()}
    # A standby's own child is not a second standby: while the standby imports torch, ctypes'
    # find_library forks `ldconfig -p`, and between the fork and the exec that child shows its
    # parent's command line. A second standby would be the server's child, as the first one is.
    return sorted(pid for pid in found if parents.get(pid) not in found)


def _our_processes(server_pid: int) -> dict[int, str]:
    """The processes of the app's own below the server (Python running streamlit or mnist_core), by
    pid, with their command lines. Not a helper a library runs for a moment (ctypes' find_library
    runs `ldconfig -p`, Streamlit may run git), nor such a child between its fork and its exec, when
    it still shows its parent's command line."""
    parents = procfs.parent_pids()
    below = procfs.descendants(server_pid, parents)
    commands = {pid: procfs.command_line(pid) for pid in [server_pid, *below]}
    return {pid: commands[pid] for pid in below
            if ("mnist_core" in commands[pid] or "streamlit" in commands[pid])
            and commands[pid] != commands.get(parents.get(pid))}


def _thread_names(pid: int) -> list[str]:
    names = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            names.append((task / "comm").read_text().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return names


def _watchers(pid: int) -> int:
    return _thread_names(pid).count(WATCHER_COMM)


class _Census(threading.Thread):
    """Every 50 ms: the standby workers' pids and the number of the app's processes below the server."""

    def __init__(self, server_pid: int) -> None:
        super().__init__(name="census", daemon=True)
        self.server_pid = server_pid
        self.standby_seen: set[int] = set()
        self.most_processes = 0
        self.most_watchers = 0
        self.commands_seen: dict[int, str] = {}  # the app's processes seen below the server, for the messages
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            self.standby_seen.update(_standby_workers(self.server_pid))
            ours = _our_processes(self.server_pid)
            self.most_processes = max(self.most_processes, len(ours))
            self.commands_seen.update(ours)
            self.most_watchers = max(self.most_watchers, _watchers(self.server_pid))

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)


async def _clear_caches_and_rerun(url: str) -> list[str]:
    """Open Train, then CLEARS times clear_cache and a page rerun; returns the problems seen."""
    session = Session(url, "/")
    problems: list[str] = []
    try:
        opened = await session.open(page_rerun(PAGES[0][1]))
        problems += [f"opening Train: {error}" for error in opened.errors]
        for turn in range(CLEARS):
            title, url_path = PAGES[turn % len(PAGES)]
            await session.send_other(clear_cache())
            timing = await session.rerun(page_rerun(url_path))
            problems += [f"{title} after clear_cache {turn + 1}: {error}" for error in timing.errors]
            if timing.finished_at is None:
                problems.append(f"{title} after clear_cache {turn + 1}: the run did not finish")
    finally:
        await session.close()
    return problems + session.errors


def test_clear_cache_builds_no_second_runner_and_no_second_standby_worker(tmp_path, tiny_data_dir, monkeypatch):
    instrumentation = tmp_path / "sitecustomize"
    instrumentation.mkdir()
    (instrumentation / "sitecustomize.py").write_text(SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(instrumentation), os.environ.get("PYTHONPATH")])))
    monkeypatch.delenv("MNIST_STANDBY_WORKER", raising=False)  # the standby is on by default
    monkeypatch.delenv("MNIST_JOB_BACKEND", raising=False)
    port = server.free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    process = server.start_server(port, tiny_data_dir, tmp_path / "runs", log_path)  # MNIST_HOSTED=1, its own group
    census: _Census | None = None
    began = time.monotonic()

    def log() -> str:
        return log_path.read_text()[-3000:]

    try:
        server.wait_until_healthy(url, process)
        # The runner, and with it the standby, is made by the first run that asks for it: open a page.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # asyncio.run in a thread of its own, as
            # test_server_sigterm does: Playwright may keep an event loop running in this thread
            first = pool.submit(asyncio.run, _open_train(url)).result()
        assert not first, f"the Train page did not load: {first}\n{log()}"
        assert wait_for(lambda: len(_standby_workers(process.pid)) == 1, 120), (
            f"no standby worker below the server: {[procfs.command_line(p) for p in procfs.descendants(process.pid)]}"
            f"\n{log()}")
        standby = _standby_workers(process.pid)
        processes_before = len(_our_processes(process.pid))
        assert _watchers(process.pid) == 1, (
            f"expected one {WATCHER_COMM!r} thread before any clear_cache (is the sitecustomize loaded?): "
            f"{sorted(set(_thread_names(process.pid)))}")

        census = _Census(process.pid)
        census.start()
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            problems = pool.submit(asyncio.run, _clear_caches_and_rerun(url)).result()
        assert not problems, f"the pages did not run cleanly after clear_cache: {problems[:5]}\n{log()}"

        # A runner built by the last run would start its standby within the run; give anything
        # late a moment to show, polling, and stop at once if it does.
        wait_for(lambda: _standby_workers(process.pid) != standby or _watchers(process.pid) != 1
                 or len(_our_processes(process.pid)) != processes_before, 3)
        census.stop()
        print(f"\n{CLEARS} clear_cache + page reruns; standby {standby}, seen {sorted(census.standby_seen)}; "
              f"processes {processes_before} -> {len(_our_processes(process.pid))} (most {census.most_processes}); "
              f"watcher threads {_watchers(process.pid)} (most {census.most_watchers}); seen {census.commands_seen}; "
              f"{time.monotonic() - began:.1f} s")
        assert _standby_workers(process.pid) == standby, (
            f"standby workers {_standby_workers(process.pid)} after {CLEARS} clear_cache, {standby} before")
        assert census.standby_seen == set(standby), (
            f"standby workers seen while the caches were cleared: {sorted(census.standby_seen)}; before: {standby}")
        assert _watchers(process.pid) == 1 and census.most_watchers == 1, (
            f"job runners (watcher threads) now {_watchers(process.pid)}, at most {census.most_watchers}: expected 1")
        assert len(_our_processes(process.pid)) == processes_before == census.most_processes, (
            f"processes below the server: {processes_before} before, {census.most_processes} at most, "
            f"{len(_our_processes(process.pid))} after; seen: {census.commands_seen}")
    finally:
        try:
            if census is not None:
                census.stop()
        finally:  # the server goes whatever happened above
            server.stop_server(process)  # SIGTERM to its process group, SIGKILL after 15 s


async def _open_train(url: str) -> list[str]:
    session = Session(url, "/")
    try:
        timing = await session.open(page_rerun(PAGES[0][1]))
    finally:
        await session.close()
    return timing.errors + session.errors
