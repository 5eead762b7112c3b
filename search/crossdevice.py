"""The cross-device table (FBNet paper, Table 5) for any devices and architectures.

Every architecture is priced on every LUT (sum of its blocks' latencies), next to its MACs,
params, top-1 where known, and the latency measured on a device where a measurement is given.
Each device's fastest architecture is marked with `*`; below the table, how much faster it is
than the others there.

Resolution: each LUT prices the architectures at the LUT's own input size (stated in its
column header), re-laying an architecture out for that size when it was defined for another
(same blocks and widths, the layout and head of that size), as the paper compares one network
on several phones. --resolution R instead insists on R and refuses LUTs built for another size.

Architectures (--arch): named ones (python -m search.space --list), arch.json files,
samples.json#K, a search.run folder (its arch.json), or a search.train folder / result.json
(its architecture, with the top-1 it reached). Named FBNets show their published ImageNet top-1.
Measurements (--measured): JSON from `python -m profiler.run --device D --arch A --json`, or a
`python -m profiler.validate --arch A B ... --json` report (each of its networks); shown
in the column of a LUT of the same device and resolution (with the LUT's error), otherwise in
a column of their own.

Examples:
  python -m search.crossdevice --lut luts/s8.json luts/iphone_x.json --arch fbnet_s8 fbnet_iphonex
  python -m search.crossdevice --lut luts/s8_32.json luts/iphone_x_32.json luts/host_32.json \\
      --arch runs/s8 runs/iphonex runs/train/s8 --measured out/s8_host.json --plot table.png
  python -m search.crossdevice --lut luts/*_32.json --arch fbnet_a fbnet_b fbnet_c --json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from fbnet.errors import cli_entry
from fbnet.lut import load_lut
from search.protocols.crossdevice_table import (build_table, fastest_lines, format_table,
                                                load_arch_row, load_measurements, plot_table)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m search.crossdevice", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", nargs="+", action="extend", required=True,
                   help="LUT files, one column each (--lut A B or --lut A --lut B)")
    p.add_argument("--arch", nargs="+", action="extend", required=True,
                   help="architectures, one row each (--arch A B or --arch A --arch B)")
    p.add_argument("--measured", nargs="*", default=[],
                   help="measured network latencies: profiler.run --arch ... --json outputs "
                   "or profiler.validate --json reports")
    p.add_argument("--resolution", type=int,
                   help="price everything at this input size (LUTs must be built for it)")
    p.add_argument("--num-classes", type=int,
                   help="classifier size for named architectures (default: the layout's)")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--plot", help="also draw the table as a bar chart into this PNG")
    return p.parse_args(argv)


# --- inputs ------------------------------------------------------------------------------------

@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    luts = [load_lut(p) for p in args.lut]
    rows = [load_arch_row(spec, args.num_classes) for spec in args.arch]
    measurements = [m for p in args.measured for m in load_measurements(Path(p))]
    table = build_table(luts, rows, measurements, args.resolution)
    if args.plot:
        plot_table(table, Path(args.plot))
    if args.json:
        print(json.dumps({"columns": [asdict(c) for c in table.columns], "rows": table.rows,
                          "extra_measured": table.extra_measured,
                          "fastest": fastest_lines(table)}, indent=1))
        return 0
    print(format_table(table))
    print()
    for line in fastest_lines(table):
        print(line)
    if args.plot:
        print(f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
