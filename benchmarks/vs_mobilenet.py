"""The FBNet paper's headline on a LUT: the searched network against MobileNetV2 at equal latency.

For each MobileNetV2 width: price MobileNetV2 on the LUT, search the LUT's space at that price
(`search.run --target-ms PRICE`, one search per --seeds), train MobileNetV2 and every found
network with one named recipe (search.train's), and print width, MobileNetV2 ms / top-1,
searched ms / top-1 (mean over seeds) and the gain: in points at MobileNetV2's price, in
speed at its price (its ms over the found networks'), and in speed at matched accuracy
("at-top-1": the family's ms at the found networks' top-1, read off the widths of the run
joined by straight lines, over the found networks' ms; "-" outside those widths).
--family adds MobileNetV2 widths trained for that curve alone (no search at their price);
--mobilenet-only searches nothing: the family's curve by itself.

--train-seeds trains every network once per training seed (the recipe's seed: initial weights
and batch order; a training is otherwise deterministic on a CPU): each network's top-1 is the
mean, and its spread over the seeds is printed, the noise a gain must clear.

The space searched is the LUT's own, at full width, for every MobileNetV2 width: its cheapest
networks reach every budget here (the command says so, and refuses a budget below them). Top-1
is the last epoch's on the whole val split (no epoch or network is selected on it).

With --random N, every found network is also compared with N random networks of the same space
priced within +-5% of it on the LUT (search/protocols/sampling.py: uniform draws, tilted
towards the price where they do not reach it), each trained with the same recipe: search vs
random at the full recipe. The row adds their mean top-1 and the found networks' rank.

With --measure, every network of the table (MobileNetV2 and the found ones) is also exported
and timed end to end on --device with the LUT's own settings (`profiler.validate --arch`), so
one column is a measured latency, not a LUT sum: for a LUT this machine can measure (a host
LUT; a phone's over adb). The LUT must price the MobileNetV2 widths (`profiler.run --extend
--cover mobilenet_v2_0.35`).

Everything is cached under --out and resumed: a search by its folder (its --resume), a training
by architecture and recipe (runs/.../train/<digest>/), so an interrupted run continues and a
second benchmark with the same networks trains nothing again.

Examples:
  python benchmarks/vs_mobilenet.py --lut luts/s8_32.json --widths 0.35 0.5 0.75 --seeds 0 1
  python benchmarks/vs_mobilenet.py --lut luts/s8_32.json --widths 0.35 --epochs 3   # quicker
  python benchmarks/vs_mobilenet.py --lut luts/s8_32.json --widths 0.5 --json
  python benchmarks/vs_mobilenet.py --widths 0.35 --search-args "--weight-sampling uniform"
  python benchmarks/vs_mobilenet.py --lut runs/luts/host_32.json --widths 0.35 --measure
  python benchmarks/vs_mobilenet.py --widths 0.5 --seeds 0 --epochs 3 --random 3
  python benchmarks/vs_mobilenet.py --widths 0.35 --family 0.5 0.75 --epochs 3
  python benchmarks/vs_mobilenet.py --widths 0.35 0.5 0.75 1.0 --epochs 3 --mobilenet-only
  python benchmarks/vs_mobilenet.py --widths 0.35 --epochs 3 --mobilenet-only --train-seeds 0 1 2
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbnet.arch import (MOBILENET_V2_WIDTHS, Architecture, mobilenet_v2,  # noqa: E402
                        save_architecture)
from fbnet.errors import UserError, cli_entry  # noqa: E402
from fbnet.lut import Lut, load_lut  # noqa: E402
from fbnet.space import CANDIDATE_NAMES, SpaceConfig  # noqa: E402
from profiler.export import DEFAULT_CACHE  # noqa: E402
from profiler.settings import (Target, add_target_arguments, remeasure_settings,  # noqa: E402
                               target_from_args)
from profiler.validate import ValidateSettings, validate  # noqa: E402
from search.core.budget import price_range_ms  # noqa: E402
from search.data import DEFAULT_DATA, DataBundle, load_data  # noqa: E402
from search.protocols.sampling import random_at_latency  # noqa: E402
from search.protocols.standalone import cached_search  # noqa: E402
from search.runs import SearchRun, TrainRun  # noqa: E402
from search.networks.training import RECIPES, Recipe, default_recipe_name, named_recipe, train  # noqa: E402


@dataclass
class Trained:
    name: str
    latency_ms: float
    top1: float  # last epoch, whole val split; the mean over the training seeds
    macs: int
    skips: int
    train_seconds: float  # all its trainings together
    folder: str  # the first training seed's
    measured_ms: float | None = None  # exported and timed end to end on --device (--measure)
    top1_per_train_seed: list[float] = field(default_factory=list)

    @property
    def top1_sd(self) -> float | None:
        """The spread of one architecture's top-1 over its training seeds (2 or more)."""
        runs = self.top1_per_train_seed
        return statistics.stdev(runs) if len(runs) > 1 else None

    def label(self) -> str:
        """Its top-1, with the spread over training seeds where there are several."""
        sd = self.top1_sd
        return f"{100 * self.top1:.2f}%" + (
            "" if sd is None else f" (sd {100 * sd:.2f} over {len(self.top1_per_train_seed)})")


