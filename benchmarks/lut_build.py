"""Benchmark of a full LUT build: wall time cold and warm (export vs measurement split) and
run-to-run agreement of two builds.

    python benchmarks/lut_build.py                       # 224, cold cache in a fresh folder
    python benchmarks/lut_build.py --resolution 32 --out luts/host_32.json
    python benchmarks/lut_build.py --cache .cache/artifacts --keep-cache

Build 1 starts from an empty artifact cache (cold) and writes --out; build 2 reuses that cache
(warm) and writes --out with a `.rebuild` suffix; then the two LUTs are compared entry by entry.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fbnet.lut import load_lut  # noqa: E402


def build(out: Path, cache: Path, resolution: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "profiler.run", "--device", "host", "--resolution",
           str(resolution), "--out", str(out), "--cache", str(cache), "--json", "--quiet", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"build failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1]}")
    summary = json.loads(proc.stdout)
    summary["process_wall_s"] = round(wall, 1)
    return summary


def agreement(a: Path, b: Path) -> dict:
    la, lb = load_lut(a), load_lut(b)
    keys = sorted(set(la.entries) & set(lb.entries))
    rel = np.array([abs(la.entries[k].latency_ms - lb.entries[k].latency_ms)
                    / la.entries[k].latency_ms for k in keys])
    return {"entries": len(keys), "within_5pct": float(np.mean(rel <= 0.05)),
            "within_10pct": float(np.mean(rel <= 0.10)),
            "median_rel_diff_pct": float(100 * np.median(rel)),
            "max_rel_diff_pct": float(100 * rel.max()),
            "network_offset_ms": [la.summation.network_offset_ms, lb.summation.network_offset_ms],
            "scale": [la.summation.scale, lb.summation.scale]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--out", type=Path, help="first build's LUT (default: a temp file)")
    p.add_argument("--cache", type=Path, help="cache folder (default: a fresh temp folder)")
    p.add_argument("--keep-cache", action="store_true", help="do not empty --cache first")
    p.add_argument("--json", action="store_true")
    args, extra = p.parse_known_args()
    tmp = Path(tempfile.mkdtemp(prefix="lut-bench-"))
    cache = args.cache or tmp / "cache"
    if args.cache and not args.keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    out = args.out or tmp / "lut.json"
    rebuild = out.with_suffix(".rebuild.json")
    load = os.getloadavg()
    cold = build(out, cache, args.resolution, extra)
    warm = build(rebuild, cache, args.resolution, extra)
    report = {"resolution": args.resolution, "cpu_cores": os.cpu_count(),
              "load_avg_1m_before": round(load[0], 2),
              "load_avg_1m_after": round(os.getloadavg()[0], 2),
              "cold": {"process_wall_s": cold["process_wall_s"], **cold["wall_s"],
                       "exported": cold["exported"], "stability": cold["stability"]},
              "warm": {"process_wall_s": warm["process_wall_s"], **warm["wall_s"],
                       "exported": warm["exported"]},
              "agreement": agreement(out, rebuild), "lut": str(out), "rebuild": str(rebuild)}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    c, w, a = report["cold"], report["warm"], report["agreement"]
    print(f"LUT build, host fp32 XNNPACK 1 thread, {args.resolution}x{args.resolution}, "
          f"{a['entries']} entries (load avg {report['load_avg_1m_before']} -> "
          f"{report['load_avg_1m_after']} on {report['cpu_cores']} cores)")
    print(f"  cold cache: {c['process_wall_s']:.0f} s (export {c['export']:.0f} s, measure "
          f"{c['measure']:.0f} s, calibrate {c['calibrate']:.0f} s; {c['exported']} exported, "
          "calibration networks included)")
    print(f"  warm cache: {w['process_wall_s']:.0f} s (export {w['export']:.0f} s, measure "
          f"{w['measure']:.0f} s, calibrate {w['calibrate']:.0f} s; {w['exported']} exported)")
    print(f"  run-to-run: {a['within_5pct']:.0%} of entries within 5% "
          f"({a['within_10pct']:.0%} within 10%; median diff {a['median_rel_diff_pct']:.1f}%, "
          f"max {a['max_rel_diff_pct']:.0f}%); scale {a['scale']}, network offset "
          f"{a['network_offset_ms']} ms")
    st = c["stability"]
    print(f"  cold build's stability: entries +-{st['entry_ci_median_pct']}% (median 95% "
          f"interval), a network +-{st['network_ci_pct']}% from entry noise, calibration fit "
          f"RMS {st['calibration_rms_pct']}%")
    print(f"  wrote {out} and {rebuild}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
