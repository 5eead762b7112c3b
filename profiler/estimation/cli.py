"""Estimate a LUT for a device out of reach from the per-operator latency model.

The model (profiler.estimation) prices every operator of a block as
max(MACs / throughput, bytes / bandwidth) + overhead. Its coefficients come from:
  s8, iphone_x    the FBNet paper's published end-to-end latencies, regularized toward a prior
                  built from the Pixel 3 fit and the phones' hardware (the paper measured int8
                  Caffe2/QNNPACK on the S8; what ran on the iPhone X is not stated)
  pixel3, raspi4  HW-NAS-Bench's measured blocks (to price spaces HW-NAS-Bench never measured)
A whole-space LUT covers the space, its classifiers and every named architecture's parts at its
resolution (fbnet.coverage); the provenance lists the keys each named architecture brought in.
The LUT's provenance says `estimated` and records the coefficients, the calibration targets
with their residuals and the model's validation on real Pixel 3 / Raspberry Pi 4 blocks.
Replace an estimate with a measurement as soon as you have the phone:
  python -m profiler.run --device s8

Examples:
  python -m profiler.estimate --device s8 --out luts/s8.json
  python -m profiler.estimate --device iphone_x --resolution 32 --out luts/iphone_x_32.json
  python -m profiler.estimate --device s8 --arch fbnet_96 --out runs/fbnet_96_s8.json
  python -m profiler.estimate --device pixel3 --resolution 160 --width 0.75 --out pixel3_160.json
  python -m profiler.estimate --extend luts/s8_32.json --arch mobilenet_v2_0.35 mobilenet_v2_0.5
  python -m profiler.estimate --report            # validation and calibration tables
  python -m profiler.estimate --report --json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from fbnet import published
from fbnet.arch import load_architecture, named_architecture
from fbnet.coverage import lut_workloads
from fbnet.errors import UserError, cli_entry
from fbnet.lut import load_lut
from fbnet.space import SpaceConfig
from profiler.estimation.build import (CROSS_DEVICE_ARCHS, DEVICES, build_model,
                                       extend_estimated_lut, how_to_measure, make_lut)
from profiler.estimation.devices import DEVICE_SPECS, held_out_check
from profiler.estimation.fit import fit_blocks
from profiler.estimation.hwnasbench import MEASURED_DEVICES, measured_tables


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m profiler.estimate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", help=f"device to estimate: {', '.join(DEVICES)}")
    p.add_argument("--resolution", type=int, help="input size of the space (default 224) or, "
                   "with --arch, override the architecture's")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.add_argument("--arch", nargs="+", help="cover exactly this architecture's workloads (a "
                   "named one, e.g. fbnet_96, or an architecture JSON file) instead of a whole "
                   "space; with --extend, one or more architectures")
    p.add_argument("--extend", metavar="LUT", help="add the --arch architectures' missing "
                   "workloads to this estimated LUT, priced by the model it records")
    p.add_argument("--out", help="where to write the LUT (JSON)")
    p.add_argument("--report", action="store_true",
                   help="print the model's validation (HW-NAS-Bench) and calibration tables")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--hw-nas-bench", dest="hw_nas_bench", metavar="PATH",
                   help="HW-NAS-Bench FBNet dump (default: the shipped "
                        "data/hw-nas-bench/fbnet_cached_metrics.json)")
    return p.parse_args(argv)



# --- report ---------------------------------------------------------------------------------

def published_ratio(device: str) -> float:
    """The paper's latency ratio of the two cross-device networks on `device`."""
    a, b = (published.latency_ms(arch, device) for arch in CROSS_DEVICE_ARCHS)
    return a / b