@dataclass
class WidthRow:
    width: float
    budget_ms: float
    mobilenet: Trained
    searched: list[Trained]
    random: list[Trained] = field(default_factory=list)  # --random: at the found ones' prices
    # the family's LUT ms at the found networks' mean top-1 (mobilenet_ms_at), where it is
    # inside the widths of the run
    matched_mobilenet_ms: float | None = None

    @property
    def searched_top1(self) -> float | None:
        return statistics.mean(t.top1 for t in self.searched) if self.searched else None

    @property
    def searched_ms(self) -> float | None:
        return statistics.mean(t.latency_ms for t in self.searched) if self.searched else None

    @property
    def gain_points(self) -> float | None:
        """Points of top-1 over MobileNetV2 at this width (at matched latency)."""
        return None if not self.searched else 100 * (self.searched_top1 - self.mobilenet.top1)

    @property
    def speedup(self) -> float | None:
        return None if not self.searched else self.mobilenet.latency_ms / self.searched_ms

    @property
    def matched_speedup(self) -> float | None:
        """How much faster the found networks are than the family at their own accuracy."""
        if self.matched_mobilenet_ms is None or not self.searched:
            return None
        return self.matched_mobilenet_ms / self.searched_ms

    @property
    def random_top1(self) -> float | None:
        return statistics.mean(t.top1 for t in self.random) if self.random else None

    @property
    def searched_ranks(self) -> list[int]:
        """Each found network's rank (1 = best) among itself and the random networks."""
        return [1 + sum(r.top1 > t.top1 for r in self.random) for t in self.searched]

    @property
    def measured_speedup(self) -> float | None:
        """MobileNetV2's measured latency over the found networks' mean, where measured."""
        found = [t.measured_ms for t in self.searched]
        if self.mobilenet.measured_ms is None or None in found:
            return None
        return self.mobilenet.measured_ms / statistics.mean(found)

    def to_dict(self) -> dict:
        return {**asdict(self), "searched_top1_mean": self.searched_top1,
                "searched_ms_mean": self.searched_ms,
                "gain_points": rounded(self.gain_points, 3),
                "speedup": rounded(self.speedup, 4),
                "matched_accuracy_speedup": rounded(self.matched_speedup, 4),
                "random_top1_mean": self.random_top1,
                "searched_ranks_among_random": self.searched_ranks if self.random else None,
                "measured_speedup": rounded(self.measured_speedup, 4)}


def rounded(value: float | None, digits: int) -> float | None:
    """A figure of a row for --json; None where the row has none (no search, no measurement)."""
    return None if value is None else round(value, digits)


def mobilenet_ms_at(family: list[Trained], top1: float) -> float | None:
    """The LUT ms at which the MobileNetV2 family reaches `top1`: its trained widths joined by
    straight lines in (ms, top-1), the first point from the cheapest where the line reaches
    it. None outside the widths trained (below the cheapest's top-1 or above every one's):
    no extrapolation."""
    points = sorted((t.latency_ms, t.top1) for t in family)
    if not points or top1 < points[0][1]:
        return None
    if top1 == points[0][1]:
        return points[0][0]
    for (ms0, acc0), (ms1, acc1) in zip(points, points[1:]):
        if acc0 < top1 <= acc1:
            return ms0 + (ms1 - ms0) * (top1 - acc0) / (acc1 - acc0)
    return None


