"""Device-specific networks at matched settings, the paper's Table 5 from our own searches:
every LUT searched at one matched budget, or at one or more matched trade-offs (latency
weights), each supernet optionally specialized to the other devices at the price their own
searches reached, every network trained with one stand-alone recipe and priced on every LUT,
and the Pareto claim (with the Table 5 margin) checked per pair of devices and search seed.

With several latency weights, each device's searches form a small front, and the claim is
checked where the paper checks it, at matched accuracy: per search seed and pair of devices,
the two networks (one from each device's front) whose mean top-1 is closest. The choice looks
at accuracy only, never at latency.

With `shared_rels`, train once and specialize: one accuracy-only search per seed (latency
weight 0) gives every device's network by exact specialization (search.protocols.specialization) at each
relative budget, so each device has a front of networks from the same supernet, the search
seed's luck is the same for every device and only the LUTs differ; the fronts are compared at
matched accuracy as above. search.pair is its command line.
"""

from __future__ import annotations

import hashlib
import statistics
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from fbnet.arch import Architecture, load_architecture, save_architecture, to_arch_string
from fbnet.errors import UserError
from fbnet.lut import Lut, load_lut
from search.core.budget import Budget
from search.core.luts import lut_resolution, resolve_lut
from search.protocols.specialization import budget_objective, load_preferences, specialize
from search.protocols.standalone import StandaloneRecipe, StandaloneTrainer, cached_search
from search.runs import SearchRun

# the paper's Table 5 margin, as the target: >= 5% faster at matched accuracy, or >= 0.5 points
# more accurate at no higher latency
SPEEDUP_MARGIN = 0.05
TOP1_MARGIN = 0.005


@dataclass
class Network:
    name: str
    origin: str  # "dnas", "specialize" (to another device) or "shared" (one supernet for all)
    device: str  # the LUT stem it was found for
    seed: int
    arch: Architecture
    latency_ms: dict[str, float] = field(default_factory=dict)  # LUT stem -> price
    top1: list[float] = field(default_factory=list)  # one per training seed
    setting: str = ""  # the label of the matched setting its search ran at, e.g. "w2"

    @property
    def top1_mean(self) -> float:
        return statistics.fmean(self.top1)

    @property
    def top1_std(self) -> float:
        return statistics.stdev(self.top1) if len(self.top1) > 1 else 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "origin": self.origin, "device": self.device,
                "seed": self.seed, "setting": self.setting, "arch": self.arch.to_dict(),
                "latency_ms": self.latency_ms,
                "top1": self.top1, "top1_mean": self.top1_mean, "top1_std": self.top1_std}


@dataclass(frozen=True)
class MatchedSetting:
    """One point of every device's own trade-off, searched on every LUT."""
    label: str  # names the searches' folders and networks, e.g. "w2", "rel0.8"
    flags: tuple[str, ...]  # the search.run flags that set it


