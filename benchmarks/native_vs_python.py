"""How well the native runner's host LUT agrees with the Python-runtime host LUT.

Both runners execute the same .pte programs with the same protocol (docs/bench-protocol.md):
the in-process `executorch.runtime` (`--runner python`) and the C++ `fbnet_bench` built against
the wheel's libraries (`--runner native`, the code that runs on Android phones). A disagreement
is the overhead of the Python binding (or a protocol bug), so this is the check that host LUTs
and phone LUTs measure the same thing.

Builds both LUTs with `python -m profiler.run` unless given, then prints per-entry agreement,
on the LUT value (median) and on the minimum (robust to other load on a shared machine): median
ratio native/python, share of entries within +-5% and +-10%, Spearman rank correlation, the
median per-call difference and the agreement once it is removed, the ratio of the sums, and
the entries that disagree most.

Examples:
  python benchmarks/native_vs_python.py                        # 32x32 space, both LUTs built
  python benchmarks/native_vs_python.py --resolution 224
  python benchmarks/native_vs_python.py --python-lut luts/host_32.json --native-lut runs/n.json
  python benchmarks/native_vs_python.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fbnet.errors import UserError, cli_entry  # noqa: E402
from fbnet.lut import Lut, load_lut  # noqa: E402
from fbnet.metrics import spearman_rho  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python benchmarks/native_vs_python.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=32, help="space resolution (default 32)")
    p.add_argument("--python-lut", type=Path, help="an existing --runner python host LUT")
    p.add_argument("--native-lut", type=Path, help="an existing --runner native host LUT")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "native_vs_python",
                   help="folder for LUTs this script builds (default runs/native_vs_python)")
    p.add_argument("--iters", type=int, default=50, help="timed runs per entry (default 50)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p.parse_args(argv)


def build(runner: str, args) -> tuple[Path, float]:
    """Build (or finish) a host LUT with `runner`; returns its path and the wall time.

    `--runner native` goes through profiler.backends.native: the Android backend's code path
    (probe, pinning, pushes, the runner over a LocalTransport), which is what a phone LUT goes
    through, so agreement here validates phone measurements, not just the binary."""
    out = args.out / f"host_{args.resolution}_{runner}.json"
    flags = ["--device", "host", "--runner", runner, "--resolution", str(args.resolution),
             "--iters", str(args.iters), "--calibrate", "0", "--no-ops", "--out", str(out)]
    if out.exists():
        flags.append("--resume")
    print(f"$ python -m profiler.run {' '.join(flags)}", file=sys.stderr)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "profiler.run", *flags], cwd=ROOT,
                          stdout=sys.stderr)
    if proc.returncode != 0:
        raise UserError(f"building the {runner} LUT failed (exit {proc.returncode}); see above")
    return out, time.perf_counter() - start


def agreement(py: list[float], nat: list[float]) -> dict:
    """Per-entry agreement of two latency lists (same keys, same order)."""
    a, b = np.array(py), np.array(nat)
    ratio = b / np.maximum(a, 1e-9)
    off = np.abs(ratio - 1)
    # A constant per-call cost of one runner (e.g. the Python binding around execute) shows
    # as a fixed difference: estimate it, and the agreement once it is removed.
    offset_ms = float(np.median(a - b))
    off_corrected = np.abs((b + offset_ms) / np.maximum(a, 1e-9) - 1)
    return {
        "median_ratio": round(float(np.median(ratio)), 4),
        "p10_ratio": round(float(np.percentile(ratio, 10)), 4),
        "p90_ratio": round(float(np.percentile(ratio, 90)), 4),
        "within_5pct": round(float(np.mean(off <= 0.05)), 4),
        "within_10pct": round(float(np.mean(off <= 0.10)), 4),
        "spearman": round(spearman_rho(py, nat), 4),
        "per_call_offset_ms": round(offset_ms, 5),
        "within_5pct_after_offset": round(float(np.mean(off_corrected <= 0.05)), 4),
        "within_10pct_after_offset": round(float(np.mean(off_corrected <= 0.10)), 4),
        "sum_ratio": round(float(b.sum() / a.sum()), 4),
        "python_sum_ms": round(float(a.sum()), 4),
        "native_sum_ms": round(float(b.sum()), 4),
    }


def io_megabytes(key: str) -> tuple[float, float]:
    """fp32 input and output tensor sizes (MB) of a workload."""
    from math import prod

    from fbnet.space import conv_out
    from fbnet.workloads import AvgPool, FullyConnected, parse_key

    w = parse_key(key)
    if isinstance(w, FullyConnected):
        return w.c_in * 4e-6, w.c_out * 4e-6
    if isinstance(w, AvgPool):
        return prod(w.input_shape) * 4e-6, w.c_out * 4e-6
    side = conv_out(w.height, w.stride)
    return prod(w.input_shape) * 4e-6, w.c_out * side * side * 4e-6


def explain_difference(keys: list[str], py: list[float], nat: list[float]) -> dict:
    """Least squares: python - native = fixed + per MB of input + per MB of output. The native
    runner times `execute` alone; the Python binding also converts inputs and outputs."""
    import numpy as np

    X = np.array([[1.0, *io_megabytes(k)] for k in keys])
    y = np.array(py) - np.array(nat)
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    r2 = 1 - float(((y - X @ coef) ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-18))
    return {"fixed_us": round(coef[0] * 1e3, 2), "us_per_mb_in": round(coef[1] * 1e3, 2),
            "us_per_mb_out": round(coef[2] * 1e3, 2), "r2": round(r2, 3)}


def compare(python: Lut, native: Lut) -> dict:
    """Agreement on the LUT value (median) and on the minimum: on a machine shared with other
    load the median picks up preemptions, the minimum is what each runner can do."""
    keys = sorted(set(python.entries) & set(native.entries))
    if not keys:
        raise UserError("the two LUTs share no entries; build them for the same space")
    py = [python.entries[k].latency_ms for k in keys]
    nat = [native.entries[k].latency_ms for k in keys]
    have_min = all(python.entries[k].min_ms is not None and native.entries[k].min_ms is not None
                   for k in keys)
    ratio = [b / max(a, 1e-9) for a, b in zip(py, nat)]
    worst = sorted(zip(keys, py, nat, ratio), key=lambda r: -abs(r[3] - 1))[:5]
    mins = ([python.entries[k].min_ms for k in keys], [native.entries[k].min_ms for k in keys]) \
        if have_min else None
    return {
        "entries": len(keys),
        "median": agreement(py, nat),
        "min": agreement(*mins) if mins else None,
        "difference_model": explain_difference(keys, *(mins or (py, nat))),
        "worst": [{"key": k, "python_ms": round(a, 4), "native_ms": round(b, 4),
                   "ratio": round(float(r), 4)} for k, a, b, r in worst],
        "python_lut": str(python.path), "native_lut": str(native.path),
        "python_runtime": python.runtime.__dict__, "native_runtime": native.runtime.__dict__,
    }


def print_agreement(name: str, r: dict) -> None:
    print(f"  {name}: ratio native/python median {r['median_ratio']:.3f} (p10 "
          f"{r['p10_ratio']:.3f}, p90 {r['p90_ratio']:.3f}); within +-5% {r['within_5pct']:.0%}, "
          f"+-10% {r['within_10pct']:.0%}; Spearman {r['spearman']:.3f}")
    print(f"      python - native {r['per_call_offset_ms'] * 1000:.1f} us per call (median); "
          f"with it removed within +-5% {r['within_5pct_after_offset']:.0%}, +-10% "
          f"{r['within_10pct_after_offset']:.0%}; sums {r['python_sum_ms']:.3f} vs "
          f"{r['native_sum_ms']:.3f} ms (x{r['sum_ratio']:.3f})")


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    wall = {}
    if args.python_lut:
        python_path = args.python_lut
    else:
        python_path, wall["python_s"] = build("python", args)
    if args.native_lut:
        native_path = args.native_lut
    else:
        native_path, wall["native_s"] = build("native", args)
    report = compare(load_lut(python_path), load_lut(native_path))
    report["build_wall_s"] = {k: round(v, 1) for k, v in wall.items()}
    report["load_avg_1m"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"native vs python runner, host LUTs at {args.resolution}px, {report['entries']} "
          f"shared entries (load average {report['load_avg_1m']}):")
    print_agreement("LUT value (median)", report["median"])
    if report["min"]:
        print_agreement("minimum", report["min"])
    d = report["difference_model"]
    print(f"  python - native ~ {d['fixed_us']:.1f} us + {d['us_per_mb_in']:.1f} us/MB of input + "
          f"{d['us_per_mb_out']:.1f} us/MB of output (R^2 {d['r2']:.2f}): the binding's input/"
          "output handling, which the native runner does not time")
    print("  largest disagreements:")
    for w in report["worst"]:
        print(f"    {w['key']:<66} python {w['python_ms']:.4f} native {w['native_ms']:.4f} "
              f"ms  x{w['ratio']:.3f}")
    print(f"LUTs: {python_path} (python), {native_path} (native)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
