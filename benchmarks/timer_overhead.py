"""Benchmark: what the Python runner's timer costs against the programs a LUT times.

Every sample of the Python runner (profiler/measure.py) is one execution timed by
`timed_ms`: two clock reads before it, two after. Their cost lands inside the timed span.
This times `timed_ms` around an empty call, many times, and prints its median against the
smallest entries of a LUT: the share of each entry that is the timer's, and how many entries
that share exceeds 1% for. (The native runner reads one monotonic clock around each run;
the same reasoning applies with a smaller cost.)

    python benchmarks/timer_overhead.py                          # luts/host_32.json
    python benchmarks/timer_overhead.py --lut runs/luts/host_32.json --samples 200000 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbnet.errors import cli_entry  # noqa: E402
from fbnet.lut import load_lut  # noqa: E402
from profiler.measure import timed_ms  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python benchmarks/timer_overhead.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", default="luts/host_32.json", help="the LUT whose entries to compare")
    p.add_argument("--samples", type=int, default=100_000, help="timed empty calls per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds (the median of each is printed)")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    lut = load_lut(args.lut)
    thread_cpu = lut.measurement.clock == "thread_cpu"
    medians_us = []
    for _ in range(args.rounds):
        samples = [timed_ms(lambda: None, thread_cpu) for _ in range(args.samples)]
        medians_us.append(1e3 * statistics.median(samples))
    overhead_us = statistics.median(medians_us)
    entries_us = sorted(1e3 * e.latency_ms for e in lut.entries.values())
    over_1pct = sum(overhead_us / us > 0.01 for us in entries_us)
    report = {"lut": args.lut, "clock": lut.measurement.clock,
              "timer_overhead_us_per_round": [round(m, 4) for m in medians_us],
              "timer_overhead_us": round(overhead_us, 4),
              "smallest_entries_us": [round(us, 2) for us in entries_us[:5]],
              "share_of_smallest_pct": round(100 * overhead_us / entries_us[0], 3),
              "entries": len(entries_us), "entries_over_1pct": over_1pct}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"timer overhead per sample ({report['clock']} clock): {overhead_us:.3f} us "
          f"(rounds: {', '.join(f'{m:.3f}' for m in medians_us)})")
    print(f"{args.lut}: smallest entries {', '.join(f'{us:.1f}' for us in entries_us[:5])} us; "
          f"the timer is {report['share_of_smallest_pct']:.2f}% of the smallest, and over 1% "
          f"of {over_1pct} of {len(entries_us)} entries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
