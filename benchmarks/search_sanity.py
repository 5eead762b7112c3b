"""The three sanity behaviours of the DNAS search (issue #8, item 7), on real LUTs.

(a) weights frozen, latency term only: every layer's argmax is its LUT-cheapest candidate.
(b) the argmax architecture's LUT latency falls monotonically as --latency-weight grows.
(c) two LUTs with different block costs give different architectures, each faster on its own
    LUT than the other's.

(a) optimizes theta alone (no data). (b) and (c) run real searches on --data (default
Fashion-MNIST; theta on the
latency-aware loss, weights on CE) with a short schedule: 960 images, 4 epochs (1 warm-up),
theta lr 0.1, one theta step per weight step, over two seeds. With the defaults (entangled
boundaries) it takes about 15-25 minutes on 2 CPU cores; `--only c --seeds 0` about 3.

Examples:
  python benchmarks/search_sanity.py                                  # luts/s8_32 vs iphone_x_32
  python benchmarks/search_sanity.py --lut-a luts/pixel3_32.json --lut-b luts/edgegpu_32.json
  python benchmarks/search_sanity.py --only a,c --json
  python benchmarks/search_sanity.py --only c --seeds 0,1,2,3 --c-weight 2
  python benchmarks/search_sanity.py --only b --epochs 3 --train-images 480
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from fbnet.arch import Architecture
from fbnet.lut import load_lut
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from search.data import DEFAULT_DATA, load_data, split_train
from search.core.dnas import Search, TrainConfig, latency_only_search
from search.core.loss import LossConfig
from search.core.objective import Objective
from search.core.supernet import BOUNDARIES, SuperNet


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA, help=f"dataset of (b) and (c) (default "
                   f"{DEFAULT_DATA})")
    p.add_argument("--lut-a", default="luts/s8_32.json")
    p.add_argument("--lut-b", default="luts/iphone_x_32.json")
    p.add_argument("--weights", default="0,1,4,16", help="latency weights for (b)")
    p.add_argument("--c-weight", type=float, default=4.0,
                   help="latency weight for (c) (default 4: at 16 both searches head for the "
                        "same cheapest network, all skips, which both LUTs share)")
    p.add_argument("--epochs", type=int, default=4,
                   help="search epochs for (b), (c), the first weights-only (default 4)")
    p.add_argument("--train-images", type=int, default=960)
    p.add_argument("--theta-lr", type=float, default=0.1, help="Adam lr of theta (0.1)")
    p.add_argument("--alternate", default="step", help="step or epoch (search.run's "
                   "--alternate; default step)")
    p.add_argument("--boundary", choices=BOUNDARIES, default=TrainConfig.boundary,
                   help=f"search.run's --boundary (default {TrainConfig.boundary})")
    p.add_argument("--only", default="a,b,c")
    p.add_argument("--seed", type=int, default=0, help="seed of (a)")
    p.add_argument("--seeds", default="0,1",
                   help="seeds of (b) and (c) (default 0,1): short searches are noisy, so (b) "
                        "checks the mean over seeds and (c) counts the seeds where it holds")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def space_for(lut, num_classes: int = 10) -> SpaceConfig:
    s = lut.space
    return SpaceConfig.create(s.resolution, stem_channels=s.stem_channels,
                              stage_widths=s.stage_widths, stage_depths=s.stage_depths,
                              head_channels=s.head_channels, num_classes=num_classes)


def names(indices: list[int]) -> list[str]:
    return [CANDIDATE_NAMES[i] for i in indices]


def check_a(lut, mode: str, seed: int) -> dict:
    space = space_for(lut)
    objective = Objective.build(lut, space, LossConfig(latency_weight=4))
    torch.manual_seed(seed)
    picks = latency_only_search(SuperNet(space, mode=mode), objective, steps=400, lr=0.1,
                                seed=seed)
    cheapest = objective.latency_model().cheapest()
    return {"mode": mode, "lut": str(lut.path), "ok": picks == cheapest,
            "layers_matching": sum(a == b for a, b in zip(picks, cheapest)),
            "layers": len(picks), "argmax_ms": objective.price_ms(names(picks)),
            "cheapest_ms": objective.price_ms(names(cheapest))}


def short_search(lut, loss: LossConfig, args, out: Path, seed: int | None = None) -> Search:
    seed = args.seed if seed is None else seed
    bundle = load_data(args.data, seed=seed)
    space = space_for(lut, bundle.num_classes)
    train = torch.utils.data.Subset(bundle.train, range(min(args.train_images, len(bundle.train))))
    w, th = split_train(train, 0.8, seed)
    cfg = TrainConfig(epochs=args.epochs, warmup_epochs=1, batch_size=32, seed=seed,
                      w_lr=0.02, theta_lr=args.theta_lr, alternate=args.alternate,
                      boundary=args.boundary)
    search = Search(space, Objective.build(lut, space, loss), cfg, w, th, None, out,
                    torch.device("cpu"), {"benchmark": "sanity"}, progress=False)
    search.run()
    return search


def main(argv=None) -> int:
    args = parse_args(argv)
    only = set(args.only.split(","))
    seeds = [int(x) for x in args.seeds.split(",")]
    lut_a, lut_b = load_lut(args.lut_a), load_lut(args.lut_b)
    report: dict = {}
    tmp = Path(tempfile.mkdtemp(prefix="search_sanity_"))
    started = time.perf_counter()
    if "a" in only:
        report["a"] = [check_a(lut, mode, args.seed) for lut in (lut_a, lut_b)
                       for mode in ("soft", "sampled")]
    if "b" in only:
        rows = []
        for w in [float(x) for x in args.weights.split(",")]:
            per_seed = {}
            for seed in seeds:
                s = short_search(lut_a, LossConfig(latency_weight=w), args, tmp / f"b{w}_{seed}",
                                 seed)
                per_seed[seed] = s.history[-1]["argmax_latency_ms"]
            rows.append({"latency_weight": w, "argmax_ms": per_seed,
                         "mean_argmax_ms": sum(per_seed.values()) / len(per_seed)})

        def monotonic(values):
            return all(b <= a for a, b in zip(values, values[1:]))

        report["b"] = {"lut": str(lut_a.path), "rows": rows,
                       "monotonic": monotonic([r["mean_argmax_ms"] for r in rows]),
                       "monotonic_seeds": sum(monotonic([r["argmax_ms"][seed] for r in rows])
                                              for seed in seeds)}
    if "c" in only:
        report["c"] = []
        for seed in seeds:
            archs = {}
            for name, lut in (("a", lut_a), ("b", lut_b)):
                s = short_search(lut, LossConfig(latency_weight=args.c_weight), args,
                                 tmp / f"c{name}{seed}", seed)
                archs[name] = Architecture(f"for_{name}", s.space, s.model.argmax_candidates())
            ms = {own: {str(l.path): l.price(archs[own]).total_ms for l in (lut_a, lut_b)}
                  for own in ("a", "b")}
            a_on_a, a_on_b = ms["a"][str(lut_a.path)], ms["a"][str(lut_b.path)]
            b_on_a, b_on_b = ms["b"][str(lut_a.path)], ms["b"][str(lut_b.path)]
            different = archs["a"].candidates != archs["b"].candidates
            report["c"].append({
                "seed": seed, "different": different, "a_faster_on_a": a_on_a < b_on_a,
                "b_faster_on_b": b_on_b < a_on_b,
                "ok": different and a_on_a < b_on_a and b_on_b < a_on_b,
                "latency_ms": {f"{own} arch": prices for own, prices in ms.items()},
                "archs": {k: list(v.candidates) for k, v in archs.items()}})
    report["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for row in report.get("a", []):
        print(f"(a) {row['lut']} {row['mode']:<7}: {row['layers_matching']}/{row['layers']} layers "
              f"pick the cheapest candidate ({row['argmax_ms']:.3f} vs {row['cheapest_ms']:.3f} "
              f"ms) {'OK' if row['ok'] else 'FAIL'}")
    if "b" in report:
        b = report["b"]
        print(f"(b) {b['lut']}: argmax latency by latency weight, mean over seeds "
              f"{args.seeds}: " + ", ".join(
                  f"{r['latency_weight']:g} -> {r['mean_argmax_ms']:.3f} ms" for r in b["rows"])
              + f" {'OK (monotonic)' if b['monotonic'] else 'FAIL'}")
        for seed in seeds:
            print(f"    seed {seed}: " + ", ".join(f"{r['argmax_ms'][seed]:.3f}" for r in b["rows"]))
        print(f"    monotonic for {b['monotonic_seeds']} of {len(seeds)} seeds on its own")
    if "c" in report:
        print(f"(c) latency weight {args.c_weight:g}: argmax architectures priced on both LUTs "
              "(ms):")
        for c in report["c"]:
            prices = "; ".join(f"{own}: " + ", ".join(f"{Path(k).stem} {v:.3f}"
                                                      for k, v in p.items())
                               for own, p in c["latency_ms"].items())
            print(f"    seed {c['seed']}: {prices}: different {c['different']}, each faster on "
                  f"its own LUT {c['a_faster_on_a'] and c['b_faster_on_b']} "
                  f"{'OK' if c['ok'] else 'FAIL'}")
        held = sum(c["ok"] for c in report["c"])
        print(f"    (c) holds for {held} of {len(report['c'])} seeds")
    print(f"({report['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
