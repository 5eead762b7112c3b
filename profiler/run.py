"""Measure every block of the FBNet search space on a device and write its latency LUT, or
measure one whole network end to end.

Every unique workload of the space (candidates at each layer shape, stem, head, pool and the
classifier for 10, 100 and 1000 classes) is exported to an ExecuTorch program (XNNPACK by
default), run through the real runtime round-robin over several rounds, and written to the LUT
as it goes (Ctrl-C keeps every finished entry; --resume continues). A per-op breakdown comes
from a separate ETDump run. A few calibration networks then fit how block latencies add up
inside a network (see docs/profiler.md, "Fidelity").

Examples:
  python -m profiler.run --device host                      # -> luts/host.json (224x224)
  python -m profiler.run --device host --resolution 32      # -> luts/host_32.json
  python -m profiler.run --device host --dtype int8         # -> luts/host_int8.json
  python -m profiler.run --device host --runtime torchscript --resolution 32
  python -m profiler.run --device host --resume             # continue an interrupted build
  python -m profiler.run --device host --include-named      # also every named architecture
  python -m profiler.run --device host --include-named --extend   # add them to luts/host.json
  python -m profiler.run --device host --arch fbnet_b --json   # one network end to end
  python -m profiler.run --device s8                        # a phone (needs its backend)
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from fbnet.arch import Architecture, load_architecture, to_arch_string
from fbnet.coverage import CLASSIFIER_CLASSES, lut_workloads, named_only_keys
from fbnet.errors import UserError, cli_entry
from fbnet.lowering import BACKENDS, DTYPES, RUNTIMES, recipe_for
from fbnet.lut import LUT_SCHEMA, Lut, LutEntry, Provenance, Summation, load_lut, lut_file_name
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from fbnet.workloads import ConvNorm, FullyConnected, Workload, candidate_workload
from profiler.backends.base import RUNNERS, Backend, BackendOptions, create_backend
from profiler.devices import resolve_device
from profiler.export import DEFAULT_CACHE, Artifact, ArtifactCache, ExportJob, export_all
from profiler.measure import Stats, make_inputs, parse_etdump, profile_torchscript_ops
from profiler.protocol import BenchResult, Manifest, ProgramResult, ProgramSpec

DRIFT_WARN = 0.10  # warn when the reference workload moves more than this over the run
RETRY_ABOVE = 0.25  # re-measure a job whose reference block is this much slower than the best
ROUND_ABOVE = 0.15  # a round this much slower than the typical one is dropped and re-measured
RETRIES = 3  # bound on the extra jobs of each kind of re-measurement
DISTURBED = 2.0  # an entry whose median is this many times its fastest run is re-measured
NOISY_CI = 0.03  # ... and one whose median's 95% interval is wider than +-3% of it
NOISY_MIN_MS = 0.0005  # ... and than +-0.5 us (identity skips take a few us)
TYPICAL_MIN_ROUNDS = 4  # fewer rounds than this are all kept (see typical_rounds)
SETTLE_K, SETTLE_AGREE, SETTLE_JOBS = 3, 0.03, 20  # steady: last 3 medians within 3%, <= 20 jobs
THERMAL_RISE_C = 10.0  # a job that leaves the device this much warmer than at the start ...
THERMAL_PAUSE_S = 30.0  # ... is followed by this pause and measured again
CALIBRATION_NETWORKS = 12  # 6 gave fits that moved with the noise of single networks


@dataclass
class Settings:
    dtype: str = "fp32"
    backend: str = "xnnpack"
    runtime: str = "executorch"
    threads: int = 1
    warmup: int = 10
    iters: int = 50
    rounds: int = 5
    etdump_iters: int = 10
    ops: bool = True  # per-op breakdown (separate ETDump / profiler run)
    clock: str = "wall"  # wall | thread_cpu (see profiler.protocol.Manifest)

    def manifest(self, programs: list[ProgramSpec], etdump: bool | None = None) -> Manifest:
        return Manifest(programs, warmup=self.warmup, iters=self.iters, rounds=self.rounds,
                        threads=self.threads, etdump=self.ops if etdump is None else etdump,
                        etdump_iters=self.etdump_iters, clock=self.clock)


CLOCKS = ("auto", "wall", "thread_cpu")


def resolve_clock(clock: str, device_kind: str, runner: str, threads: int) -> str:
    """auto: the thread's CPU time (capped by wall time) on the host with the in-process runner
    and 1 thread, where other processes and the sandbox add wall time that is not the block's
    (see docs/profiler.md); wall time, the protocol's clock, everywhere else."""
    if clock == "auto":
        return "thread_cpu" if (device_kind, runner, threads) == ("host", "python", 1) \
            else "wall"
    if clock == "thread_cpu" and (device_kind, runner, threads) != ("host", "python", 1):
        raise UserError("--clock thread_cpu needs --device host, --runner python, --threads 1")
    return clock


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m profiler.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="host",
                   help="host, s8, pixel3, iphone_x, android:SERIAL[,SERIAL], ios:UDID "
                        "(default host)")
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
    p.add_argument("--runner", choices=RUNNERS, default="python",
                   help="python: in-process runtime; native: the C++ fbnet_bench")
    p.add_argument("--native-runner", type=Path, help="path of the host-built fbnet_bench")
    p.add_argument("--serial", help="Android phone serial (else ANDROID_SERIAL, else the one "
                                    "phone matching --device)")
    p.add_argument("--udid", help="iPhone UDID (else the one iPhone matching --device)")
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
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="artifact cache folder")
    p.add_argument("--out", type=Path, help="output LUT (default luts/<device>[_variant].json)")
    p.add_argument("--resume", action="store_true", help="continue the LUT in --out")
    p.add_argument("--include-named", action="store_true",
                   help="also measure every part of each named architecture at this resolution "
                        "(python -m search.space --list: their own stems, widths and heads)")
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
    clock = resolve_clock(args.clock, resolve_device(args.device).kind, args.runner,
                          args.threads)
    return Settings(args.dtype, args.backend, args.runtime, args.threads, args.warmup,
                    args.iters, args.rounds, ops=not args.no_ops, clock=clock)


