"""Ending the server's process promptly once it has been asked to stop (SIGTERM, Ctrl-C).

Streamlit closes its connections and sessions within about 0.5 s of SIGTERM. What
follows is Python's own interpreter shutdown, and that is what can hold the process:

- Its teardown: a full garbage collection of the server's heap (about 2 s here with PyTorch,
  Plotly and MNIST loaded), then C++ destructors. A page's script thread (a daemon) may be inside
  PyTorch at that moment (Mistakes evaluating a model, Draw predicting). When it comes back for
  the GIL during the teardown, CPython 3.11 ends it with pthread_exit from inside C++ code;
  libstdc++ calls std::terminate and the process aborts (SIGABRT, "terminate called without an
  active exception", exit code -6), dumping core where core dumps are on: 2.2 GB for this
  server, which a crash handler such as systemd-coredump or apport reads and compresses before
  the process is gone.
- Python's thread joins: concurrent.futures waits for its threads' work at exit (e.g. the Inside
  map's preview, tens of seconds on a busy machine), and Python for any thread that is not a
  daemon.

So, once the app calls `watch` (ui/state.py does, once per server):

- a daemon thread notices the stop (it polls `stopping()`), arms a deadline and runs the
  callbacks given to `on_stop` (the job runner lets its standby worker go; running jobs are
  left alone: their workers see that the server is gone, stop within a training step and
  record themselves interrupted, their checkpoints kept). The deadline is faulthandler's
  watchdog, which needs no GIL: if the process is still there `grace_seconds` later, the
  stack of every thread goes to stderr (what held it) and the process ends with exit code 1;
- an atexit handler ends a process whose server stopped cleanly (`stopped()`) with
  `os._exit(0)` right after Python's thread joins, once the logs and standard streams are
  flushed. It skips the teardown above and the atexit callbacks registered before it (logging's,
  which it calls itself; PyTorch's, Pillow's and multiprocessing's, which have nothing to do for
  a server that has closed everything). A process that ends any other way ends as usual.

`streamlit run app.py` serves the app with uvicorn, which would end the process by re-raising the
signal once it has shut down (SIGTERM: exit code -15, before any atexit handler); app.py's
lifespan (ui/serve.py) therefore calls `exit_now` once Streamlit's runtime has stopped, the same
end as the atexit handler's.

The deadline starts when `stopping()` first says so; with Streamlit, that is when its web
server has closed its connections and stops the runtime (ui/state.py), a fraction of a second
after the signal. Nothing here imports Streamlit.
"""

from __future__ import annotations

import atexit
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from mnist_core.ctrl_c import end_as_interrupted, say

GRACE_SECONDS = 5.0  # from the moment the stop is noticed; Streamlit itself needs about 0.5 s
POLL_SECONDS = 0.1

log = logging.getLogger(__name__)

_lock = threading.Lock()
_callbacks: list[Callable[[], None]] = []
_watching = False
_stop_seen = threading.Event()
_callbacks_done = threading.Event()


def on_stop(callback: Callable[[], None]) -> None:
    """Call `callback` once when the server is seen stopping; at once if it already was. A callback
    that raises is logged and the others still run."""
    with _lock:  # the same lock as the snapshot in _run_callbacks_once: each callback runs exactly once
        _callbacks.append(callback)
        already = _stop_seen.is_set()
    if already:
        _run(callback)


def watch(stopping: Callable[[], bool], stopped: Callable[[], bool], grace_seconds: float = GRACE_SECONDS) -> bool:
    """Start watching for the stop (see the module's docstring); only the first call in a process
    does anything. Returns whether this call started it.

    `stopping()`: the server has been asked to stop (or has stopped). `stopped()`: it has stopped
    cleanly, so the process may end with exit code 0 as soon as Python's thread joins are done."""
    global _watching
    with _lock:
        if _watching:
            return False
        _watching = True
    threading.Thread(target=_watch, args=(stopping, grace_seconds), name="server-stop-watch", daemon=True).start()
    atexit.register(_exit_now_if, stopped)
    return True


