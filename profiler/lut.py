"""LUT library tools: import HW-NAS-Bench, inspect, diff, merge and export latency LUTs.

Examples:
  python -m profiler.lut import hwnasbench data/hw-nas-bench/fbnet_cached_metrics.json --out-dir luts/
  python -m profiler.lut show luts/pixel3.json
  python -m profiler.lut show luts/raspi4_32.json --json
  python -m profiler.lut diff luts/pixel3.json luts/raspi4.json --top 10
  python -m profiler.lut merge runs/part1.json runs/part2.json --out luts/host.json
  python -m profiler.lut merge old.json new.json --out both.json --on-conflict last
  python -m profiler.lut to-csv luts/pixel3.json --out pixel3.csv
  python -m profiler.lut to-csv luts/pixel3.json --out pixel3_layers.csv --wide

LUT files are named luts/<device>.json (224x224 input) and luts/<device>_32.json (32x32).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from fbnet.arch import Architecture
from fbnet.errors import UserError, cli_entry
from fbnet.io import atomic_write_text
from fbnet.lut import PROVENANCE_KINDS, Lut, load_lut
from fbnet.metrics import kendall_tau, spearman_rho
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from fbnet.workloads import candidate_workload, fixed_parts, space_workloads
from profiler.estimation.hwnasbench import import_hwnasbench
from fbnet.pricing import DEFAULT_ARCHS, lut_space, price_arch


def layer_grid(lut: Lut, space: SpaceConfig) -> list[list[float]]:
    """[layer][candidate] latency in ms (summation offset applied), one row per searchable layer."""
    return lut.layer_table(space).per_layer_ms


def _fmt_ms(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms:.3f}"


# --- import --------------------------------------------------------------------------------------
def cmd_import(args) -> None:
    if args.source != "hwnasbench":
        raise UserError(f"unknown import source {args.source!r}; supported: hwnasbench")
    devices = args.devices.split(",") if args.devices else None
    imported = import_hwnasbench(args.path, devices)
    out_dir = Path(args.out_dir)
    rows = []
    for item in imported:
        path = out_dir / item.filename
        item.lut.save(path)
        space = lut_space(item.lut)
        # HW-NAS-Bench's published check value is the all-k3_e1 network
        all_k3 = Architecture("all_k3_e1", space, ("k3_e1",) * space.num_layers)
        rows.append({"path": str(path), "device": item.device, "resolution": item.resolution,
                     "entries": len(item.lut.entries),
                     "energy": any(e.extra for e in item.lut.entries.values()),
                     "all_k3_e1_ms": item.lut.price(all_k3).total_ms,
                     "fbnet_b_ms": price_arch(item.lut, "fbnet_b").latency_ms})
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'file':<28} {'entries':>7} {'energy':>6} {'all-k3_e1 ms':>13} {'FBNet-B ms':>11}")
    for r in rows:
        print(f"{r['path']:<28} {r['entries']:>7} {'yes' if r['energy'] else 'no':>6} "
              f"{r['all_k3_e1_ms']:13.4f} {_fmt_ms(r['fbnet_b_ms']):>11}")
    total = sum(r["entries"] for r in rows)
    print(f"wrote {len(rows)} LUTs ({total} entries) to {out_dir}/ from {args.path}; "
          "provenance: imported (HW-NAS-Bench, MIT)")


# --- show ----------------------------------------------------------------------------------------
def _coverage(lut: Lut) -> tuple[SpaceConfig | None, list[str]]:
    if not lut.space:
        return None, []
    space = lut_space(lut)
    return space, lut.missing_keys(w.key for w in space_workloads(space))


def cmd_show(args) -> None:
    lut = load_lut(args.lut)
    space, missing = _coverage(lut)
    grid = layer_grid(lut, space) if space and not missing else None
    archs = [price_arch(lut, a) for a in (args.arch or DEFAULT_ARCHS)] if space else []
    extras = sorted({k for e in lut.entries.values() for k in e.extra})
    with_ops = sum(1 for e in lut.entries.values() if e.ops)
    if args.json:
        print(json.dumps({
            "path": str(lut.path), "title": lut.title, "device": asdict(lut.device),
            "runtime": asdict(lut.runtime), "provenance": asdict(lut.provenance),
            "space": space.to_dict() if space else None, "summation": asdict(lut.summation),
            "created": lut.created, "validations": lut.measurement.validations or [],
            "entries": len(lut.entries), "missing": missing, "extra_metrics": extras,
            "entries_with_ops": with_ops,
            "layers": None if grid is None else [
                {"layer": shape.label, "latency_ms": dict(zip(CANDIDATE_NAMES, row))}
                for shape, row in zip(space.layers(), grid)],
            "architectures": [asdict(a) for a in archs]}, indent=1))
        return
    prov = lut.provenance
    print(f"{lut.path}: {lut.title}")
    print(f"  device:     {_describe(asdict(lut.device))}")
    print(f"  runtime:    {_describe(asdict(lut.runtime))}")
    print(f"  provenance: {prov.kind}" + "".join(
        f"\n    {k}: {_short(v)}" for k, v in prov.details.items()))
    measurement = lut.measurement.to_dict()
    if measurement:
        print(f"  measurement: {_short(measurement)}")
    for record in prov.details.get("additions", []):
        added = f"  added:      {len(record['keys'])} entries on {record['date']} by " \
            f"{record['command']}"
        if "load_avg_1m_start" not in record:  # profiler.estimate --extend: a model, no load
            print(added + f" (priced by {record.get('model', 'the LUT model')})")
            continue
        ratio = addition_slowdown(lut, record)
        print(added + f" (1-minute load {record['load_avg_1m_start']} on "
              f"{record['cpu_count']} cores" + (f"; its reference block read {ratio:.2f}x the "
                                                f"build's" if ratio else "") + ")")
    for r in lut.measurement.reanchors or []:
        print(f"  re-anchored: {r['date']}, x{r['ratio']:.3f} (its {len(r['blocks'])} blocks "
              f"x{r['spread']['min']:.3f}-x{r['spread']['max']:.3f}) by {r['command']}")
    for v in lut.measurement.validations or []:
        print(f"  validated:  {v['date']} on {v['device']}, {v['networks']} networks: median "
              f"|err| {v['median_abs_error_pct']:.2f}%, Kendall tau "
              f"{v.get('kendall_tau', float('nan')):.3f}, targets "
              f"{'met' if v['meets_targets'] else 'NOT met'} (1-minute load "
              f"{v['load_average_1min'][0]} -> {v['load_average_1min'][1]})")
    print(f"  summation:  {lut.summation.method} (per entry -{lut.summation.per_entry_offset_ms} "
          f"ms, network +{lut.summation.network_offset_ms} ms)")
    print(f"  created:    {lut.created} by {lut.tool.get('name')} {lut.tool.get('version')}")
    cov = "no space recorded" if space is None else (
        f"covers its space ({space.resolution}, {space.layout})" if not missing
        else f"MISSING {len(missing)} of its space's {len(space_workloads(space))} workloads, "
             f"e.g. {', '.join(missing[:3])}")
    print(f"  entries:    {len(lut.entries)}, {cov}"
          + (f"; extra metrics: {', '.join(extras)}" if extras else "")
          + (f"; {with_ops} with per-op data" if with_ops else ""))
    if grid is not None:
        print()
        print(f"{'layer':<6} {'input':>12} {'s':>1} " + " ".join(f"{c:>8}" for c in CANDIDATE_NAMES)
              + "   (ms)")
        for shape, row in zip(space.layers(), grid):
            inp = f"{shape.c_in}x{shape.height}x{shape.width}"
            print(f"{shape.label:<6} {inp:>12} {shape.stride:>1} "
                  + " ".join(f"{v:8.3f}" for v in row))
        parts = fixed_parts(space)
        fixed = [("stem", parts.stem.key), ("head", parts.head.key), ("pool", parts.pool.key),
                 ("classifier", parts.classifier.key)]
        print("fixed: " + ", ".join(f"{n} {lut.latency_ms(k):.3f}" for n, k in fixed) + " ms")
    if archs:
        print("networks: " + ", ".join(f"{a.arch} {_fmt_ms(a.latency_ms)}" for a in archs)
              + " ms" + (f"  (n/a: {_lacks(lut)} that network's own blocks)"
                         if any(a.latency_ms is None for a in archs) else ""))


def _lacks(lut: Lut) -> str:
    if lut.provenance.kind == "imported":
        return f"its source, {lut.provenance.details.get('name', 'unknown')}, does not include"
    return "the LUT lacks"


def addition_slowdown(lut: Lut, record: dict) -> float | None:
    """How much slower the reference block read while an addition to `lut` was measured than
    during the build (median over jobs): entries added under other load read slower than the
    rest of the LUT by about this factor. None where either run recorded no reference."""
    build = (lut.measurement.drift or {}).get("medians_ms")
    added = (record.get("drift") or {}).get("medians_ms")
    if not build or not added:
        return None
    return statistics.median(added) / statistics.median(build)


def _describe(info: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in info.items() if v not in (None, {}, []))


def _short(value, limit: int = 110) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- diff ----------------------------------------------------------------------------------------
def cmd_diff(args) -> None:
    a, b = load_lut(args.a), load_lut(args.b)
    common = [k for k in a.entries if k in b.entries]
    only_a = [k for k in a.entries if k not in b.entries]
    only_b = [k for k in b.entries if k not in a.entries]
    rows = []
    for key in common:
        ms_a, ms_b = a.entries[key].latency_ms, b.entries[key].latency_ms
        ratio = ms_b / ms_a if ms_a > 0 else (1.0 if ms_b == 0 else math.inf)
        rows.append({"key": key, "a_ms": ms_a, "b_ms": ms_b, "ratio": ratio})
    finite = [r["ratio"] for r in rows if 0 < r["ratio"] < math.inf]
    stats = {}
    if finite:
        logs = sorted(math.log(r) for r in finite)
        stats = {"geomean_ratio": math.exp(sum(logs) / len(logs)),
                 "median_ratio": math.exp(logs[len(logs) // 2]),
                 "min_ratio": math.exp(logs[0]), "max_ratio": math.exp(logs[-1])}
    if len(rows) >= 3:
        xs, ys = [r["a_ms"] for r in rows], [r["b_ms"] for r in rows]
        stats["spearman"] = spearman_rho(xs, ys)
        stats["kendall"] = kendall_tau(xs, ys)
    # the blocks whose cost moved most relative to the typical ratio
    typical = stats.get("geomean_ratio", 1.0)
    top = sorted((r for r in rows if 0 < r["ratio"] < math.inf),
                 key=lambda r: -abs(math.log(r["ratio"] / typical)))[:args.top]
    meta = {}
    for part in ("device", "runtime", "provenance", "summation", "space"):
        va, vb = _meta(a, part) or {}, _meta(b, part) or {}
        for key in dict.fromkeys([*va, *vb]):
            xa, xb = va.get(key), vb.get(key)
            if isinstance(xa, dict) and isinstance(xb, dict):  # e.g. provenance.details
                for sub in dict.fromkeys([*xa, *xb]):
                    if xa.get(sub) != xb.get(sub):
                        meta[f"{part}.{key}.{sub}"] = {"a": xa.get(sub), "b": xb.get(sub)}
            elif xa != xb:
                meta[f"{part}.{key}"] = {"a": xa, "b": xb}
    archs = []
    if a.space and b.space and a.space == b.space:
        for spec in args.arch or DEFAULT_ARCHS:
            pa, pb = price_arch(a, spec), price_arch(b, spec)
            archs.append({"arch": pa.arch, "a_ms": pa.latency_ms, "b_ms": pb.latency_ms})
    if args.json:
        print(json.dumps({"a": str(a.path), "b": str(b.path), "common": len(common),
                          "only_in_a": only_a, "only_in_b": only_b, "stats": stats,
                          "metadata": meta, "top": top, "architectures": archs,
                          "entries": rows if args.all else None}, indent=1))
        return
    print(f"A = {a.path}: {a.title}")
    print(f"B = {b.path}: {b.title}")
    for part, v in meta.items():
        print(f"  {part}: A {_short(v['a'], 60)} | B {_short(v['b'], 60)}")
    print(f"entries: {len(common)} in both, {len(only_a)} only in A, {len(only_b)} only in B")
    for label, keys in (("only in A", only_a), ("only in B", only_b)):
        if keys:
            print(f"  {label}: {', '.join(keys[:5])}" + (f", ... ({len(keys)})" if len(keys) > 5 else ""))
    if stats:
        print("B/A latency ratio: " + ", ".join(
            f"{k.replace('_ratio', '')} {v:.3f}" for k, v in stats.items() if k.endswith("ratio"))
            + (f"; rank agreement Spearman {stats['spearman']:.3f}, Kendall {stats['kendall']:.3f}"
               if "spearman" in stats else ""))
    if top:
        print(f"\nblocks whose B/A ratio is furthest from the typical {typical:.3f}:")
        print(f"{'key':<64} {'A ms':>9} {'B ms':>9} {'B/A':>7}")
        for r in top:
            print(f"{r['key']:<64} {r['a_ms']:9.4f} {r['b_ms']:9.4f} {r['ratio']:7.3f}")
    if archs:
        print("\nnetworks (ms): " + ", ".join(
            f"{x['arch']} {_fmt_ms(x['a_ms'])} -> {_fmt_ms(x['b_ms'])}" for x in archs))
    if args.all:
        print(f"\n{'key':<64} {'A ms':>9} {'B ms':>9} {'B/A':>7}")
        for r in rows:
            print(f"{r['key']:<64} {r['a_ms']:9.4f} {r['b_ms']:9.4f} {r['ratio']:7.3f}")


def _meta(lut: Lut, part: str):
    value = getattr(lut, part)
    if isinstance(value, SpaceConfig):
        return value.to_dict()
    return value if isinstance(value, dict) or value is None else asdict(value)


# --- merge ---------------------------------------------------------------------------------------
CONFLICT_POLICIES = ("error", "first", "last", "min")


def merge_luts(luts: list[Lut], on_conflict: str = "error", force: bool = False) -> Lut:
    """Union of the entries of LUTs of one device, runtime and space (e.g. partial runs)."""
    first = luts[0]
    for other in luts[1:]:
        if other.space != first.space:
            raise UserError(f"{other.path} and {first.path} were built for different spaces "
                            f"({_space_label(other)} vs {_space_label(first)}); merge LUTs of one space")
        if other.summation != first.summation:
            raise UserError(f"{other.path} and {first.path} use different summation offsets; "
                            "their entries do not add up the same way, so they cannot be merged")
        if not force and (asdict(other.device)["name"] != first.device.name
                          or other.runtime != first.runtime):
            raise UserError(f"{other.path} ({other.title}) and {first.path} ({first.title}) "
                            "differ in device or runtime; merge is for partial LUTs of one "
                            "setup (add --force to merge anyway)")
    merged: dict = {}
    source_of: dict[str, int] = {}
    conflicts = []
    for i, lut in enumerate(luts):
        for key, entry in lut.entries.items():
            if key not in merged:
                merged[key], source_of[key] = entry, i
                continue
            if entry.latency_ms == merged[key].latency_ms:
                continue
            conflicts.append(key)
            if on_conflict == "last" or (on_conflict == "min"
                                         and entry.latency_ms < merged[key].latency_ms):
                merged[key], source_of[key] = entry, i
    if conflicts and on_conflict == "error":
        raise UserError(f"{len(conflicts)} block(s) have different latencies in the inputs: "
                        f"{', '.join(conflicts[:5])}; choose --on-conflict first|last|min")
    kinds = {lut.provenance.kind for lut in luts}
    # the merged table is only as trustworthy as its weakest part
    kind = max(kinds, key=PROVENANCE_KINDS.index)
    details = dict(first.provenance.details)
    details["merged_from"] = [
        {"path": str(lut.path), "kind": lut.provenance.kind, "created": lut.created,
         "entries": len(lut.entries), "entries_used": sum(1 for s in source_of.values() if s == i),
         **({"measurement": lut.measurement.to_dict()} if lut.measurement != first.measurement
            else {})}
        for i, lut in enumerate(luts)]
    details["merge_conflicts"] = {"count": len(conflicts), "policy": on_conflict}
    return Lut(device=first.device, runtime=first.runtime,
               provenance=type(first.provenance)(kind=kind, details=details),
               entries=merged, space=first.space, measurement=first.measurement,
               summation=first.summation)


def _space_label(lut: Lut) -> str:
    return f"resolution {lut.space.resolution}" if lut.space else "no space"


def cmd_merge(args) -> None:
    if len(args.luts) < 2:
        raise UserError("merge needs at least two LUTs: python -m profiler.lut merge A B --out C")
    luts = [load_lut(p) for p in args.luts]
    out = Path(args.out)
    merged = merge_luts(luts, args.on_conflict, args.force)
    merged.save(out)
    space, missing = _coverage(merged)
    info = merged.provenance.details["merge_conflicts"]
    if args.json:
        print(json.dumps({"out": str(out), "entries": len(merged.entries), "missing": missing,
                          "conflicts": info["count"], "provenance": merged.provenance.kind},
                         indent=1))
        return
    cov = "" if space is None else (" and covers its space" if not missing
                                    else f"; still missing {len(missing)} of its space's workloads")
    print(f"wrote {out}: {len(merged.entries)} entries from {len(luts)} LUTs{cov} "
          f"({info['count']} conflicts, policy {info['policy']}; provenance "
          f"{merged.provenance.kind})")


# --- to-csv --------------------------------------------------------------------------------------
def cmd_to_csv(args) -> None:
    lut = load_lut(args.lut)
    out = Path(args.out)
    if args.wide:
        space = lut_space(lut)
        lut.require([w.key for w in space_workloads(space)], "its space")
        rows = []
        for shape, row in zip(space.layers(), layer_grid(lut, space)):
            rows.append({"layer": shape.label, "stage": shape.stage, "height": shape.height,
                         "c_in": shape.c_in, "c_out": shape.c_out, "stride": shape.stride,
                         **{f"{c}_ms": v for c, v in zip(CANDIDATE_NAMES, row)},
                         **{f"{c}_key": candidate_workload(shape, c).key for c in CANDIDATE_NAMES}})
        frame = pd.DataFrame(rows)
    else:
        frame = lut.to_dataframe()
    atomic_write_text(out, frame.to_csv(index=False))
    print(f"wrote {out}: {len(frame)} rows x {len(frame.columns)} columns "
          f"({'one row per layer' if args.wide else 'one row per entry'}) from {lut.path}")


# --- CLI -----------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m profiler.lut", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    imp = sub.add_parser("import", help="import another project's LUTs (hwnasbench)")
    imp.add_argument("source", help="the kind of source; supported: hwnasbench")
    imp.add_argument("path", help="the source file (HW-NAS-Bench's FBNet table as JSON)")
    imp.add_argument("--out-dir", default="luts", help="where to write <device>[_32].json (default luts/)")
    imp.add_argument("--devices", help="comma-separated subset, e.g. pixel3,raspi4 (default: all)")
    imp.add_argument("--json", action="store_true", help="print one JSON list of written files")

    show = sub.add_parser("show", help="metadata, coverage, layer x candidate table, networks")
    show.add_argument("lut")
    show.add_argument("--arch", action="append", help="price this architecture too (repeatable)")
    show.add_argument("--json", action="store_true")

    diff = sub.add_parser("diff", help="compare two LUTs entry by entry")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.add_argument("--top", type=int, default=10, help="how many outlier blocks to list (default 10)")
    diff.add_argument("--all", action="store_true", help="also list every common entry")
    diff.add_argument("--arch", action="append", help="price this architecture too (repeatable)")
    diff.add_argument("--json", action="store_true")

    merge = sub.add_parser("merge", help="union of partial LUTs of one device/runtime/space")
    merge.add_argument("luts", nargs="+", metavar="LUT")
    merge.add_argument("--out", required=True, help="the merged LUT file to write")
    merge.add_argument("--on-conflict", choices=CONFLICT_POLICIES, default="error",
                       help="a block in several inputs with different values: error (default), "
                            "keep the first, the last, or the smallest")
    merge.add_argument("--force", action="store_true",
                       help="merge even if device or runtime metadata differ")
    merge.add_argument("--json", action="store_true")

    csv = sub.add_parser("to-csv", help="export entries (or a layer x candidate table) as CSV")
    csv.add_argument("lut")
    csv.add_argument("--out", required=True, help="the CSV file to write")
    csv.add_argument("--wide", action="store_true",
                     help="one row per searchable layer, one column per candidate (ms)")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    {"import": cmd_import, "show": cmd_show, "diff": cmd_diff, "merge": cmd_merge,
     "to-csv": cmd_to_csv}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
