"""FBNet DNAS: search the architecture that is fast on the device a LUT describes.

Trains a supernet (9 candidates per layer, theta per layer) on --data under a latency budget,
by default MobileNetV2's price on the LUT (CE + w * max(0, LAT_ms / T - 1): the most accurate
network that costs no more than MobileNetV2 on that device), or with the paper's loss
CE * alpha * log(1 + LAT_ms)^beta (--latency-weight), alternating weights (80% of the train
split) and theta (20%) step by step (--alternate epoch: epoch by epoch, as in the paper), and
writes to --out (default runs/<lut-stem>/):
  arch.json      the argmax architecture (python -m search.space runs/s8/arch.json)
  samples.json   K architectures sampled from P_theta with LUT latencies (samples.json#K)
  theta.json     theta and P_theta per layer
  log.jsonl/csv  one row per epoch: loss, CE, expected latency, tau, top-1, entropy, argmax
  probs.png, curves.png, checkpoint.pt (--resume continues from it)

The space follows the data's input size (digits and CIFAR: 32x32, small layout). A LUT built
for another resolution is swapped for its sibling at the data's resolution when one exists
(luts/s8.json -> luts/s8_32.json, announced); otherwise give --resolution to resize the data.

Examples:
  python -m search.run --lut luts/s8.json                      # Fashion-MNIST, 7-14 min on 2 cores
  python -m search.run --lut luts/iphone_x_32.json --out runs/iphonex
  python -m search.run --lut luts/s8.json --loss target --target-ms 3 --epochs 10
  python -m search.run --lut luts/s8.json --data cifar10:~/data/cifar-10-batches-py \\
      --epochs 90 --warmup-epochs 10 --theta-lr 0.01 --batch-size 192 --torch-device cuda
  torchrun --nproc-per-node 8 -m search.run --lut luts/s8.json --data imagefolder:/data/in100 \\
      --resolution 224 --mode soft --alternate epoch --epochs 90 --warmup-epochs 10 --theta-lr 0.01
  python -m search.run --lut luts/s8.json --resume              # continue after Ctrl-C
  python -m search.run --lut luts/host.json --reanchor --target-ms 4   # 4 ms on this machine now
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from fbnet.arch import Architecture, to_arch_string
from fbnet.errors import UserError, cli_entry
from fbnet.lut import Lut, load_lut
from fbnet.space import CANDIDATE_NAMES
from profiler.export import DEFAULT_CACHE
from profiler.reanchor import ReanchorSettings, reanchor
from profiler.settings import Target, add_target_arguments, target_from_args
from search.core.budget import DEFAULT_TARGET_ARCH, Budget
from search.core.dnas import ALTERNATES, WEIGHT_SAMPLINGS, Dist, TrainConfig
from search.core.loss import LOSSES, LossConfig
from search.core.searching import (DEFAULT_PROXY_WIDTH, DEFAULT_TRAIN_IMAGES, SearchResult,
                                   SearchSettings, check_out_dir, pick_device, run_search)
from search.core.supernet import BOUNDARIES, MODES
from search.data import DATA_SPECS, DEFAULT_DATA
from search.runs import SearchRun


# with LAT in units of the space's mean price: halving it lowers the loss factor 1.9x
DEFAULT_LATENCY_WEIGHT = 2.0


def parse_args(argv):
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m search.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", required=True, help="latency LUT (fbnet-lut/1 JSON) to price blocks by")
    p.add_argument("--data", default=DEFAULT_DATA, help=f"dataset: {', '.join(DATA_SPECS)} "
                   f"(default {DEFAULT_DATA})")
    p.add_argument("--resolution", type=int, help="resize the data to this input size "
                   "(default: the dataset's own, 32 for digits/CIFAR)")
    p.add_argument("--width", type=float, default=1.0,
                   help="channel width multiplier of the space (default 1.0; the LUT must cover it)")
    p.add_argument("--proxy-width", type=float, default=DEFAULT_PROXY_WIDTH,
                   help="train the supernet at this fraction of --width, a proxy for the "
                   "accuracy side; latency is always priced at --width by the LUT (default "
                   f"{DEFAULT_PROXY_WIDTH}; 1 = no proxy)")
    p.add_argument("--out", help="output folder (default runs/<lut-stem>/)")
    g = p.add_argument_group("search")
    g.add_argument("--mode", choices=MODES, default=d.mode,
                   help="soft: every candidate runs (paper); sampled: hard straight-through "
                        "Gumbel over --paths candidates per layer and step (default)")
    g.add_argument("--paths", type=int, default=d.paths,
                   help="sampled mode: candidates per layer and step (default 2)")
    g.add_argument("--boundary", choices=BOUNDARIES, default=d.boundary,
                   help="sampled mode's 6 stage-boundary layers mix all 9 candidates. "
                        "entangled: one weight-shared superblock whose slices are the "
                        "candidates (default; ~2.3 blocks' time, a sampled step at ~1.9x a "
                        "single network's); separate: 9 independent blocks, as in soft mode "
                        "(~5.6 blocks' time, ~3x; a somewhat stronger response to a large "
                        "--latency-weight on short searches)")
    g.add_argument("--alternate", choices=ALTERNATES, default=d.alternate,
                   help="step: one theta step after every weight step, cycling the arch split "
                        "(default; short searches need the theta steps); epoch: a whole epoch "
                        "of w, then one of theta (the paper)")
    g.add_argument("--weight-sampling", choices=WEIGHT_SAMPLINGS, default=d.weight_sampling,
                   help="sampled mode: how weight steps pick each residual layer's paths. "
                        "theta: from P_theta, as theta steps do (default); uniform: uniformly, "
                        "so candidates theta disfavours early keep training (fewer skips "
                        "won by undertrained blocks)")
    g.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    g.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs,
                   help=f"epochs that train weights only (default {d.warmup_epochs})")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"per-rank batch size (default {d.batch_size})")
    g.add_argument("--train-images", type=int, default=DEFAULT_TRAIN_IMAGES,
                   help=f"use at most this many train images (default {DEFAULT_TRAIN_IMAGES}; "
                   "0 = all)")
    g.add_argument("--eval-images", type=int, default=d.eval_images,
                   help=f"val images scored after each epoch (default {d.eval_images}; 0 = all)")
    g.add_argument("--arch-fraction", type=float, default=0.2,
                   help="share of the train split that trains theta (default 0.2)")
    g.add_argument("--lr", type=float, help="weights: SGD lr, cosine (default: the paper's 0.1 "
                   "at batch 192, scaled linearly to --batch-size x ranks)")
    g.add_argument("--theta-lr", type=float, default=d.theta_lr,
                   help=f"theta: Adam lr (default {d.theta_lr}; the paper's 0.01 suits its "
                   "long schedules)")
    g.add_argument("--theta-weight-decay", type=float, default=d.theta_weight_decay,
                   help="theta: decoupled (AdamW) weight decay (5e-4, the paper's coefficient)")
    g.add_argument("--tau0", type=float, default=d.tau0, help="initial Gumbel temperature (5.0)")
    g.add_argument("--tau-final", type=float, default=d.tau_final,
                   help=f"Gumbel temperature at the last theta step (default {d.tau_final}); it "
                   "falls exponentially from --tau0 step by step (the paper's exp(-0.045) per "
                   "epoch over 90 epochs ends at 0.087)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--samples", type=int, default=6,
                   help="architectures to sample from P_theta into samples.json (default 6)")
    g.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    g.add_argument("--threads", type=int, default=d.threads,
                   help="CPU threads per rank (default 1: small convs gain little from more, "
                        "and a busy machine makes them several times slower)")
    g.add_argument("--torch-device", default="auto", help="where torch trains: cpu, cuda, "
                   "cuda:N or auto (default: cuda when present; under torchrun each rank takes "
                   "cuda:LOCAL_RANK)")
    g.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    l = p.add_argument_group("loss")
    l.add_argument("--loss", choices=LOSSES,
                   help="fbnet: CE*alpha*log(1+LAT)^(beta*w); target: CE + w*max(0, LAT/T-1) "
                        "(default: target, at --target-arch " + DEFAULT_TARGET_ARCH + "'s price "
                        "unless another budget or --latency-weight is given; fbnet with "
                        "--latency-weight alone)")
    l.add_argument("--alpha", type=float, default=0.2, help="fbnet loss alpha (0.2)")
    l.add_argument("--beta", type=float, default=0.6, help="fbnet loss beta (0.6)")
    l.add_argument("--latency-weight", type=float,
                   help=f"strength w of the latency term (default {DEFAULT_LATENCY_WEIGHT:g}; "
                        "0 = accuracy only; the paper: 1 with --latency-unit ms)")
    l.add_argument("--target-ms", type=float,
                   help="latency budget in ms on the searched LUT (implies --loss target)")
    l.add_argument("--target-rel", type=float,
                   help="latency budget as a fraction of the space's mean price on the "
                        "searched LUT, the same on every device (implies --loss target)")
    l.add_argument("--target-arch", metavar="NAME",
                   help="latency budget: this network's price on the searched LUT, e.g. "
                        "mobilenet_v2_0.5 (implies --loss target; the default is "
                        f"{DEFAULT_TARGET_ARCH}, where the LUT prices it)")
    l.add_argument("--latency-unit", choices=("reference", "ms"), default="reference",
                   help="fbnet loss: LAT in units of the space's mean price on the searched "
                        "LUT, so a --latency-weight pushes alike on every device (default), or "
                        "in ms as in the paper")
    r = p.add_argument_group("re-anchoring a measured LUT")
    r.add_argument("--reanchor", action="store_true",
                   help="before searching, time 8 of the (resolved) LUT's blocks on --device "
                        "as it runs now (python -m profiler.reanchor, about 30 s) and search "
                        "with the LUT rescaled to it, written to --out/lut.reanchored.json; "
                        "what it changes: ms budgets (--target-ms) mean this machine's ms")
    r.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                   help=f"--reanchor: artifact cache folder (default {DEFAULT_CACHE})")
    add_target_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def reanchoring(out: Path, target: Target, cache: Path, resume: bool, progress: bool):
    """search.run --reanchor's prepare_lut: the resolved LUT re-anchored to `target` now, or,
    on --resume, the one this search already re-anchored (its prices must not move)."""
    def prepare(lut: Lut) -> tuple[Lut, str]:
        path = SearchRun(out).reanchored_lut
        if resume and path.is_file():
            return load_lut(path), f"searching with {path}, re-anchored when the search began"
        out.mkdir(parents=True, exist_ok=True)
        record = reanchor(ReanchorSettings(
            Path(lut.path), path, target, cache=cache, progress="bar" if progress else "none",
            command=f"python -m search.run --reanchor (LUT {lut.path})"))
        spread = record["spread"]
        return load_lut(path), (
            f"{lut.path} re-anchored to {target.device} now: its blocks read "
            f"x{record['ratio']:.3f} of their entries (x{spread['min']:.3f}-x{spread['max']:.3f}) "
            f"in {record['measure_s']:.1f} s; searching with {path}")
    return prepare


# --- summary ---------------------------------------------------------------------------------

def arch_table(arch: Architecture, lut: Lut, probs: list[list[float]] | None = None) -> str:
    price = lut.price(arch)
    lat = {label: ms for label, _, ms in price.per_layer}
    lines = [f"{'layer':<10} {'candidate':<9} {'input':>10} -> {'output':<10} {'MMACs':>7} "
             f"{'Kparams':>8} {'ms':>7} {'P':>5}"]
    for layer in arch.layers():
        p = ""
        if probs is not None and layer.label.startswith("L") and layer.label[1:].isdigit():
            i = int(layer.label[1:]) - 1
            p = f"{probs[i][CANDIDATE_NAMES.index(layer.candidate)]:5.2f}"
        shape_in = "x".join(map(str, layer.in_shape))
        shape_out = "x".join(map(str, layer.out_shape))
        lines.append(f"{layer.label:<10} {layer.candidate:<9} {shape_in:>10} -> {shape_out:<10} "
                     f"{layer.macs / 1e6:7.2f} {layer.params / 1e3:8.1f} {lat[layer.label]:7.3f} "
                     f"{p:>5}")
    lines.append(f"total: {price.total_ms:.3f} ms on {lut.title}, {arch.macs / 1e6:.1f} MMACs, "
                 f"{arch.params / 1e6:.3f} M params")
    return "\n".join(lines)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    budget = Budget(args.target_ms, args.target_rel, args.target_arch)
    budget.check()
    # no budget, loss or weight asked for: the most accurate network at MobileNetV2's price
    default_budget = not budget.given and args.loss is None and args.latency_weight is None
    if default_budget:
        budget = Budget(target_arch=DEFAULT_TARGET_ARCH)
    kind = args.loss or ("target" if budget.given else "fbnet")
    if kind == "target" and not budget.given:
        raise UserError("--loss target needs a budget: --target-ms MS, --target-rel F or "
                        "--target-arch NAME")
    weight = DEFAULT_LATENCY_WEIGHT if args.latency_weight is None else args.latency_weight
    loss_cfg = LossConfig(kind, args.alpha, args.beta, weight)
    if kind == "fbnet":
        loss_cfg.check()
    lut_path = Path(args.lut)
    settings = SearchSettings(
        lut=lut_path, out=Path(args.out) if args.out else Path("runs") / lut_path.stem,
        data=args.data, resolution=args.resolution, width=args.width,
        proxy_width=args.proxy_width, train_images=args.train_images,
        arch_fraction=args.arch_fraction, samples=args.samples, resume=args.resume,
        progress=not args.no_progress)
    settings.check()
    train_cfg = TrainConfig(epochs=args.epochs, warmup_epochs=args.warmup_epochs,
                            batch_size=args.batch_size, mode=args.mode, paths=args.paths,
                            boundary=args.boundary, alternate=args.alternate,
                            weight_sampling=args.weight_sampling,
                            w_lr=args.lr or TrainConfig().w_lr, theta_lr=args.theta_lr,
                            theta_weight_decay=args.theta_weight_decay, tau0=args.tau0,
                            tau_final=args.tau_final, seed=args.seed, workers=args.workers,
                            threads=args.threads, eval_images=args.eval_images)
    train_cfg.check()
    lut = load_lut(lut_path)  # parsed once; a missing or malformed LUT fails before the data
    check_out_dir(settings.out, settings.resume)
    device = pick_device(args.torch_device)
    d = Dist.from_env(device)
    if args.lr is None:
        train_cfg = replace(train_cfg, w_lr=0.1 * args.batch_size * d.world / 192)
    try:
        result = run_search(settings, lut, loss_cfg, train_cfg, device, d, budget,
                            default_budget=default_budget,
                            normalize_latency=args.latency_unit == "reference",
                            announce=None if args.json else print,
                            prepare_lut=reanchoring(settings.out, target_from_args(args),
                                                    args.cache, settings.resume,
                                                    settings.progress)
                            if args.reanchor else None)
    finally:
        d.close()
    if result is None:  # not the main rank
        return 0
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        print_summary(result)
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def print_summary(result: SearchResult) -> None:
    lut = result.lut
    print(f"\nchosen architecture ({to_arch_string(result.arch)}):")
    print(arch_table(result.arch, lut, result.probs))
    skips = sum(c == "skip" for c in result.arch.candidates)
    print(f"{result.latency_ms:.3f} ms, {result.arch.macs / 1e6:.1f} MMACs, "
          f"{skips} of {len(result.arch.candidates)} layers skip"
          + (f"; budget {result.budget}" if result.budget else ""))
    print(f"priced with {lut.path} ({lut.title})"
          + (f": {result.lut_note}" if result.lut_note else ""))
    print(f"search {result.convergence.describe()}")
    print(f"val top-1 with the supernet's weights: this architecture alone "
          f"{_pct(result.val_top1_argmax)}, the supernet (paths drawn from P_theta) "
          f"{_pct(result.val_top1_supernet)}; train it from scratch for its real accuracy "
          f"(python -m search.train --arch {result.out / 'arch.json'})")
    lats = ", ".join(f"{s['latency_ms']:.3f}" for s in result.samples)
    print(f"{len(result.samples)} samples from P_theta: {lats} ms")
    print(f"wrote {result.out}/: {', '.join(SearchRun.FILES)} ({result.epochs} epochs in "
          f"{result.seconds:.0f} s)")


if __name__ == "__main__":
    sys.exit(main())
