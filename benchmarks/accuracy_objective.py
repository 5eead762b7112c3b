"""Specialize by measured accuracy: does an objective fit on stand-alone trainings make each
device's network the better one on its own device, where the supernet's preferences do not?

For a pair of devices (--pair A:B, LUTs from luts/, searched at 32x32 as everywhere):

1. Samples: at each relative budget (--target-rel, repeatable; default 0.2, 0.3, 0.5) on each
   LUT, --samples random architectures priced within --tolerance of the budget (uniform, or
   tilted towards cheap blocks), each trained once with the stand-alone recipe (training seed
   0). Budgets on both LUTs put both devices' kinds of networks (shallow and rich, deep and
   thin) in the sample.
2. The model (search/protocols/accuracy_model.py): ridge regression of top-1 on per-stage block
   attributes, additive over the layers. Printed: its leave-one-out Kendall tau and error on the
   samples, and beside it the tau of each shared supernet's summed log P_theta (the objective
   search.specialize uses) on the same samples, where `search.pair --shared` left one.
3. Each LUT's network at each budget, found exactly (search.protocols.specialization's dynamic program)
   on the model's scores, trained over --train-seeds, priced on both LUTs; the Table 5 claim
   checked as `search.pair` checks it, on the accuracy-matched pair of the two fronts.

Trainings are cached under --out (by architecture), so a re-run only prints.

Examples:
  python benchmarks/accuracy_objective.py                      # s8:iphone_x, 8 samples a budget
  python benchmarks/accuracy_objective.py --pair pixel3:edgegpu --target-rel 0.4 \\
      --target-rel 0.6 --target-rel 0.8 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fbnet.arch import Architecture
from fbnet.errors import cli_entry
from fbnet.io import atomic_write_json
from fbnet.lut import load_lut
from fbnet.metrics import kendall_tau
from fbnet.space import CANDIDATE_NAMES
from search.protocols.accuracy_model import fit_accuracy_model
from search.core.budget import Budget, reference_ms
from search.core.luts import resolve_lut
from search.protocols.pairing import (Network, accuracy_matched, pair_luts, pareto_holds, seed_list,
                            training_folder, within_std_holding)
from search.protocols.sampling import random_at_latency
from search.protocols.specialization import (LayerPreferences, budget_objective, load_preferences,
                                             specialize)
from search.protocols.standalone import StandaloneRecipe, StandaloneTrainer

RESOLUTION = 32


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pair", default="s8:iphone_x", help="two LUT names in luts/, A:B "
                   "(default s8:iphone_x)")
    p.add_argument("--target-rel", type=float, action="append", default=[],
                   help="a relative budget, repeatable (default 0.2, 0.3 and 0.5)")
    p.add_argument("--samples", type=int, default=8,
                   help="random architectures trained per budget and LUT (default 8)")
    p.add_argument("--tolerance", type=float, default=0.1,
                   help="the samples' price within this fraction of the budget (default 0.1)")
    p.add_argument("--train-seeds", default="0,1,2",
                   help="training seeds of the specialized networks (default 0,1,2)")
    p.add_argument("--train-epochs", type=int, default=StandaloneRecipe.epochs,
                   help=f"stand-alone epochs per network (default {StandaloneRecipe.epochs})")
    p.add_argument("--jobs", type=int, default=2, help="trainings side by side (default 2)")
    p.add_argument("--supernets", default="runs/device_pairs",
                   help="where `benchmarks/device_pairs.py --shared` left its searches, for the "
                   "supernets' tau (default runs/device_pairs)")
    p.add_argument("--out", default="runs/accuracy_objective")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    rels = tuple(args.target_rel or (0.2, 0.3, 0.5))
    train_seeds = seed_list(args.train_seeds, "--train-seeds")
    luts = [resolve_lut(load_lut(path), RESOLUTION)[0] for path in pair_luts(args.pair)]
    stems = [Path(l.path).stem for l in luts]
    space = luts[0].space
    recipe = StandaloneRecipe(epochs=args.train_epochs)
    out = Path(args.out) / args.pair.replace(":", "_vs_")
    trainer = StandaloneTrainer(recipe, out / "train")
    log = (lambda *a: None) if args.json else (lambda *a: print(*a, file=sys.stderr, flush=True))
    started = time.perf_counter()

    # 1. samples at every budget on every LUT
    samples: dict[tuple[int, ...], str] = {}
    for lut, stem in zip(luts, stems):
        table = lut.layer_table(space)
        for i, rel in enumerate(rels):
            picks, sampler = random_at_latency(np.array(table.per_layer_ms), table.fixed_ms,
                                               rel * reference_ms(table), args.tolerance,
                                               args.samples, seed=1000 * i + len(samples))
            for idx in picks:
                samples.setdefault(tuple(idx), f"{stem} rel{rel:g} ({sampler})")
    sample_archs = [Architecture(f"sample{k}", space, tuple(CANDIDATE_NAMES[i] for i in idx))
                    for k, idx in enumerate(samples)]
    log(f"training {len(sample_archs)} sampled architectures (seed 0) into {out / 'train'}")
    sample_top1 = trainer.top1_many([(a, training_folder(a), 0) for a in sample_archs],
                                    args.jobs, progress=not args.json)

    # 2. the model, and the supernets' preferences on the same samples
    indices = [list(idx) for idx in samples]
    model = fit_accuracy_model(space, indices, sample_top1)
    supernet_taus = {}
    for checkpoint in sorted(Path(args.supernets).glob(
            f"{args.pair.replace(':', '_vs_')}/search_*_shared_seed*/checkpoint.pt")):
        scores = load_preferences(checkpoint).scores
        theta_score = [float(scores[np.arange(len(i)), i].sum()) for i in indices]
        supernet_taus[checkpoint.parent.name] = kendall_tau(theta_score, sample_top1)
    log(f"accuracy model: {model.samples} samples, ridge {model.ridge:.3g}, leave-one-out "
        f"Kendall tau {model.loo_kendall_tau:.3f}, mean abs error "
        f"{100 * model.loo_mae:.2f} points")
    for name, tau in supernet_taus.items():
        log(f"supernet {name}: Kendall tau of its summed log P_theta {tau:.3f}")

    # 3. each device's network at each budget, trained over the seeds and compared
    preferences = LayerPreferences(space, model.layer_scores(), out / "accuracy_model")
    networks = []
    for lut, stem in zip(luts, stems):
        for rel in rels:
            arch, found = specialize(preferences, budget_objective(preferences, lut,
                                                                   Budget(target_rel=rel)))
            net = Network(f"model:{stem}/rel{rel:g}", "accuracy-model", stem, 0, arch,
                          setting=f"rel{rel:g}")
            net.latency_ms = {s: l.price(arch).total_ms for s, l in zip(stems, luts)}
            networks.append((net, model.intercept + found.score))
    trainings = [(n.arch, training_folder(n.arch), s) for n, _ in networks for s in train_seeds]
    top1 = iter(trainer.top1_many(trainings, args.jobs, progress=not args.json))
    for net, _ in networks:
        net.top1 = [next(top1) for _ in train_seeds]
    fronts = {s: [n for n, _ in networks if n.device == s] for s in stems}
    a, b = accuracy_matched(fronts[stems[0]], fronts[stems[1]])
    claims = [pareto_holds(a, b, stems[0]), pareto_holds(b, a, stems[1])]
    pairs, holding = within_std_holding(fronts[stems[0]], fronts[stems[1]], stems[0], stems[1])
    result = {"pair": args.pair, "rels": rels, "recipe": recipe.describe(),
              "samples": [{"candidates": list(idx), "drawn_for": why, "top1": t}
                          for (idx, why), t in zip(samples.items(), sample_top1)],
              "model": model.to_dict(), "supernet_kendall_tau": supernet_taus,
              "networks": [{**n.to_dict(), "predicted_top1": p,
                            "in_samples": tuple(CANDIDATE_NAMES.index(c)
                                                for c in n.arch.candidates) in samples}
                           for n, p in networks],
              "claims": claims, "within_std": {"pairs": pairs, "holding": holding},
              "seconds": time.perf_counter() - started}
    atomic_write_json(out / "accuracy_objective.json", result)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'network':<24}" + "".join(f"{s:>14}" for s in stems) + f"{'predicted':>11}"
          f"{'top-1':>16}")
    for net, predicted in networks:
        print(f"{net.name:<24}" + "".join(f"{net.latency_ms[s]:11.3f} ms" for s in stems)
              + f"{100 * predicted:10.2f}%" + f"{100 * net.top1_mean:9.2f} ± "
              f"{100 * net.top1_std:.2f}")
    for c in claims:
        print(f"on {c['device']}: {c['own']} vs {c['other']}: {100 * c['speedup']:+.1f}% "
              f"speed-up, top-1 {100 * c['top1_gap']:+.2f} points (tolerance "
              f"{100 * c['tolerance']:.2f}): "
              + ("holds, with the Table 5 margin" if c["margin"] else
                 "holds" if c["holds"] else "does not hold"))
    print(f"of the pairs whose top-1 agree within the seed std, the claim holds for {holding} "
          f"of {pairs}")
    print(f"\nstand-alone recipe: {recipe.describe()}; {result['seconds']:.0f} s; wrote "
          f"{out / 'accuracy_objective.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
