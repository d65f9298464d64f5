"""Joining a Ray cluster without hanging, and leaving no session folder behind (for `cluster`).

`wait_until_reachable(address, should_stop)` checks, before `ray.init(address=...)`, that
something answers at `RAY_ADDRESS`: a plain `host:port` (a GCS) or `ray://host:port` (a Ray
Client server) gets a TCP connection, retried until `CONNECT_GIVE_UP_SECONDS` (or
`MNIST_RAY_CONNECT_SECONDS`) have passed. Without it, Ray tries an address where nothing
listens for about 14 minutes (20 attempts of about 41 s), deaf to Stop and Ctrl-C. The wait
asks `should_stop` every `POLL_SECONDS` and sleeps in the calling thread, so Ctrl-C
(KeyboardInterrupt) ends it too. `ClusterUnreachable` says what to check; `ConnectStopped`
says the caller stopped the wait.

`one_gcs_attempt()` then bounds `ray.init` itself when the port answers but nothing there
speaks Ray, and `remove_session_dir` removes the session folder (`/tmp/ray/session_<date>_<pid>`)
of an embedded local Ray once it has shut down.

Nothing here imports Ray.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import logging
import os
import select
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

CONNECT_GIVE_UP_SECONDS = 25.0  # a named cluster that has not answered by then fails the job: with the
# process's own start (Python, PyTorch, Ray: 3-4 s here), a person hears within 30 s
CONNECT_SECONDS_ENV = "MNIST_RAY_CONNECT_SECONDS"  # overrides it (tests use a few seconds)
POLL_SECONDS = 0.25  # how often the wait asks `should_stop`
ATTEMPT_SECONDS = 5.0  # one TCP connection attempt at most (a slow link's handshake)
RETRY_SECONDS = 1.0  # between attempts (a refused connection fails at once)
RAY_CLIENT = "ray://"
# Read by Ray's `Node._init_gcs_client` on each `ray.init` (Ray 2.60): how many times it tries the
# GCS, each try up to ~41 s (5 s to connect, 5 s for its pubsub, 30 s for the cluster id: the
# C++ settings RAY_gcs_rpc_server_connect_timeout_s and RAY_py_gcs_connect_timeout_s, which
# Ray reads only when it is imported, too early for this module to set). Ray's default is 20 tries.
GCS_ATTEMPTS_ENV = "RAY_gcs_server_port_wait_time_s"
SESSION_LATEST = "session_latest"

StopCheck = Callable[[], bool]


class ClusterUnreachable(RuntimeError):
    """The cluster named by RAY_ADDRESS cannot be joined from here; the message says what to check."""


class RayClientMissing(ClusterUnreachable):
    """RAY_ADDRESS is a `ray://` address, and Ray Client's package (`ray[client]`: grpcio) is not installed."""


class ConnectStopped(Exception):
    """`should_stop` turned true while waiting for the cluster to answer: nothing was joined."""


def connect_give_up_seconds() -> float:
    """`CONNECT_GIVE_UP_SECONDS`, or `MNIST_RAY_CONNECT_SECONDS` when that is a positive number."""
    text = os.environ.get(CONNECT_SECONDS_ENV, "").strip()
    if text:
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
        if seconds > 0:
            return seconds
        log.warning("%s=%r is not a positive number of seconds; using %g", CONNECT_SECONDS_ENV, text,
                    CONNECT_GIVE_UP_SECONDS)
    return CONNECT_GIVE_UP_SECONDS


def tcp_target(address: str) -> tuple[str, int] | None:
    """The host and port a TCP check of `address` connects to, or None where there is nothing to check.

    `host:port` is a GCS; `ray://host:port` a Ray Client server. `auto`, `local`, an address
    without a port and any other scheme are left to Ray (it resolves `auto` itself, and
    rejects what it cannot parse at once)."""
    text = address.strip()
    if text in ("", "auto", "local"):
        return None
    if "://" in text:
        if not text.startswith(RAY_CLIENT):
            return None
        text = text[len(RAY_CLIENT):]
    try:
        parts = urlsplit("//" + text.split("/", 1)[0])
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number: Ray's own error says so
        return None
    if not host or port is None:
        return None
    return host, port


def check_stop(should_stop: StopCheck) -> None:
    if should_stop():
        raise ConnectStopped("Stopped while waiting for the Ray cluster to answer.")


