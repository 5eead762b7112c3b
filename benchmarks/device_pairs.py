"""Is each device's network the faster one on its own device? The paper's Table 5, over seeds.

For each pair of devices (--pair A:B, repeatable; default the shipped S8 vs iPhone X LUTs and
the measured Pixel 3 vs Jetson TX2 LUTs of HW-NAS-Bench), runs `search.pair`: one search per
device, search seed and latency weight, each device's supernet specialized to the other device
at the price that device's own search reached (train once, specialize), every network trained
with one stand-alone recipe over three training seeds and priced on both LUTs.

Prints per pair the Table 5 matrix (every network on every LUT, top-1 mean ± std over the
training seeds), the Pareto check per search seed with the Table 5 margin (>= 5% faster on its
own device at matched accuracy, or >= 0.5 points more accurate at no higher latency), and which
of specialize and per-device DNAS wins at the same budget.

The searches use the paper's fbnet loss with latency in units of each LUT's mean price
(search/core/budget.py), so a weight is the same trade-off on every device. Each device is searched
at three weights (--latency-weight, default 1, 2 and 4; 2 is search.run's default), and the
claim is checked as the paper's Table 5 checks it, at matched accuracy: per search seed, the
two networks (one per device) whose mean top-1 is closest. A single --latency-weight compares
at that one trade-off instead; --target-rel F at a relative budget. The searches are shortened
(--search-args, default 3 epochs) to fit a CPU.

With --shared, train once and specialize instead: one accuracy-only search per search seed,
specialized exactly to both LUTs at each relative budget (--target-rel, repeatable; default
0.2, 0.3 and 0.5 for S8 vs iPhone X, 0.4, 0.6 and 0.8 for other pairs, as the TX2's cheapest
network costs 28% of its mean price), so both devices' fronts come from the same supernet and
differ only by their LUTs (search.pair --shared). Its report goes to pair_shared.json.

Everything is cached under --out, so an interrupted run continues where it stopped. Two
searches, then two trainings, run side by side (--jobs, one core each).

Examples:
  python benchmarks/device_pairs.py                                   # both pairs, seeds 0,1,2
  python benchmarks/device_pairs.py --pair s8:iphone_x --seeds 0 --json
  python benchmarks/device_pairs.py --pair pixel3:edgegpu --latency-weight 2
  python benchmarks/device_pairs.py --pair pixel3:edgegpu --target-rel 0.5
  python benchmarks/device_pairs.py --pair s8:iphone_x --shared
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fbnet.errors import UserError, cli_entry
from fbnet.io import atomic_write_json
from search.pair import shared_budgets
from search.protocols.pairing import PairSettings, format_report, pair_luts, run_pair, seed_list
from search.protocols.standalone import StandaloneRecipe

DEFAULT_PAIRS = ("s8:iphone_x", "pixel3:edgegpu")
DEFAULT_WEIGHTS = (1.0, 2.0, 4.0)
# --shared budgets: the S8's and iPhone X's cheapest networks are 12% and 6% of their LUTs'
# mean prices, the TX2's 28%, so other pairs start higher
DEFAULT_SHARED_RELS = {"s8:iphone_x": (0.2, 0.3, 0.5)}
OTHER_SHARED_RELS = (0.4, 0.6, 0.8)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", action="append", help="two LUT names in luts/, A:B (repeatable; "
                   f"default {' and '.join(DEFAULT_PAIRS)})")
    p.add_argument("--seeds", default="0,1,2", help="search seeds (default 0,1,2)")
    p.add_argument("--train-seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    p.add_argument("--latency-weight", type=float, action="append", help="a latency weight "
                   "of the sweep, repeatable (default 1, 2 and 4)")
    p.add_argument("--target-rel", type=float, action="append", default=[],
                   help="a matched relative budget instead (repeatable with --shared)")
    p.add_argument("--shared", action="store_true", help="train once, specialize: one "
                   "accuracy-only supernet per seed for both devices, at each --target-rel "
                   "(default 0.2, 0.3, 0.5 for s8:iphone_x, 0.4, 0.6, 0.8 for other pairs)")
    p.add_argument("--search-args", default="--epochs 3", help="extra search.run arguments "
                   "(default: --epochs 3)")
    p.add_argument("--train-epochs", type=int, default=StandaloneRecipe.epochs,
                   help=f"stand-alone epochs per network (default {StandaloneRecipe.epochs})")
    p.add_argument("--train-images", type=int, default=StandaloneRecipe.train_images,
                   help=f"stand-alone training images (default {StandaloneRecipe.train_images})")
    p.add_argument("--jobs", type=int, default=2, help="searches and trainings run side by "
                   "side, one core each (default 2)")
    p.add_argument("--out", default="runs/device_pairs")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def report_name(args) -> str:
    return "pair_shared.json" if args.shared else "pair.json"


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.latency_weight and (args.target_rel or args.shared):
        raise UserError("give --latency-weight, or --target-rel (--shared), not both")
    recipe = StandaloneRecipe(epochs=args.train_epochs, train_images=args.train_images)
    results = {}
    started = time.perf_counter()
    for spec in args.pair or DEFAULT_PAIRS:
        defaults = DEFAULT_SHARED_RELS.get(spec, OTHER_SHARED_RELS) if args.shared else ()
        budget, rels = shared_budgets(args.shared, args.target_rel or list(defaults))
        weights = () if budget.given or rels else tuple(args.latency_weight or DEFAULT_WEIGHTS)
        settings = PairSettings(pair_luts(spec), budget, weights,
                                seed_list(args.seeds, "--seeds"),
                                seed_list(args.train_seeds, "--train-seeds"), not args.shared,
                                args.search_args, Path(args.out) / spec.replace(":", "_vs_"),
                                args.jobs, rels)
        results[spec] = run_pair(settings, recipe, log=None if args.json else print)
        atomic_write_json(settings.out / report_name(args), results[spec])
        if not args.json:
            print(f"\n== {spec}: {results[spec]['matched']}")
            print(format_report(results[spec]))
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"\nstand-alone recipe: {recipe.describe()}; {time.perf_counter() - started:.0f} s;"
              f" wrote {', '.join(str(Path(args.out) / s.replace(':', '_vs_') / report_name(args)) for s in results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
