"""What makes the full training recipe cheaper on this machine: one training step (forward,
backward, SGD) of a network in each memory layout and compute mode, and the epoch it implies.

Configurations: `nchw` (torch's default layout), `channels_last` (what search.train uses on a
CPU), `bf16` (channels-last under bf16 autocast: fast only on CPUs with bf16 units, e.g.
AVX512-BF16 or AMX), `compile` (channels-last under torch.compile; its compile time is printed
apart). Each runs in this process, one after the other: the median of --steps timed steps after
two warm-up steps, on random 32x32 inputs of the recipe's batch size. Run it on an idle machine.

Examples:
  python benchmarks/training_speed.py                          # MobileNetV2 0.5, batch 128
  python benchmarks/training_speed.py --arch mobilenet_v2_0.35 --configs nchw,channels_last
  python benchmarks/training_speed.py --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fbnet.arch import load_architecture  # noqa: E402
from fbnet.errors import UserError, cli_entry  # noqa: E402
from fbnet.model import FBNet  # noqa: E402
from search.networks.training import RECIPES, to_channels_last  # noqa: E402

CONFIGS = ("nchw", "channels_last", "bf16", "compile")
TRAIN_IMAGES = 60000  # Fashion-MNIST's train split


def step_seconds(config: str, arch, batch_size: int, steps: int) -> tuple[list[float], float]:
    """Timed steps of one configuration, and the seconds spent compiling (compile only)."""
    torch.manual_seed(0)
    model = FBNet(arch)
    channels_last = config != "nchw"
    if channels_last:
        to_channels_last(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(batch_size, arch.space.in_channels, arch.space.resolution,
                    arch.space.resolution)
    y = torch.randint(0, arch.space.num_classes, (batch_size,))
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    compile_s = 0.0
    if config == "compile":
        model = torch.compile(model)

    def step() -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config == "bf16"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - started

    first = step()  # compiles under torch.compile
    if config == "compile":
        compile_s = first
    step()
    return [step() for _ in range(steps)], compile_s


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python benchmarks/training_speed.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mobilenet_v2_0.5", help="network to train (any --arch)")
    p.add_argument("--batch-size", type=int, default=RECIPES["fmnist-full"].batch_size)
    p.add_argument("--steps", type=int, default=4, help="timed steps per configuration")
    p.add_argument("--configs", default=",".join(CONFIGS), help=f"of {', '.join(CONFIGS)}")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise UserError(f"unknown configuration(s) {', '.join(unknown)}; use {', '.join(CONFIGS)}")
    if args.steps < 1:
        raise UserError("--steps must be at least 1")
    torch.set_num_threads(args.threads)
    arch = load_architecture(args.arch, resolution=32, num_classes=10)
    rows = []
    for config in configs:
        times, compile_s = step_seconds(config, arch, args.batch_size, args.steps)
        step_s = statistics.median(times)
        rows.append({"config": config, "step_ms": round(1000 * step_s, 1),
                     "epoch_s": round(step_s * TRAIN_IMAGES / args.batch_size),
                     "compile_s": round(compile_s, 1) if config == "compile" else None})
        if not args.json:
            extra = f"  (first step, compiling: {compile_s:.0f} s)" if config == "compile" else ""
            print(f"{config:<14} {rows[-1]['step_ms']:8.0f} ms/step   60,000 images: "
                  f"{rows[-1]['epoch_s']:5d} s/epoch{extra}", flush=True)
    if args.json:
        print(json.dumps({"arch": arch.name, "batch_size": args.batch_size,
                          "threads": args.threads, "rows": rows}, indent=1))
    else:
        print(f"{arch.name} ({arch.macs / 1e6:.1f} MMACs) at 32x32, batch {args.batch_size}, "
              f"{args.threads} threads, median of {args.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
