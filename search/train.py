"""Train an architecture from scratch (a named FBNet, an arch.json, or a search sample).

Checkpoints after every epoch into --out; --resume continues from the last one. SGD with
momentum, cosine or step learning-rate schedule, label smoothing, weight decay: the FBNet
recipe for final networks (lr 0.1, batch 256, weight decay 4e-5, step x0.1 at 1/4, 2/4, 3/4)
scaled down by default to small data.

Examples:
  python -m search.train --arch fbnet_b --epochs 5                 # Fashion-MNIST, 32x32
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
from search.training import Recipe, train


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m search.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", required=True,
                   help="named architecture, arch.json, or samples.json#K from a search")
    p.add_argument("--data", default=DEFAULT_DATA,
                   help=f"dataset: {', '.join(DATA_SPECS)} (default {DEFAULT_DATA})")
    p.add_argument("--resolution", type=int, help="input size (default: the dataset's own)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--epochs", type=int, default=Recipe.epochs)
    p.add_argument("--out", help="run folder (default runs/train/<arch name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from --out/checkpoint.pt (start fresh if there is none)")
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size)
    p.add_argument("--lr", type=float, default=Recipe.lr, help="peak learning rate (SGD)")
    p.add_argument("--momentum", type=float, default=Recipe.momentum)
    p.add_argument("--weight-decay", type=float, default=Recipe.weight_decay)
    p.add_argument("--schedule", choices=("cosine", "step"), default=Recipe.schedule,
                   help="cosine decay, or step: lr x0.1 at 1/4, 1/2 and 3/4 of the epochs")
    p.add_argument("--warmup-epochs", type=int, default=Recipe.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=Recipe.label_smoothing)
    p.add_argument("--dropout", type=float, default=Recipe.dropout, help="before the classifier")
    p.add_argument("--max-steps", type=int, dest="max_steps_per_epoch",
                   help="cap the batches per epoch (quick runs and smoke tests)")
    p.add_argument("--seed", type=int, default=Recipe.seed)
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
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    momentum=args.momentum, weight_decay=args.weight_decay,
                    schedule=args.schedule, warmup_epochs=args.warmup_epochs,
                    label_smoothing=args.label_smoothing, dropout=args.dropout,
                    max_steps_per_epoch=args.max_steps_per_epoch, seed=args.seed)
    recipe.check()
    device = _torch_device(args.torch_device)
    data = load_data(args.data, resolution=args.resolution, seed=args.seed)
    arch = load_architecture(args.arch, resolution=data.resolution, width=args.width,
                             num_classes=data.num_classes)
    out = Path(args.out or f"runs/train/{arch.name}")
    # progress and per-epoch lines go to stderr when stdout carries JSON
    log = (lambda msg: tqdm.write(msg, file=sys.stderr)) if args.json else tqdm.write
    log(f"training {arch.name} ({arch.macs / 1e6:.1f} MMACs, {arch.params / 1e6:.2f} M params) "
        f"on {data.describe()}")
    result = train(arch, data, recipe, out, resume=args.resume, device=device,
                   data_spec=args.data, log=log)
    if args.json:
        print(json.dumps(asdict(result), indent=1))
        return 0
    print(f"\n{arch.name}: val top-1 {result.top1:.2%} after {result.epochs_done} epochs "
          f"(best {result.best_top1:.2%} at epoch {result.best_epoch}), "
          f"{result.train_seconds:.0f} s of training")
    print(f"wrote {out}/checkpoint.pt, {out}/result.json, {out}/log.jsonl, {out}/arch.json")
    print(f"next: python -m search.export --weights {out}/checkpoint.pt --out {out}/model.pte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
