"""Measure every block of the FBNet search space on a device and write its latency LUT, or
measure one whole network end to end.

Every unique workload of the space (candidates at each layer shape, stem, head, pool and the
classifier for 10, 100 and 1000 classes) is exported to an ExecuTorch program (XNNPACK by
default), run through the real runtime round-robin over several rounds, and written to the LUT
as it goes (Ctrl-C keeps every finished entry; --resume continues). A per-op breakdown comes
from a separate ETDump run. A few calibration networks then fit how block latencies add up
inside a network (see docs/profiler.md, "Fidelity").

A LUT already at --out is never written over unless asked: --resume continues it, --extend adds
to it, --replace measures a new one beside it and moves it into place once complete.

Examples:
  python -m profiler.run --device host                      # -> runs/luts/host.json (224x224)
  python -m profiler.run --device host --resolution 32      # -> runs/luts/host_32.json
  python -m profiler.run --device host --dtype int8         # -> runs/luts/host_int8.json
  python -m profiler.run --device host --runtime torchscript --resolution 32
  python -m profiler.run --device host --resume             # continue an interrupted build
  python -m profiler.run --device host --include-named      # also every named architecture
  python -m profiler.run --device host --include-named --extend   # add them to runs/luts/host.json
  python -m profiler.run --device host --resolution 32 --out luts/host_32.json --replace
  python -m profiler.run --device host --resolution 32 --extend --cover mobilenet_v2_0.5
  python -m profiler.run --device host --arch fbnet_b --json   # one network end to end
  python -m profiler.run --device s8                        # a phone (needs its backend)
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from fbnet.arch import load_architecture
from fbnet.errors import UserError, cli_entry
from fbnet.lowering import BACKENDS, DTYPES, RUNTIMES, recipe_for
from fbnet.space import SpaceConfig
from profiler.build import BuildSettings, build_lut, default_lut_path
from profiler.calibration import CALIBRATION_NETWORKS, Calibration
from profiler.export import DEFAULT_CACHE
from profiler.jobs import PROGRESS_MODES
from profiler.network import measure_arch
from profiler.settings import (CLOCKS, Settings, add_target_arguments, resolve_clock,
                               target_from_args)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m profiler.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_target_arguments(p)
    p.add_argument("--arch", help="measure this network end to end instead of building a LUT "
                                  "(a named architecture or an arch JSON file)")
    p.add_argument("--resolution", type=int, help="input size (default 224; with --arch the "
                                                  "architecture's own)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--stage-depths", type=_int_list, help="layers per stage, e.g. 1,2,2,2,2,2,1")
    p.add_argument("--stage-widths", type=_int_list,
                   help="channels per stage, e.g. 16,24,32,64,112,184,352")
    p.add_argument("--only", help="measure only the workloads whose keys match these "
                                  "comma-separated globs, e.g. 'FC_*' (a partial LUT)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32")
    p.add_argument("--backend", choices=BACKENDS, default="xnnpack",
                   help="ExecuTorch delegate (portable: the undelegated kernels)")
    p.add_argument("--runtime", choices=RUNTIMES, default="executorch",
                   help="torchscript: legacy TorchScript-lite .ptl programs")
    p.add_argument("--threads", type=int, default=1, help="runtime CPU threads (default 1)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per program per round")
    p.add_argument("--iters", type=int, default=50, help="timed runs per program in all")
    p.add_argument("--rounds", type=int, default=5, help="round-robin rounds (default 5)")
    p.add_argument("--clock", choices=CLOCKS, default="auto",
                   help="wall, or thread_cpu: the runtime thread's CPU time (auto: thread_cpu "
                        "on the host with 1 thread; see docs/profiler.md)")
    p.add_argument("--no-ops", action="store_true", help="skip the per-op (ETDump) breakdown")
    p.add_argument("--calibrate", type=int, default=CALIBRATION_NETWORKS,
                   help="random networks measured to fit the summation (0: no fit)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration networks")
    p.add_argument("--workers", type=int, default=2, help="export processes (default 2)")
    p.add_argument("--chunk", type=int, default=16,
                   help="programs per measuring job; the LUT is saved after each")
    p.add_argument("--passes", type=int, help="sets of jobs each program's rounds are spread "
                   "over, its programs grouped afresh in each, the runs pooled (default: one "
                   "per round; 1: every program in a single job)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="artifact cache folder")
    p.add_argument("--out", type=Path, help="output LUT (default runs/luts/<device>[_variant]"
                   ".json); a LUT already there is refused unless --resume, --extend or "
                   "--replace says what to do with it")
    p.add_argument("--resume", action="store_true", help="continue the LUT in --out")
    p.add_argument("--replace", action="store_true",
                   help="measure a new LUT for --out beside it (<name>.replacement.json) and "
                        "move it over the old one only when complete")
    p.add_argument("--include-named", action="store_true",
                   help="also measure every part of each named architecture at this resolution "
                        "(python -m search.space --list: their own stems, widths and heads)")
    p.add_argument("--cover", nargs="+", default=[], metavar="ARCH",
                   help="also measure every part of these architectures at this resolution "
                        "(e.g. mobilenet_v2_0.5; with --extend, add them to a complete LUT)")
    p.add_argument("--extend", action="store_true",
                   help="add only what the complete LUT in --out lacks, keeping its entries and "
                        "summation fit; its provenance records the addition (command, date, "
                        "keys, machine load)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--progress", choices=PROGRESS_MODES, default="bar",
                   help="bar: progress bars on stderr; lines: a line per tenth of each phase "
                        "on stdout; none")
    p.add_argument("--quiet", action="store_true", help="no progress (--progress none)")
    args = p.parse_args(argv)
    if args.json and args.progress == "lines":
        raise UserError("--progress lines writes to stdout: it cannot be combined with --json")
    for name in ("threads", "warmup", "iters", "rounds", "workers", "chunk"):
        low = 0 if name == "warmup" else 1
        if getattr(args, name) < low:
            raise UserError(f"--{name} must be at least {low}, got {getattr(args, name)}")
    if args.calibrate < 0:
        raise UserError("--calibrate must be 0 or more")
    if args.extend and args.resume:
        raise UserError("--extend adds to a complete LUT, --resume continues an unfinished one: "
                        "give one of them")
    recipe_for(args.dtype, args.backend, args.runtime)  # a one-line error if there is none
    return args


def settings_from(args) -> Settings:
    clock = resolve_clock(args.clock, target_from_args(args).profile.kind, args.runner,
                          args.threads)
    return Settings(args.dtype, args.backend, args.runtime, args.threads, args.warmup,
                    args.iters, args.rounds, ops=not args.no_ops, clock=clock)


def build_settings(args) -> BuildSettings:
    s = settings_from(args)
    target = target_from_args(args)
    space = SpaceConfig.create(args.resolution or 224, width=args.width,
                               stage_depths=args.stage_depths, stage_widths=args.stage_widths)
    command = "python -m profiler.run " + " ".join(sys.argv[1:]) if sys.argv[1:] else \
        "python -m profiler.run"
    return BuildSettings(
        target, space, s, out=args.out or default_lut_path(target.profile.name,
                                                           space.resolution, s),
        cache=args.cache, only=args.only, include_named=args.include_named,
        cover=tuple(args.cover),
        calibration=Calibration(args.calibrate, args.seed), workers=args.workers,
        chunk=args.chunk, passes=args.passes, resume=args.resume, extend=args.extend,
        replace=args.replace,
        progress="none" if args.quiet else args.progress, command=command)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.arch:
        s = settings_from(args)
        arch = load_architecture(args.arch, resolution=args.resolution, width=args.width)
        summary = measure_arch(arch, target_from_args(args), s, args.cache)
        if args.json:
            print(json.dumps(summary, indent=1))
        else:
            print(f"{summary['arch']} @{summary['resolution']} on {summary['device']['name']} "
                  f"({summary['runtime']['name']} {summary['runtime']['backend'] or ''} "
                  f"{summary['runtime']['dtype']}, {summary['runtime']['threads']} thread(s)): "
                  f"median {summary['median_ms']:.3f} ms (p10 {summary['p10_ms']:.3f}, "
                  f"p90 {summary['p90_ms']:.3f}, n={summary['n']})")
            if summary["ops_by_type_ms"]:
                print("per-op (ETDump): " + ", ".join(f"{k} {v:.3f} ms" for k, v in sorted(
                    summary["ops_by_type_ms"].items(), key=lambda kv: -kv[1])))
        return 0
    summary = build_lut(build_settings(args))
    if args.json:
        print(json.dumps(summary, indent=1))
    elif summary.get("complete_already"):
        print(f"{summary['lut']} is complete ({summary['entries']} entries): nothing to resume, "
              f"left as it is; {summary['title']}")
    else:
        w = summary["wall_s"]
        print(f"wrote {summary['lut']}: {summary['entries']} entries ({summary['measured_now']} "
              f"measured now; {summary['exported']} exported, {summary['cached']} from cache) "
              f"in {w['total']:.0f} s (export {w['export']:.0f} s, measure {w['measure']:.0f} s, "
              f"calibrate {w['calibrate']:.0f} s); {summary['title']}")
        print(f"drift of the reference block: {summary['drift']['max_change']:.1%}; summation: "
              f"{summary['summation']['method']} (scale {summary['summation']['scale']:.3f}, "
              f"network offset {summary['summation']['network_offset_ms']:.3f} ms"
              + (f"; fitted at the blocks' speed: x{summary['summation']['speed_ratio']:.3f} "
                 "while the networks ran" if summary['summation']['speed_ratio'] else "") + ")")
        print(stability_line(summary["stability"], summary["drift"]))
    return 0


def stability_line(st: dict, drift: dict) -> str:
    def pct(v):
        return "n/a" if v is None else f"+-{v:.1f}%"

    redone = ", ".join(f"{drift[k]} {what}" for k, what in (
        ("retries", "jobs re-run"), ("rounds_dropped", "rounds dropped"),
        ("rechecked", "jobs re-checked"), ("remeasured", "entries re-measured"),
        ("thermal_flags", "hot jobs")) if drift.get(k))
    return (f"stability: entries {pct(st['entry_ci_median_pct'])} (median 95% interval; p90 "
            f"{pct(st['entry_ci_p90_pct'])}), a network {pct(st['network_ci_pct'])} from "
            f"entry noise, calibration fit RMS {pct(st['calibration_rms_pct'])}; "
            f"{st['unsettled'] or 0} entries still noisy" + (f"; {redone}" if redone else ""))


if __name__ == "__main__":
    sys.exit(main())
