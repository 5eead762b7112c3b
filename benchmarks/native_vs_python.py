"""How well the native runner's host LUT agrees with the Python-runtime host LUT.

Both runners execute the same .pte programs with the same protocol (docs/bench-protocol.md):
the in-process `executorch.runtime` (`--runner python`) and the C++ `fbnet_bench` built against
the wheel's libraries (`--runner native`, the code that runs on Android phones). A disagreement
is the overhead of the Python binding (or a protocol bug), so this is the check that host LUTs
and phone LUTs measure the same thing.

Builds both LUTs with `python -m profiler.run` unless given, then prints per-entry agreement:
median ratio native/python, share of entries within +-5% and +-10%, Spearman rank correlation,
the median per-call difference and the agreement once it is removed, the ratio of the sums, and
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fbnet.errors import UserError, cli_entry  # noqa: E402
from fbnet.lut import Lut, load_lut  # noqa: E402


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


# The native LUT is built through profiler.backends.native: the Android backend's code path
# (probe, pinning, pushes, the runner over a LocalTransport), which is what a phone LUT goes
# through, so agreement here validates phone measurements, not just the binary.
NATIVE_BUILD = """
import sys
from profiler import run
from profiler.backends import base, native
def create_backend(profile, options):
    if profile.kind == "host" and options.runner == "native":
        return native.create_backend(profile, options)
    return base.create_backend(profile, options)
run.create_backend = create_backend
sys.exit(run.main(sys.argv[1:]))
"""


def build(runner: str, args) -> tuple[Path, float]:
    """Build (or finish) a host LUT with `runner`; returns its path and the wall time."""
    out = args.out / f"host_{args.resolution}_{runner}.json"
    flags = ["--device", "host", "--runner", runner, "--resolution", str(args.resolution),
             "--iters", str(args.iters), "--calibrate", "0", "--no-ops", "--out", str(out)]
    if out.exists():
        flags.append("--resume")
    entry = ["-c", NATIVE_BUILD] if runner == "native" else ["-m", "profiler.run"]
    print(f"$ python -m profiler.run {' '.join(flags)}", file=sys.stderr)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *entry, *flags], cwd=ROOT)
    if proc.returncode != 0:
        raise UserError(f"building the {runner} LUT failed (exit {proc.returncode}); see above")
    return out, time.perf_counter() - start


def _rank(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = float(rank)
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    import numpy as np

    return float(np.corrcoef(_rank(a), _rank(b))[0, 1])


def compare(python: Lut, native: Lut) -> dict:
    import numpy as np

    keys = sorted(set(python.entries) & set(native.entries))
    if not keys:
        raise UserError("the two LUTs share no entries; build them for the same space")
    py = [python.entries[k].latency_ms for k in keys]
    nat = [native.entries[k].latency_ms for k in keys]
    ratio = np.array(nat) / np.maximum(np.array(py), 1e-9)
    off = np.abs(ratio - 1)
    # A constant per-call cost of one runner (e.g. the Python binding around execute) shows
    # as a fixed difference: estimate it, and the agreement once it is removed.
    offset_ms = float(np.median(np.array(py) - np.array(nat)))
    off_corrected = np.abs((np.array(nat) + offset_ms) / np.maximum(np.array(py), 1e-9) - 1)
    worst = sorted(zip(keys, py, nat, ratio), key=lambda r: -abs(r[3] - 1))[:5]
    return {
        "entries": len(keys),
        "median_ratio": round(float(np.median(ratio)), 4),
        "p10_ratio": round(float(np.percentile(ratio, 10)), 4),
        "p90_ratio": round(float(np.percentile(ratio, 90)), 4),
        "within_5pct": round(float(np.mean(off <= 0.05)), 4),
        "within_10pct": round(float(np.mean(off <= 0.10)), 4),
        "spearman": round(spearman(py, nat), 4),
        "per_call_offset_ms": round(offset_ms, 5),
        "within_5pct_after_offset": round(float(np.mean(off_corrected <= 0.05)), 4),
        "within_10pct_after_offset": round(float(np.mean(off_corrected <= 0.10)), 4),
        "sum_ratio": round(sum(nat) / sum(py), 4),
        "python_sum_ms": round(sum(py), 4),
        "native_sum_ms": round(sum(nat), 4),
        "worst": [{"key": k, "python_ms": round(a, 4), "native_ms": round(b, 4),
                   "ratio": round(float(r), 4)} for k, a, b, r in worst],
        "python_lut": str(python.path), "native_lut": str(native.path),
        "python_runtime": python.runtime.__dict__, "native_runtime": native.runtime.__dict__,
    }


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
    print(f"  median ratio native/python {report['median_ratio']:.3f} "
          f"(p10 {report['p10_ratio']:.3f}, p90 {report['p90_ratio']:.3f})")
    print(f"  within +-5%: {report['within_5pct']:.0%}   within +-10%: "
          f"{report['within_10pct']:.0%}   Spearman {report['spearman']:.3f}")
    print(f"  median difference python - native {report['per_call_offset_ms'] * 1000:.1f} us "
          f"per call; with it removed: within +-5% {report['within_5pct_after_offset']:.0%}, "
          f"within +-10% {report['within_10pct_after_offset']:.0%}")
    print(f"  sum of entries: python {report['python_sum_ms']:.3f} ms, native "
          f"{report['native_sum_ms']:.3f} ms (ratio {report['sum_ratio']:.3f})")
    print("  largest disagreements:")
    for w in report["worst"]:
        print(f"    {w['key']:<66} python {w['python_ms']:.4f} native {w['native_ms']:.4f} "
              f"ms  x{w['ratio']:.3f}")
    print(f"LUTs: {python_path} (python), {native_path} (native)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
