"""The app's sweep, as a process of its own: `python -m mnist_core.distributed.sweep_process SWEEP_DIR`.

`JobRunner.submit_sweep` starts it. On a local Ray it first waits for one of the machine's
training slots (`slots`), and only then imports Ray (about 660 MB with Tune) and runs the sweep
(`sweep_driver.run_sweep`) with that slot. So a sweep waiting behind other jobs costs a small
Python process, not Ray's memory; on a hosted demo that is what keeps a queue within budget.

A sweep stopped, or left by its server, while it waits ends there: cancelled, or interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

from mnist_core import slots
from mnist_core.distributed import private_network
from mnist_core.job import SERVER_STOPPED, begin_job_process, interrupted
from mnist_core.sweep import WAITING_FOR_A_SLOT, Sweep

DRIVER = "mnist_core.distributed.sweep_driver"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir")
    parser.add_argument("--parent-pid", type=int, default=os.getppid())
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    begin_job_process()  # niced (the server's script threads come first); a full log cannot end it
    sweep = Sweep(Path(args.sweep_dir))
    # Nobody would be watching a sweep whose server went away: it ends, recorded as interrupted.
    server_gone = lambda: SERVER_STOPPED if os.getppid() != args.parent_pid else None  # noqa: E731
    slot = None
    if not os.environ.get("RAY_ADDRESS", "").strip():  # a named cluster has its own resources
        # Now, while this process has one thread: without root, a network of its own needs that.
        private_network.isolate_for_ray()
        sweep.update_status(pid=os.getpid(), message=WAITING_FOR_A_SLOT)  # this process answers for it now
        slot = slots.acquire(sweep.runs_dir, slots.max_jobs(), holder=sweep.id,
                             should_stop=lambda: sweep.stop_requested() or server_gone() is not None)
        if slot is None:
            reason = server_gone()
            if reason:
                sweep.update_status(**interrupted(reason, "It never started."))
            else:
                sweep.update_status(state="cancelled", ended_at=time.time(), message="Stopped before it started.")
            return 0
    try:
        # Ray only now. Imported, not run as __main__, so Ray pickles the trial function by
        # reference, as in the CLI, instead of by value with all of this module's globals.
        driver = importlib.import_module(DRIVER)
        driver.run_sweep(sweep, args.data_dir, interrupted_because=server_gone, slot=slot)
    finally:
        if slot is not None:
            slot.release()
        cluster = sys.modules.get("mnist_core.distributed.cluster")
        if cluster is not None:
            cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