@dataclass(frozen=True)
class PairSettings:
    luts: tuple[Path, ...]
    budget: Budget = Budget()
    latency_weights: tuple[float, ...] = ()  # the fbnet loss's weights in reference units
    seeds: tuple[int, ...] = (0,)
    train_seeds: tuple[int, ...] = (0, 1, 2)
    specialize: bool = False
    search_args: str = ""
    out: Path = Path("runs/pair")
    jobs: int = 1  # searches and trainings run side by side, one core each
    # relative budgets at which one accuracy-only supernet per seed is specialized to every LUT
    shared_rels: tuple[float, ...] = ()

    def check(self) -> None:
        self.budget.check()
        if len(self.luts) < 2:
            raise UserError("give at least two LUTs (--lut A --lut B)")
        if self.shared_rels:
            if self.budget.given or self.latency_weights or self.specialize:
                raise UserError("--shared specializes one supernet to every LUT at relative "
                                "budgets: give --target-rel F (repeatable), without "
                                "--latency-weight, --target-ms or --specialize")
            for rel in self.shared_rels:
                Budget(target_rel=rel).check()
            if len(set(self.shared_rels)) != len(self.shared_rels):
                raise UserError(f"--target-rel repeats a budget: {list(self.shared_rels)}")
        elif self.budget.given == bool(self.latency_weights):
            raise UserError("give one matched setting: a matched budget, --target-rel F (or "
                            "--target-ms MS), or matched trade-offs, --latency-weight W "
                            "(repeatable)")
        for weight in self.latency_weights:
            if not weight > 0:
                raise UserError(f"--latency-weight must be positive, got {weight}")
        if len(set(self.latency_weights)) != len(self.latency_weights):
            raise UserError(f"--latency-weight repeats a weight: {list(self.latency_weights)}")
        if self.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {self.jobs}")
        if not self.seeds or not self.train_seeds:
            raise UserError("--seeds and --train-seeds need at least one seed each")

    def matched_settings(self) -> list[MatchedSetting]:
        if self.shared_rels:  # accuracy preferences only: the supernet for every device
            return [MatchedSetting("shared", ("--loss", "fbnet", "--latency-weight", "0"))]
        if self.latency_weights:
            return [MatchedSetting(f"w{w:g}", ("--loss", "fbnet", "--latency-unit", "reference",
                                               "--latency-weight", f"{w:g}"))
                    for w in self.latency_weights]
        if self.budget.target_rel is not None:
            return [MatchedSetting(f"rel{self.budget.target_rel:g}",
                                   ("--target-rel", f"{self.budget.target_rel:g}"))]
        return [MatchedSetting(f"ms{self.budget.target_ms:g}",
                               ("--target-ms", f"{self.budget.target_ms:g}"))]

    def describe(self) -> str:
        if self.shared_rels:
            rels = ", ".join(f"{r:g}" for r in self.shared_rels)
            return ("train once, specialize: one accuracy-only search per seed (latency weight "
                    f"0), specialized to every LUT at {rels} x the space's mean price on that "
                    "LUT, compared at matched accuracy")
        if len(self.latency_weights) > 1:
            weights = ", ".join(f"{w:g}" for w in self.latency_weights)
            return (f"fbnet loss at latency weights {weights} on every LUT (latency in units of "
                    "the space's mean price on each LUT), compared at matched accuracy")
        if self.latency_weights:
            return (f"fbnet loss at latency weight {self.latency_weights[0]:g}, latency in units "
                    "of the space's mean price on each LUT")
        return f"budget {self.budget.describe()} on every LUT"


def check_resolutions(luts: list[Lut]) -> int:
    """One input size for every LUT (after swapping in 32x32 siblings), or a one-line error."""
    sizes = {str(l.path): lut_resolution(l) for l in luts}
    if len(set(sizes.values())) != 1:
        shown = ", ".join(f"{p} ({r}x{r})" for p, r in sizes.items())
        raise UserError(f"the LUTs are for different input sizes: {shown}; compare LUTs of one "
                        "resolution")
    return next(iter(sizes.values()))


def pareto_holds(own: Network, other: Network, device: str) -> dict:
    """On `device`: is `own` at least as accurate (within the larger seed std) at no higher
    latency than `other`, and by the Table 5 margin?"""
    tol = max(own.top1_std, other.top1_std)
    speedup = other.latency_ms[device] / own.latency_ms[device] - 1
    gap = own.top1_mean - other.top1_mean
    holds = own.latency_ms[device] <= other.latency_ms[device] and gap >= -tol
    margin = holds and (speedup >= SPEEDUP_MARGIN or gap >= TOP1_MARGIN)
    return {"device": device, "own": own.name, "other": other.name, "holds": holds,
            "margin": margin, "speedup": speedup, "top1_gap": gap, "tolerance": tol}


