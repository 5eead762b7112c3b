"""Benchmark: are host LUT builds stable under background load?

Builds the host LUT (32x32 by default) three times, each cold (a fresh process and an empty
artifact cache), with a CPU hog busy on the last core for the whole run, validates each build
against networks measured end to end (under the same hog), and prints per build the median
error, Kendall tau and the LUT's own stability figures, then the agreement between the builds:
the fraction of entries within 5% in every pair of builds and across all of them.

    python benchmarks/lut_stability.py                    # 3 cold 32x32 builds beside a hog
    python benchmarks/lut_stability.py --builds 2 --no-hog --samples 10
    python benchmarks/lut_stability.py --json --out-dir runs/lut_stability
    # the measuring alone, quickly: one warm cache, no calibration or validation, and the
    # protocol with one job per block (--passes 1) to compare with the default
    python benchmarks/lut_stability.py --warm --profiler-args "--passes 1"

Targets (docs/results.md, "LUT stability"): every build at median error <= 5% and tau >= 0.9;
>= 90% of entries within 5% across builds. It also prints the agreement once each pair's
common factor (the median ratio of their entries: the machine's speed while each build ran)
is divided out, which separates a machine that changed speed from entries that disagree.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
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
from profiler.calibration import random_architecture  # noqa: E402

TARGETS = {"median_abs_error_pct": 5.0, "kendall_tau": 0.9, "within_5pct": 0.9}


def start_hog() -> subprocess.Popen:
    """A busy loop pinned to the last core."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    os.sched_setaffinity(hog.pid, {max(os.sched_getaffinity(0))})
    return hog


def run_json(cmd: list[str]) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *cmd], cwd=ROOT, capture_output=True,
                          text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"{cmd[0]} failed ({proc.returncode}): {last}")
    return json.loads(proc.stdout), wall


