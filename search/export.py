"""Export a (trained) network for deployment and check it against PyTorch.

The network is lowered by the recipe of --dtype, --backend and --runtime (fbnet.lowering), the
one profiler.run prices blocks with under the same flags, so the program runs what its LUT
priced. ExecuTorch (default): torch.export -> to_edge_transform_and_lower (XNNPACK, or the
portable kernels) -> .pte; int8 is post-training quantization (XNNPACKQuantizer, symmetric
per-channel, calibrated on --data). TorchScript-lite (.ptl) is the legacy PyTorch Mobile path,
fp32 only.

The written program is then loaded with the real runtime (executorch.runtime / the lite
interpreter) and run on a few inputs; the report gives the largest difference from PyTorch,
relative to the largest |logit|, against a tolerance, and top-1 agreement. For int8 the
reference is PyTorch running the same quantized graph; the quantization error versus fp32 is
reported too. A failed check exits with code 1.

Examples:
  python -m search.export --weights runs/train/fbnet_b/checkpoint.pt --out out/fbnet_b.pte
  python -m search.export --weights runs/train/s8/checkpoint.pt --out out/s8_int8.pte --dtype int8
  python -m search.export --arch fbnet_c --resolution 224 --out out/fbnet_c.pte   # untrained
  python -m search.export --arch fbnet_b --resolution 32 --backend portable --out out/b_portable.pte
  python -m search.export --arch fbnet_b --resolution 32 --runtime torchscript --out out/b.ptl

Writes --out and, next to it, <out>.json with the architecture, the export settings and the
check's numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from fbnet.errors import cli_entry
from fbnet.io import atomic_write_json
from fbnet.lowering import BACKENDS, DEFAULT_BACKEND, DTYPES, RUNTIMES, recipe_for
from search.networks.exporting import quiet_logs, export, load_model


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m search.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", help="named architecture, arch.json or samples.json#K (optional with "
                   "a search.train checkpoint, which records its architecture)")
    p.add_argument("--weights", help="search.train checkpoint.pt, or a state_dict saved with "
                   "torch.save (default: untrained weights, fine for latency only)")
    p.add_argument("--out", required=True, help="output file: .pte (executorch) or .ptl (torchscript)")
    p.add_argument("--dtype", choices=DTYPES, default="fp32")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="ExecuTorch delegate (portable: the undelegated kernels)")
    p.add_argument("--runtime", choices=RUNTIMES, default="executorch",
                   help="torchscript: legacy TorchScript-lite .ptl programs")
    p.add_argument("--data", help="data spec for int8 calibration and the check's inputs "
                   "(default: the checkpoint's training data; random inputs for fp32 otherwise)")
    p.add_argument("--resolution", type=int, help="input size (default: the architecture's own)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--num-classes", type=int, help="classifier outputs (default: the layout's)")
    p.add_argument("--calibration-samples", type=int, default=64,
                   help="images used to calibrate int8 (default 64)")
    p.add_argument("--check-inputs", type=int, default=8, help="inputs the check runs (default 8)")
    p.add_argument("--tolerance", type=float,
                   help="allowed max |diff| / max |logit| (default 1e-3 fp32, 0.1 int8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    recipe = recipe_for(args.dtype, args.backend, args.runtime)
    quiet_logs()
    model, trained_on = load_model(args.arch, args.weights, resolution=args.resolution,
                                   width=args.width, num_classes=args.num_classes)
    data_spec = args.data or trained_on
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    if args.weights is None:
        log("note: no --weights; exporting untrained weights (right for latency, not accuracy)")
    report = export(model, Path(args.out), recipe, data_spec=data_spec,
                    calibration_samples=args.calibration_samples, check_inputs=args.check_inputs,
                    tolerance=args.tolerance, seed=args.seed, weights=args.weights, log=log)
    report_path = Path(f"{args.out}.json")
    atomic_write_json(report_path, asdict(report))
    c = report.check
    if args.json:
        print(json.dumps(asdict(report), indent=1))
    else:
        print(f"wrote {report.out} ({report.size_bytes / 1e6:.2f} MB, {report.runtime}"
              f"{'/' + report.backend if report.backend else ''}, {report.dtype}) in "
              f"{report.export_seconds:.0f} s; report in {report_path}")
        print(f"check on {c.inputs} inputs vs {c.reference}: max |diff| {c.max_abs_diff:.3g} = "
              f"{c.max_rel_diff:.3g} of max |logit| (tolerance {c.tolerance:g}), top-1 agreement "
              f"{c.top1_agreement:.0%} -> {'OK' if c.passed else 'FAILED'}")
        if c.vs_fp32_max_rel_diff is not None:
            print(f"int8 vs fp32 PyTorch: max |diff| {c.vs_fp32_max_rel_diff:.3g} of max |logit|, "
                  f"top-1 agreement {c.vs_fp32_top1_agreement:.0%}")
    if not c.passed:
        print(f"error: the exported program differs from PyTorch by {c.max_rel_diff:.3g} of max "
              f"|logit| (> tolerance {c.tolerance:g}); the file is kept for inspection",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
