"""Does the search beat random search at equal latency? (Li & Talwalkar 2019; Yu et al. 2020)

For each search seed: run `python -m search.run` (the default search, or --search-args), then
draw random architectures of the same space whose LUT latency is within --tolerance (±5%) of
the searched network's, and train the searched network and every random one stand-alone with one
recipe and one seed. Prints each accuracy, the searched network's rank among them, the random
median and mean, and over the seeds mean ± std of (searched - random mean).

Random architectures are uniform over the 9^22 space, kept when their LUT price is within the
tolerance (rejection sampling). When the searched network sits in a tail that uniform draws
almost never reach, the draws come from per-layer distributions tilted toward cheap or
expensive candidates, p(c) ∝ exp(-lambda * ms(c)), with lambda set so the mean price is the
target; the table says which sampler each seed used.

The supernet's ranking quality is printed too: Kendall tau between each network's top-1 with
the supernet's weights (its candidates alone, forward_arch) and its stand-alone top-1.

The stand-alone recipe (search/protocols/standalone.py) is a short one that fits a CPU: a few epochs over
a fixed subset of Fashion-MNIST at half width, top-1 on a fixed val subset. It ranks networks,
it does not measure their final accuracy.

Every search and training writes into --out and is reused when its result is there, so an
interrupted run continues where it stopped.

Examples:
  python benchmarks/search_vs_random.py                              # seeds 0,1,2, 8 random each
  python benchmarks/search_vs_random.py --seeds 0 --random 8 --json
  python benchmarks/search_vs_random.py --lut luts/iphone_x.json --out runs/svr_iphonex
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fbnet.arch import Architecture, load_architecture
from fbnet.errors import cli_entry
from fbnet.io import atomic_write_json
from fbnet.lut import load_lut
from fbnet.metrics import kendall_tau
from fbnet.space import CANDIDATE_NAMES
from search.data import DATA_SPECS, DEFAULT_DATA
from search.core.dnas import load_trained_supernet
from search.protocols.sampling import random_at_latency
from search.protocols.standalone import StandaloneRecipe, StandaloneTrainer, cached_search
from search.runs import SearchRun



def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", default="luts/s8.json", help="the LUT to search (default luts/s8.json)")
    p.add_argument("--data", default=DEFAULT_DATA, help=f"{', '.join(DATA_SPECS)}")
    p.add_argument("--seeds", default="0,1,2", help="search seeds (default 0,1,2)")
    p.add_argument("--random", type=int, default=8, help="random networks per seed (default 8)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="random networks' LUT latency within this fraction of the searched "
                        "network's (default 0.05)")
    p.add_argument("--search-args", default="",
                   help="extra search.run arguments, e.g. \"--epochs 3\" (default: none, the "
                        "default search)")
    p.add_argument("--train-epochs", type=int, default=StandaloneRecipe.epochs)
    p.add_argument("--train-images", type=int, default=StandaloneRecipe.train_images)
    p.add_argument("--val-images", type=int, default=StandaloneRecipe.val_images)
    p.add_argument("--train-width", type=float, default=StandaloneRecipe.width,
                   help="width multiplier the stand-alone networks train at (default "
                        f"{StandaloneRecipe.width}, the search's proxy width)")
    p.add_argument("--train-seed", type=int, default=0, help="the one training seed (default 0)")
    p.add_argument("--out", default="runs/search_vs_random")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    seeds = [int(s) for s in args.seeds.split(",")]
    recipe = StandaloneRecipe(args.data, args.train_epochs, args.train_images, args.val_images,
                              args.train_width)
    trainer = StandaloneTrainer(recipe, out / "train")
    rows = []
    started = time.perf_counter()
    for seed in seeds:
        run_dir = out / f"search_seed{seed}"
        print(f"[seed {seed}] search into {run_dir}", file=sys.stderr, flush=True)
        found = cached_search(run_dir, ["--lut", args.lut, "--data", args.data, "--seed",
                                        str(seed), *args.search_args.split()])
        searched = load_architecture(str(SearchRun(run_dir).arch))
        lut = load_lut(found["lut"])
        table = lut.layer_table(searched.space)
        ms = np.array(table.per_layer_ms)
        picks, sampler = random_at_latency(ms, table.fixed_ms, found["latency_ms"],
                                           args.tolerance, args.random, seed,
                                           tuple(CANDIDATE_NAMES.index(c)
                                                 for c in searched.candidates))
        archs = [("searched", searched)] + [
            (f"random{k}", Architecture(f"random_seed{seed}_{k}", searched.space,
                                        tuple(CANDIDATE_NAMES[i] for i in idx)))
            for k, idx in enumerate(picks)]
        supernet = load_trained_supernet(SearchRun(run_dir).checkpoint)
        entries = []
        for name, arch in archs:
            top1 = trainer.top1(arch, f"search_seed{seed}_{name}", args.train_seed)
            indices = [CANDIDATE_NAMES.index(c) for c in arch.candidates]
            entries.append({"name": name, "latency_ms": lut.price(arch).total_ms,
                            "top1": top1,
                            "supernet_top1": supernet.top1(indices, trainer.data.val,
                                                           trainer.data.train)})
            print(f"[seed {seed}] {name:<9} {entries[-1]['latency_ms']:7.3f} ms  top-1 "
                  f"{top1:.4f}  supernet {entries[-1]['supernet_top1']:.4f}", file=sys.stderr,
                  flush=True)
        randoms = [e["top1"] for e in entries[1:]]
        mine = entries[0]["top1"]
        tau = kendall_tau([e["supernet_top1"] for e in entries], [e["top1"] for e in entries])
        rows.append({"seed": seed, "sampler": sampler, "searched_top1": mine,
                     "searched_latency_ms": entries[0]["latency_ms"],
                     "converged": found["convergence"]["converged"],
                     "search_seconds": found["seconds"],
                     "random_median": statistics.median(randoms),
                     "random_mean": statistics.fmean(randoms),
                     "rank": 1 + sum(r > mine for r in randoms), "of": len(entries),
                     "supernet_kendall_tau": None if math.isnan(tau) else tau,
                     "networks": entries})
    gaps = [r["searched_top1"] - r["random_mean"] for r in rows]
    summary = {
        "lut": args.lut, "data": args.data, "seeds": seeds,
        "recipe": {**asdict(recipe), "seed": args.train_seed},
        "rows": rows,
        "beats_random_median_every_seed": all(r["searched_top1"] > r["random_median"]
                                              for r in rows),
        "gap_to_random_mean_mean": statistics.fmean(gaps),
        "gap_to_random_mean_std": statistics.stdev(gaps) if len(gaps) > 1 else 0.0,
        "seconds": time.perf_counter() - started,
    }
    atomic_write_json(out / "summary.json", summary)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"search vs random at equal latency (±{args.tolerance:.0%}) on {args.lut}; "
          f"stand-alone recipe: {recipe.describe()}, seed {args.train_seed}")
    for r in rows:
        nets = "  ".join(f"{e['top1']:.4f}" for e in r["networks"][1:])
        tau = r["supernet_kendall_tau"]
        print(f"seed {r['seed']}: searched {r['searched_top1']:.4f} at "
              f"{r['searched_latency_ms']:.3f} ms ({'converged' if r['converged'] else 'NOT converged'}"
              f", search {r['search_seconds']:.0f} s); random ({r['sampler']}): {nets}")
        print(f"        rank {r['rank']} of {r['of']}; random median {r['random_median']:.4f}, "
              f"mean {r['random_mean']:.4f}; supernet-vs-stand-alone Kendall tau "
              f"{'n/a' if tau is None else f'{tau:.2f}'}")
    print(f"searched - random mean: {100 * summary['gap_to_random_mean_mean']:+.2f} ± "
          f"{100 * summary['gap_to_random_mean_std']:.2f} points over {len(rows)} seeds; beats "
          f"the random median in every seed: {summary['beats_random_median_every_seed']}")
    print(f"wrote {out}/summary.json ({summary['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
