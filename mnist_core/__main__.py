"""`python -m mnist_core ...`: the command line (mnist_core.cli).

A Ctrl-C that reaches Python as KeyboardInterrupt (one pressed while the command still starts,
or the second one, which aborts a train, sweep or audit) ends the command with a one-line message
and exit status 130, not a traceback. A run it leaves behind is listed as interrupted (its process
is gone), like any run whose process died."""

import sys

if __name__ == "__main__":
    try:
        from mnist_core.cli import main

        code = main()
    except KeyboardInterrupt:
        print("\naborted (Ctrl-C)", file=sys.stderr)
        code = 130
    sys.exit(code)