def training_folder(root: Path, arch: Architecture, recipe: Recipe, data_spec: str) -> Path:
    """One folder per (architecture, recipe, data): the cache key of a training."""
    key = json.dumps({"space": arch.space.to_dict(), "candidates": list(arch.candidates),
                      "recipe": {k: v for k, v in asdict(recipe).items() if k != "name"},
                      "data": data_spec}, sort_keys=True)
    return root / "train" / f"{arch.name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def trained(arch: Architecture, lut: Lut, data: DataBundle, recipe: Recipe, data_spec: str,
            root: Path, log, train_seeds: tuple[int, ...] = (0,)) -> Trained:
    """`arch` trained once per training seed (the recipe's seed: weights and batch order), each
    cached by architecture, recipe and data; its top-1 is their mean."""
    top1s, seconds, folders = [], 0.0, []
    for seed in train_seeds:
        seeded = replace(recipe, seed=seed)
        folder = training_folder(root, arch, seeded, data_spec)
        folders.append(folder)
        result_path = TrainRun(folder).result
        if result_path.is_file():
            result = json.loads(result_path.read_text())
            top1s.append(result["top1"])
            seconds += result["train_seconds"]
            log(f"  {arch.name}: cached in {folder}")
        else:
            log(f"  training {arch.name} ({arch.macs / 1e6:.1f} MMACs) with {recipe.name}, "
                f"training seed {seed}, into {folder}")
            result = train(arch, data, seeded, folder, resume=True, data_spec=data_spec, log=log)
            top1s.append(result.top1)
            seconds += result.train_seconds
    return Trained(arch.name, round(lut.price(arch).total_ms, 4), statistics.mean(top1s),
                   arch.macs, sum(c == "skip" for c in arch.candidates), round(seconds, 1),
                   str(folders[0]), top1_per_train_seed=top1s)


def random_matches(arch: Architecture, lut: Lut, count: int, seed: int,
                   tolerance: float = 0.05) -> list[Architecture]:
    """`count` random architectures of `arch`'s space priced within +-tolerance of it on `lut`."""
    table = lut.layer_table(arch.space)
    picks, _ = random_at_latency(np.array(table.per_layer_ms), table.fixed_ms,
                                 lut.price(arch).total_ms, tolerance, count, seed,
                                 tuple(CANDIDATE_NAMES.index(c) for c in arch.candidates))
    return [Architecture(f"random_{arch.name}_{k}", arch.space,
                         tuple(CANDIDATE_NAMES[i] for i in idx)) for k, idx in enumerate(picks)]


def search_folder(root: Path, lut_path: str, width: float, seed: int,
                  search_args: tuple[str, ...]) -> Path:
    """One folder per search; other search.run options than the defaults get their own."""
    tag = (f"-{hashlib.sha1(' '.join(search_args).encode()).hexdigest()[:8]}"
           if search_args else "")
    return root / "search" / f"{Path(lut_path).stem}-w{width:g}-seed{seed}{tag}"


def measure(networks: dict[str, tuple[Architecture, Trained]], lut_path: str, target: Target,
            root: Path, cache: Path) -> Path:
    """Export every network and time it end to end on `target` with the LUT's own settings
    (profiler.validate with these networks only); each one's median goes to its Trained."""
    folder = root / "measure"
    files = []
    for name, (arch, _) in networks.items():
        path = folder / f"{name}.json"
        save_architecture(arch, path)
        files.append(str(path))
    out = folder / f"{Path(lut_path).stem}-{target.device}.json"
    _, rows, _ = validate(ValidateSettings(lut=lut_path, target=target, samples=0, named=False,
                                           archs=tuple(files), cache=cache, out=out))
    for row in rows:
        networks[row.name][1].measured_ms = row.measured_ms
    return out


