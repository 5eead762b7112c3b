"""Device-specific networks at matched budgets: the paper's Table 5 from our own searches.

For every LUT given (--lut, repeated) and every search seed: search that LUT at one relative
budget (--target-rel F: F x the space's mean price on that LUT, the same point of each
device's own trade-off; search/budget.py). With --specialize, the supernet of each search also gives every
other device's network at the same relative budget, without a new search (search.specialize).
Every network is trained with one stand-alone recipe over --train-seeds (search/standalone.py)
and priced on every LUT.

The claim checked per search seed is Pareto, on each device D against each other device O:
D's network is at least as accurate as O's (within the larger of their two seed stds) at no
higher latency on D. The margins the paper's Table 5 shows (each network ~5-17% faster on its
own phone at matched accuracy) are printed beside it: the speed-up on D, and the accuracy gap.

Searches and trainings are cached in --out and reused, so an interrupted run continues.

Examples:
  python -m search.pair --lut luts/s8.json --lut luts/iphone_x.json --target-rel 0.8
  python -m search.pair --lut luts/pixel3.json --lut luts/edgegpu.json --target-rel 0.8 \\
      --seeds 0,1,2 --train-seeds 0,1,2 --specialize --json
  python -m search.pair --lut luts/s8.json --lut luts/iphone_x.json --target-rel 0.8 \\
      --search-args "--epochs 3" --out runs/pair_short
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from fbnet.arch import Architecture, load_architecture, save_architecture
from fbnet.errors import UserError, cli_entry
from fbnet.io import atomic_write_json
from fbnet.lut import Lut, load_lut
from search.budget import Budget
from search.luts import lut_resolution
from search.specialize import specialize
from search.standalone import StandaloneRecipe, StandaloneTrainer, cached_search



@dataclass
class Network:
    name: str
    origin: str  # "dnas" or "specialize"
    device: str  # the LUT stem it was found for
    seed: int
    arch: Architecture
    latency_ms: dict[str, float] = field(default_factory=dict)  # LUT stem -> price
    top1: list[float] = field(default_factory=list)  # one per training seed

    @property
    def top1_mean(self) -> float:
        return statistics.fmean(self.top1)

    @property
    def top1_std(self) -> float:
        return statistics.stdev(self.top1) if len(self.top1) > 1 else 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "origin": self.origin, "device": self.device,
                "seed": self.seed, "arch": self.arch.to_dict(), "latency_ms": self.latency_ms,
                "top1": self.top1, "top1_mean": self.top1_mean, "top1_std": self.top1_std}


@dataclass(frozen=True)
class PairSettings:
    luts: tuple[Path, ...]
    budget: Budget
    seeds: tuple[int, ...] = (0,)
    train_seeds: tuple[int, ...] = (0, 1, 2)
    specialize: bool = False
    search_args: str = ""
    out: Path = Path("runs/pair")

    def check(self) -> None:
        self.budget.check()
        if len(self.luts) < 2:
            raise UserError("give at least two LUTs (--lut A --lut B)")
        if not self.budget.given:
            raise UserError("give a matched budget: --target-rel F (or --target-ms MS)")
        if not self.seeds or not self.train_seeds:
            raise UserError("--seeds and --train-seeds need at least one seed each")


def check_resolutions(luts: list[Lut]) -> int:
    """One input size for every LUT (after swapping in 32x32 siblings), or a one-line error."""
    sizes = {str(l.path): lut_resolution(l) for l in luts}
    if len(set(sizes.values())) != 1:
        shown = ", ".join(f"{p} ({r}x{r})" for p, r in sizes.items())
        raise UserError(f"the LUTs are for different input sizes: {shown}; compare LUTs of one "
                        "resolution")
    return next(iter(sizes.values()))


def pareto_holds(own: Network, other: Network, device: str) -> dict:
    tol = max(own.top1_std, other.top1_std)
    speedup = other.latency_ms[device] / own.latency_ms[device] - 1
    gap = own.top1_mean - other.top1_mean
    return {"device": device, "own": own.name, "other": other.name,
            "holds": own.latency_ms[device] <= other.latency_ms[device] and gap >= -tol,
            "speedup": speedup, "top1_gap": gap, "tolerance": tol}


def run_pair(settings: PairSettings, recipe: StandaloneRecipe, log=print) -> dict:
    settings.check()
    check_resolutions([load_lut(p) for p in settings.luts])
    trainer = StandaloneTrainer(recipe, settings.out / "train")
    networks: list[Network] = []
    luts: dict[str, Lut] = {}  # stem -> the LUT the searches priced with (32x32 siblings)
    jobs = [(path, seed) for path in settings.luts for seed in settings.seeds]
    for path, seed in tqdm(jobs, desc="searches", unit="search", disable=log is None):
        run_dir = settings.out / f"search_{path.stem}_seed{seed}"
        budget = (["--target-rel", str(settings.budget.target_rel)]
                  if settings.budget.target_rel is not None
                  else ["--target-ms", str(settings.budget.target_ms)])
        found = cached_search(run_dir, ["--lut", str(path), *budget, "--seed", str(seed),
                                        *settings.search_args.split()])
        lut = load_lut(found["lut"])
        stem = Path(lut.path).stem
        luts[stem] = lut
        networks.append(Network(f"dnas:{stem}#{seed}", "dnas", stem, seed,
                                load_architecture(str(run_dir / "arch.json"))))
    if settings.specialize:
        for net in [n for n in networks if n.origin == "dnas"]:
            run_dir = settings.out / f"search_{Path(luts[net.device].path).stem}_seed{net.seed}"
            for stem, lut in luts.items():
                if stem == net.device:
                    continue
                arch, _, _ = specialize(run_dir / "checkpoint.pt", Path(lut.path),
                                        settings.budget)
                save_architecture(arch, run_dir / f"specialized_{stem}.json")
                networks.append(Network(f"spec:{net.device}->{stem}#{net.seed}", "specialize",
                                        stem, net.seed, arch))
    for net in tqdm(networks, desc="training", unit="network", disable=log is None):
        net.latency_ms = {stem: lut.price(net.arch).total_ms for stem, lut in luts.items()}
        folder = net.name.replace(":", "_").replace("#", "_seed").replace("->", "_to_")
        net.top1 = [trainer.top1(net.arch, folder, s) for s in settings.train_seeds]
    claims = []
    for seed in settings.seeds:
        own = {n.device: n for n in networks if n.seed == seed and n.origin == "dnas"}
        checks = [pareto_holds(own[d], own[o], d) for d in own for o in own if o != d]
        claims.append({"seed": seed, "checks": checks, "holds": all(c["holds"] for c in checks)})
    # specialize vs per-device DNAS: on the device both were made for, the same budget
    versus = []
    for spec in (n for n in networks if n.origin == "specialize"):
        dnas = next(n for n in networks if n.origin == "dnas" and n.device == spec.device
                    and n.seed == spec.seed)
        spec_wins = pareto_holds(spec, dnas, spec.device)
        dnas_wins = pareto_holds(dnas, spec, spec.device)
        winner = ("tie" if spec_wins["holds"] and dnas_wins["holds"] else "specialize"
                  if spec_wins["holds"] else "dnas" if dnas_wins["holds"] else "neither")
        versus.append({**spec_wins, "winner": winner})
    return {"luts": [str(l.path) for l in luts.values()], "budget": settings.budget.describe(),
            "recipe": asdict(recipe), "seeds": list(settings.seeds),
            "train_seeds": list(settings.train_seeds),
            "networks": [n.to_dict() for n in networks], "claims": claims,
            "holds_in": sum(c["holds"] for c in claims), "of": len(claims),
            "specialize_vs_dnas": versus}


def format_table(result: dict) -> str:
    stems = [Path(p).stem for p in result["luts"]]
    head = f"{'network':<34}" + "".join(f"{s:>14}" for s in stems) + f"{'top-1':>16}"
    lines = [head]
    for n in result["networks"]:
        cells = "".join(f"{n['latency_ms'][s]:>11.3f} ms" for s in stems)
        lines.append(f"{n['name']:<34}{cells}   {100 * n['top1_mean']:5.2f} ± "
                     f"{100 * n['top1_std']:4.2f}")
    return "\n".join(lines)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m search.pair", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", action="append", required=True,
                   help="a device's LUT; repeat for each device (at least two)")
    p.add_argument("--target-rel", type=float, help="the matched budget: a fraction of "
                   "the space's mean price on each LUT")
    p.add_argument("--target-ms", type=float, help="one budget in ms for every LUT (not "
                   "matched across devices of different speed)")
    p.add_argument("--seeds", default="0", help="search seeds (default 0)")
    p.add_argument("--train-seeds", default="0,1,2", help="training seeds (default 0,1,2)")
    p.add_argument("--specialize", action="store_true",
                   help="also specialize every search's supernet to the other devices")
    p.add_argument("--search-args", default="", help="extra search.run arguments")
    p.add_argument("--train-epochs", type=int, default=StandaloneRecipe.epochs)
    p.add_argument("--train-images", type=int, default=StandaloneRecipe.train_images)
    p.add_argument("--val-images", type=int, default=StandaloneRecipe.val_images)
    p.add_argument("--train-width", type=float, default=StandaloneRecipe.width)
    p.add_argument("--out", default="runs/pair")
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def _seeds(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    settings = PairSettings(tuple(Path(p) for p in args.lut),
                            Budget(args.target_ms, args.target_rel),
                            _seeds(args.seeds, "--seeds"), _seeds(args.train_seeds, "--train-seeds"),
                            args.specialize, args.search_args, Path(args.out))
    recipe = StandaloneRecipe(epochs=args.train_epochs, train_images=args.train_images,
                              val_images=args.val_images, width=args.train_width)
    started = time.perf_counter()
    result = run_pair(settings, recipe, log=None if args.json else print)
    result["seconds"] = time.perf_counter() - started
    atomic_write_json(settings.out / "pair.json", result)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"budget {result['budget']} on every LUT; stand-alone recipe: {recipe.describe()}, "
          f"seeds {args.train_seeds}")
    print(format_table(result))
    for claim in result["claims"]:
        for c in claim["checks"]:
            print(f"seed {claim['seed']} on {c['device']}: {c['own']} vs {c['other']}: "
                  f"{100 * c['speedup']:+.1f}% speed-up, top-1 {100 * c['top1_gap']:+.2f} points "
                  f"(tolerance {100 * c['tolerance']:.2f}): "
                  f"{'holds' if c['holds'] else 'does not hold'}")
    print(f"each device's own network Pareto-better on its device: {result['holds_in']} of "
          f"{result['of']} seeds")
    for v in result["specialize_vs_dnas"]:
        print(f"on {v['device']}: {v['own']} vs {v['other']}: {100 * v['speedup']:+.1f}% "
              f"speed-up, top-1 {100 * v['top1_gap']:+.2f} points: "
              + ("neither is Pareto-better" if v["winner"] == "neither" else
                 "equal within the seed std" if v["winner"] == "tie" else
                 f"{v['winner']} is Pareto-better"))
    print(f"wrote {settings.out}/pair.json ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
