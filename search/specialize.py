"""Train once, specialize for many devices: a searched supernet plus any LUT gives that device's
network in seconds, without a new search (Once-for-All's idea, on this space and these LUTs).

The objective comes from the supernet: each layer's preference log P_theta(candidate), summed
over the 22 layers. The space is a chain, so the best architecture under a latency budget is
found exactly: dynamic programming over the layers keeps, for every reachable LUT price, the
best score, and drops every partial architecture that another one beats on both price and
score (a Pareto front). No discretization, no sampling.

Which supernet: one searched for accuracy alone (search.run --latency-weight 0), whose theta
holds accuracy preferences only, nothing pulling it toward cheap networks: every budget below
its favourite network's price gets a network chosen for that budget. A latency-aware search's
theta has converged on its own cheap network: every budget above that network's price
returns it (the command says so).

Examples:
  python -m search.run --lut luts/s8.json --latency-weight 0 --out runs/shared   # once
  python -m search.specialize --supernet runs/shared/checkpoint.pt --lut luts/s8.json --target-ms 5
  python -m search.specialize --supernet runs/shared/checkpoint.pt --lut luts/iphone_x.json \\
      --target-rel 0.5 --out runs/shared/iphone_x_arch.json
  python -m search.specialize --supernet runs/shared/checkpoint.pt --lut luts/pixel3.json \\
      --target-rel 0.6 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from fbnet.arch import save_architecture, to_arch_string
from fbnet.errors import UserError, cli_entry
from fbnet.lut import load_lut
from search.core.budget import Budget, reference_ms
from search.core.luts import resolve_lut
from search.protocols.specialization import budget_objective, load_preferences, specialize


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m search.specialize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", required=True, help="a search's checkpoint.pt")
    p.add_argument("--lut", required=True, help="the device's LUT (its 32x32 sibling is used "
                   "for a 32x32 supernet, as in search.run)")
    p.add_argument("--target-ms", type=float, help="latency budget in ms on --lut")
    p.add_argument("--target-rel", type=float,
                   help="latency budget as a fraction of the space's mean price on --lut")
    p.add_argument("--out", help="write the architecture here (default: print only)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    budget = Budget(args.target_ms, args.target_rel)
    budget.check()
    if not budget.given:
        raise UserError("give a budget: --target-ms MS or --target-rel F")
    started = time.perf_counter()
    preferences = load_preferences(Path(args.supernet))
    lut, _ = resolve_lut(load_lut(args.lut), preferences.space.resolution)
    objective = budget_objective(preferences, lut, budget)
    arch, found = specialize(preferences, objective)
    seconds = time.perf_counter() - started
    favourite = found.candidates == preferences.favourite()
    note = (f"this is the supernet's own favourite network, the answer at every budget from "
            f"{found.latency_ms:.3f} ms up; for a network per budget, specialize a supernet "
            "searched for accuracy alone (python -m search.run --latency-weight 0)"
            if favourite else None)
    if args.out:
        save_architecture(arch, Path(args.out))
    result = {"arch": arch.to_dict(), "arch_string": to_arch_string(arch),
              "latency_ms": found.latency_ms, "budget_ms": found.budget_ms,
              "reference_ms": reference_ms(objective.table), "score": found.score,
              "lut": str(lut.path), "macs": arch.macs, "params": arch.params,
              "supernet_favourite": favourite, "seconds": seconds, "out": args.out}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{to_arch_string(arch)}")
    print(f"{found.latency_ms:.3f} ms on {lut.path} (budget {found.budget_ms:.3f} ms = "
          f"{budget.describe()}), {arch.macs / 1e6:.1f} MMACs, {arch.params / 1e6:.3f} M "
          f"params; sum of log P_theta {found.score:.2f}; exact search in {seconds:.2f} s")
    if note:
        print(f"note: {note}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