def run(lut_path: str, widths: list[float], seeds: list[int], recipe: Recipe, data_spec: str,
        root: Path, log, search_args: tuple[str, ...] = (),
        measure_on: Target | None = None, cache: Path = DEFAULT_CACHE,
        random_count: int = 0, family: tuple[float, ...] = (),
        train_seeds: tuple[int, ...] = (0,)) -> list[WidthRow]:
    """One row per width of `widths` and `family`, cheapest first: MobileNetV2 trained at
    each, searched at the price of each of `widths` (none with no seeds); the `family` widths
    only draw the family's curve that the matched-accuracy speed is read off."""
    lut = load_lut(lut_path)
    if measure_on is not None:  # a one-line error now for a LUT no device can re-measure
        remeasure_settings(lut, lut_path, measure_on, warmup=0, iters=1, rounds=1)
    data = load_data(data_spec, resolution=lut.space.resolution)
    cheapest_ms, _ = price_range_ms(lut.layer_table(
        SpaceConfig.create(lut.space.resolution, num_classes=data.num_classes)))
    rows, networks = [], {}
    for width in sorted(set(widths) | set(family)):
        search = width in widths and bool(seeds)
        baseline = mobilenet_v2(width, resolution=lut.space.resolution,
                                num_classes=data.num_classes)
        budget_ms = lut.price(baseline).total_ms  # a one-line error where the LUT lacks it
        if budget_ms < cheapest_ms:
            raise UserError(f"MobileNetV2 {width:g} costs {budget_ms:.3f} ms on {lut_path}, below "
                            f"the cheapest network of its space ({cheapest_ms:.3f} ms)")
        log(f"MobileNetV2 {width:g}: {budget_ms:.3f} ms on {lut.title}" + (
            f"; searching the full-width space at that price (its cheapest network: "
            f"{cheapest_ms:.3f} ms)" if search else ""))
        mobilenet = trained(baseline, lut, data, recipe, data_spec, root, log, train_seeds)
        networks[baseline.name] = baseline, mobilenet
        searched, randoms = [], []
        for seed in seeds if search else ():
            out = search_folder(root, lut_path, width, seed, search_args)
            log(f"  search seed {seed} into {out}")
            found = cached_search(out, ["--lut", lut_path, "--data", data_spec,
                                        "--target-ms", f"{budget_ms:.6f}", "--seed", str(seed),
                                        *search_args])
            arch = Architecture.from_dict(found["arch"], source=str(SearchRun(out).result))
            arch = Architecture(f"dnas_w{width:g}_seed{seed}", arch.space, arch.candidates)
            searched.append(trained(arch, lut, data, recipe, data_spec, root, log, train_seeds))
            networks[arch.name] = arch, searched[-1]
            for other in random_matches(arch, lut, random_count, seed) if random_count else []:
                randoms.append(trained(other, lut, data, recipe, data_spec, root, log, train_seeds))
        rows.append(WidthRow(width, round(budget_ms, 4), mobilenet, searched, randoms))
        log(format_row(rows[-1]))
    curve = [row.mobilenet for row in rows]
    for row in rows:
        if row.searched:
            row.matched_mobilenet_ms = mobilenet_ms_at(curve, row.searched_top1)
    if measure_on is not None:
        log(f"measuring {len(networks)} networks end to end on {measure_on.device}")
        out = measure(networks, lut_path, measure_on, root, cache)
        log(f"  measured latencies in {out}")
    return rows


