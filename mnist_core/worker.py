"""Entry point of background training jobs: `python -m mnist_core.worker RUN_DIR`, or a standby.

`JobRunner` starts it as a child process. It trains the run in its folder at a lower CPU
priority than the server, and stops (marking the run interrupted) if the server that
started it goes away, since nobody would be watching and it would hold the CPU. It holds the
runner's training slot (`slots`) until it exits. With `--no-download` a missing dataset is a
failure, never a download.

`--ray` trains the run on the Ray cluster (`MNIST_JOB_BACKEND=ray`) instead of here: this
process joins the cluster, starts the job there, and writes what it reports into the run
folder (`cluster.run_job`).

`--standby SOCKET_FD` starts a worker before there is a job: it imports torch and the
engine (torch._dynamo included) and reads MNIST from disk (the 2-3 s a fresh process spends
before its first step), then waits on a Unix socket. The runner hands it a run folder and the
slot's file descriptor in one message (SCM_RIGHTS); it then trains that run exactly as a fresh
worker would. If the runner goes away first, the socket closes and the standby exits.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

from mnist_core.job import SERVER_STOPPED, begin_job_process, interrupted

HANDOFF_BYTES = 4096  # a run folder's path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--parent-pid", type=int, default=os.getppid())
    parser.add_argument("--data-dir")
    parser.add_argument("--no-download", action="store_true", help="fail, rather than download, if data is missing")
    parser.add_argument("--ray", action="store_true", help="train on the Ray cluster ($RAY_ADDRESS, or a local Ray)")
    parser.add_argument("--standby", type=int, metavar="SOCKET_FD", help="load everything, then wait for a run")
    args = parser.parse_args(argv)
    begin_job_process()  # niced (the server's script threads come first); a full log cannot end it
    if args.standby is not None:
        run_dir = _wait_for_run(args.standby, args.data_dir)
        if run_dir is None:
            return 0  # the runner closed the socket: no job came
    elif args.run_dir:
        run_dir = args.run_dir
    else:
        parser.error("give a run folder, or --standby")
    return _train(Path(run_dir), args)


def _wait_for_run(socket_fd: int, data_dir: str | None) -> str | None:
    """Preload, then block until the runner sends a run folder (and the slot's descriptor)."""
    _preload(data_dir)
    channel = socket.socket(fileno=socket_fd)
    try:
        message, descriptors, _, _ = socket.recv_fds(channel, HANDOFF_BYTES, 1)
    except OSError:
        return None
    finally:
        channel.close()
    if not message:
        return None
    # The slot's descriptor stays open, unused, until this process exits: holding it is holding the slot.
    run_dir = message.decode()
    _log_to(Path(run_dir) / "worker.log")
    return run_dir


def _preload(data_dir: str | None) -> None:
    """What a job would do first: import the engine and read MNIST (when it is there) into memory."""
    import torch

    from mnist_core import train  # noqa: F401 - torch and the models, imported once, now
    from mnist_core.data import is_present, load_split

    # A job's first optimizer imports torch._dynamo (torch.optim.Optimizer.__init__ does, for every
    # optimizer): about 1 s on one core of the 2-core machine, between the Start click and the
    # first step. Made now, while nobody waits.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    if is_present("mnist", data_dir):
        try:
            load_split("mnist", True, data_dir, download_missing=False)
            load_split("mnist", False, data_dir, download_missing=False)
        except (OSError, ValueError):
            pass  # the job itself will meet the problem and report it


def _log_to(path: Path) -> None:
    """Send this process's output to the run's worker.log, as a freshly started worker's is."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return  # a full disk: the job reports that itself
    os.dup2(descriptor, sys.stdout.fileno())
    os.dup2(descriptor, sys.stderr.fileno())
    os.close(descriptor)


def _train(run_dir: Path, args: argparse.Namespace) -> int:
    from mnist_core.jobs import execute_run
    from mnist_core.runs import AUDIT, Run

    run = Run(run_dir)
    orphaned = lambda: os.getppid() != args.parent_pid  # noqa: E731
    # Nobody would be watching a job whose server went away, and it would hold the CPU: it ends,
    # recorded as interrupted (not cancelled: nobody asked), its checkpoints kept.
    server_gone = lambda: SERVER_STOPPED if orphaned() else None  # noqa: E731
    try:
        if run.kind == AUDIT:  # a label audit is a job too (mnist_core.audit)
            from mnist_core.audit import execute_audit

            execute_audit(run, args.data_dir, interrupted_because=server_gone)
        elif args.ray:
            _train_on_ray(run, args.data_dir, orphaned)
        else:
            execute_run(run, args.data_dir, interrupted_because=server_gone, download_missing=not args.no_download)
    except Exception as error:  # noqa: BLE001 - recorded for the UI, then the traceback goes to worker.log
        try:
            run.update_status(state="failed", ended_at=time.time(), message=f"{type(error).__name__}: {error}")
        except OSError:  # e.g. the disk is full: the runner records the exit code once it can write
            pass
        raise
    if orphaned() and not run.ended():
        try:
            run.update_status(**interrupted(SERVER_STOPPED, run.KEPT))
        except OSError:
            return 1
    return 0


def _train_on_ray(run, data_dir: str | None, orphaned) -> None:
    from mnist_core.distributed import private_network

    private_network.isolate_for_ray()  # this process runs one job and ends: a network of its own is safe
    from mnist_core.distributed import cluster

    run.update_status(state="running", pid=os.getpid(), started_at=time.time(), phase="starting",
                      message="Waiting for the Ray cluster…")
    try:
        where = cluster.connect(should_stop=lambda: orphaned() or run.stop_requested())
        run.update_status(message=f"Sent to {where}; waiting for a worker…")
        cluster.run_job(run, data_dir, interrupted_because=lambda: SERVER_STOPPED if orphaned() else None)
    except cluster.ConnectStopped:  # before the cluster answered; an orphan is recorded as interrupted by _train
        if not orphaned():
            run.update_status(state="cancelled", ended_at=time.time(), message="Stopped on request before it started.")
    except cluster.ClusterUnreachable as error:  # its message says what to check
        run.update_status(state="failed", ended_at=time.time(), message=str(error))
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
