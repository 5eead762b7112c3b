"""Is each device's network the faster one on its own device? The paper's Table 5, over seeds.

For each pair of devices (--pair A:B, repeatable; default the shipped S8 vs iPhone X LUTs and
the measured Pixel 3 vs Jetson TX2 LUTs of HW-NAS-Bench), runs `search.pair`: one search per
device and search seed at one matched setting, each device's supernet specialized to the other
device at the price that device's own search reached (train once, specialize), every network
trained with one stand-alone recipe over three training seeds and priced on both LUTs.

Prints per pair the Table 5 matrix (every network on every LUT, top-1 mean ± std over the
training seeds), the Pareto check per search seed with the Table 5 margin (>= 5% faster on its
own device at matched accuracy, or >= 0.5 points more accurate at no higher latency), and which
of specialize and per-device DNAS wins at the same budget.

The matched setting is the paper's fbnet loss at one latency weight, with latency in units of
each LUT's mean price (search/budget.py), so the weight is the same trade-off on every device
(--latency-weight, default 2, search.run's default); --target-rel F compares at a relative
budget instead. The searches are shortened (--search-args, default 3 epochs) to fit a CPU.

Everything is cached under --out, so an interrupted run continues where it stopped.

Examples:
  python benchmarks/device_pairs.py                                   # both pairs, seeds 0,1,2
  python benchmarks/device_pairs.py --pair s8:iphone_x --seeds 0 --json
  python benchmarks/device_pairs.py --pair pixel3:edgegpu --target-rel 0.5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fbnet.errors import UserError, cli_entry
from fbnet.io import atomic_write_json
from search.budget import Budget
from search.pairing import PairSettings, format_report, run_pair, seed_list
from search.standalone import StandaloneRecipe

DEFAULT_PAIRS = ("s8:iphone_x", "pixel3:edgegpu")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", action="append", help="two LUT names in luts/, A:B (repeatable; "
                   f"default {' and '.join(DEFAULT_PAIRS)})")
    p.add_argument("--seeds", default="0,1,2", help="search seeds (default 0,1,2)")
    p.add_argument("--train-seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    p.add_argument("--latency-weight", type=float, help="the matched trade-off (default 2)")
    p.add_argument("--target-rel", type=float, help="a matched relative budget instead")
    p.add_argument("--search-args", default="--epochs 3", help="extra search.run arguments "
                   "(default: --epochs 3)")
    p.add_argument("--out", default="runs/device_pairs")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def pair_luts(spec: str) -> tuple[Path, Path]:
    names = spec.split(":")
    if len(names) != 2:
        raise UserError(f"--pair takes two LUT names, A:B (e.g. s8:iphone_x), got {spec!r}")
    paths = tuple(Path("luts") / f"{n}.json" for n in names)
    for path in paths:
        if not path.is_file():
            raise UserError(f"no LUT {path}; name LUTs from luts/ (e.g. s8:iphone_x)")
    return paths


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.latency_weight is not None and args.target_rel is not None:
        raise UserError("give --latency-weight or --target-rel, not both")
    weight = (None if args.target_rel is not None
              else args.latency_weight if args.latency_weight is not None else 2.0)
    recipe = StandaloneRecipe()
    results = {}
    started = time.perf_counter()
    for spec in args.pair or DEFAULT_PAIRS:
        settings = PairSettings(pair_luts(spec), Budget(target_rel=args.target_rel), weight,
                                seed_list(args.seeds, "--seeds"),
                                seed_list(args.train_seeds, "--train-seeds"), True,
                                args.search_args, Path(args.out) / spec.replace(":", "_vs_"))
        results[spec] = run_pair(settings, recipe, log=None if args.json else print)
        atomic_write_json(settings.out / "pair.json", results[spec])
        if not args.json:
            print(f"\n== {spec}: {results[spec]['matched']}")
            print(format_report(results[spec]))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"\nstand-alone recipe: {recipe.describe()}; {time.perf_counter() - started:.0f} s;"
              f" wrote {', '.join(str(Path(args.out) / s.replace(':', '_vs_') / 'pair.json') for s in results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
