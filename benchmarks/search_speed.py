"""Time per training step and peak memory: supernet (soft, sampled) vs one FBNet-B network.

Each configuration runs in its own process so peak memory is its own: on the CPU the process's
peak resident set (ru_maxrss), on a GPU torch.cuda.max_memory_allocated. A step is a weight
step (forward, backward, SGD) on the same input; the supernet also draws per-example masks and
prices them with a LUT-shaped table. For the supernet the last column is a theta step
(forward, backward to theta only, Adam): `--alternate step` runs one of each. Peak memory is
that of the weight steps (they run first). Per process: the median of --steps timed steps after
one warm-up step; per configuration: the fastest of --rounds processes.

Examples:
  python benchmarks/search_speed.py                          # 32x32, batch 32, CPU
  python benchmarks/search_speed.py --resolution 224 --batch-size 8 --steps 2
  python benchmarks/search_speed.py --configs single,sampled-entangled --rounds 3
  python benchmarks/search_speed.py --torch-device cuda --resolution 224 --batch-size 64 --json
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.runs import SearchRun  # noqa: E402

# sampled-entangled: search.run's default; sampled-separate: --boundary separate
CONFIGS = ("single", "sampled-entangled", "sampled-separate", "soft")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved rounds over the configs; the fastest round counts, which "
                        "filters out other processes' load on a shared machine (default 2)")
    p.add_argument("--torch-device", default="cpu", help="where torch runs: cpu, cuda, mps")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (search.run's default: 1)")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    p.add_argument("--convergence", metavar="DIR",
                   help="also report the wall time to convergence of the default search "
                        "(python -m search.run --lut luts/s8.json --out DIR; a finished run in "
                        "DIR is read, not re-run)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def measure(config: str, resolution: int, batch: int, steps: int, device: str,
            threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    from fbnet.arch import named_architecture
    from fbnet.lut import LayerTable
    from fbnet.model import FBNet
    from search.core.loss import LatencyModel, LossConfig, dnas_loss
    from search.core.supernet import SuperNet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    arch = named_architecture("fbnet_b", resolution=resolution, num_classes=10)
    if config == "single":
        model = FBNet(arch).to(dev).to(memory_format=torch.channels_last)
        params = list(model.parameters())
    else:
        mode, _, boundary = config.partition("-")
        model = SuperNet(arch.space, mode=mode, **({"boundary": boundary} if boundary else {}))
        model = model.to(dev)
        params = model.weight_parameters()
        n = arch.space.num_layers
        latency = LatencyModel(LayerTable(1.0, [[float(i + 1) for i in range(9)]] * n)).to(dev)
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, resolution, resolution, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    cfg = LossConfig()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def timed(step) -> list[float]:
        """Seconds of each of `steps` calls of step(), after one untimed warm-up call (the
        first allocates and warms caches)."""
        times = []
        for i in range(steps + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if i:
                times.append(time.perf_counter() - t0)
        return times

    def supernet_loss(theta_grad: bool) -> torch.Tensor:
        masks = model.draw_masks(batch, 5.0, None, None, theta_grad=theta_grad)
        ce = F.cross_entropy(model(x, masks), y, reduction="none")
        return dnas_loss(cfg, ce, latency(masks.weights))

    def weight_step() -> None:
        if config == "single":
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y)
        else:
            loss = supernet_loss(theta_grad=False)
        opt.zero_grad()
        loss.backward()
        opt.step()

    times = timed(weight_step)
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    theta_times = []
    if config != "single":  # a theta step: forward, backward to theta only, Adam
        theta_opt = torch.optim.Adam([model.theta], lr=0.01)
        for p in params:
            p.requires_grad_(False)

        def theta_step() -> None:
            loss = supernet_loss(theta_grad=True)
            theta_opt.zero_grad()
            loss.backward()
            theta_opt.step()

        theta_times = timed(theta_step)
    return {"config": config, "step_s": statistics.median(times),
            "theta_step_s": statistics.median(theta_times) if theta_times else None,
            "peak_mb": peak / 2**20,
            "memory_kind": "cuda max allocated" if dev.type == "cuda" else "process peak RSS",
            "params_m": sum(p.numel() for p in params) / 1e6, "threads": torch.get_num_threads()}


def time_to_convergence(out: Path) -> dict:
    """Seconds of the default search until the first epoch that meets the convergence
    criterion (search/core/convergence.py), from the run's own per-epoch log."""
    run = SearchRun(out)
    if not run.result.is_file():
        subprocess.run([sys.executable, "-m", "search.run", "--lut", "luts/s8.json", "--out",
                        str(out), "--no-progress",
                        *(["--resume"] if run.checkpoint.is_file() else [])],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    rows = [json.loads(line) for line in run.log_jsonl.read_text().splitlines()]
    elapsed, first = 0.0, None
    for row in rows:
        elapsed += row["seconds"]
        if row["converged"] and first is None:
            first = {"epoch": row["epoch"], "seconds": elapsed}
    return {"run": str(out), "epochs": len(rows), "total_s": elapsed, "converged_at": first}


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.resolution, args.batch_size, args.steps,
                                 args.torch_device, args.threads)))
        return 0
    best: dict[str, dict] = {}
    configs = args.configs.split(",")
    for round_ in range(args.rounds):
        for config in configs:
            cmd = [sys.executable, __file__, "--child", config, "--resolution",
                   str(args.resolution), "--batch-size", str(args.batch_size), "--steps",
                   str(args.steps), "--torch-device", args.torch_device, "--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            if config not in best or row["step_s"] < best[config]["step_s"]:
                best[config] = row
            print(f"round {round_ + 1}: {config} {row['step_s']:.3f} s/step", file=sys.stderr)
    rows = [best[c] for c in configs]
    base = next((r for r in rows if r["config"] == "single"), None)
    for r in rows:
        r["step_vs_single"] = r["step_s"] / base["step_s"] if base else None
        r["memory_vs_single"] = r["peak_mb"] / base["peak_mb"] if base else None
        # a search iteration (--alternate step): one weight step, then one theta step
        r["iteration_s"] = r["step_s"] + r["theta_step_s"] \
            if r["theta_step_s"] is not None else None
        r["iteration_vs_single"] = r["iteration_s"] / base["step_s"] \
            if base and r["iteration_s"] is not None else None
    convergence = time_to_convergence(Path(args.convergence)) if args.convergence else None
    if args.json:
        print(json.dumps({"resolution": args.resolution, "batch_size": args.batch_size,
                          "device": args.torch_device, "rows": rows, "convergence": convergence},
                         indent=1))
        return 0
    print(f"FBNet-B space, input {args.resolution}x{args.resolution}, batch {args.batch_size}, "
          f"{args.torch_device}, {rows[0]['threads']} threads, best of {args.rounds} rounds x median of "
          f"{args.steps} steps")
    print(f"{'config':<18} {'s/step':>8} {'x single':>9} {'peak MB':>9} {'x single':>9} "
          f"{'Mparams':>8} {'theta s/step':>13}")
    for r in rows:
        vs = f"{r['step_vs_single']:9.2f}" if base else f"{'':>9}"
        ms = f"{r['memory_vs_single']:9.2f}" if base else f"{'':>9}"
        theta = f"{r['theta_step_s']:13.3f}" if r["theta_step_s"] is not None else f"{'-':>13}"
        print(f"{r['config']:<18} {r['step_s']:8.3f} {vs} {r['peak_mb']:9.0f} {ms} "
              f"{r['params_m']:8.2f} {theta}")
    for r in rows:
        if r["iteration_vs_single"] is not None:
            print(f"a full search iteration of {r['config']} (weight step + theta step): "
                  f"{r['iteration_s']:.3f} s, x{r['iteration_vs_single']:.2f} one network's "
                  "training step")
    print(f"(peak memory: {rows[0]['memory_kind']}; a process baseline of ~300-400 MB for "
          "python + torch is included on the CPU)")
    if convergence:
        at = convergence["converged_at"]
        print(f"default search ({convergence['run']}): "
              + (f"converged after epoch {at['epoch']}, {at['seconds']:.0f} s" if at else
                 "did not converge")
              + f"; {convergence['epochs']} epochs in {convergence['total_s']:.0f} s (the "
              "epochs' own time, without data loading)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
