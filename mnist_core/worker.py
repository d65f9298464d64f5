"""Entry point of one background training job: `python -m mnist_core.worker RUN_DIR`.

`JobRunner` starts it as a child process. It trains the run in its folder at a lower CPU
priority than the server, and stops (marking the run interrupted) if the server that
started it goes away, since nobody would be watching and it would hold the CPU. It inherits
the runner's training slot (`slots`) and holds it until it exits. With `--no-download` a
missing dataset is a failure, never a download.
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
    parser.add_argument("--no-download", action="store_true", help="fail, rather than download, if data is missing")
    args = parser.parse_args(argv)
    try:
        os.nice(5)  # the server's script threads come first on a small machine
    except OSError:
        pass
    run = Run(Path(args.run_dir))
    orphaned = lambda: os.getppid() != args.parent_pid  # noqa: E731
    try:
        execute_run(run, args.data_dir, should_stop=orphaned, download_missing=not args.no_download)
    except Exception as error:  # noqa: BLE001 - recorded for the UI, then the traceback goes to worker.log
        try:
            run.update_status(state="failed", ended_at=time.time(), message=f"{type(error).__name__}: {error}")
        except OSError:  # e.g. the disk is full: the runner records the exit code once it can write
            pass
        raise
    if orphaned():
        try:
            run.update_status(state="interrupted", message="The server stopped while this run was training.")
        except OSError:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
