"""Train an architecture from scratch (a named FBNet, an arch.json, or a search sample).

Checkpoints after every epoch into --out; --resume continues from the last one. SGD with
momentum, cosine or step learning-rate schedule, label smoothing, weight decay. A named
--recipe sets them all; any flag below changes one field of it (and the recipe's name says so).
  fmnist-full  Fashion-MNIST's default: all 60,000 images, 6 epochs, batch 128, lr 0.1 with a
               warm-up epoch and cosine decay, weight decay 5e-4, label smoothing 0.1
  small        the default for other data: 10 epochs, batch 64, lr 0.05, no warm-up
The reported top-1 is the last epoch's on the whole val split (the best epoch is shown beside
it, never selected).

Examples:
  python -m search.train --arch mobilenet_v2_0.5                   # Fashion-MNIST, fmnist-full
  python -m search.train --arch fbnet_b --epochs 5                 # fmnist-full(epochs=5)
  python -m search.train --arch runs/s8/arch.json --out runs/train/s8 --epochs 30
  python -m search.train --arch runs/s8/samples.json#2 --data cifar10:~/data/cifar-10-batches-py
  python -m search.train --arch fbnet_c --data imagefolder:~/data/imagenet100 --resolution 224 \\
      --batch-size 128 --schedule step --epochs 90
  python -m search.train --arch fbnet_b --out runs/train/fbnet_b --epochs 20 --resume

Writes into --out (default runs/train/<arch>): checkpoint.pt (weights, optimizer, epoch),
arch.json, log.jsonl (one line per epoch) and result.json (final and best top-1, recipe).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from fbnet.arch import load_architecture
from fbnet.errors import UserError, cli_entry
from search.data import DATA_SPECS, DEFAULT_DATA, load_data
from search.networks.training import RECIPES, default_recipe_name, named_recipe, train


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m search.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True,
                   help="named architecture, arch.json, or samples.json#K from a search")
    p.add_argument("--data", default=DEFAULT_DATA,
                   help=f"dataset: {', '.join(DATA_SPECS)} (default {DEFAULT_DATA})")
    p.add_argument("--resolution", type=int, help="input size (default: the dataset's own)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--recipe", help="named training recipe: " + ", ".join(RECIPES) +
                   " (default: fmnist-full on Fashion-MNIST, small otherwise)")
    p.add_argument("--epochs", type=int, help="change the recipe's epochs")
    p.add_argument("--out", help="run folder (default runs/train/<arch name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --out/checkpoint.pt (start fresh if there is none)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (SGD)")
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=("cosine", "step"),
                   help="cosine decay, or step: lr x0.1 at 1/4, 1/2 and 3/4 of the epochs")
    p.add_argument("--warmup-epochs", type=int)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--dropout", type=float, help="before the classifier")
    p.add_argument("--max-steps", type=int, dest="max_steps_per_epoch",
                   help="cap the batches per epoch (quick runs and smoke tests)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-device", default="cpu", help="torch device to train on (cpu, cuda, mps)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return p.parse_args(argv)


def _torch_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown torch device {name!r}; use cpu, cuda or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--torch-device cuda but this torch has no CUDA GPU; use --torch-device cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("--torch-device mps is not available here; use --torch-device cpu")
    return device


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    recipe = named_recipe(args.recipe or default_recipe_name(args.data), epochs=args.epochs,
                          batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay, schedule=args.schedule,
                          warmup_epochs=args.warmup_epochs,
                          label_smoothing=args.label_smoothing, dropout=args.dropout,
                          max_steps_per_epoch=args.max_steps_per_epoch, seed=args.seed)
    device = _torch_device(args.torch_device)
    data = load_data(args.data, resolution=args.resolution, seed=args.seed)
    arch = load_architecture(args.arch, resolution=data.resolution, width=args.width,
                             num_classes=data.num_classes)
    out = Path(args.out or f"runs/train/{arch.name}")
    # progress and per-epoch lines go to stderr when stdout carries JSON
    log = (lambda msg: tqdm.write(msg, file=sys.stderr)) if args.json else tqdm.write
    log(f"training {arch.name} ({arch.macs / 1e6:.1f} MMACs, {arch.params / 1e6:.2f} M params) "
        f"on {data.describe()} with recipe {recipe.name}")
    result = train(arch, data, recipe, out, resume=args.resume, device=device,
                   data_spec=args.data, log=log)
    if args.json:
        print(json.dumps(asdict(result), indent=1))
        return 0
    print(f"\n{arch.name}: val top-1 {result.top1:.2%} (last epoch) after {result.epochs_done} "
          f"epochs of {recipe.name} "
          f"(best {result.best_top1:.2%} at epoch {result.best_epoch}), "
          f"{result.train_seconds:.0f} s of training")
    print(f"wrote {out}/checkpoint.pt, {out}/result.json, {out}/log.jsonl, {out}/arch.json")
    print(f"next: python -m search.export --weights {out}/checkpoint.pt --out {out}/model.pte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
