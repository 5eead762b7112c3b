"""Does a searched supernet rank networks the way training them in full does? Kendall tau between
each supernet's score of a network and that network's top-1 after a full recipe: the premise of
train-once-specialize (search.specialize) and of every accuracy the search predicts.

Reads every finished training under --trained (a folder with arch.json and result.json, as
benchmarks/vs_mobilenet.py and search.train write them) and every finished search under
--searches (a folder with checkpoint.pt). Each supernet scores the networks of its own space
two ways:
- shared weights: the network's top-1 with the supernet's weights, its candidates alone, with
  BatchNorm statistics re-estimated for it (search_vs_random's score), on the data's val split;
- theta: the sum over the layers of log P_theta(candidate), what search.specialize maximizes.
Networks of another space (MobileNetV2's narrow widths) are listed and left out. Trainings of
more than one recipe are ranked per recipe: a tau across recipes would rank the recipes.

Nothing is selected on the val split here: the scores only measure the agreement.

Examples:
  python benchmarks/supernet_ranking.py
  python benchmarks/supernet_ranking.py --trained runs/vs_mobilenet/train \\
      --searches runs/vs_mobilenet/search --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbnet.arch import Architecture  # noqa: E402
from fbnet.errors import UserError, cli_entry  # noqa: E402
from fbnet.io import atomic_write_json  # noqa: E402
from fbnet.metrics import kendall_tau  # noqa: E402
from fbnet.space import CANDIDATE_NAMES  # noqa: E402
from search.core.dnas import TrainedSupernet, load_trained_supernet  # noqa: E402
from search.data import DataBundle, load_data  # noqa: E402
from search.protocols.specialization import same_space  # noqa: E402
from search.runs import SearchRun, TrainRun  # noqa: E402


@dataclass(frozen=True)
class TrainedNetwork:
    name: str
    folder: str
    recipe: str
    top1: float  # the training's last epoch on the val split
    arch: Architecture


@dataclass
class SupernetRanking:
    supernet: str  # the search folder
    recipe: str
    networks: list[str]
    trained_top1: list[float]
    shared_weights_top1: list[float]
    theta_score: list[float]  # sum of log P_theta over the layers
    tau_shared_weights: float | None
    tau_theta: float | None


def finished_trainings(root: Path) -> list[TrainedNetwork]:
    """One network per architecture and recipe: trainings that differ only in the recipe's
    seed (vs_mobilenet --train-seeds) are one network, their mean top-1."""
    groups: dict[tuple, list[tuple[str, float, Architecture]]] = defaultdict(list)
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        run = TrainRun(folder)
        if not (run.result.is_file() and run.arch.is_file()):
            continue  # unfinished: its result is written last
        result = json.loads(run.result.read_text())
        arch = Architecture.from_dict(json.loads(run.arch.read_text()), source=str(run.arch))
        recipe = result.get("recipe", {}).get("name", "?")
        key = recipe, json.dumps(arch.space.to_dict(), sort_keys=True), arch.candidates
        groups[key].append((str(folder), float(result["top1"]), arch))
    return [TrainedNetwork(Path(runs[0][0]).name, runs[0][0], key[0],
                           sum(top1 for _, top1, _ in runs) / len(runs), runs[0][2])
            for key, runs in groups.items()]


def finished_searches(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if SearchRun(p).checkpoint.is_file())


def nan_to_none(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def rank(supernet: TrainedSupernet, source: Path, recipe: str, networks: list[TrainedNetwork],
         data: DataBundle, val_images: int, log) -> SupernetRanking:
    val = torch.utils.data.Subset(data.val, range(min(val_images, len(data.val))))
    log_probs = torch.log_softmax(supernet.model.theta.detach().double(), -1)
    shared, theta = [], []
    for net in networks:
        indices = [CANDIDATE_NAMES.index(c) for c in net.arch.candidates]
        shared.append(supernet.top1(indices, val, data.train))
        theta.append(float(log_probs[torch.arange(len(indices)), indices].sum()))
        log(f"  {source.name}: {net.name:<36} trained {100 * net.top1:6.2f}%  supernet "
            f"{100 * shared[-1]:6.2f}%  log P_theta {theta[-1]:9.2f}")
    top1 = [n.top1 for n in networks]
    return SupernetRanking(str(source), recipe, [n.name for n in networks], top1, shared, theta,
                           nan_to_none(kendall_tau(shared, top1)),
                           nan_to_none(kendall_tau(theta, top1)))


def run(trained_root: Path, searches_root: Path, val_images: int, log
        ) -> tuple[list[SupernetRanking], list[str]]:
    """Every supernet's ranking of the trainings of its space, per recipe; and the trainings
    that no supernet could score."""
    if val_images < 1:
        raise UserError(f"--val-images {val_images}: score on 1 image or more")
    for root in (trained_root, searches_root):
        if not root.is_dir():
            raise UserError(f"no folder {root}; run benchmarks/vs_mobilenet.py first or give "
                            "--trained and --searches")
    trainings = finished_trainings(trained_root)
    searches = finished_searches(searches_root)
    if not trainings or not searches:
        raise UserError(f"{len(trainings)} finished trainings in {trained_root} and "
                        f"{len(searches)} finished searches in {searches_root}: need both")
    rankings, scored, datasets = [], set(), {}
    for source in searches:
        supernet = load_trained_supernet(SearchRun(source).checkpoint)
        key = supernet.fingerprint["data"], supernet.space.resolution
        if key not in datasets:  # every search of one benchmark read the same data
            datasets[key] = load_data(key[0], resolution=key[1])
        by_recipe = defaultdict(list)
        for net in trainings:
            if same_space(net.arch.space, supernet.space):
                by_recipe[net.recipe].append(net)
        for recipe, networks in sorted(by_recipe.items()):
            if len(networks) < 2:
                continue
            rankings.append(rank(supernet, source, recipe, networks, datasets[key], val_images,
                                 log))
            scored.update(n.name for n in networks)
    return rankings, [n.name for n in trainings if n.name not in scored]


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python benchmarks/supernet_ranking.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trained", type=Path, default=Path("runs/vs_mobilenet/train"),
                   help="folder of finished trainings (default runs/vs_mobilenet/train)")
    p.add_argument("--searches", type=Path, default=Path("runs/vs_mobilenet/search"),
                   help="folder of finished searches (default runs/vs_mobilenet/search)")
    p.add_argument("--val-images", type=int, default=10_000,
                   help="val images each network is scored on with shared weights (default "
                        "10000: Fashion-MNIST's whole test split)")
    p.add_argument("--out", type=Path, help="also write the rankings to this JSON file")
    p.add_argument("--json", action="store_true", help="print the rankings as JSON")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if args.json else \
        (lambda msg: print(msg, flush=True))
    rankings, unscored = run(args.trained, args.searches, args.val_images, log)
    summary = {"trained": str(args.trained), "searches": str(args.searches),
               "val_images": args.val_images, "rankings": [asdict(r) for r in rankings],
               "not_in_any_supernets_space": unscored}
    if args.out:
        atomic_write_json(args.out, summary)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    print(f"\nKendall tau against the trained top-1, per supernet ({args.val_images} val images "
          "for the shared-weights score)")
    print(f"{'supernet':<40} {'recipe':<24} {'n':>3}  {'shared weights':>14}  {'log P_theta':>11}")
    for r in rankings:
        shared = "n/a" if r.tau_shared_weights is None else f"{r.tau_shared_weights:.2f}"
        theta = "n/a" if r.tau_theta is None else f"{r.tau_theta:.2f}"
        print(f"{Path(r.supernet).name:<40} {r.recipe:<24} {len(r.networks):>3}  {shared:>14}  "
              f"{theta:>11}")
    if unscored:
        print(f"not in any supernet's space: {', '.join(unscored)}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