def format_row(row: WidthRow) -> str:
    m = row.mobilenet
    seeds = ", ".join(f"{t.label()} / {t.latency_ms:.2f} ms" + (
        f" (measured {t.measured_ms:.3f})" if t.measured_ms is not None else "")
        + f" / {t.skips} skips" for t in row.searched)
    line = f"{row.width:>5g}  {m.latency_ms:8.3f} {100 * m.top1:7.2f}%"
    spread = f"  MobileNetV2: {m.label()}" if m.top1_sd is not None else ""
    if not row.searched:
        return line + spread
    matched = row.matched_speedup
    line += (f"  {row.searched_ms:8.3f} {row.searched_top1 * 100:7.2f}%  {row.gain_points:+6.2f}"
             f"  x{row.speedup:.2f}  " + (f"x{matched:.2f}" if matched is not None else "    -"))
    if row.random:
        line += (f"  random: {100 * row.random_top1:.2f}% (mean of {len(row.random)}), found "
                 f"networks' rank {', '.join(map(str, row.searched_ranks))} of "
                 f"{1 + len(row.random)}")
    if row.measured_speedup is not None:
        line += (f"  measured: MNV2 {m.measured_ms:.3f} ms, x{row.measured_speedup:.2f}")
    return f"{line}   [{seeds}]{spread}"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python benchmarks/vs_mobilenet.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", default="luts/s8_32.json", help="LUT to price and search (default "
                   "luts/s8_32.json; its MobileNetV2 widths must be priced: profiler.estimate "
                   "--extend)")
    p.add_argument("--widths", type=float, nargs="+", default=[0.35, 0.5, 0.75],
                   help=f"MobileNetV2 widths (of {', '.join(map(str, MOBILENET_V2_WIDTHS))})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="search seeds")
    p.add_argument("--train-seeds", type=int, nargs="+", default=[0],
                   help="training seeds: every network trained once per seed, its top-1 their "
                        "mean and the spread printed (default 0)")
    p.add_argument("--search-args", default="", help="extra search.run options, e.g. "
                   "\"--weight-sampling uniform --threads 2\" (searched into their own folders)")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--recipe", help=f"training recipe: {', '.join(RECIPES)} (default: "
                   "search.train's for the data)")
    p.add_argument("--epochs", type=int, help="change the recipe's epochs (say so when quoting)")
    p.add_argument("--out", default="runs/vs_mobilenet", help="cache of searches and trainings")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="CPU threads for training")
    p.add_argument("--random", type=int, default=0, metavar="N",
                   help="also train N random networks priced within 5%% of each found one "
                        "(search vs random at the recipe; default 0)")
    p.add_argument("--measure", action="store_true", help="also export every network and time "
                   "it end to end on --device (profiler.validate --arch): a LUT this machine "
                   "can measure")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help="artifact cache folder of the exported programs (--measure)")
    p.add_argument("--family", type=float, nargs="+", default=[], metavar="WIDTH",
                   help="more MobileNetV2 widths, trained for the family's curve (the speed at "
                        "matched accuracy) and not searched at")
    p.add_argument("--mobilenet-only", action="store_true",
                   help="search nothing: train the MobileNetV2 widths, the family's curve alone")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_target_arguments(p)
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.random < 0:
        raise UserError(f"--random {args.random}: give a count of random networks, 0 or more")
    if min(args.train_seeds) < 0:
        raise UserError(f"--train-seeds {' '.join(map(str, args.train_seeds))}: training seeds "
                        "are 0 or more")
    recipe = named_recipe(args.recipe or default_recipe_name(args.data), epochs=args.epochs)
    torch.set_num_threads(args.threads)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else \
        (lambda msg: print(msg, flush=True))
    rows = run(args.lut, args.widths, [] if args.mobilenet_only else args.seeds, recipe,
               args.data, Path(args.out), log, tuple(args.search_args.split()),
               target_from_args(args) if args.measure else None, args.cache, args.random,
               family=tuple(args.family), train_seeds=tuple(dict.fromkeys(args.train_seeds)))
    if args.json:
        print(json.dumps({"lut": args.lut, "search_args": args.search_args,
                          "recipe": asdict(recipe), "data": args.data,
                          "rows": [r.to_dict() for r in rows]}, indent=1))
        return 0
    searched = "no search" if args.mobilenet_only else \
        f"search seeds {' '.join(map(str, args.seeds))} {args.search_args}".rstrip()
    print(f"\n{args.lut}, recipe {recipe.name} on {args.data}, {searched}; top-1: last epoch on "
          "the whole val split")
    print(f"{'width':>5}  {'MNV2 ms':>8} {'top-1':>8}  {'FBNet ms':>8} {'top-1':>8}  "
          f"{'gain':>6}  speed  at-top-1  [per seed]")
    for row in rows:
        print(format_row(row))
    print(f"wrote searches and trainings under {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
