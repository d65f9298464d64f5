"""SIGTERM ends the real server within seconds; a job it was training is recorded as interrupted.

The server is a real `streamlit run app.py` on a free port with the tiny dataset. One session,
spoken over Streamlit's websocket as a browser tab does (no browser needed), opens the Train
page, sets 100 epochs and presses Start training; the session stays open while the server is
stopped. Also: mnist_core.shutdown's deadline and exit on their own, in small processes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import connect

from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]
EARLY = ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):  # not written yet, or being replaced
        return {}


def _runs(runs_dir: Path) -> list[Path]:
    return [path for path in runs_dir.iterdir() if (path / "config.json").is_file()] if runs_dir.is_dir() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie waiting for its parent has ended too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


async def _run_script(websocket, message: BackMsg) -> tuple[list, str]:
    """Send a rerun_script; collect the elements of the run that answers it (the last one, after
    any st.rerun) and the page's script hash."""
    await websocket.send(message.SerializeToString())
    elements: list = []
    page_hash = ""
    while True:
        frame = ForwardMsg()
        frame.ParseFromString(await asyncio.wait_for(websocket.recv(), 120))
        kind = frame.WhichOneof("type")
        if kind == "new_session":
            page_hash, elements = frame.new_session.page_script_hash, []
        elif kind == "delta" and frame.delta.WhichOneof("type") == "new_element":
            elements.append(frame.delta.new_element)
        elif kind == "script_finished" and frame.script_finished != EARLY:
            return elements, page_hash


async def _start_training_then_stop(url: str, server: subprocess.Popen, runs_dir: Path) -> dict:
    """Open Train, start a 100-epoch job, wait for its first checkpoint, SIGTERM the server with the
    session still open; returns what was measured."""
    async with connect(url.replace("http", "ws", 1) + "/_stcore/stream", subprotocols=["streamlit"],
                       origin=url, max_size=None, ping_interval=None, open_timeout=60) as websocket:
        first = BackMsg()
        first.rerun_script.SetInParent()  # a first page load: no page named, no widgets; the default page is Train
        elements, page_hash = await _run_script(websocket, first)
        ids = {}
        for element in elements:
            kind = element.WhichOneof("type")
            if kind == "button" and element.button.label == "Start training":
                ids["start"] = element.button.id
            elif kind == "number_input" and element.number_input.label == "Epochs":
                ids["epochs"] = element.number_input.id
        assert set(ids) == {"start", "epochs"}, f"the Train form was not drawn: {[e.WhichOneof('type') for e in elements]}"
        click = BackMsg()
        click.rerun_script.page_script_hash = page_hash
        click.rerun_script.widget_states.widgets.add(id=ids["epochs"], int_value=100)
        click.rerun_script.widget_states.widgets.add(id=ids["start"], trigger_value=True)
        await _run_script(websocket, click)

        def training_with_a_checkpoint() -> bool:
            runs = _runs(runs_dir)
            return bool(runs) and _status(runs[0]).get("state") == "running" and (runs[0] / "checkpoint.pt").is_file()

        assert await asyncio.to_thread(wait_for, training_with_a_checkpoint, 180), (
            f"no job reached its first checkpoint: {[(r.name, _status(r)) for r in _runs(runs_dir)]}")
        run_dir = _runs(runs_dir)[0]
        worker = _status(run_dir)["pid"]
        assert _status(run_dir).get("state") == "running", "the job ended before the server was stopped"
        began = time.monotonic()
        server.send_signal(signal.SIGTERM)
        exited = await asyncio.to_thread(wait_for, lambda: server.poll() is not None, 60)
        seconds = time.monotonic() - began
        ended_at = time.time()
    return {"exited": exited, "seconds": seconds, "ended_at": ended_at, "run_dir": run_dir, "worker": worker}


