"""Re-anchor a measured LUT to its machine as it runs now, in seconds.

A LUT's entries hold absolute times, and a machine's speed moves: a shared VM by tens of
percent within minutes, a phone with its clocks and heat. What holds across those moves is the
entries' proportions (builds made back to back agree; docs/results.md, "LUT stability"). So
instead of a new build, a few of the LUT's own blocks, spread over its latencies, are timed
again the way the LUT was measured; the median of their ratios (now / LUT) rescales every
entry and the summation's offsets. The LUT records what was done: when, the ratio, its spread
over the blocks, the blocks themselves (measurement.reanchors).

A phone LUT re-anchors on the phone the same way (--device s8, through the same backend).

Examples:
  python -m profiler.reanchor --lut luts/host_32.json --out runs/luts/host_32.json
  python -m profiler.reanchor --lut luts/host_32.json --in-place
  python -m profiler.reanchor --lut runs/luts/s8.json --device s8 --in-place --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fbnet.errors import UserError, cli_entry
from fbnet.lut import load_lut
from fbnet.workloads import ConvBlock, ConvNorm, parse_key
from profiler.build import check_writable
from profiler.export import DEFAULT_CACHE, ArtifactCache
from profiler.jobs import Exporter, Progress, measure_in_passes, pass_share
from profiler.noise import (SPEED_BLOCKS, block_jobs, speed_ratio, spread_over_latency,
                            timed_blocks)
from profiler.settings import Target, add_target_arguments, remeasure_settings, target_from_args


@dataclass(frozen=True)
class ReanchorSettings:
    lut: Path
    out: Path
    target: Target = Target()
    blocks: int = SPEED_BLOCKS
    warmup: int = 5
    iters: int = 30
    rounds: int = 3
    workers: int = 2
    cache: Path = DEFAULT_CACHE
    progress: str = "bar"
    command: str = "python -m profiler.reanchor"

    def check(self) -> None:
        if self.blocks < 3:
            raise UserError(f"--blocks must be at least 3 (a median with a spread), got "
                            f"{self.blocks}")
        if self.iters < 1 or self.rounds < 1 or self.warmup < 0:
            raise UserError("--iters and --rounds must be >= 1, --warmup >= 0")


def anchor_blocks(entries: dict, count: int) -> list[str]:
    """`count` of the LUT's convolution blocks, spread over its latencies: no identity skips
    (they time a call, not the machine's arithmetic), pools or classifiers."""
    keys = [k for k in entries if isinstance(parse_key(k), (ConvBlock, ConvNorm))]
    return spread_over_latency(keys, {k: entries[k].latency_ms for k in keys}, count)


def reanchor(cfg: ReanchorSettings) -> dict:
    """Time the anchor blocks now, write the rescaled LUT to cfg.out; returns the record."""
    cfg.check()
    lut = load_lut(cfg.lut)
    if lut.provenance.kind != "measured":
        raise UserError(f"{cfg.lut} is {lut.provenance.kind}, not measured: it has no machine to "
                        "re-anchor to (re-anchor a LUT built by python -m profiler.run)")
    profile = cfg.target.profile
    if profile.name != lut.device.name:
        raise UserError(f"{cfg.lut} was measured on {lut.device.name}; re-anchor it there "
                        f"(--device {lut.device.name}), not on {profile.name}")
    check_writable(cfg.out)
    s = remeasure_settings(lut, cfg.lut, cfg.target, warmup=cfg.warmup, iters=cfg.iters,
                           rounds=cfg.rounds)
    keys = anchor_blocks(lut.entries, cfg.blocks)
    if len(keys) < 3:
        raise UserError(f"{cfg.lut} has {len(keys)} convolution blocks; re-anchoring needs 3")
    jobs = block_jobs(keys, s)
    started = time.perf_counter()
    artifacts, _ = Exporter(ArtifactCache(cfg.cache), cfg.workers, cfg.progress).export(
        list(jobs.values()), etrecord=False)
    export_s = time.perf_counter() - started
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with cfg.target.open(s, "reanchor") as backend:
        bar = Progress.measuring(len(keys), s.rounds, cfg.progress)
        try:
            pool = measure_in_passes(backend, list(artifacts.values()), s, s.rounds, len(keys),
                                     bar.update)
        finally:
            bar.close()
    measure_s = time.perf_counter() - started
    blocks = timed_blocks(lut, jobs, pool, artifacts, pass_share(s, s.rounds))
    ratio = speed_ratio(blocks)
    ratios = np.asarray([b.ratio for b in blocks])
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": cfg.command, "ratio": ratio,
              "spread": {"min": round(float(ratios.min()), 4),
                         "p25": round(float(np.percentile(ratios, 25)), 4),
                         "p75": round(float(np.percentile(ratios, 75)), 4),
                         "max": round(float(ratios.max()), 4)},
              "blocks": [b.record() for b in blocks], "measure_s": round(measure_s, 1),
              "export_s": round(export_s, 1), "load_avg_1m_start": round(load_before, 2),
              "settings": {"warmup": s.warmup, "iters": s.iters, "rounds": s.rounds,
                           "clock": s.clock}}
    lut.reanchored(ratio, record).save(cfg.out)
    return {"lut": str(cfg.lut), "out": str(cfg.out), **record}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m profiler.reanchor", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", required=True, type=Path, help="the measured LUT to re-anchor")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="write the re-anchored LUT here")
    where.add_argument("--in-place", action="store_true",
                       help="rewrite --lut itself (atomically; its history is kept in "
                            "measurement.reanchors)")
    add_target_arguments(p)
    p.add_argument("--blocks", type=int, default=SPEED_BLOCKS,
                   help=f"LUT blocks to time again (default {SPEED_BLOCKS})")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs per block per round")
    p.add_argument("--iters", type=int, default=30, help="timed runs per block")
    p.add_argument("--rounds", type=int, default=3, help="round-robin rounds, one pass each")
    p.add_argument("--workers", type=int, default=2, help="export processes")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="artifact cache folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    command = "python -m profiler.reanchor " + " ".join(sys.argv[1:] if argv is None else argv)
    cfg = ReanchorSettings(args.lut, args.lut if args.in_place else args.out,
                           target_from_args(args), args.blocks, args.warmup, args.iters,
                           args.rounds, args.workers, args.cache,
                           "none" if args.quiet or args.json else "bar", command)
    record = reanchor(cfg)
    if args.json:
        print(json.dumps(record, indent=1))
        return 0
    spread = record["spread"]
    print(f"{args.lut}: {len(record['blocks'])} of its blocks timed now read x{record['ratio']:.3f} "
          f"of their entries (blocks from x{spread['min']:.3f} to x{spread['max']:.3f}, middle "
          f"half x{spread['p25']:.3f}-x{spread['p75']:.3f}) in {record['measure_s']:.1f} s "
          f"(+ {record['export_s']:.1f} s of export)")
    print(f"wrote {cfg.out}: every entry and the summation's offsets x{record['ratio']:.3f}; "
          "the record is in measurement.reanchors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
