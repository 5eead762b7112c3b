"""`make demo`: the pipeline on the host (grows as the profiler and search land)."""

from __future__ import annotations

import sys

from search.space import main as space_main


def main() -> int:
    print("== FBNet-B in the FBNet search space ==")
    return space_main(["fbnet_b"])


if __name__ == "__main__":
    sys.exit(main())
