"""`python -m mnist_core ...`: the command line (mnist_core.cli).

A Ctrl-C that reaches Python as KeyboardInterrupt (one pressed while the command still starts,
or the second one, which aborts a train, sweep or audit) ends the command with a one-line message
instead of a traceback. The process still ends by SIGINT, as an interrupted program should: a
shell script that ran it stops too, the shell reports exit status 130, and the app records a
background command ended this way as interrupted. A run it leaves behind is listed as
interrupted (its process is gone), like any run whose process died."""

import os
import signal
import sys

if __name__ == "__main__":
    try:
        from mnist_core.cli import main

        code = main()
    except KeyboardInterrupt:
        print("\naborted (Ctrl-C)", file=sys.stderr, flush=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        code = 130  # only if SIGINT could not end the process
    sys.exit(code)
