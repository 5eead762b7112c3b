"""Measuring on a busy or warming device: settle it first, run a job again when a burst of
load or heat hit it, drop rounds that were slowed, re-check jobs once the build's best
reference is known, and measure entries whose medians are still uncertain in more jobs.

Every job carries a reference block; its median is the build's drift record (`drift`, a dict
saved in the LUT), where the counts of everything re-measured go too. Whole networks timed
after the blocks (the calibration, a validation) time a few of the LUT's blocks beside them,
whose ratio to their entries is the machine's speed then against the blocks' (`speed_ratio`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from fbnet.arch import Architecture
from fbnet.lut import Lut, LutEntry
from fbnet.workloads import Skip, parse_key
from profiler.backends.base import Backend
from profiler.export import Artifact, ExportJob
from profiler.jobs import (ROUND_ABOVE, RunPool, export_job, measured_entry, median, run_job,
                           run_programs)
from profiler.protocol import BenchResult, ProgramResult
from profiler.settings import Settings

RETRY_ABOVE = 0.25  # re-measure a job whose reference block is this much slower than the best
RETRIES = 3  # bound on the extra jobs of each kind of re-measurement
DISTURBED = 2.0  # an entry whose median is this many times its fastest run is re-measured
NOISY_CI = 0.03  # ... and one whose median's 95% interval is wider than +-3% of it
NOISY_MIN_MS = 0.0005  # ... and than +-0.5 us (identity skips take a few us)
SETTLE_K, SETTLE_AGREE, SETTLE_JOBS = 3, 0.03, 20  # steady: last 3 medians within 3%, <= 20 jobs
THERMAL_RISE_C = 10.0  # a job that leaves the device this much warmer than at the start ...
THERMAL_PAUSE_S = 30.0  # ... is followed by this pause and measured again
# The LUT's blocks timed again beside networks to read the machine's speed against the
# blocks': spread over their latencies, so one block's noise cannot set the ratio.
SPEED_BLOCKS = 8


def settle(backend: Backend, ref: Artifact, s: Settings, drift: dict) -> None:
    """Run the reference block alone until the device is in a steady state (clocks ramped up,
    caches and runtime warm): until its last SETTLE_K medians agree within SETTLE_AGREE, at
    most SETTLE_JOBS jobs. Without it the first job of a build read its reference 30-50% above
    the later ones. Its medians are not the drift floor: alone, a block runs with hotter
    caches than among a job's other programs."""
    medians: list[float] = []
    for _ in range(SETTLE_JOBS):
        medians.append(median(run_programs(backend, [ref], s, etdump=False)
                              [ref.job.key].latencies_ms))
        last = medians[-SETTLE_K:]
        if len(last) == SETTLE_K and max(last) <= min(last) * (1 + SETTLE_AGREE):
            break
    drift["settle_ms"] = [round(m, 6) for m in medians]
    drift["settled"] = len(medians) >= SETTLE_K and \
        max(medians[-SETTLE_K:]) <= min(medians[-SETTLE_K:]) * (1 + SETTLE_AGREE)


def thermal_rise_c(result: BenchResult, baseline_c: dict) -> float:
    """How much warmer the device was after a job than when the build started (0 where the
    device reports no temperatures, e.g. the host)."""
    after = result.device.get("thermal_after_c") or {}
    rises = [after[z] - baseline_c[z] for z in after if z in baseline_c]
    return max(rises, default=0.0)


def drop_rounds(result: ProgramResult, bad: set[int]) -> None:
    result.rounds = [r for i, r in enumerate(result.rounds) if i not in bad]
    result.latencies_ms = [ms for r in result.rounds for ms in r]


