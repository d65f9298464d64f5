"""Entry point of one background training job: `python -m mnist_core.worker RUN_DIR`.

`JobRunner` starts it as a child process. It trains the run in its folder at a lower CPU
priority than the server, and stops (marking the run interrupted) if the server that
started it goes away, since nobody would be watching and it would hold the CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mnist_core.jobs import execute_run
from mnist_core.runs import Run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--parent-pid", type=int, default=os.getppid())
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    try:
        os.nice(5)  # the server's script threads come first on a small machine
    except OSError:
        pass
    run = Run(Path(args.run_dir))
    orphaned = lambda: os.getppid() != args.parent_pid  # noqa: E731
    try:
        execute_run(run, args.data_dir, should_stop=orphaned)
    except Exception as error:  # noqa: BLE001 - recorded for the UI, then the traceback goes to worker.log
        run.update_status(state="failed", ended_at=time.time(), message=f"{type(error).__name__}: {error}")
        raise
    if orphaned():
        run.update_status(state="interrupted", message="The server stopped while this run was training.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
