"""Which networks are best on each device, among every network trained so far? The Pareto
fronts (LUT latency against stand-alone top-1) of all the stand-alone trainings under --runs,
priced on each LUT of the pair: if the two fronts hold the same networks, no network is
specific to either device at those accuracies, whatever searched for it.

Reads the trainings the benchmarks left (`runs/**/seed*/result.json` of the stand-alone recipe;
one recipe at a time, the default one unless --train-epochs/--train-images say otherwise),
averages each architecture's top-1 over its training seeds, and prints each device's front and
the networks on both.

Examples:
  python benchmarks/trained_fronts.py                          # s8:iphone_x, runs/
  python benchmarks/trained_fronts.py --pair pixel3:edgegpu --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from fbnet.arch import Architecture
from fbnet.errors import UserError, cli_entry
from fbnet.lut import load_lut
from fbnet.space import SpaceConfig
from search.core.luts import resolve_lut
from search.protocols.pairing import pair_luts
from search.protocols.standalone import StandaloneRecipe

RESOLUTION = 32


@dataclass
class Trained:
    candidates: tuple[str, ...]
    top1_mean: float
    seeds: int
    latency_ms: dict[str, float]
    depth: int  # layers that are not `skip`


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", default="s8:iphone_x", help="two LUT names in luts/, A:B "
                   "(default s8:iphone_x)")
    p.add_argument("--runs", default="runs", help="where the trainings are (default runs)")
    p.add_argument("--train-epochs", type=int, default=StandaloneRecipe.epochs)
    p.add_argument("--train-images", type=int, default=StandaloneRecipe.train_images)
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def front(networks: list[Trained], device: str) -> list[Trained]:
    """The networks no other one beats on both latency on `device` and mean top-1."""
    best, out = -1.0, []
    for n in sorted(networks, key=lambda n: (n.latency_ms[device], -n.top1_mean)):
        if n.top1_mean > best:
            out.append(n)
            best = n.top1_mean
    return out


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    luts = {Path(l.path).stem: l for l in
            (resolve_lut(load_lut(path), RESOLUTION)[0] for path in pair_luts(args.pair))}
    space = next(iter(luts.values())).space
    recipe = asdict(StandaloneRecipe(epochs=args.train_epochs, train_images=args.train_images))
    top1: dict[tuple[str, ...], list[float]] = {}
    for path in Path(args.runs).glob("**/seed*/result.json"):
        result = json.loads(path.read_text())
        arch = result.get("arch", {})
        if result.get("standalone_recipe") != recipe or \
                SpaceConfig.from_dict(arch["space"]).stage_depths != space.stage_depths or \
                arch["space"]["resolution"] != space.resolution:
            continue
        top1.setdefault(tuple(arch["candidates"]), []).append(result["top1"])
    if not top1:
        raise UserError(f"no stand-alone trainings of this recipe under {args.runs}; run "
                        "benchmarks/device_pairs.py or benchmarks/search_vs_random.py first")
    networks = []
    for candidates, values in top1.items():
        arch = Architecture("trained", space, candidates)
        networks.append(Trained(candidates, statistics.fmean(values), len(values),
                                {s: l.price(arch).total_ms for s, l in luts.items()},
                                sum(c != "skip" for c in candidates)))
    fronts = {s: front(networks, s) for s in luts}
    first, second = fronts.values()
    shared = [n for n in first if n in second]
    if args.json:
        print(json.dumps({"networks": len(networks), "recipe": recipe,
                          "fronts": {s: [asdict(n) for n in f] for s, f in fronts.items()},
                          "on_both": [asdict(n) for n in shared]}, indent=1))
        return 0
    print(f"{len(networks)} trained architectures ({sum(n.seeds for n in networks)} trainings)")
    for device, f in fronts.items():
        print(f"\nfront on {device}:")
        for n in f:
            print("  " + "  ".join(f"{s} {n.latency_ms[s]:6.2f} ms" for s in luts)
                  + f"  top-1 {100 * n.top1_mean:6.2f}% ({n.seeds} seeds)  depth {n.depth:2d}"
                  + ("  on both fronts" if n in shared else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
