"""`python -m mnist_core ...`: the command line (mnist_core.cli).

A Ctrl-C that reaches Python as KeyboardInterrupt (one pressed while the command still starts,
or the second one, which aborts a train, sweep or audit) ends the command with a one-line message
instead of a traceback. The process still ends by SIGINT, as an interrupted program should: a
shell script that ran it stops too, the shell reports exit status 130, and the app records a
background command ended this way as interrupted. A run it leaves behind is listed as
interrupted (its process is gone), like any run whose process died."""

import sys

if __name__ == "__main__":
    try:
        from mnist_core.cli import main

        code = main()
    except KeyboardInterrupt:
        from mnist_core.ctrl_c import end_as_interrupted

        end_as_interrupted("aborted (Ctrl-C)")
    sys.exit(code)