def accuracy_matched(mine: list[Network], theirs: list[Network]) -> tuple[Network, Network]:
    """The two networks, one from each device's front, whose mean top-1 is closest (ties go to
    the first pair in the order the settings were given, never to the faster pair)."""
    return min(((a, b) for a in mine for b in theirs),
               key=lambda ab: abs(ab[0].top1_mean - ab[1].top1_mean))


def search_folder(out: Path, lut: Path, matched: MatchedSetting, seed: int) -> Path:
    return out / f"search_{lut.stem}_{matched.label}_seed{seed}"


def within_std_holding(mine: list[Network], theirs: list[Network], device: str, other: str
                       ) -> tuple[int, int]:
    """How robust the accuracy-matched check is: of the pairs (one network from each front)
    whose top-1 agree within the larger seed std, how many the claim holds for on both devices.
    (pairs, holding)."""
    matched = [(a, b) for a in mine for b in theirs
               if abs(a.top1_mean - b.top1_mean) <= max(a.top1_std, b.top1_std)]
    holding = sum(pareto_holds(a, b, device)["holds"] and pareto_holds(b, a, other)["holds"]
                  for a, b in matched)
    return len(matched), holding


def training_folder(arch: Architecture) -> str:
    """Trainings are cached by what is trained, so a network two searches found is trained once."""
    return "arch_" + hashlib.sha1(to_arch_string(arch).encode()).hexdigest()[:12]


