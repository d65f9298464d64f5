"""Ctrl-C for the long commands (train, sweep, audit): the first asks to stop, the second aborts."""

from __future__ import annotations

import signal
import sys


class StopOnCtrlC:
    """Install on creation; call it (`should_stop=stop`) to learn whether Ctrl-C was pressed.

    The first Ctrl-C only sets the flag, so the job stops cleanly after its current step and
    records that it was cancelled; a second one raises KeyboardInterrupt as usual, which
    mnist_core/__main__.py turns into "aborted (Ctrl-C)"."""

    def __init__(self, what: str = "stopping after this step") -> None:
        self.requested = False
        self.what = what
        signal.signal(signal.SIGINT, self._on_interrupt)

    def _on_interrupt(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(f"\n{self.what} (Ctrl-C again to abort)...", file=sys.stderr)

    def __call__(self) -> bool:
        return self.requested
