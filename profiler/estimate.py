"""`python -m profiler.estimate`: estimated LUTs for devices out of reach. The command lives
with the latency model it runs, in profiler/estimation/cli.py."""

import sys

from profiler.estimation.cli import main

if __name__ == "__main__":
    sys.exit(main())
