"""Inspect the search space and architectures: per-layer shapes, MACs, params, LUT latency.

Examples:
  python -m search.space fbnet_b
  python -m search.space fbnet_b --lut luts/host_fp32.json --json
  python -m search.space runs/s8/arch.json --resolution 32
  python -m search.space --list
  python -m search.space --workloads --resolution 32
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fbnet.arch import NAMED_ARCHITECTURES, load_architecture, to_arch_string
from fbnet.errors import UserError, cli_entry
from fbnet.lut import load_lut
from fbnet.space import SpaceConfig
from fbnet.workloads import space_workloads, workload_kind
from search.core.luts import lut_resolution, sibling_lut


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m search.space", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch", nargs="?", help="a named architecture (see --list) or an architecture JSON file")
    p.add_argument("--resolution", type=int, help="input size (default: the architecture's own)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (default 1.0)")
    p.add_argument("--num-classes", type=int, help="classifier outputs (default: the layout's)")
    p.add_argument("--lut", help="price every layer with this LUT (adds latency_ms)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--list", action="store_true", help="list the named architectures")
    p.add_argument("--workloads", action="store_true",
                   help="list the unique workloads (block keys) of the space at --resolution")
    return p.parse_args(argv)


def _shape(shape) -> str:
    return "x".join(str(s) for s in shape)


def cmd_list(as_json: bool) -> None:
    rows = []
    for name, spec in NAMED_ARCHITECTURES.items():
        arch = load_architecture(name)
        rows.append({"name": name, "resolution": arch.space.resolution, "macs": arch.macs,
                     "params": arch.params, "description": spec.description})
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'name':<14} {'res':>4} {'MMACs':>8} {'Mparams':>8}  description")
    for r in rows:
        print(f"{r['name']:<14} {r['resolution']:>4} {r['macs']/1e6:8.1f} {r['params']/1e6:8.2f}  "
              f"{r['description']}")


def cmd_workloads(args) -> None:
    space = SpaceConfig.create(args.resolution or 224, width=args.width,
                               num_classes=args.num_classes)
    workloads = space_workloads(space)
    if args.json:
        print(json.dumps({"space": space.to_dict(), "count": len(workloads),
                          "workloads": [{"key": w.key, "kind": workload_kind(w), "macs": w.macs,
                                         "params": w.params} for w in workloads]}, indent=1))
        return
    for w in workloads:
        print(f"{w.key:<70} {w.macs/1e6:9.3f} MMACs")
    shapes = len({(l.height, l.c_in, l.c_out, l.stride) for l in space.layers()})
    print(f"{len(workloads)} unique workloads: {shapes} layer shapes x 9 candidates + 4 fixed parts "
          f"(resolution {space.resolution}, {space.layout} layout)")


def cmd_arch(args) -> None:
    arch = load_architecture(args.arch, resolution=args.resolution, width=args.width,
                             num_classes=args.num_classes)
    lut = load_lut(args.lut) if args.lut else None
    res = lut_resolution(lut) if lut else None
    if res is not None and res != arch.space.resolution:
        sibling = sibling_lut(Path(args.lut), arch.space.resolution)
        fix = (f"use {sibling.path}" if sibling else
               f"build one with python -m profiler.run --resolution {arch.space.resolution}")
        raise UserError(f"{args.lut} does not cover {args.arch}: it is a {res}x{res} LUT and "
                        f"the architecture is {arch.space.resolution}x{arch.space.resolution}; "
                        f"{fix} (a search's result.json names the LUT it used)")
    price = lut.price(arch) if lut else None
    latency = {label: ms for label, _, ms in price.per_layer} if price else {}
    layers = [{"layer": l.label, "candidate": l.candidate, "key": l.key,
               "in_shape": list(l.in_shape), "out_shape": list(l.out_shape),
               "macs": l.macs, "params": l.params,
               **({"latency_ms": latency[l.label]} if lut else {})} for l in arch.layers()]
    result = {"name": arch.name, "space": arch.space.to_dict(), "arch_string": to_arch_string(arch),
              "candidates": list(arch.candidates), "macs": arch.macs, "params": arch.params,
              "layers": layers}
    if lut:
        result["latency_ms"] = price.total_ms
        result["lut"] = {"path": str(lut.path), "title": lut.title,
                         "network_offset_ms": price.network_offset_ms}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    lat_head = f" {'ms':>8}" if lut else ""
    print(f"{arch.name}: resolution {arch.space.resolution}, {arch.space.layout} layout")
    print(f"{'layer':<10} {'candidate':<9} {'input':>12} -> {'output':<12} {'MMACs':>8} {'Kparams':>8}{lat_head}")
    for row in layers:
        lat = f" {row['latency_ms']:8.3f}" if lut else ""
        print(f"{row['layer']:<10} {row['candidate']:<9} {_shape(row['in_shape']):>12} -> "
              f"{_shape(row['out_shape']):<12} {row['macs']/1e6:8.2f} {row['params']/1e3:8.1f}{lat}")
    total = f"total: {arch.macs/1e6:.1f} MMACs, {arch.params/1e6:.3f} M params"
    if lut:
        offset = f" (incl. network offset {price.network_offset_ms:.3f} ms)" if price.network_offset_ms else ""
        total += f", {price.total_ms:.3f} ms on {lut.title}{offset}"
    print(total)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        cmd_list(args.json)
    elif args.workloads:
        cmd_workloads(args)
    elif args.arch:
        cmd_arch(args)
    else:
        raise UserError("give an architecture (e.g. fbnet_b), --list or --workloads; see --help")
    return 0


if __name__ == "__main__":
    sys.exit(main())