def cmd_report(args) -> None:
    models, all_details = {}, {}
    for i, device in enumerate(DEVICES):
        # the validation is the same for every device: compute it once
        model, details = build_model(device, args.hw_nas_bench, with_validation=(i == 0),
                                     quiet=args.json)
        models[device], all_details[device] = model, details
    validation = all_details[DEVICES[0]]["validation"]
    cross = {d: {a: round(models[d].network_latency_ms(named_architecture(a)), 3)
                 for a in CROSS_DEVICE_ARCHS} for d in DEVICES}
    reference = fit_blocks(measured_tables(args.hw_nas_bench)["pixel3"], "pixel3").model
    held_out = {d: held_out_check(spec, reference, CROSS_DEVICE_ARCHS)
                for d, spec in DEVICE_SPECS.items()}
    if args.json:
        print(json.dumps({"validation": validation,
                          "calibration": {d: all_details[d] for d in DEVICE_SPECS},
                          "models": {d: m.to_dict() for d, m in models.items()},
                          "cross_device_ms": cross,
                          "held_out": {d: [asdict(h) | {"error_pct": round(h.error_pct, 2)}
                                           for h in check] for d, check in held_out.items()}},
                         indent=1))
        return
    print("Validation on real phone data (HW-NAS-Bench blocks; held-out predictions)")
    print(f"{'device':<8} {'split':<24} {'blocks':>6} {'MAPE%':>6} {'<=10%':>6} {'<=20%':>6} "
          f"{'Spearman':>8}")
    for device in MEASURED_DEVICES:
        for s in validation[device]:
            print(f"{device:<8} {s['split']:<24} {s['blocks']:>6} {s['mape_pct']:6.1f} "
                  f"{s['within_10_pct']:6.1f} {s['within_20_pct']:6.1f} {s['spearman']:8.3f}")
        nets = validation[device][0]["networks"]
        print(f"{'':<8} network sums from held-out blocks: " +
              ", ".join(f"{a} {100 * e:+.1f}%" for a, e in nets.items()))
    for device in DEVICE_SPECS:
        d = all_details[device]
        print(f"\nCalibration of {device} ({DEVICE_SPECS[device].description})")
        print(f"{'target':<18} {'published ms':>12} {'model ms':>9} {'residual':>9} {'sigma':>6}")
        for t in d["calibration_targets"]:
            print(f"{t['arch']:<18} {t['published_ms']:12.2f} {t['predicted_ms']:9.2f} "
                  f"{t['residual_pct']:+8.1f}% {t['sigma_pct']:5.0f}%")
        prior = d["prior"]["coefficients"]
        print(f"{'coefficient':<18} {'prior':>12} {'fitted':>9}")
        for c, v in d["device_model"]["coefficients"].items():
            print(f"{c:<18} {prior[c]:12.4g} {v:9.4g}")
    print("\nCross-device check (ms, priced by each device's model)")
    print(f"{'model of':<10} " + " ".join(f"{a:>14}" for a in CROSS_DEVICE_ARCHS) + f" {'ratio':>7}")
    for d in DEVICES:
        a, b = (cross[d][x] for x in CROSS_DEVICE_ARCHS)
        print(f"{d:<10} {a:14.2f} {b:14.2f} {a / b:7.3f}")
    paper = ", ".join(f"{published_ratio(d):.2f} on the {d}" for d in DEVICE_SPECS)
    print(f"\nratio = FBNet-S8 / FBNet-iPhoneX; the paper: {paper}. "
          "The s8 and iphone_x models were calibrated on these latencies: their rows show the "
          "fit, not a prediction.")
    print("\nHeld out: the paper's Table 5 latencies predicted by a model calibrated without them")
    for device, check in held_out.items():
        for h in check:
            basis = (f"calibrated on {h.calibrated_on} other latencies" if h.calibrated_on
                     else "the prior alone (no other latency published)")
            print(f"{device:<10} {h.arch_name:<14} published {h.published_ms:6.2f} ms, predicted "
                  f"{h.predicted_ms:6.2f} ms ({h.error_pct:+.1f}%), {basis}")


# --- main -----------------------------------------------------------------------------------

def cmd_extend(args) -> int:
    path = Path(args.extend)
    if not path.is_file():
        raise UserError(f"--extend {path}: no such LUT; estimate one first (see --help)")
    if not args.arch:
        raise UserError("--extend needs --arch A [B ...]: the architectures to cover")
    resolution = args.resolution or load_lut(path).space.resolution
    archs = [load_architecture(a, resolution=resolution, width=args.width) for a in args.arch]
    record = extend_estimated_lut(path, archs, "python -m profiler.estimate " +
                                  " ".join(sys.argv[1:]))
    if args.json:
        print(json.dumps({"out": str(path), **record}, indent=1))
        return 0
    print(f"wrote {path}: {len(record['keys'])} estimated entries added for "
          f"{', '.join(record['architectures'])}")
    return 0


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report:
        cmd_report(args)
        return 0
    if args.extend:
        return cmd_extend(args)
    if not args.device:
        raise UserError(f"give --device ({', '.join(DEVICES)}) and --out, or --report; see --help")
    if args.device not in DEVICES:
        raise UserError(f"unknown device {args.device!r}; this model estimates "
                        f"{', '.join(DEVICES)} (measure any other device with python -m profiler.run)")
    if not args.out:
        raise UserError("give --out PATH for the LUT, e.g. --out luts/s8.json")
    if args.arch and len(args.arch) > 1:
        raise UserError("give one --arch to estimate a LUT for (several only with --extend)")
    if args.arch:
        arch = load_architecture(args.arch[0], resolution=args.resolution, width=args.width)
        space, workloads = arch.space, list({l.key: l.workload for l in arch.layers()}.values())
    else:
        arch = None
        space = SpaceConfig.create(args.resolution or 224, width=args.width)
        workloads = lut_workloads(space, named=True)
    model, details = build_model(args.device, args.hw_nas_bench, quiet=args.json)
    lut = make_lut(args.device, model, details, workloads, space, arch.name if arch else None)
    out = Path(args.out)
    lut.save(out)
    cross = details["cross_device"]
    summary = {"out": str(out), "device": args.device, "entries": len(lut.entries),
               "resolution": space.resolution, "provenance": "estimated",
               "cross_device_ms": cross}
    if arch:
        summary["arch"] = arch.name
        summary["arch_latency_ms"] = round(lut.price(arch).total_ms, 4)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    what = f"architecture {arch.name}" if arch else f"the whole space at {space.resolution}x{space.resolution}"
    print(f"wrote {out}: {len(lut.entries)} estimated entries for {args.device} covering {what}")
    if arch:
        print(f"{arch.name}: {summary['arch_latency_ms']:.2f} ms on the {args.device} model")
    print(f"at 224: FBNet-S8 {cross['fbnet_s8']:.2f} ms, FBNet-iPhoneX {cross['fbnet_iphonex']:.2f} ms "
          f"on this model; replace with a measurement: {how_to_measure(args.device)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
