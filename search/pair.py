"""Device-specific networks at matched budgets: the paper's Table 5 from our own searches.

For every LUT given (--lut, repeated) and every search seed, search that LUT at a matched
setting, the same point of each device's own trade-off (search/core/budget.py):
- a relative budget, --target-rel F: F x the space's mean price on that LUT; or
- a matched trade-off, --latency-weight W: the paper's fbnet loss with latency in units of
  the space's mean price on that LUT, so W pushes equally hard on every device.
Repeat --latency-weight to search every LUT at each weight: each device then has a small front,
and the claim is checked at matched accuracy, as the paper's Table 5 does, on the two networks
(one per device) whose mean top-1 is closest.
With --specialize, the supernet of each search also gives every other device's network
without a new search (search.specialize), at the price that device's own search reached, so
specialize and DNAS are compared at one budget. With --shared (train once, specialize), there
is one accuracy-only search per seed (latency weight 0) instead of one per device, and every
device's network is specialized from it exactly (search.specialize's dynamic program) at each
relative budget --target-rel F (repeatable): each device gets a front of networks from the
same supernet, compared at matched accuracy like a sweep of weights; a budget below a LUT's
cheapest network is skipped for that LUT only. Every network is trained
with one stand-alone recipe over --train-seeds (search/protocols/standalone.py) and priced on every LUT;
a network found twice is trained once.

The claim checked per search seed is Pareto, on each device D against each other device O:
D's network is at least as accurate as O's (within the larger of their two seed stds) at no
higher latency on D. The margin the paper's Table 5 shows (each network ~5-17% faster on its
own phone at matched accuracy) is checked beside it: D's network is at least 5% faster on D at
matched accuracy, or at least 0.5 points more accurate at no higher latency.

Searches and trainings are cached in --out and reused, so an interrupted run continues.
--jobs N runs N searches, then N trainings, side by side (one core each).

Examples:
  python -m search.pair --lut luts/s8.json --lut luts/iphone_x.json --target-rel 0.8
  python -m search.pair --lut luts/pixel3.json --lut luts/edgegpu.json --target-rel 0.8 \\
      --seeds 0,1,2 --train-seeds 0,1,2 --specialize --jobs 2 --json
  python -m search.pair --lut luts/s8.json --lut luts/iphone_x.json --latency-weight 2 \\
      --search-args "--epochs 3" --out runs/pair_short
  python -m search.pair --lut luts/s8.json --lut luts/iphone_x.json --latency-weight 1 \\
      --latency-weight 2 --seeds 0,1,2 --search-args "--epochs 3"
  python -m search.pair --lut luts/s8.json --lut luts/iphone_x.json --shared --target-rel 0.2 \\
      --target-rel 0.3 --target-rel 0.5 --seeds 0,1,2 --search-args "--epochs 3" --jobs 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from fbnet.errors import UserError, cli_entry
from fbnet.io import atomic_write_json
from search.core.budget import Budget
from search.data import DATA_SPECS, DEFAULT_DATA
from search.protocols.pairing import PairSettings, format_report, run_pair, seed_list
from search.protocols.standalone import StandaloneRecipe


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m search.pair", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", action="append", required=True,
                   help="a device's LUT; repeat for each device (at least two)")
    p.add_argument("--target-rel", type=float, action="append", default=[],
                   help="the matched budget: a fraction of the space's mean price on each "
                   "LUT (repeatable with --shared)")
    p.add_argument("--target-ms", type=float, help="one budget in ms for every LUT (not "
                   "matched across devices of different speed)")
    p.add_argument("--latency-weight", type=float, action="append", default=[],
                   help="a matched trade-off instead of a budget: the fbnet loss at this "
                   "weight, latency in units of each LUT's mean price; repeat for a sweep "
                   "compared at matched accuracy")
    p.add_argument("--seeds", default="0", help="search seeds (default 0)")
    p.add_argument("--train-seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    p.add_argument("--specialize", action="store_true",
                   help="also specialize every search's supernet to the other devices")
    p.add_argument("--shared", action="store_true", help="train once, specialize: one "
                   "accuracy-only search per seed gives every device's network at each "
                   "--target-rel")
    p.add_argument("--data", default=DEFAULT_DATA, help="the dataset of every search and "
                   f"training: {', '.join(DATA_SPECS)} (default {DEFAULT_DATA})")
    p.add_argument("--search-args", default="", help="extra search.run arguments")
    p.add_argument("--train-epochs", type=int, default=StandaloneRecipe.epochs)
    p.add_argument("--train-images", type=int, default=StandaloneRecipe.train_images)
    p.add_argument("--val-images", type=int, default=StandaloneRecipe.val_images)
    p.add_argument("--train-width", type=float, default=StandaloneRecipe.width)
    p.add_argument("--jobs", type=int, default=1, help="searches and trainings run side by "
                   "side, one core each (default 1)")
    p.add_argument("--out", default="runs/pair")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def shared_budgets(shared: bool, target_rels: list[float]) -> tuple[Budget, tuple[float, ...]]:
    """--target-rel as the one matched budget, or, with --shared, as the budgets every LUT is
    specialized at (the same meaning, repeatable)."""
    if shared:
        if not target_rels:
            raise UserError("--shared specializes at relative budgets: give --target-rel F "
                            "(repeatable), e.g. --target-rel 0.2 --target-rel 0.5")
        return Budget(), tuple(target_rels)
    if len(target_rels) > 1:
        raise UserError("--target-rel is one matched budget; repeat it only with --shared")
    return Budget(target_rel=target_rels[0] if target_rels else None), ()


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    budget, rels = shared_budgets(args.shared, args.target_rel)
    settings = PairSettings(tuple(Path(p) for p in args.lut),
                            replace(budget, target_ms=args.target_ms),
                            tuple(args.latency_weight),
                            seed_list(args.seeds, "--seeds"), seed_list(args.train_seeds, "--train-seeds"),
                            args.specialize, args.search_args, Path(args.out), args.jobs, rels)
    recipe = StandaloneRecipe(data=args.data, epochs=args.train_epochs, train_images=args.train_images,
                              val_images=args.val_images, width=args.train_width)
    started = time.perf_counter()
    result = run_pair(settings, recipe, log=None if args.json else print)
    result["seconds"] = time.perf_counter() - started
    atomic_write_json(settings.out / "pair.json", result)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{result['matched']}; stand-alone recipe: {recipe.describe()}, training seeds "
          f"{args.train_seeds}")
    print(format_report(result))
    print(f"wrote {settings.out}/pair.json ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