def measure_chunk(backend: Backend, batch: list[Artifact], ref_key: str, s: Settings,
                  drift: dict, thermal_baseline_c: dict | None = None):
    """Run one job and defend it against other load and heat, up to RETRIES extra jobs:

    - the whole job again while its reference block is more than RETRY_ABOVE slower than the
      best the build has seen (a burst of load hit the whole job), or while the device is
      THERMAL_RISE_C warmer than at the start (after a THERMAL_PAUSE_S pause to cool down);
    - single rounds whose reference median is more than ROUND_ABOVE above that best are
      dropped from every program and measured again in a make-up job.

    Returns (results by key, the kept reference median); counts go to `drift`."""
    best = None
    ref_floor = min(drift.get("medians_ms", []), default=None)
    attempts = 0
    while True:
        attempts += 1
        result = run_job(backend, batch, s)
        results = result.by_id()
        ref_ms = median(results[ref_key].latencies_ms)
        rise = thermal_rise_c(result, thermal_baseline_c or {})
        hot = rise > THERMAL_RISE_C
        if hot:
            drift["thermal_flags"] = drift.get("thermal_flags", 0) + 1
            drift["max_thermal_rise_c"] = round(max(rise, drift.get("max_thermal_rise_c", 0)), 1)
        if not hot and (best is None or ref_ms < best[1]):
            best = (results, ref_ms)
        floor = min(x for x in (ref_floor, ref_ms, best and best[1]) if x is not None)
        if attempts > RETRIES or (best is not None and best[1] <= floor * (1 + RETRY_ABOVE)):
            break
        drift["retries"] = drift.get("retries", 0) + 1
        if hot:
            time.sleep(THERMAL_PAUSE_S)
    if best is None:  # hot every time: keep the last attempt, flagged above
        best = (results, ref_ms)
    results, ref_ms = best
    floor = min(x for x in (ref_floor, ref_ms) if x is not None)
    for _ in range(RETRIES):
        ref_rounds = results[ref_key].rounds
        bad = {i for i, r in enumerate(ref_rounds) if r and median(r) > floor * (1 + ROUND_ABOVE)}
        if not bad or len(bad) == len(ref_rounds):
            break
        drift["rounds_dropped"] = drift.get("rounds_dropped", 0) + len(bad)
        for res in results.values():
            drop_rounds(res, bad)
        per_round = math.ceil(s.iters / s.rounds)
        makeup = run_programs(backend, batch, replace(s, rounds=len(bad),
                                                      iters=per_round * len(bad)), etdump=False)
        for key, res in results.items():
            res.rounds += makeup[key].rounds
            res.latencies_ms = [ms for r in res.rounds for ms in r]
    return results, median(results[ref_key].latencies_ms)


def measure_part(backend: Backend, part: list[str], artifacts, ref_key: str, s: Settings,
                 drift: dict, thermal_c: dict):
    """`measure_chunk` of the programs `part` names, with the reference block added."""
    batch = [artifacts[k] for k in part]
    if ref_key not in part:
        batch.append(artifacts[ref_key])
    return measure_chunk(backend, batch, ref_key, s, drift, thermal_c)


def recheck_drift(backend: Backend, measured: list[tuple[list[str], int, str]],
                  pool: RunPool, artifacts, ref_key: str, s: Settings, drift: dict,
                  thermal_c: dict, on_update) -> None:
    """Once every job has run, the best reference median of the whole build is known: jobs
    (`measured`: the keys, the index of the job's reference median and the job's label in
    `pool`) whose reference read over ROUND_ABOVE above it (the first jobs of a build that had
    not yet reached a steady state, a stretch of steady other load) are measured again, each
    at most RETRIES times, keeping the attempt with the faster reference. `on_update(keys)`
    follows each replacement (the build remakes those entries and saves the LUT)."""
    medians = drift["medians_ms"]
    for _ in range(RETRIES):
        floor = min(medians)
        slow = [job for job in measured if medians[job[1]] > floor * (1 + ROUND_ABOVE)]
        if not slow:
            return
        for part, i, label in slow:
            drift["rechecked"] = drift.get("rechecked", 0) + 1
            results, ref_ms = measure_part(backend, part, artifacts, ref_key, s, drift,
                                           thermal_c)
            if ref_ms >= medians[i]:
                continue
            for key in part:
                pool.put(key, label, results[key], results[ref_key])
            medians[i] = round(ref_ms, 6)
            on_update(part)


def noisy(entry: LutEntry) -> bool:
    """An entry to measure again: its median's confidence interval is wider than NOISY_CI of
    it (and NOISY_MIN_MS: identity skips take microseconds), or its median is over DISTURBED x
    its fastest run (most of its runs were slowed by something else)."""
    spread = entry.latency_ms - (entry.min_ms if entry.min_ms is not None else entry.latency_ms)
    wide = entry.ci_half_ms is not None and entry.ci_half_ms > max(NOISY_CI * entry.latency_ms,
                                                                   NOISY_MIN_MS)
    return wide or (entry.latency_ms > DISTURBED * (entry.min_ms or 0) and spread > 0.05)