def agreement(paths: list[Path], networks: int = 200) -> dict:
    """Fraction of entries within 5% (relative to the lower value) in each pair of builds and
    across all of them (largest / smallest - 1), and the same for what the builds predict for
    `networks` random networks of the space."""
    luts = [load_lut(p) for p in paths]
    keys = sorted(set.intersection(*(set(lut.entries) for lut in luts)))
    values = np.array([[lut.entries[k].latency_ms for k in keys] for lut in luts])
    pairs, rescaled, scales = {}, {}, {}
    for i, j in itertools.combinations(range(len(luts)), 2):
        low = np.minimum(values[i], values[j])
        rel = np.abs(values[i] - values[j]) / low
        pairs[f"{i + 1}-{j + 1}"] = round(float(np.mean(rel <= 0.05)), 4)
        # the same after dividing out the builds' common factor (the machine's speed while
        # each build ran): what is left is entry-by-entry disagreement
        ratio = values[i] / values[j]
        scales[f"{i + 1}-{j + 1}"] = round(float(np.median(ratio)), 4)
        rescaled[f"{i + 1}-{j + 1}"] = round(float(np.mean(
            np.abs(ratio / np.median(ratio) - 1) <= 0.05)), 4)
    spread = values.max(axis=0) / values.min(axis=0) - 1
    # the ratio form: each entry against the reference block timed in its own jobs, which
    # holds where the machine's speed moved between or during builds
    ratio_keys = [k for k in keys if all(lut.entries[k].ref_ratio for lut in luts)]
    ratio_pairs = {}
    if ratio_keys:
        ratios = np.array([[lut.entries[k].ref_ratio for k in ratio_keys] for lut in luts])
        for i, j in itertools.combinations(range(len(luts)), 2):
            rel = np.abs(ratios[i] - ratios[j]) / np.minimum(ratios[i], ratios[j])
            ratio_pairs[f"{i + 1}-{j + 1}"] = round(float(np.mean(rel <= 0.05)), 4)
    space = luts[0].space
    rng = random.Random(1)
    archs = [random_architecture(space, rng, f"random_{i}") for i in range(networks)]
    priced = np.array([[lut.price(a).total_ms for a in archs] for lut in luts])
    net_spread = priced.max(axis=0) / priced.min(axis=0) - 1
    return {"entries": len(keys), "pairs_within_5pct": pairs, "pair_scale": scales,
            "pairs_within_5pct_rescaled": rescaled,
            "ratio_entries": len(ratio_keys), "pairs_within_5pct_ratio": ratio_pairs,
            "networks": networks,
            "networks_within_5pct": round(float(np.mean(net_spread <= 0.05)), 4),
            "networks_median_spread_pct": round(float(100 * np.median(net_spread)), 2),
            "all_within_5pct": round(float(np.mean(spread <= 0.05)), 4),
            "median_spread_pct": round(float(100 * np.median(spread)), 2),
            "max_spread_pct": round(float(100 * spread.max()), 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--builds", type=int, default=3)
    p.add_argument("--samples", type=int, default=20, help="validation networks per build")
    p.add_argument("--no-hog", action="store_true", help="no CPU hog (a quiet baseline)")
    p.add_argument("--out-dir", type=Path, help="where the LUTs go (default: a temp folder)")
    p.add_argument("--warm", action="store_true", help="measuring alone: one artifact cache "
                   "filled before the builds, no calibration networks, no validation")
    p.add_argument("--profiler-args", default="", help="extra profiler.run arguments, e.g. "
                   "\"--passes 1\"")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.builds < 2:
        sys.exit("--builds must be at least 2 to compare builds")
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="lut-stability-"))
    out.mkdir(parents=True, exist_ok=True)
    # validation networks are not part of a build: one cache for all validations
    validate_cache = out / "validate-cache"
    build_args = ["profiler.run", "--device", "host", "--resolution", str(args.resolution),
                  "--json", "--quiet", *args.profiler_args.split(),
                  *(["--calibrate", "0"] if args.warm else [])]
    if args.warm:  # every export done before the builds, and none of it timed
        warm_lut = out / "warm.json"
        warm_lut.unlink(missing_ok=True)
        run_json([*build_args, "--out", str(warm_lut), "--cache", str(out / "cache")])
    load_before = os.getloadavg()
    hog = None if args.no_hog else start_hog()
    builds = []
    try:
        for i in range(1, args.builds + 1):
            cache = out / ("cache" if args.warm else f"cache{i}")
            if not args.warm:
                shutil.rmtree(cache, ignore_errors=True)  # cold: nothing exported yet
            lut = out / f"build{i}.json"
            lut.unlink(missing_ok=True)
            load = os.getloadavg()[0]
            built, build_s = run_json([*build_args, "--out", str(lut), "--cache", str(cache)])
            build = {"lut": str(lut), "build_s": round(build_s, 1), "load_avg_1m_start": load,
                     "stability": built["stability"], "drift": built["drift"],
                     "scale": built["summation"]["scale"],
                     "calibration_speed_ratio": built["summation"]["speed_ratio"]}
            if not args.warm:
                report, validate_s = run_json([
                    "profiler.validate", "--lut", str(lut), "--samples", str(args.samples),
                    "--seed", "0", "--cache", str(validate_cache), "--json", "--quiet"])
                build.update(validate_s=round(validate_s, 1),
                             median_abs_error_pct=report["median_abs_error_pct"],
                             kendall_tau=report.get("kendall_tau"),
                             mean_error_pct=report["mean_error_pct"],
                             within_10pct=report["within_10pct"], noise=report["noise"],
                             speed_ratio=report["speed_ratio"],
                             at_build_speed=report["at_build_speed"])
                shutil.rmtree(cache, ignore_errors=True)
            builds.append(build)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    agree = agreement([Path(b["lut"]) for b in builds])
    met = {"within_5pct": min(agree["pairs_within_5pct"].values()) >= TARGETS["within_5pct"]}
    if agree["pairs_within_5pct_ratio"]:
        met["within_5pct_ratio"] = min(agree["pairs_within_5pct_ratio"].values()) >= \
            TARGETS["within_5pct"]
    if not args.warm:
        met["median_abs_error_pct"] = all(b["median_abs_error_pct"] <= TARGETS[
            "median_abs_error_pct"] for b in builds)
        met["kendall_tau"] = all((b["kendall_tau"] or 0) >= TARGETS["kendall_tau"]
                                 for b in builds)
    result = {"resolution": args.resolution, "hog": not args.no_hog, "warm": args.warm,
              "profiler_args": args.profiler_args, "cpu_cores": os.cpu_count(),
              "load_avg_before": [round(v, 2) for v in load_before],
              "load_avg_after": [round(v, 2) for v in os.getloadavg()],
              "builds": builds, "agreement": agree, "targets": TARGETS, "met": met}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"host LUT @{args.resolution}, {len(builds)} "
          f"{'warm builds (measuring only)' if args.warm else 'cold builds'}"
          f"{' with ' + args.profiler_args if args.profiler_args else ''}, "
          f"{'a CPU hog on the last core' if hog else 'no hog'}, {os.cpu_count()} cores, "
          f"load avg {result['load_avg_before'][0]} -> {result['load_avg_after'][0]}")
    for i, b in enumerate(builds, 1):
        st = b["stability"]
        fidelity = "" if args.warm else (
            f"median |err| {b['median_abs_error_pct']:.2f}%, Kendall tau {b['kendall_tau']:.3f}, "
            f"mean err {b['mean_error_pct']:+.2f}%, within 10% {b['within_10pct']:.0%}; ")
        print(f"  build {i}: {fidelity}entries +-{st['entry_ci_median_pct']}% (p90 "
              f"+-{st['entry_ci_p90_pct']}%), scale {b['scale']:.3f}; build {b['build_s']:.0f} s "
              f"at load {b['load_avg_1m_start']:.1f}")
        if b.get("calibration_speed_ratio"):
            print(f"           calibration: the blocks beside its networks read "
                  f"x{b['calibration_speed_ratio']:.3f} of their entries")
        if not args.warm:
            at_build = b["at_build_speed"]
            print(f"           validation: the blocks read x{b['speed_ratio']:.3f} of their "
                  f"entries; at the build's speed median |err| "
                  f"{at_build['median_abs_error_pct']:.2f}%, tau {at_build['kendall_tau']:.3f}")
            print(f"           {b['noise']['statement']}")
    pairs = ", ".join(f"{k}: {v:.0%}" for k, v in agree["pairs_within_5pct"].items())
    rescaled = ", ".join(f"{k}: {agree['pairs_within_5pct_rescaled'][k]:.0%} (x{v:.3f})"
                         for k, v in agree["pair_scale"].items())
    print(f"  across builds: entries within 5% per pair {pairs}; all {len(builds)} within 5% "
          f"{agree['all_within_5pct']:.0%} (median spread {agree['median_spread_pct']:.1f}%, max "
          f"{agree['max_spread_pct']:.0f}%, {agree['entries']} entries); "
          f"{agree['networks']} random networks priced within 5% by all builds: "
          f"{agree['networks_within_5pct']:.0%} (median spread "
          f"{agree['networks_median_spread_pct']:.1f}%)")
    print(f"  the same per pair after dividing out the builds' common factor: {rescaled}")
    if agree["pairs_within_5pct_ratio"]:
        ratio = ", ".join(f"{k}: {v:.0%}" for k, v in agree["pairs_within_5pct_ratio"].items())
        print(f"  in the ratio form (each entry against its jobs' reference block, "
              f"{agree['ratio_entries']} entries): within 5% per pair {ratio}")
    print("  targets (>= 90% of entries within 5%; cold: median |err| <= 5%, tau >= 0.9): " +
          ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in met.items()))
    print(f"  LUTs in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