def _watch(stopping: Callable[[], bool], grace_seconds: float) -> None:
    while not _ask(stopping):
        time.sleep(POLL_SECONDS)
    _arm_deadline(grace_seconds)  # first, so that a callback that hangs is bounded too
    _run_callbacks_once()


def _run_callbacks_once() -> None:
    """The stop callbacks, by whichever thread gets here first: the watcher, or the exit when the
    server stopped between two of the watcher's looks. The other waits until they have run."""
    with _lock:
        first = not _stop_seen.is_set()
        _stop_seen.set()
        callbacks = list(_callbacks) if first else []
    for callback in callbacks:
        _run(callback)
    if first:
        _callbacks_done.set()
    _callbacks_done.wait()  # bounded by the deadline


_deadline_armed = threading.Event()


def _arm_deadline(seconds: float) -> None:
    """Arm the deadline once: a second caller (the exit, after the watcher) keeps the first one's."""
    with _lock:
        if _deadline_armed.is_set():
            return
        _deadline_armed.set()
    try:
        faulthandler.dump_traceback_later(seconds, exit=True, file=sys.stderr)
    except (AttributeError, ValueError, OSError):  # no stderr with a file descriptor: end it without the stacks
        timer = threading.Timer(seconds, os._exit, args=(1,))
        timer.daemon = True
        timer.start()


def second_ctrl_c_ends_at_once() -> None:
    """The first Ctrl-C says that the server stops and that a second one stops it at once; the
    second ends the process at once, by SIGINT (`ctrl_c.end_as_interrupted`).

    uvicorn, which serves app.py's st.App, takes a second Ctrl-C during its shutdown as "force
    quit": it skips the app's lifespan end (and `exit_now` with it), re-raises the signals, and the
    process ended in two tracebacks and exit code 1. Call this in the main thread once uvicorn's
    handler is installed (the lifespan's start): it wraps that handler. Running jobs' workers see
    the server gone and record themselves interrupted, their checkpoints kept."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set a signal handler
    first_handler = signal.getsignal(signal.SIGINT)
    if not callable(first_handler):
        return
    pressed = threading.Event()

    def on_ctrl_c(signum: int, frame: object) -> None:
        if pressed.is_set():  # no lock, no callback: a signal handler may have interrupted anything
            end_as_interrupted("Stopped at once (Ctrl-C twice).")
        pressed.set()
        say("Stopping the server (Ctrl-C again to stop it at once)...")
        first_handler(signum, frame)

    signal.signal(signal.SIGINT, on_ctrl_c)


def watching() -> bool:
    """Whether `watch` has been called in this process: it is a server that has run the app."""
    with _lock:
        return _watching


def exit_now() -> None:
    """End the process now, with exit code 0: for a server that has stopped cleanly and whose web
    layer would otherwise end it its own way. uvicorn, which serves app.py's st.App, re-raises the
    signal that stopped it once it has shut down: SIGTERM would then end the process as killed
    (exit code -15), before any atexit handler. The stop callbacks run first (once), under the deadline."""
    _exit_now_if(lambda: True)


def _exit_now_if(stopped: Callable[[], bool]) -> None:
    if not _ask(stopped):
        return  # the server did not stop cleanly (or never ran): Python ends as usual, with its exit code
    _arm_deadline(GRACE_SECONDS)  # unless the watcher armed it already: bound the callbacks here too
    _run_callbacks_once()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(0)


def _ask(question: Callable[[], bool]) -> bool:
    try:
        return bool(question())
    except Exception:  # noqa: BLE001 - a question that fails is a "no", never a crash of the watcher
        return False


def _run(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # noqa: BLE001 - one failing callback must not keep the others from running
        log.exception("stop callback %r failed", callback)