def run_pair(settings: PairSettings, recipe: StandaloneRecipe, log=print) -> dict:
    settings.check()
    parsed = {Path(path): load_lut(path) for path in settings.luts}  # each LUT parsed once
    check_resolutions(list(parsed.values()))

    def lut_at(path) -> Lut:
        if Path(path) not in parsed:
            parsed[Path(path)] = load_lut(path)
        return parsed[Path(path)]

    trainer = StandaloneTrainer(recipe, settings.out / "train")
    networks: list[Network] = []
    luts: dict[str, Lut] = {}  # stem -> the LUT the searches priced with (32x32 siblings)
    search_dirs: dict[tuple[str, str, int], Path] = {}  # (LUT stem, setting, seed) -> folder
    unreachable: set[tuple[str, float]] = set()  # --shared: (LUT stem, budget) below its cheapest
    searched = settings.luts[:1] if settings.shared_rels else settings.luts
    searches = [(path, matched, seed) for matched in settings.matched_settings()
                for seed in settings.seeds for path in searched]

    def search(path: Path, matched: MatchedSetting, seed: int) -> dict:
        return cached_search(search_folder(settings.out, path, matched, seed),
                             ["--lut", str(path), *matched.flags, "--data", recipe.data,
                              "--seed", str(seed), *settings.search_args.split()])

    # each search is its own single-threaded search.run process: threads only wait on them
    with ThreadPoolExecutor(settings.jobs) as pool:
        futures = [pool.submit(search, *job) for job in searches]
        for future in tqdm(as_completed(futures), total=len(futures), desc="searches",
                           unit="search", disable=log is None):
            future.result()  # a failed search stops the run once the running ones end
    for (path, matched, seed), future in zip(searches, futures):
        found = future.result()
        run_dir = search_folder(settings.out, path, matched, seed)
        lut = lut_at(found["lut"])
        stem = Path(lut.path).stem
        luts[stem] = lut
        search_dirs[(stem, matched.label, seed)] = run_dir
        if settings.shared_rels:
            preferences = load_preferences(SearchRun(run_dir).checkpoint)
            devices = []  # (LUT stem, LUT, its layer table) at the supernet's resolution
            for lut_path in settings.luts:
                device_lut, _ = resolve_lut(lut_at(lut_path), preferences.space.resolution)
                luts[Path(device_lut.path).stem] = device_lut
                devices.append((Path(device_lut.path).stem, device_lut,
                                device_lut.layer_table(preferences.space)))
            for rel in settings.shared_rels:
                for device, device_lut, table in devices:
                    budget = Budget(target_rel=rel)
                    # devices' cheapest networks differ (6-28% of their mean prices): a budget
                    # only some LUTs can meet is one more point on those devices' fronts
                    if not budget.reachable(table):
                        unreachable.add((device, rel))
                        continue
                    arch, _ = specialize(preferences,
                                         budget_objective(preferences, device_lut, budget))
                    save_architecture(arch, run_dir / f"shared_{device}_rel{rel:g}.json")
                    networks.append(Network(f"shared:{device}/rel{rel:g}#{seed}", "shared",
                                            device, seed, arch, setting=f"rel{rel:g}"))
            continue
        networks.append(Network(f"dnas:{stem}/{matched.label}#{seed}", "dnas", stem, seed,
                                load_architecture(str(SearchRun(run_dir).arch)),
                                setting=matched.label))

    for device in luts:  # before any training: a device without a front has nothing to compare
        if settings.shared_rels and not any(n.device == device for n in networks):
            raise UserError(f"no --target-rel is reachable on {device}: every budget up to "
                            f"{max(settings.shared_rels):g} is below its cheapest network; "
                            "add a higher --target-rel")

    def prices(arch: Architecture) -> dict[str, float]:
        return {stem: lut.price(arch).total_ms for stem, lut in luts.items()}

    for net in networks:
        net.latency_ms = prices(net.arch)
    if settings.specialize:
        found_by = {(n.device, n.setting, n.seed): n for n in networks}
        for device, label, seed in list(found_by):
            run_dir = search_dirs[(device, label, seed)]
            preferences = load_preferences(SearchRun(run_dir).checkpoint)
            for stem, lut in luts.items():
                if stem == device:
                    continue
                # the budget that device's own search reached: one budget for both
                budget = Budget(target_ms=found_by[(stem, label, seed)].latency_ms[stem])
                arch, _ = specialize(preferences, budget_objective(preferences, lut, budget))
                save_architecture(arch, run_dir / f"specialized_{stem}.json")
                spec = Network(f"spec:{device}->{stem}/{label}#{seed}", "specialize", stem,
                               seed, arch, setting=label)
                spec.latency_ms = prices(arch)
                networks.append(spec)
    trainings = [(net.arch, training_folder(net.arch), s) for net in networks
                 for s in settings.train_seeds]
    top1 = iter(trainer.top1_many(trainings, settings.jobs, progress=log is not None))
    for net in networks:
        net.top1 = [next(top1) for _ in settings.train_seeds]
    claims = []
    stems = list(luts)
    for seed in settings.seeds:
        front = {d: [n for n in networks if n.seed == seed and n.origin != "specialize"
                     and n.device == d] for d in stems}
        checks, robustness = [], []
        for i, d in enumerate(stems):
            for o in stems[i + 1:]:
                mine, theirs = accuracy_matched(front[d], front[o])
                checks += [pareto_holds(mine, theirs, d), pareto_holds(theirs, mine, o)]
                pairs, holding = within_std_holding(front[d], front[o], d, o)
                robustness.append({"devices": [d, o], "pairs": pairs, "holding": holding})
        claims.append({"seed": seed, "checks": checks, "holds": all(c["holds"] for c in checks),
                       "margin": all(c["margin"] for c in checks),
                       "within_std": robustness})
    # specialize vs per-device DNAS: on the device both were made for, the same budget
    versus = []
    for spec in (n for n in networks if n.origin == "specialize"):
        dnas = next(n for n in networks if n.origin == "dnas" and n.device == spec.device
                    and n.seed == spec.seed and n.setting == spec.setting)
        spec_wins = pareto_holds(spec, dnas, spec.device)
        dnas_wins = pareto_holds(dnas, spec, spec.device)
        winner = ("tie" if spec_wins["holds"] and dnas_wins["holds"] else "specialize"
                  if spec_wins["holds"] else "dnas" if dnas_wins["holds"] else "neither")
        versus.append({**spec_wins, "winner": winner})
    return {"luts": [str(l.path) for l in luts.values()], "matched": settings.describe(),
            "settings": [m.label for m in settings.matched_settings()],
            "recipe": asdict(recipe), "seeds": list(settings.seeds),
            "train_seeds": list(settings.train_seeds),
            "networks": [n.to_dict() for n in networks], "claims": claims,
            "holds_in": sum(c["holds"] for c in claims),
            "margin_in": sum(c["margin"] for c in claims), "of": len(claims),
            "specialize_vs_dnas": versus,
            "unreachable": [{"lut": d, "target_rel": rel} for d, rel in sorted(unreachable)]}


