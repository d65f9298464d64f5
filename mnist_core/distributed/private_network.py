"""A network of its own for an embedded Ray: nothing outside this machine can reach its listeners.

Ray (2.60) binds its gRPC servers (GCS, raylet, object manager, every worker) to all interfaces,
and no setting moves them to loopback; only its token guards them. So before an embedded Ray
starts, the process that will start it moves into a new Linux network namespace whose only
interface is loopback (`isolate`). Ray then finds no outside address, takes 127.0.0.1 as its
node's, and every listener it opens, in this process and in every process it starts (they
inherit the namespace), is on 127.0.0.1 and reachable from nowhere else, not even from the
machine's other processes. The sweep needs no network: its trials read the data from disk and
report through files (`cluster.Homecoming`).

As root this is one `unshare(CLONE_NEWNET)`. Otherwise it takes a user namespace too (as a
container's unprivileged user would), which Linux allows only in a process with one thread, so
`isolate` runs before Ray or PyTorch is imported. Where the system forbids both (some container
runtimes, other operating systems), the process stays on the machine's network, says so, and
Ray's token (`cluster`) is the guard. `MNIST_RAY_PRIVATE_NETWORK=0` turns it off.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
import socket
import struct
import sys

log = logging.getLogger(__name__)

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
LOOPBACK_ADDRESS = "127.0.0.1"

_isolated = False


def isolate() -> str | None:
    """Move this process into a network namespace that has only loopback; None when done (or
    already), else why not, in words (the caller goes on without it)."""
    global _isolated
    if _isolated:
        return None
    if os.environ.get("MNIST_RAY_PRIVATE_NETWORK", "1") == "0":
        return "turned off by MNIST_RAY_PRIVATE_NETWORK=0"
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux's; this is {sys.platform}"
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    problem = _unshare(libc, CLONE_NEWNET) if os.geteuid() == 0 else "not root"
    if problem:  # an unprivileged user may make a network namespace inside a user namespace of its own
        problem = _unshare(libc, CLONE_NEWUSER | CLONE_NEWNET)
        if problem:
            return problem
        try:  # the same ids inside as outside, so the files it writes stay the user's
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        except OSError as error:
            return f"could not map the user into its namespace ({error.strerror})"
    try:
        _bring_up_loopback()
    except OSError as error:  # a namespace without even loopback: Ray could not start in it
        return f"could not bring up loopback in the new namespace ({error.strerror})"
    _isolated = True
    return None


def isolated() -> bool:
    return _isolated


def _unshare(libc: ctypes.CDLL, flags: int) -> str | None:
    if libc.unshare(flags) == 0:
        return None
    code = ctypes.get_errno()
    if code == errno.EINVAL and flags & CLONE_NEWUSER:
        return "a user namespace needs a process with one thread"
    return f"the system refused a network namespace ({os.strerror(code)})"


def _write(path: str, text: str) -> None:
    with open(path, "w") as file:
        file.write(text)


def _bring_up_loopback() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(probe, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))


def isolate_for_ray() -> None:
    """For a process about to start an embedded Ray (a sweep's, a Ray job's): a network of its own
    unless RAY_ADDRESS names a cluster to join; if that cannot be, a warning says why.

    Only a process that does nothing but this work may call it: everything the process does after,
    on every thread it starts, is cut off from the machine's network."""
    if os.environ.get("RAY_ADDRESS", "").strip():
        return
    problem = isolate()
    if problem:
        log.warning("Ray's listeners stay on this machine's network (%s); its token still guards them", problem)