def test_sigterm_ends_the_server_and_a_running_job_is_recorded_interrupted(tmp_path, tiny_data_dir):
    runs_dir, log_path = tmp_path / "runs", tmp_path / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MNIST_DATA_DIR": str(tiny_data_dir), "MNIST_RUNS_DIR": str(runs_dir), "MNIST_HOSTED": ""}
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: whatever it leaves behind is cleaned up below
        )
    try:
        def healthy() -> bool:
            assert server.poll() is None, f"the server exited at start:\n{log_path.read_text()[-3000:]}"
            with contextlib.suppress(OSError):
                return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok"
            return False

        assert wait_for(healthy, 60), f"the server did not start:\n{log_path.read_text()[-3000:]}"
        # In a thread of its own: in the full suite the browser tests' Playwright keeps an event loop
        # running in this thread, and asyncio.run refuses to start a second one here.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            measured = pool.submit(asyncio.run, _start_training_then_stop(url, server, runs_dir)).result()
        print(f"\nSIGTERM -> server exited: {measured['seconds']:.2f} s (exit code {server.returncode})")
        assert measured["exited"], f"the server was still running 60 s after SIGTERM:\n{log_path.read_text()[-3000:]}"
        # Not killed by a signal (an abort in the interpreter's teardown was -6); 1 is the deadline's exit.
        assert server.returncode >= 0, f"exit code {server.returncode}:\n{log_path.read_text()[-3000:]}"

        run_dir = measured["run_dir"]
        assert wait_for(lambda: not _alive(measured["worker"]), 60), "the training process outlived its server"
        status = _status(run_dir)  # what the worker recorded last, before it ended
        print(f"server gone -> run recorded {status.get('state')} "
              f"{status.get('updated_at', 0) - measured['ended_at']:+.2f} s later (polled every 0.1 s)")
        assert status.get("state") == "interrupted", status
        assert (run_dir / "checkpoint.pt").is_file()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def _child(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_a_stop_that_hangs_ends_at_the_deadline_with_the_stacks_on_stderr():
    # A thread held for 600 s; _child's guard ends the test long before that if the deadline fails.
    done = _child("""
        import threading, time
        from mnist_core import shutdown
        calls = []
        shutdown.on_stop(lambda: calls.append("closed"))
        shutdown.watch(stopping=lambda: True, stopped=lambda: False, grace_seconds=1.0)
        threading.Thread(target=time.sleep, args=(600,), name="held-forever").start()  # not a daemon
        time.sleep(0.5)
        print(calls, flush=True)
    """)
    assert done.returncode == 1, done
    assert "['closed']" in done.stdout
    assert "Timeout" in done.stderr and "in _shutdown" in done.stderr  # the stacks: Python waiting for the thread


def test_a_clean_stop_exits_at_once_with_0_and_any_other_end_keeps_its_exit_code():
    clean = _child("""
        import threading, time
        from mnist_core import shutdown
        shutdown.watch(stopping=lambda: True, stopped=lambda: True, grace_seconds=30)
        print("flushed at exit", end="")
    """)
    assert clean.returncode == 0 and clean.stdout == "flushed at exit", clean
    failed = _child("""
        import sys
        from mnist_core import shutdown
        shutdown.watch(stopping=lambda: False, stopped=lambda: False)
        sys.exit(3)
    """)
    assert failed.returncode == 3, failed


def test_a_second_ctrl_c_ends_the_server_at_once_by_sigint_without_a_traceback():
    # The handler it wraps stands in for uvicorn's, which only notes the first Ctrl-C and, at the
    # second, skipped the app's end and ended the process in tracebacks (exit code 1).
    done = _child("""
        import os, signal, time
        from mnist_core import shutdown
        noted = []
        signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
        shutdown.second_ctrl_c_ends_at_once()
        os.kill(os.getpid(), signal.SIGINT)
        print("after the first:", noted, flush=True)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(30)
        print("still running", flush=True)
    """)
    assert done.returncode == -signal.SIGINT, done
    assert done.stdout.strip() == f"after the first: [{int(signal.SIGINT)}]", done
    assert "Ctrl-C again to stop it at once" in done.stderr and "Stopped at once" in done.stderr, done
    assert "Traceback" not in done.stderr