def wait_until_reachable(address: str, should_stop: StopCheck = lambda: False,
                         give_up_seconds: float | None = None) -> None:
    """Return once something accepts a TCP connection at `address` (see `tcp_target`).

    Raises ClusterUnreachable after `give_up_seconds` (default `connect_give_up_seconds()`) of
    refused or unanswered attempts, RayClientMissing at once for a `ray://` address without
    Ray Client's package, and ConnectStopped within `POLL_SECONDS` of `should_stop()` turning
    true. KeyboardInterrupt ends the wait as anywhere else."""
    if address.strip().startswith(RAY_CLIENT) and importlib.util.find_spec("grpc") is None:
        raise RayClientMissing(
            f"RAY_ADDRESS={address.strip()} needs Ray Client, whose package is not installed: "
            f"pip install \"ray[client]\" (requirements-ray.txt includes it), or unset RAY_ADDRESS to train on "
            f"this machine.")
    target = tcp_target(address)
    if target is None:
        return
    host, port = target
    give_up = connect_give_up_seconds() if give_up_seconds is None else give_up_seconds
    deadline = time.monotonic() + give_up
    while True:
        check_stop(should_stop)
        budget = min(ATTEMPT_SECONDS, max(deadline - time.monotonic(), POLL_SECONDS))
        reason = tcp_problem(host, port, budget, should_stop)
        if reason is None:
            return
        if time.monotonic() >= deadline:
            raise ClusterUnreachable(unreachable_message(address.strip(), give_up, reason))
        log.debug("no answer at %s yet (%s); trying again", address, reason)
        _pause(min(RETRY_SECONDS, deadline - time.monotonic()), should_stop)


def unreachable_message(address: str, give_up: float, reason: str) -> str:
    what = "No Ray Client server answers" if address.startswith(RAY_CLIENT) else "No Ray cluster answers"
    return (f"{what} at {address} (tried for {give_up:g} s: {reason}). "
            f"Check RAY_ADDRESS, or unset it to train on this machine.")


def tcp_problem(host: str, port: int, budget: float, should_stop: StopCheck = lambda: False) -> str | None:
    """None when a TCP connection to host:port succeeds within `budget` seconds, else why it did not.

    The connection is non-blocking, so `should_stop` is asked every `POLL_SECONDS` meanwhile
    (a host that drops packets answers nothing until the budget is spent)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        return f"the host name {host!r} does not resolve ({getattr(error, 'strerror', None) or error})"
    reason = "no address to connect to"
    for family, kind, protocol, _, where in addresses:
        with socket.socket(family, kind, protocol) as sock:
            sock.setblocking(False)
            code = sock.connect_ex(where)
            end = time.monotonic() + budget
            while code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY):
                check_stop(should_stop)
                left = end - time.monotonic()
                if left <= 0:
                    break
                _, writable, failed = select.select([], [sock], [sock], min(POLL_SECONDS, left))
                if writable or failed:
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code == 0:
                return None
            if code in (errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY):
                reason = f"no answer within {budget:g} s"
            else:
                reason = os.strerror(code)
                reason = reason[:1].lower() + reason[1:]
    return reason


def _pause(seconds: float, should_stop: StopCheck) -> None:
    end = time.monotonic() + seconds
    while True:
        check_stop(should_stop)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(POLL_SECONDS, left))


@contextlib.contextmanager
def one_gcs_attempt() -> Iterator[None]:
    """While `ray.init(address=host:port)` runs: one GCS connection try (~41 s at most), not Ray's 20.

    For a port that answers TCP but is no GCS (another service, a Ray Client port given
    without `ray://`). Neither Stop nor Ctrl-C can cut that try short: Ray waits in native code.
    A value the operator set is kept."""
    if GCS_ATTEMPTS_ENV in os.environ:
        yield
        return
    os.environ[GCS_ATTEMPTS_ENV] = "1"
    try:
        yield
    finally:
        os.environ.pop(GCS_ATTEMPTS_ENV, None)


def own_session_dir(temp_dir: str, session_name: str) -> Path | None:
    """The session folder of a Ray this process started, or None when another process started it.

    Ray names each session folder `session_<date>_<time>_<pid of the process that started it>`;
    a `ray.init()` that joined a running local cluster shares that cluster's folder."""
    if not temp_dir or not session_name.startswith("session_") or not session_name.endswith(f"_{os.getpid()}"):
        return None
    return Path(temp_dir) / session_name


def remove_session_dir(session_dir: Path, attempts: int = 5, retry_seconds: float = 0.2) -> bool:
    """Remove an ended Ray's session folder, and `session_latest` when it points there; True when gone.

    Call after `ray.shutdown()`. Ray's processes may still write a last log line as they exit,
    so a folder that reappears half-removed is removed again. Errors are logged, never raised."""
    path = Path(session_dir)
    if not path.name.startswith("session_") or path.name == SESSION_LATEST or path.is_symlink():
        log.warning("not removing %s: not a Ray session folder", path)
        return False
    problem: OSError | None = None
    for _ in range(attempts):
        try:
            shutil.rmtree(path)
        except FileNotFoundError:
            pass
        except OSError as error:  # a file written meanwhile, a permission: try again
            problem = error
        if not os.path.lexists(path):
            break
        time.sleep(retry_seconds)
    gone = not os.path.lexists(path)
    if not gone:
        log.warning("could not remove Ray's session folder %s: %s", path, problem)
    latest = path.parent / SESSION_LATEST
    try:
        # Only a link to this folder: another process's Ray may have pointed it at its own since.
        if latest.is_symlink() and os.path.realpath(latest) == os.path.realpath(path):
            latest.unlink()
    except OSError as error:
        log.warning("could not remove %s: %s", latest, error)
    return gone
