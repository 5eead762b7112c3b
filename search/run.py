"""FBNet DNAS: search the architecture that is fast on the device a LUT describes.

Trains a supernet (9 candidates per layer, theta per layer) on --data with the loss
CE * alpha * log(1 + LAT_ms)^beta (or a latency budget), alternating weights (80% of the train
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
  python -m search.run --lut luts/s8.json                      # digits, ~8 min on 2 CPU cores
  python -m search.run --lut luts/iphone_x_32.json --out runs/iphonex
  python -m search.run --lut luts/s8.json --loss target --target-ms 3 --epochs 10
  python -m search.run --lut luts/s8.json --data cifar10:~/data/cifar-10-batches-py \\
      --epochs 90 --warmup-epochs 10 --theta-lr 0.01 --batch-size 192 --device cuda
  torchrun --nproc-per-node 8 -m search.run --lut luts/s8.json --data imagefolder:/data/in100 \\
      --resolution 224 --mode soft --alternate epoch --epochs 90 --warmup-epochs 10 --theta-lr 0.01
  python -m search.run --lut luts/s8.json --resume              # continue after Ctrl-C
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import Subset

from fbnet.arch import Architecture, save_architecture, to_arch_string
from fbnet.errors import UserError, cli_entry
from fbnet.io import atomic_write_json
from fbnet.lut import Lut, load_lut
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from search.data import DATA_SPECS, load_data, split_train
from search.dnas import (ALTERNATES, CHECKPOINT_NAME, Dist, Search, TrainConfig,
                         sample_architectures, write_theta)
from search.loss import LOSSES, LossConfig
from search.plots import plot_curves, plot_probabilities
from search.supernet import BOUNDARIES, MODES


def parse_args(argv):
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m search.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", required=True, help="latency LUT (fbnet-lut/1 JSON) to price blocks by")
    p.add_argument("--data", default="digits", help=f"dataset: {', '.join(DATA_SPECS)} "
                   "(default digits)")
    p.add_argument("--resolution", type=int, help="resize the data to this input size "
                   "(default: the dataset's own, 32 for digits/CIFAR)")
    p.add_argument("--width", type=float, default=1.0,
                   help="channel width multiplier of the space (default 1.0; the LUT must cover it)")
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
    g.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    g.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs,
                   help=f"epochs that train weights only (default {d.warmup_epochs})")
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help=f"per-rank batch size (default {d.batch_size})")
    g.add_argument("--train-images", type=int, default=0,
                   help="use at most this many train images (default 0 = all)")
    g.add_argument("--arch-fraction", type=float, default=0.2,
                   help="share of the train split that trains theta (default 0.2)")
    g.add_argument("--lr", type=float, help="weights: SGD lr, cosine (default: the paper's 0.1 "
                   "at batch 192, scaled linearly to --batch-size x ranks)")
    g.add_argument("--theta-lr", type=float, default=d.theta_lr,
                   help=f"theta: Adam lr (default {d.theta_lr}; the paper's 0.01 suits its "
                   "long schedules)")
    g.add_argument("--theta-weight-decay", type=float, default=d.theta_weight_decay,
                   help="theta: Adam weight decay (5e-4)")
    g.add_argument("--tau0", type=float, default=d.tau0, help="initial Gumbel temperature (5.0)")
    g.add_argument("--tau-decay", type=float, default=d.tau_decay,
                   help="temperature factor per epoch (exp(-0.045) = 0.956)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--samples", type=int, default=6,
                   help="architectures to sample from P_theta into samples.json (default 6)")
    g.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    g.add_argument("--threads", type=int, default=d.threads,
                   help="CPU threads per rank (default 1: small convs gain little from more, "
                        "and a busy machine makes them several times slower)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda "
                   "when present; under torchrun each rank takes cuda:LOCAL_RANK)")
    g.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    l = p.add_argument_group("loss")
    l.add_argument("--loss", choices=LOSSES, default="fbnet",
                   help="fbnet: CE*alpha*log(1+LAT_ms)^(beta*w); target: CE + w*max(0, LAT/T-1)")
    l.add_argument("--alpha", type=float, default=0.2, help="fbnet loss alpha (0.2)")
    l.add_argument("--beta", type=float, default=0.6, help="fbnet loss beta (0.6)")
    l.add_argument("--latency-weight", type=float, default=1.0,
                   help="strength w of the latency term (default 1 = the paper; 0 = accuracy only)")
    l.add_argument("--target-ms", type=float, help="latency budget for --loss target")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


# --- LUT / space resolution ------------------------------------------------------------------

def lut_resolution(lut: Lut) -> int | None:
    return int(lut.space["resolution"]) if lut.space and "resolution" in lut.space else None


def resolve_lut(path: Path, resolution: int) -> tuple[Lut, str | None]:
    """The LUT to search with at `resolution`, and a note when it is a sibling of `path`."""
    lut = load_lut(path)
    res = lut_resolution(lut)
    if res is None or res == resolution:
        return lut, None
    base = re.sub(r"_\d+$", "", path.stem)
    for name in (f"{base}_{resolution}.json", f"{base}.json"):
        sibling = path.with_name(name)
        if sibling != path and sibling.is_file():
            other = load_lut(sibling)
            if lut_resolution(other) == resolution:
                return other, (f"{path} is a {res}x{res} LUT and the data is "
                               f"{resolution}x{resolution}: searching with its sibling {sibling}")
    raise UserError(
        f"{path} is a {res}x{res} LUT but the data is {resolution}x{resolution} and there is no "
        f"{base}_{resolution}.json next to it; give a {resolution}x{resolution} LUT or "
        f"--resolution {res} to resize the data")


def build_space(lut: Lut, resolution: int, num_classes: int, width: float) -> SpaceConfig:
    """The LUT's own macro-architecture at the data's resolution and class count."""
    if lut.space:
        s = SpaceConfig.from_dict(lut.space)
        return SpaceConfig.create(resolution, width=width, stem_channels=s.stem_channels,
                                  stage_widths=s.stage_widths, stage_depths=s.stage_depths,
                                  head_channels=s.head_channels, num_classes=num_classes,
                                  in_channels=s.in_channels)
    return SpaceConfig.create(resolution, width=width, num_classes=num_classes)


def pick_device(spec: str) -> torch.device:
    import os

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {spec}: no CUDA GPU is visible to torch here; use --device cpu")
        if spec == "cuda" and "LOCAL_RANK" in os.environ:
            spec = f"cuda:{os.environ['LOCAL_RANK']}"
    elif spec != "cpu":
        raise UserError(f"unknown --device {spec!r}; use cpu, cuda, cuda:N or auto")
    return torch.device(spec)


def entries_digest(lut: Lut) -> str:
    text = json.dumps({k: e.latency_ms for k, e in sorted(lut.entries.items())})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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
    loss_cfg = LossConfig(args.loss, args.alpha, args.beta, args.latency_weight, args.target_ms)
    loss_cfg.check()
    d_lr = TrainConfig().w_lr
    train_cfg = TrainConfig(epochs=args.epochs, warmup_epochs=args.warmup_epochs,
                            batch_size=args.batch_size, mode=args.mode, paths=args.paths,
                            boundary=args.boundary, alternate=args.alternate,
                            w_lr=args.lr or d_lr, theta_lr=args.theta_lr,
                            theta_weight_decay=args.theta_weight_decay, tau0=args.tau0,
                            tau_decay=args.tau_decay, seed=args.seed, workers=args.workers,
                            threads=args.threads)
    train_cfg.check()
    if not 0 < args.arch_fraction < 1:
        raise UserError(f"--arch-fraction must be between 0 and 1, got {args.arch_fraction}")
    if args.train_images < 0 or args.samples < 0:
        raise UserError("--train-images and --samples must be >= 0")
    lut_path = Path(args.lut)
    out = Path(args.out) if args.out else Path("runs") / lut_path.stem
    load_lut(lut_path)  # a missing or malformed LUT fails before the data loads
    device = pick_device(args.device)
    d = Dist.from_env(device)
    if args.lr is None:
        train_cfg = replace(train_cfg, w_lr=0.1 * args.batch_size * d.world / 192)
    try:
        return run_search(args, loss_cfg, train_cfg, lut_path, out, device, d)
    finally:
        d.close()


def run_search(args, loss_cfg: LossConfig, train_cfg: TrainConfig, lut_path: Path, out: Path,
               device: torch.device, d: Dist) -> int:

    bundle = load_data(args.data, resolution=args.resolution, seed=args.seed)
    lut, note = resolve_lut(lut_path, bundle.resolution)
    space = build_space(lut, bundle.resolution, bundle.num_classes, args.width)
    table = lut.layer_table(space)  # UserError listing missing keys if the LUT lacks the space

    train = bundle.train
    if args.train_images and len(train) > args.train_images:
        keep = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))
        train = Subset(train, keep[:args.train_images].tolist())
    w_data, theta_data = split_train(train, 1 - args.arch_fraction, args.seed)

    fingerprint = {"space": space.to_dict(), "lut": entries_digest(lut), "data": bundle.name,
                   "train_images": len(train), "arch_fraction": args.arch_fraction,
                   "loss": loss_cfg.describe(), "mode": args.mode, "paths": args.paths,
                   "boundary": args.boundary, "alternate": args.alternate,
                   "batch_size": args.batch_size, "world": d.world, "seed": args.seed,
                   "warmup_epochs": args.warmup_epochs, "lr": train_cfg.w_lr,
                   "theta_lr": args.theta_lr}
    search = Search(space, table, loss_cfg, train_cfg, w_data, theta_data, bundle.val, out,
                    device, fingerprint, d, progress=not args.no_progress)
    ckpt = out / CHECKPOINT_NAME
    if args.resume:
        search.load_checkpoint(ckpt)
    elif ckpt.exists():
        raise UserError(f"{out} already holds a search ({ckpt}); pass --resume to continue it "
                        "or choose another --out")
    if d.main and not args.json:
        if note:
            print(f"note: {note}")
        mode = (f"sampled mode ({args.boundary} boundaries)" if args.mode == "sampled"
                else f"{args.mode} mode")
        print(f"search: {bundle.describe()}; {space.layout} layout, {space.num_layers} layers; "
              f"{len(w_data)} images train w, {len(theta_data)} train theta; {mode}; "
              f"loss {loss_cfg.describe()}; LUT {lut.title}; device {device}"
              + (f" x {d.world} ranks" if d.world > 1 else ""))
    started = time.perf_counter()
    history = search.run()
    seconds = time.perf_counter() - started
    if not d.main:
        return 0

    model = search.model
    argmax = Architecture(f"dnas_{lut_path.stem}", space, model.argmax_candidates())
    out.mkdir(parents=True, exist_ok=True)
    save_architecture(argmax, out / "arch.json")
    samples = []
    for k, idx in enumerate(sample_architectures(model.theta, args.samples, args.seed)):
        arch = Architecture(f"dnas_{lut_path.stem}_sample{k}", space,
                            tuple(CANDIDATE_NAMES[i] for i in idx))
        samples.append({"architecture": arch.to_dict(), "latency_ms": lut.price(arch).total_ms,
                        "macs": arch.macs, "params": arch.params,
                        "arch_string": to_arch_string(arch)})
    atomic_write_json(out / "samples.json", {"lut": str(lut.path), "samples": samples})
    write_theta(out / "theta.json", model, search.tau(len(history) - 1))
    title = f"({lut.title}, {bundle.name})"
    plot_probabilities(history, out / "probs.png", title)
    plot_curves(history, out / "curves.png", title)

    price = lut.price(argmax)
    last = history[-1]
    result = {"arch": argmax.to_dict(), "arch_string": to_arch_string(argmax),
              "latency_ms": price.total_ms, "macs": argmax.macs, "params": argmax.params,
              "lut": str(lut.path), "lut_title": lut.title, "data": bundle.name,
              "val_top1_argmax": last["val_top1_argmax"], "theta_entropy": last["theta_entropy"],
              "epochs": len(history), "seconds": seconds, "out": str(out),
              "files": {name: str(out / name) for name in
                        ("arch.json", "samples.json", "theta.json", "log.jsonl", "log.csv",
                         "probs.png", "curves.png", CHECKPOINT_NAME)}}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"\nchosen architecture ({to_arch_string(argmax)}):")
    print(arch_table(argmax, lut, model.probabilities().tolist()))
    val = last["val_top1_argmax"]
    print(f"supernet-weights val top-1 of this architecture: "
          f"{'n/a' if val is None else f'{val:.3f}'} (train it from scratch for its real accuracy)")
    lats = ", ".join(f"{s['latency_ms']:.3f}" for s in samples)
    print(f"{len(samples)} samples from P_theta: {lats} ms")
    print(f"wrote {out}/: arch.json, samples.json, theta.json, log.jsonl, log.csv, probs.png, "
          f"curves.png, {CHECKPOINT_NAME} ({len(history)} epochs in {seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
