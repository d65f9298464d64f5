"""Ctrl-C for the long commands (train, sweep, audit): the first asks to stop, the second aborts.

`end_as_interrupted` is how a process ends when a Ctrl-C aborts it: the command line's
(mnist_core/__main__.py) and the server's second Ctrl-C (mnist_core.shutdown)."""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn


def say(message: str) -> None:
    """`message` on a line of its own on stderr, from a signal handler too: a stderr that is
    missing, closed or caught in the middle of a write is skipped, never raised from."""
    try:
        print(f"\n{message}", file=sys.stderr, flush=True)
    except (AttributeError, OSError, ValueError, RuntimeError):
        pass


def end_as_interrupted(message: str) -> NoReturn:
    """Say `message` on stderr, then end the process by SIGINT, as an interrupted program should:
    a shell reports exit status 130 and stops a script that ran it, and the app records a
    background command ended this way as interrupted. Meant for a signal handler too: it takes
    no lock of the app's."""
    say(message)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(130)  # only if SIGINT could not end it


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
        say(f"{self.what} (Ctrl-C again to abort)...")

    def __call__(self) -> bool:
        return self.requested
