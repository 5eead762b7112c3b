"""Programs on a device: export them through the artifact cache (showing progress), run them
as jobs, and turn each program's timed runs into a LUT entry."""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from fbnet.arch import Architecture, to_arch_string
from fbnet.errors import UserError
from fbnet.lut import LutEntry
from fbnet.workloads import ConvNorm, FullyConnected, Workload
from profiler.backends.base import Backend
from profiler.export import Artifact, ArtifactCache, ExportJob, ExportStats, export_all
from profiler.measure import Stats, make_inputs, parse_etdump, profile_torchscript_ops
from profiler.protocol import BenchResult, ProgramResult, ProgramSpec
from profiler.settings import Settings

ROUND_ABOVE = 0.15  # a round this much slower than the typical one is dropped and re-measured
TYPICAL_MIN_ROUNDS = 4  # fewer rounds than this are all kept (see typical_rounds)
PROGRESS_MODES = ("bar", "lines", "none")


class Progress:
    """Progress of one phase: a bar on stderr ("bar"), a line on stdout at every tenth of the
    work ("lines": for logs and wrappers such as `make demo` that show stdout), or nothing."""

    def __init__(self, total: int, desc: str, mode: str = "bar"):
        self.bar = None
        self.total, self.desc, self.done = total, desc, 0
        self.lines = mode == "lines" and total > 0
        self.shown = 0
        self.t0 = time.perf_counter()
        if mode == "bar" and total:
            self.bar = tqdm(total=total, desc=desc, unit="prog", file=sys.stderr,
                            dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        if self.bar:
            self.bar.update(n)
        self.done += n
        if self.lines and (self.done * 10 // self.total > self.shown * 10 // self.total
                           or self.done == self.total):
            self.shown = self.done
            print(f"{self.desc}: {self.done}/{self.total} "
                  f"({time.perf_counter() - self.t0:.0f} s)", flush=True)

    def close(self) -> None:
        if self.bar:
            self.bar.close()

    @classmethod
    def measuring(cls, programs: int, passes: int, mode: str) -> "Progress":
        """The measuring phase: one step per program and pass."""
        return cls(programs * passes, f"measure ({passes} passes)" if passes > 1 else "measure",
                   mode)


# --- exporting ------------------------------------------------------------------------------
def export_job(key: str, input_shape, s: Settings, arch: Architecture | None = None) -> ExportJob:
    return ExportJob(key, tuple(input_shape), s.dtype, s.backend, s.runtime,
                     json.dumps(arch.to_dict(), sort_keys=True) if arch else None)


def arch_job(arch: Architecture, s: Settings) -> ExportJob:
    sp = arch.space
    return export_job(f"arch:{arch.name}:{to_arch_string(arch)}",
                      (1, sp.in_channels, sp.resolution, sp.resolution), s, arch)


@dataclass
class Exporter:
    """Exports jobs through an artifact cache in `workers` processes, showing `progress`
    (one of PROGRESS_MODES)."""

    cache: ArtifactCache
    workers: int = 2
    progress: str = "bar"

    def export(self, jobs: list[ExportJob],
               etrecord: bool | Callable[[ExportJob], bool] = True,
               desc: str = "export") -> tuple[dict[str, Artifact], ExportStats]:
        """Every job's artifact by key; a failed export is a one-line error."""
        bar = Progress(len(jobs), desc, self.progress)
        try:
            artifacts, stats = export_all(jobs, self.cache, workers=self.workers,
                                          on_done=lambda _a: bar.update(), etrecord=etrecord)
        finally:
            bar.close()
        if stats.failures:
            key, err = next(iter(stats.failures.items()))
            raise UserError(f"{len(stats.failures)} export(s) failed, e.g. {key}: {err}")
        if stats.rebuilt_corrupt and self.progress != "none":
            print(f"note: {stats.rebuilt_corrupt} corrupted cache artifact(s) were rebuilt",
                  file=sys.stderr)
        return artifacts, stats


# --- running --------------------------------------------------------------------------------
def run_job(backend: Backend, artifacts: list[Artifact], s: Settings,
            etdump: bool | None = None) -> BenchResult:
    """One job on the device; a program that fails there is a one-line error."""
    backend.push_artifacts([a.to_program() for a in artifacts])
    specs = [ProgramSpec(a.job.key, str(a.program.resolve()), a.to_program().inputs)
             for a in artifacts]
    result = backend.run_job(s.manifest(specs, etdump))
    failed = [p for p in result.programs if not p.ok]
    if failed:
        raise UserError(f"{failed[0].id} failed on the device: {failed[0].error}")
    return result


def run_programs(backend: Backend, artifacts: list[Artifact], s: Settings,
                 etdump: bool | None = None) -> dict[str, ProgramResult]:
    return run_job(backend, artifacts, s, etdump).by_id()


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def pass_share(s: Settings, passes: int) -> Settings:
    """How one of `passes` passes times each program: its share of the rounds and runs."""
    if not 1 <= passes <= s.rounds:
        raise UserError(f"--passes must be between 1 and --rounds ({s.rounds}), got {passes}")
    return replace(s, rounds=math.ceil(s.rounds / passes), iters=math.ceil(s.iters / passes))


# --- entries --------------------------------------------------------------------------------
def median(values) -> float:
    return float(np.median(values))


def typical_rounds(rounds: list[list[float]]) -> list[list[float]]:
    """The rounds whose median is at most ROUND_ABOVE over the median round: a round far
    slower than the others was slowed by something else (other load only ever adds time).
    All rounds when there are fewer than TYPICAL_MIN_ROUNDS: the median of 2 or 3 rounds says
    too little about which one is typical."""
    medians = [median(r) for r in rounds if r]
    if len(medians) < TYPICAL_MIN_ROUNDS:
        return [r for r in rounds if r]
    limit = median(medians) * (1 + ROUND_ABOVE)
    return [r for r in rounds if r and median(r) <= limit]


def op_context(workload: Workload) -> str:
    if isinstance(workload, FullyConnected):
        return "FC"
    if isinstance(workload, ConvNorm) and workload.kernel > 1:
        return "ConvNorm_kxk"
    return type(workload).__name__


class RunPool:
    """Each program's timed runs from every job that measured it (the build's passes, its
    re-measurements), by a label per job: an entry is made from their rounds pooled. A job
    measured again under the same label replaces the earlier one. With the job's reference
    block, each job also gives the program's time as a ratio to the reference's in that job."""

    def __init__(self):
        self.results: dict[str, dict[str, ProgramResult]] = {}  # key -> label -> result
        self.ratios: dict[str, dict[str, float]] = {}  # key -> label -> median / reference's

    def put(self, key: str, label: str, result: ProgramResult,
            reference: ProgramResult | None = None) -> None:
        self.results.setdefault(key, {})[label] = result
        if reference is not None and reference.latencies_ms and result.latencies_ms:
            self.ratios.setdefault(key, {})[label] = \
                median(result.latencies_ms) / median(reference.latencies_ms)
        else:
            self.ratios.get(key, {}).pop(label, None)

    def ref_ratio(self, key: str) -> float | None:
        """The median over the program's jobs of its time against its job's reference block:
        a figure that holds when the whole machine speeds up or slows down (None without a
        reference)."""
        ratios = list(self.ratios.get(key, {}).values())
        return round(float(np.median(ratios)), 6) if ratios else None

    def keys(self) -> list[str]:
        return list(self.results)

    def jobs(self, key: str) -> int:
        return len(self.results.get(key, {}))

    def pooled(self, key: str) -> ProgramResult:
        """The rounds of every job of `key`, as one result; it carries a job's ETDump only
        while there is a single job (after that the entry keeps its per-op breakdown)."""
        parts = list(self.results[key].values())
        if len(parts) == 1:
            return parts[0]
        rounds = [r for part in parts for r in part.rounds]
        return ProgramResult(key, parts[0].path, rounds=rounds,
                             latencies_ms=[ms for r in rounds for ms in r],
                             executions_per_sample=max(p.executions_per_sample for p in parts))


def measure_in_passes(backend: Backend, artifacts: list[Artifact], s: Settings, passes: int,
                      chunk: int, done: Callable[[int], None] = lambda n: None) -> RunPool:
    """Whole networks timed as a LUT's entries are: each program's rounds spread over `passes`
    passes, each a new set of jobs of `chunk` programs grouped afresh, the runs pooled by
    program. A program timed in one job reads a few percent off in the next, alike for all its
    runs; pooling passes takes most of that out. `done(n)` follows each job. Without ETDump."""
    one_pass = pass_share(s, passes)
    by_key = {a.job.key: a for a in artifacts}
    keys = list(by_key)
    pool = RunPool()
    for n in range(passes):
        order = keys if n == 0 else random.Random(n).sample(keys, len(keys))
        for part in chunks(order, chunk):
            results = run_programs(backend, [by_key[k] for k in part], one_pass, etdump=False)
            for key in part:
                pool.put(key, f"pass{n}", results[key])
            done(len(part))
    return pool


def measured_entry(result: ProgramResult, artifact: Artifact, workload: Workload | None,
                   s: Settings, per_op_from: LutEntry | None = None,
                   ref_ratio: float | None = None) -> LutEntry:
    """A LUT entry from a program's timed runs (its typical rounds) and, when the job had one,
    its ETDump; `per_op_from`: an earlier entry of the same program whose per-op breakdown
    is kept (re-measurements run without ETDump); `ref_ratio`: its time against the reference
    block of its own jobs (RunPool.ref_ratio)."""
    rounds = typical_rounds(result.rounds)
    runs = [ms for r in rounds for ms in r] or result.latencies_ms
    stats = Stats.of(runs, rounds)
    entry = LutEntry(latency_ms=round(stats.median_ms, 6), mean_ms=round(stats.mean_ms, 6),
                     std_ms=round(stats.std_ms, 6), p10_ms=round(stats.p10_ms, 6),
                     p90_ms=round(stats.p90_ms, 6), min_ms=round(stats.min_ms, 6),
                     max_ms=round(stats.max_ms, 6), n=stats.n,
                     ci_low_ms=round(stats.ci_low_ms, 6), ci_high_ms=round(stats.ci_high_ms, 6),
                     ref_ratio=ref_ratio)
    context = op_context(workload) if workload is not None else "network"
    if result.etdump:
        dump = parse_etdump(Path(result.etdump), artifact.etrecord, s.warmup, context)
        entry.ops = dump.ops
        entry.extra = {k: round(v, 6) for k, v in (
            ("method_execute_ms", dump.method_execute_ms),
            ("delegate_call_ms", dump.delegate_call_ms),
            ("transpose_boundary_ms", dump.boundary_ms)) if v is not None}
    elif per_op_from is not None:
        entry.ops = per_op_from.ops
        entry.extra = {k: v for k, v in per_op_from.extra.items() if k != "call_overhead_ms"}
    elif s.ops and artifact.program.suffix == ".ptl":
        entry.ops = profile_torchscript_ops(artifact.program, make_inputs(
            [spec for spec in artifact.to_program().inputs]), s.warmup, s.etdump_iters, context)
    if "transpose_boundary_ms" in entry.extra:
        # Runtime call + input copy as seen from outside execute (what the end-to-end timing
        # adds to Method::execute), plus the layout transposes at the delegate's edges.
        method_ms = entry.extra.get("method_execute_ms")
        earlier = per_op_from.extra.get("call_overhead_ms") if per_op_from else None
        if earlier is not None and per_op_from.latency_ms > 0:
            # runs pooled from other jobs: the call's share of the median in the job that took
            # the ETDump, as subtracting that job's execute time from other jobs' median
            # mixes their speeds (a 30% spread of boundary costs between builds)
            call_ms = stats.median_ms * earlier / per_op_from.latency_ms
        else:
            call_ms = max(stats.median_ms - method_ms, 0.0) if method_ms is not None else 0.0
        entry.extra["call_overhead_ms"] = round(call_ms, 6)
        entry.boundary_ms = round(min(call_ms + entry.extra["transpose_boundary_ms"],
                                      stats.median_ms), 6)
    if result.executions_per_sample > 1:  # a tiny program: each sample a mean of this many
        entry.extra["executions_per_sample"] = result.executions_per_sample
    return entry