def pair_luts(spec: str) -> tuple[Path, Path]:
    """A benchmark's --pair A:B: the two LUTs luts/A.json and luts/B.json, or a one-line error."""
    names = spec.split(":")
    if len(names) != 2:
        raise UserError(f"--pair takes two LUT names, A:B (e.g. s8:iphone_x), got {spec!r}")
    paths = tuple(Path("luts") / f"{n}.json" for n in names)
    for path in paths:
        if not path.is_file():
            raise UserError(f"no LUT {path}; name LUTs from luts/ (e.g. s8:iphone_x)")
    return paths


def seed_list(text: str, flag: str) -> tuple[int, ...]:
    """A --seeds style flag: comma-separated whole numbers, or a one-line error naming `flag`."""
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"{flag} takes comma-separated whole numbers, got {text!r}") from None


def format_table(result: dict) -> str:
    stems = [Path(p).stem for p in result["luts"]]
    head = f"{'network':<34}" + "".join(f"{s:>14}" for s in stems) + f"{'top-1':>16}"
    lines = [head]
    for n in result["networks"]:
        cells = "".join(f"{n['latency_ms'][s]:>11.3f} ms" for s in stems)
        lines.append(f"{n['name']:<34}{cells}   {100 * n['top1_mean']:5.2f} ± "
                     f"{100 * n['top1_std']:4.2f}")
    return "\n".join(lines)


def format_report(result: dict) -> str:
    """The Table 5 matrix, the claim per search seed and device, and specialize vs DNAS."""
    lines = [format_table(result)]
    if result["unreachable"]:
        lines.append("below the cheapest network, not specialized: " + ", ".join(
            f"{u['lut']} at {u['target_rel']:g}" for u in result["unreachable"]))
    for claim in result["claims"]:
        for c in claim["checks"]:
            lines.append(
                f"seed {claim['seed']} on {c['device']}: {c['own']} vs {c['other']}: "
                f"{100 * c['speedup']:+.1f}% speed-up, top-1 {100 * c['top1_gap']:+.2f} points "
                f"(tolerance {100 * c['tolerance']:.2f}): "
                + ("holds, with the Table 5 margin" if c["margin"] else
                   "holds, without the Table 5 margin" if c["holds"] else "does not hold"))
    for claim in result["claims"]:
        for r in claim["within_std"]:
            if r["pairs"] > 1:
                lines.append(
                    f"seed {claim['seed']}, {r['devices'][0]} vs {r['devices'][1]}: the claim "
                    f"holds for {r['holding']} of the {r['pairs']} pairs whose top-1 agree "
                    "within the seed std")
    lines.append(
        f"each device's own network Pareto-better on its device: {result['holds_in']} of "
        f"{result['of']} seeds; with the Table 5 margin (>= {100 * SPEEDUP_MARGIN:.0f}% faster "
        f"or >= {100 * TOP1_MARGIN:.1f} points): {result['margin_in']} of {result['of']}")
    for v in result["specialize_vs_dnas"]:
        lines.append(
            f"on {v['device']}: {v['own']} vs {v['other']}: {100 * v['speedup']:+.1f}% "
            f"speed-up, top-1 {100 * v['top1_gap']:+.2f} points: "
            + ("neither is Pareto-better" if v["winner"] == "neither" else
               "equal within the seed std" if v["winner"] == "tie" else
               f"{v['winner']} is Pareto-better"))
    return "\n".join(lines)