def default_lut_path(device: str, resolution: int, s: Settings) -> Path:
    path = Path("luts") / lut_file_name(device, resolution, s.dtype, s.backend, s.runtime)
    if _holds_unmeasured_lut(path):
        # luts/s8.json ships as an estimate: a measurement goes beside it, never over it
        path = path.with_name(path.stem + "_measured.json")
    return path


def _holds_unmeasured_lut(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
        return data.get("provenance", {}).get("kind") != "measured"
    except (OSError, ValueError, AttributeError):
        return False


def backend_extra(args) -> dict:
    return {k: v for k, v in (("serial", args.serial), ("udid", args.udid)) if v}


def check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if path.is_dir() or (path.exists() and not os.access(path, os.W_OK)) or \
            not probe.is_dir() or not os.access(probe, os.W_OK):
        raise UserError(f"cannot write {path}; choose a writable --out")


# --- what to measure ------------------------------------------------------------------------
def reference_workload(space: SpaceConfig) -> Workload:
    """A mid-sized block re-measured in every job to expose drift (throttling, other load)."""
    layers = space.layers()
    return candidate_workload(layers[len(layers) // 2], "k3_e3")


def op_context(workload: Workload) -> str:
    if isinstance(workload, FullyConnected):
        return "FC"
    if isinstance(workload, ConvNorm) and workload.kernel > 1:
        return "ConvNorm_kxk"
    return type(workload).__name__


def export_job(key: str, input_shape, s: Settings, arch: Architecture | None = None) -> ExportJob:
    return ExportJob(key, tuple(input_shape), s.dtype, s.backend, s.runtime,
                     json.dumps(arch.to_dict(), sort_keys=True) if arch else None)


def arch_job(arch: Architecture, s: Settings) -> ExportJob:
    sp = arch.space
    return export_job(f"arch:{arch.name}:{to_arch_string(arch)}",
                      (1, sp.in_channels, sp.resolution, sp.resolution), s, arch)


def random_architecture(space: SpaceConfig, rng: random.Random, name: str) -> Architecture:
    return Architecture(name, space, tuple(rng.choice(CANDIDATE_NAMES)
                                           for _ in range(space.num_layers)))


def calibration_architectures(space: SpaceConfig, n: int, seed: int) -> list[Architecture]:
    """The networks the summation is fitted on: the all-skip, the cheapest non-skip and the
    costliest nets (so the fit spans the range; without the all-skip net the intercept came out
    negative and the skip-heavy nets that latency-weighted searches find were under-predicted
    by 19-26%), and random ones from a stream unrelated to validate's integer-seeded samples,
    so the summation is never fitted on the networks it is judged by."""
    if n <= 0:
        return []
    layers = space.num_layers
    archs = [Architecture(f"calibration_{name}", space, (name,) * layers)
             for name in ("skip", "k3_e1", "k5_e6")][:n]
    rng = random.Random(f"calibration-{seed}")
    archs += [random_architecture(space, rng, f"calibration_{i}") for i in range(n - len(archs))]
    return archs


# --- progress ---------------------------------------------------------------------------------
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
            from tqdm import tqdm

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


def progress_mode(args) -> str:
    return "none" if args.quiet else args.progress


def export_with_progress(jobs: list[ExportJob], cache: ArtifactCache, workers: int,
                         progress: str, etrecord: bool | Callable[[ExportJob], bool] = True,
                         desc: str = "export"):
    bar = Progress(len(jobs), desc, progress)
    try:
        artifacts, stats = export_all(jobs, cache, workers=workers,
                                      on_done=lambda _a: bar.update(), etrecord=etrecord)
    finally:
        bar.close()
    if stats.failures:
        key, err = next(iter(stats.failures.items()))
        raise UserError(f"{len(stats.failures)} export(s) failed, e.g. {key}: {err}")
    if stats.rebuilt_corrupt and progress != "none":
        print(f"note: {stats.rebuilt_corrupt} corrupted cache artifact(s) were rebuilt",
              file=sys.stderr)
    return artifacts, stats


# --- measuring --------------------------------------------------------------------------------
def typical_rounds(rounds: list[list[float]]) -> list[list[float]]:
    """The rounds whose median is at most ROUND_ABOVE over the median round: a round far
    slower than the others was slowed by something else (other load only ever adds time).
    All rounds when there are fewer than TYPICAL_MIN_ROUNDS: the median of 2 or 3 rounds says
    too little about which one is typical."""
    medians = [_median(r) for r in rounds if r]
    if len(medians) < TYPICAL_MIN_ROUNDS:
        return [r for r in rounds if r]
    limit = _median(medians) * (1 + ROUND_ABOVE)
    return [r for r in rounds if r and _median(r) <= limit]


def measured_entry(result: ProgramResult, artifact: Artifact, workload: Workload | None,
                   s: Settings, per_op_from: LutEntry | None = None) -> LutEntry:
    """A LUT entry from a program's timed runs (its typical rounds) and, when the job had one,
    its ETDump; `per_op_from`: an earlier entry of the same program whose per-op breakdown
    is kept (re-measurements run without ETDump)."""
    rounds = typical_rounds(result.rounds)
    runs = [ms for r in rounds for ms in r] or result.latencies_ms
    stats = Stats.of(runs, rounds)
    entry = LutEntry(latency_ms=round(stats.median_ms, 6), mean_ms=round(stats.mean_ms, 6),
                     std_ms=round(stats.std_ms, 6), p10_ms=round(stats.p10_ms, 6),
                     p90_ms=round(stats.p90_ms, 6), min_ms=round(stats.min_ms, 6),
                     max_ms=round(stats.max_ms, 6), n=stats.n,
                     ci_low_ms=round(stats.ci_low_ms, 6), ci_high_ms=round(stats.ci_high_ms, 6))
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
        call_ms = max(stats.median_ms - method_ms, 0.0) if method_ms is not None else 0.0
        entry.extra["call_overhead_ms"] = round(call_ms, 6)
        entry.boundary_ms = round(min(call_ms + entry.extra["transpose_boundary_ms"],
                                      stats.median_ms), 6)
    return entry


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


def _median(values) -> float:
    return float(np.median(values))


def settle(backend: Backend, ref: Artifact, s: Settings, drift: dict) -> None:
    """Run the reference block alone until the device is in a steady state (clocks ramped up,
    caches and runtime warm): until its last SETTLE_K medians agree within SETTLE_AGREE, at
    most SETTLE_JOBS jobs. Without it the first job of a build read its reference 30-50% above
    the later ones. Its medians are not the drift floor: alone, a block runs with hotter
    caches than among a job's other programs."""
    medians: list[float] = []
    for _ in range(SETTLE_JOBS):
        medians.append(_median(run_programs(backend, [ref], s, etdump=False)
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
        ref_ms = _median(results[ref_key].latencies_ms)
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
        bad = {i for i, r in enumerate(ref_rounds) if r and _median(r) > floor * (1 + ROUND_ABOVE)}
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
    return results, _median(results[ref_key].latencies_ms)


def noisy(entry: LutEntry) -> bool:
    """An entry to measure again: its median's confidence interval is wider than NOISY_CI of
    it (and NOISY_MIN_MS: identity skips take microseconds), or its median is over DISTURBED x
    its fastest run (most of its runs were slowed by something else)."""
    spread = entry.latency_ms - (entry.min_ms if entry.min_ms is not None else entry.latency_ms)
    wide = entry.ci_half_ms is not None and entry.ci_half_ms > max(NOISY_CI * entry.latency_ms,
                                                                   NOISY_MIN_MS)
    return wide or (entry.latency_ms > DISTURBED * (entry.min_ms or 0) and spread > 0.05)


def remeasure_noisy(backend: Backend, entries: dict[str, LutEntry],
                    raw: dict[str, ProgramResult], artifacts, workloads, ref_key: str | None,
                    s: Settings, drift: dict) -> None:
    """Re-measure the noisy ones (see `noisy`) among the entries measured in this run (the
    keys of `raw`), at most RETRIES times, keeping for each the attempt whose median has the
    narrower interval (the burst that widened it is then left out). Counts go to `drift`."""
    for _ in range(RETRIES):
        todo = [k for k in raw if noisy(entries[k])]
        if not todo:
            break
        drift["remeasured"] = drift.get("remeasured", 0) + len(todo)
        batch = [artifacts[k] for k in todo]
        if ref_key is not None and ref_key not in todo:
            batch.append(artifacts[ref_key])
        results = run_programs(backend, batch, s, etdump=False)
        for key in todo:
            entry = measured_entry(results[key], artifacts[key], workloads.get(key), s,
                                   per_op_from=entries[key])
            if entry.ci_half_ms < entries[key].ci_half_ms:
                entries[key], raw[key] = entry, results[key]
    drift["unsettled"] = sum(noisy(entries[k]) for k in raw)


def measure_part(backend: Backend, part: list[str], artifacts, ref_key: str, s: Settings,
                 drift: dict, thermal_c: dict):
    batch = [artifacts[k] for k in part]
    if ref_key not in part:
        batch.append(artifacts[ref_key])
    return measure_chunk(backend, batch, ref_key, s, drift, thermal_c)


def recheck_drift(backend: Backend, lut: Lut, measured: list[tuple[list[str], int]],
                  raw: dict[str, ProgramResult], artifacts, workloads, ref_key: str,
                  s: Settings, drift: dict, thermal_c: dict) -> None:
    """Once every job has run, the best reference median of the whole build is known: jobs
    whose reference read over ROUND_ABOVE above it (the first jobs of a build that had not yet
    reached a steady state, a stretch of steady other load) are measured again, each at most
    RETRIES times, keeping the attempt with the faster reference. The LUT is saved after
    each."""
    medians = drift["medians_ms"]
    for _ in range(RETRIES):
        floor = min(medians)
        slow = [(part, i) for part, i in measured if medians[i] > floor * (1 + ROUND_ABOVE)]
        if not slow:
            return
        for part, i in slow:
            drift["rechecked"] = drift.get("rechecked", 0) + 1
            results, ref_ms = measure_part(backend, part, artifacts, ref_key, s, drift,
                                           thermal_c)
            if ref_ms >= medians[i]:
                continue
            for key in part:
                raw[key] = results[key]
                lut.entries[key] = measured_entry(results[key], artifacts[key], workloads[key], s)
            medians[i] = round(ref_ms, 6)
            lut.save(lut.path)


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --- the LUT build ----------------------------------------------------------------------------
def new_lut(backend: Backend, space: SpaceConfig, s: Settings, args) -> Lut:
    measurement = {**asdict(s), "protocol": "round-robin rounds; warm-up every round; median "
                   "of timed runs without ETDump; per-op from a separate ETDump run",
                   "complete": False, "classifier_classes": list(CLASSIFIER_CLASSES),
                   "only": args.only, "named_architectures": args.include_named}
    provenance = Provenance("measured", {
        "tool": "python -m profiler.run", "runner": args.runner,
        "command": "python -m profiler.run " + " ".join(sys.argv[1:]) if sys.argv[1:] else
        "python -m profiler.run",
        "load_avg_1m_start": round(os.getloadavg()[0], 2)})
    return Lut(device=backend.device_info, runtime=backend.runtime_info(),
               provenance=provenance, space=space.to_dict(), measurement=measurement)


def resume_lut(path: Path, fresh: Lut) -> Lut:
    old = load_lut(path)
    mismatch = []
    if old.device.name != fresh.device.name:
        mismatch.append(f"device {old.device.name} vs {fresh.device.name}")
    if asdict(old.runtime) != asdict(fresh.runtime):
        mismatch.append(f"runtime {old.runtime} vs {fresh.runtime}")
    if old.space != fresh.space:
        mismatch.append("the space (resolution/widths)")
    if old.measurement.get("clock") != fresh.measurement.get("clock"):
        mismatch.append(f"clock {old.measurement.get('clock')} vs {fresh.measurement.get('clock')}")
    if mismatch:
        raise UserError(f"cannot resume {path}: it was measured with different settings "
                        f"({'; '.join(mismatch)}); use another --out or drop --resume")
    return old


def extend_lut(path: Path, fresh: Lut) -> tuple[Lut, dict]:
    """The complete LUT in `path` (measured with the settings of `fresh`) and the record of
    what this run adds to it, appended to its provenance's `additions`: the command, date and
    machine load (other load inflates host latencies) of the run, and the keys it measured."""
    if not path.is_file():
        raise UserError(f"--extend adds to an existing LUT and {path} does not exist; build it "
                        "without --extend")
    lut = resume_lut(path, fresh)
    if not lut.measurement.get("complete"):
        raise UserError(f"{path} is an unfinished build; continue it with --resume")
    details = fresh.provenance.details
    record = {"command": details["command"],
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "cpu_count": os.cpu_count(),
              "load_avg_start": [round(v, 2) for v in os.getloadavg()],
              "load_avg_1m_start": details["load_avg_1m_start"],
              "keys": []}
    lut.provenance.details.setdefault("additions", []).append(record)
    return lut, record


def build_lut(args) -> dict:
    s = settings_from(args)
    profile = resolve_device(args.device)
    space = SpaceConfig.create(args.resolution or 224, width=args.width,
                               stage_depths=args.stage_depths, stage_widths=args.stage_widths)
    out = args.out or default_lut_path(profile.name, space.resolution, s)
    check_writable(out)
    if out.exists() and not args.resume:
        try:
            existing = json.loads(out.read_text())
            partial = existing.get("schema") == LUT_SCHEMA and \
                not (existing.get("measurement") or {}).get("complete", True)
        except (OSError, ValueError, AttributeError):
            partial = False
        if partial:
            raise UserError(f"{out} holds an unfinished build; add --resume to continue it, or "
                            "delete it to start over")
    cache = ArtifactCache(args.cache)
    workloads = {w.key: w for w in lut_workloads(space, named=args.include_named)}
    if args.only:
        patterns = [g.strip() for g in args.only.split(",") if g.strip()]
        workloads = {k: w for k, w in workloads.items()
                     if any(fnmatch.fnmatch(k, g) for g in patterns)}
        if not workloads:
            raise UserError(f"--only {args.only} matches no workload of this space; list them "
                            "with python -m search.space --workloads")
    ref = reference_workload(space)
    t_start = time.perf_counter()
    options = BackendOptions(runner=args.runner, runtime=s.runtime, backend=s.backend,
                             dtype=s.dtype, threads=s.threads, native_runner=args.native_runner,
                             workdir=Path(tempfile.mkdtemp(prefix="fbnet-profile-")),
                             extra=backend_extra(args))
    with create_backend(profile, options) as backend:
        lut = new_lut(backend, space, s, args)
        if args.extend:
            lut, addition = extend_lut(out, lut)
        elif args.resume and out.exists():
            lut = resume_lut(out, lut)
        # where this run's export, drift, timing and load go: the build's own records, or
        # the record of an addition to a complete LUT
        run_record, load_record = (addition, addition) if args.extend else \
            (lut.measurement, lut.provenance.details)
        lut.measurement["complete"] = False
        todo = [k for k in workloads if k not in lut.entries]
        if args.extend:
            run_record["keys"] = todo
            named = {a: [k for k in keys if k in todo]
                     for a, keys in named_only_keys(space).items()}
            run_record["named_architectures"] = {a: keys for a, keys in named.items() if keys}
        jobs = [export_job(k, workloads[k].input_shape, s) for k in todo]
        if ref.key not in todo:
            jobs.append(export_job(ref.key, ref.input_shape, s))
        # The calibration networks go into the same export pool (starting a pool costs
        # seconds), first: they are the longest exports, so both workers end together.
        networks = [] if args.only or args.extend else [
            arch_job(a, s) for a in calibration_architectures(space, args.calibrate, args.seed)]
        progress = progress_mode(args)
        artifacts, export_stats = export_with_progress(
            networks + jobs, cache, args.workers, progress,
            etrecord=lambda job: job.arch is None)  # networks are timed without ETDump
        run_record["export"] = {"exported": export_stats.exported,
                                "cached": export_stats.cached,
                                "wall_s": round(export_stats.wall_s, 1)}
        drift = run_record.setdefault("drift", {"reference": ref.key, "medians_ms": []})
        t_measure = time.perf_counter()
        bar = Progress(len(todo), "measure", progress)
        raw: dict[str, ProgramResult] = {}  # the timed runs behind each entry of this run
        try:
            if todo:
                settle(backend, artifacts[ref.key], s, drift)
            thermal_c = (backend.device_info.extra or {}).get("thermal_c") or {}
            measured_chunks = []
            for part in chunks(todo, args.chunk):
                results, ref_ms = measure_part(backend, part, artifacts, ref.key, s, drift,
                                               thermal_c)
                for key in part:
                    raw[key] = results[key]
                    lut.entries[key] = measured_entry(results[key], artifacts[key],
                                                      workloads[key], s)
                drift["medians_ms"].append(round(ref_ms, 6))
                measured_chunks.append((part, len(drift["medians_ms"]) - 1))
                lut.save(out)  # every finished entry survives Ctrl-C or a crash
                bar.update(len(part))
            recheck_drift(backend, lut, measured_chunks, raw, artifacts, workloads, ref.key, s,
                          drift, thermal_c)
            remeasure_noisy(backend, lut.entries, raw, artifacts, workloads, ref.key, s,
                            drift)
        finally:
            bar.close()
        measure_s = time.perf_counter() - t_measure
        medians = drift["medians_ms"]
        drift["max_change"] = round(max(medians) / min(medians) - 1, 4) if medians else 0.0
        if drift["max_change"] > DRIFT_WARN:
            print(f"warning: the reference block moved {drift['max_change']:.0%} during the run "
                  "(other load or throttling); re-measure on a quiet device for a clean LUT",
                  file=sys.stderr)
        t_cal = time.perf_counter()
        if not args.extend:  # an addition keeps the fit of the build it extends
            lut.summation = fit_summation(lut, backend, space, s, cache, args,
                                          lut.measurement.setdefault("calibration_checks", {}))
        calibrate_s = time.perf_counter() - t_cal
    lut.measurement["complete"] = True
    run_record["stability"] = stability(lut)
    run_record["wall_s"] = {"total": round(time.perf_counter() - t_start, 1),
                            "export": round(export_stats.wall_s, 1),
                            "measure": round(measure_s, 1),
                            "calibrate": round(calibrate_s, 1)}
    load_record["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    lut.save(out)
    warn_if_host_was_busy(profile.kind, load_record)
    return {"lut": str(out), "entries": len(lut.entries), "measured_now": len(todo),
            "exported": export_stats.exported, "cached": export_stats.cached,
            "wall_s": run_record["wall_s"], "drift": drift,
            "stability": run_record["stability"],
            "summation": {"method": lut.summation.method, "scale": lut.summation.scale,
                          "network_offset_ms": lut.summation.network_offset_ms},
            "title": lut.title}


def warn_if_host_was_busy(kind: str, details: dict) -> None:
    """Other processes on the host share its cores and caches: a 2-core VM measured blocks
    1.4-2.2x slower, consistently, while a search ran beside the profiler (load 1.4 -> 3.0), so
    the drift check of the reference block does not catch it."""
    cores = os.cpu_count() or 1
    load = max(details.get("load_avg_1m_start", 0.0), details.get("load_avg_1m_end", 0.0))
    if kind == "host" and load > cores:
        print(f"warning: the host was busy while measuring (1-minute load up to {load:.1f} on "
              f"{cores} cores); other processes inflate host latencies (up to 2x seen), so "
              "re-measure on a quiet machine for a clean LUT", file=sys.stderr)


def fit_summation(lut: Lut, backend: Backend, space: SpaceConfig, s: Settings,
                  cache: ArtifactCache, args, checks: dict) -> Summation:
    """How block latencies add up in a network, fitted on calibration networks.

    A block measured alone pays a runtime call and the NCHW<->NHWC transposes at the XNNPACK
    delegate's edges (entry.boundary_ms, from its own ETDump); inside one network these are
    paid once. What is left is fitted on `--calibrate` networks (never validate's samples):
    measured = scale * sum + network_offset_ms, where the offset is the network's own call and
    edge transposes and the scale what blocks pay inside a network but not alone (weights and
    activations no longer hot in cache). Noisy networks are measured again like noisy blocks
    (counts in `checks`).
    """
    has_boundary = any(e.boundary_ms is not None for e in lut.entries.values())
    base = Summation(method="sum of medians minus each block's boundary cost (runtime call + "
                     "delegate-edge transposes, from its ETDump) + one network offset",
                     subtract_boundary=has_boundary) if has_boundary else \
        Summation(method="plain sum of medians (no per-op data to find boundary costs)")
    if args.calibrate == 0 or args.only:
        base.fit = {"networks": [], "note": "not calibrated (--calibrate 0 or --only)"}
        return base
    archs = calibration_architectures(space, args.calibrate, args.seed)
    jobs = {a.name: arch_job(a, s) for a in archs}
    # timed without ETDump: no ETRecord needed
    artifacts, _ = export_with_progress(list(jobs.values()), cache, args.workers,
                                        progress_mode(args), etrecord=False,
                                        desc="export calibration networks")
    # networks run for milliseconds, so measuring them as long as the blocks costs seconds
    # and keeps their noise below the blocks'
    net = replace(s, warmup=max(2, s.warmup // 2), ops=False)
    results = run_programs(backend, list(artifacts.values()), net, etdump=False)
    nets = {key: measured_entry(res, artifacts[key], None, net) for key, res in results.items()}
    remeasure_noisy(backend, nets, results, artifacts, {}, None, net, checks)
    rows, arch_keys = [], []
    for arch in archs:
        keys = [layer.key for layer in arch.layers()]
        arch_keys.append(keys)
        entry = nets[jobs[arch.name].key]
        rows.append({"arch": to_arch_string(arch), "measured_ms": round(entry.latency_ms, 4),
                     "measured_ci_ms": [entry.ci_low_ms, entry.ci_high_ms],
                     "sum_ms": round(replace(lut, summation=base).network_latency_ms(keys), 4)})
    measured = np.array([r["measured_ms"] for r in rows])
    summed = np.array([r["sum_ms"] for r in rows])
    # relative residuals (weights 1/measured): plain least squares let the 4 ms networks set
    # the line and put a 0.3 ms one 37% off
    slope, intercept = (np.polyfit(summed, measured, 1, w=1 / measured)
                        if len(rows) >= 3 and np.ptp(summed) > 0 else (1.0, 0.0))
    if len(rows) >= 3 and 0.5 <= slope <= 2.0:
        base.scale = round(float(slope), 6)
        base.network_offset_ms = round(float(intercept), 6)
        base.method += ("; scale and offset fitted by least squares of the relative error on "
                        "calibration networks")
        how = "least squares of relative error: measured = scale * sum + network_offset"
    else:  # too few networks or an implausible slope: only the offset, robustly
        base.network_offset_ms = round(float(np.median(measured - summed)), 6)
        how = "median of measured - sum"
    fitted = replace(lut, summation=base)
    for r, keys in zip(rows, arch_keys):
        pred = base.scale * r["sum_ms"] + base.network_offset_ms
        r["error_pct"] = round(100 * (pred - r["measured_ms"]) / r["measured_ms"], 2)
        half = fitted.network_ci_half_ms(keys)
        if half is not None:
            r["lut_ci_pct"] = round(100 * half / pred, 2)
    base.fit = {"networks": rows, "seed": f"calibration-{args.seed}", "how": how}
    return base


def stability(lut: Lut) -> dict:
    """How much of the LUT is noise, in a few figures (all 95% half-widths, in %):
    entry_ci_median_pct / entry_ci_p90_pct: the entries' intervals relative to their medians;
    network_ci_pct: what those add up to in a calibration network's prediction (median);
    calibration_rms_pct: the fitted summation's RMS error on the calibration networks;
    unsettled: entries still noisy after re-measuring; reference_drift: the reference
    block's largest change between jobs."""
    rel = [100 * e.ci_half_ms / e.latency_ms for e in lut.entries.values()
           if e.ci_half_ms is not None and e.latency_ms > NOISY_MIN_MS]
    drift = lut.measurement.get("drift") or {}
    rows = lut.summation.fit.get("networks") or []
    result = {"entry_ci_median_pct": round(float(np.median(rel)), 2) if rel else None,
              "entry_ci_p90_pct": round(float(np.percentile(rel, 90)), 2) if rel else None,
              "network_ci_pct": None, "calibration_rms_pct": None,
              "unsettled": drift.get("unsettled"), "reference_drift": drift.get("max_change")}
    nets = [r["lut_ci_pct"] for r in rows if "lut_ci_pct" in r]
    if nets:
        result["network_ci_pct"] = round(float(np.median(nets)), 2)
    if len(rows) >= 3:
        result["calibration_rms_pct"] = round(float(np.sqrt(np.mean(
            [r["error_pct"] ** 2 for r in rows]))), 2)
    return result


# --- one network end to end -------------------------------------------------------------------
def measure_arch(args) -> dict:
    s = settings_from(args)
    profile = resolve_device(args.device)
    arch = load_architecture(args.arch, resolution=args.resolution, width=args.width)
    cache = ArtifactCache(args.cache)
    job = arch_job(arch, s)
    options = BackendOptions(runner=args.runner, runtime=s.runtime, backend=s.backend,
                             dtype=s.dtype, threads=s.threads, native_runner=args.native_runner,
                             workdir=Path(tempfile.mkdtemp(prefix="fbnet-arch-")),
                             extra=backend_extra(args))
    with create_backend(profile, options) as backend:
        artifacts, stats = export_all([job], cache, workers=1, etrecord=s.ops)
        if stats.failures:
            raise UserError(f"export of {arch.name} failed: {stats.failures[job.key]}")
        artifact = artifacts[job.key]
        result = run_programs(backend, [artifact], s)[job.key]
        entry = measured_entry(result, artifact, None, s)
        device, runtime = backend.device_info, backend.runtime_info()
    by_type: dict[str, float] = {}
    for op in entry.ops:
        by_type[op.op_type] = round(by_type.get(op.op_type, 0.0) + op.latency_ms, 6)
    return {"arch": arch.name, "arch_string": to_arch_string(arch),
            "resolution": arch.space.resolution, "macs": arch.macs,
            "device": asdict(device), "runtime": asdict(runtime),
            "median_ms": entry.latency_ms, "mean_ms": entry.mean_ms, "std_ms": entry.std_ms,
            "p10_ms": entry.p10_ms, "p90_ms": entry.p90_ms, "min_ms": entry.min_ms,
            "max_ms": entry.max_ms, "n": entry.n, "ops_by_type_ms": by_type,
            "exported": not artifact.cached, "program": str(artifact.program)}


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.arch:
        summary = measure_arch(args)
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
    summary = build_lut(args)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        w = summary["wall_s"]
        print(f"wrote {summary['lut']}: {summary['entries']} entries ({summary['measured_now']} "
              f"measured now; {summary['exported']} exported, {summary['cached']} from cache) "
              f"in {w['total']:.0f} s (export {w['export']:.0f} s, measure {w['measure']:.0f} s, "
              f"calibrate {w['calibrate']:.0f} s); {summary['title']}")
        print(f"drift of the reference block: {summary['drift']['max_change']:.1%}; summation: "
              f"{summary['summation']['method']} (scale {summary['summation']['scale']:.3f}, "
              f"network offset {summary['summation']['network_offset_ms']:.3f} ms)")
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