def remeasure_noisy(backend: Backend, entries: dict[str, LutEntry], pool: RunPool, artifacts,
                    ref_key: str | None, s: Settings, drift: dict, remake) -> None:
    """Measure the noisy ones (see `noisy`) among the entries measured in this run (the keys of
    `pool`) in one more job, at most RETRIES times, pooling its rounds with theirs: more jobs
    narrow the interval honestly, where keeping the one job with the narrowest interval would
    hide how much jobs disagree. `remake(keys)` remakes those entries from the pool. Counts go
    to `drift`."""
    for attempt in range(RETRIES):
        todo = [k for k in pool.keys() if noisy(entries[k])]
        if not todo:
            break
        drift["remeasured"] = drift.get("remeasured", 0) + len(todo)
        batch = [artifacts[k] for k in todo]
        if ref_key is not None and ref_key not in todo:
            batch.append(artifacts[ref_key])
        results = run_programs(backend, batch, s, etdump=False)
        for key in todo:
            pool.put(key, f"noisy{attempt}", results[key],
                     results[ref_key] if ref_key is not None else None)
        remake(todo)
    drift["unsettled"] = sum(noisy(entries[k]) for k in pool.keys())


# --- the machine's speed against the blocks' --------------------------------------------
@dataclass
class SpeedBlock:
    """One of the LUT's own blocks, timed again now."""
    key: str
    lut_ms: float
    measured_ms: float

    @property
    def ratio(self) -> float:
        return self.measured_ms / self.lut_ms

    def record(self) -> dict:
        """As the LUT's fit and validate's report keep it."""
        return {"key": self.key, "lut_ms": self.lut_ms, "measured_ms": self.measured_ms,
                "ratio": round(self.ratio, 4)}


def spread_over_latency(keys: list[str], latency_ms: dict[str, float], count: int) -> list[str]:
    """`count` of `keys`, evenly spread over their latencies (all of them if there are fewer)."""
    ordered = sorted(set(keys), key=lambda k: (latency_ms[k], k))
    if len(ordered) <= count:
        return ordered
    return [ordered[round(i * (len(ordered) - 1) / (count - 1))] for i in range(count)]


def speed_blocks(lut: Lut, archs: list[Architecture],
                 count: int = SPEED_BLOCKS) -> list[str]:
    """`count` of the blocks the networks are made of (no skips: they cost a copy), evenly
    spread over their latencies in the LUT."""
    keys = [layer.key for a in archs for layer in a.layers()
            if not isinstance(parse_key(layer.key), Skip)]
    return spread_over_latency(keys, {k: lut.entries[k].latency_ms for k in keys}, count)


def block_jobs(keys: list[str], s: Settings) -> dict[str, ExportJob]:
    """The export jobs of LUT blocks, by key: the same programs the build timed."""
    return {k: export_job(k, parse_key(k).input_shape, s) for k in keys}


def speed_block_jobs(lut: Lut, archs: list[Architecture], s: Settings) -> dict[str, ExportJob]:
    """The export jobs of `speed_blocks`, by key."""
    return block_jobs(speed_blocks(lut, archs), s)


def timed_blocks(lut: Lut, jobs: dict[str, ExportJob], pool: RunPool, artifacts,
                 one_pass: Settings) -> list[SpeedBlock]:
    """The LUT's blocks `jobs` as timed again in `pool` (one pass's settings), beside their
    entries."""
    return [SpeedBlock(k, lut.entries[k].latency_ms, round(measured_entry(
        pool.pooled(job.key), artifacts[job.key], None, one_pass).latency_ms, 6))
        for k, job in jobs.items()]


def speed_ratio(blocks: list[SpeedBlock]) -> float | None:
    """How long the machine takes now against when the blocks were timed: the median of the
    blocks' ratios (> 1: slower now)."""
    return round(float(np.median([b.ratio for b in blocks])), 4) if blocks else None
