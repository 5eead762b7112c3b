"""Measuring programs: the in-process Python runner of the benchmark protocol, latency
statistics, and the per-operator breakdown from ETDump (Inspector) or the autograd profiler.

`run_manifest` follows docs/bench-protocol.md exactly as the native `fbnet_bench` does: load
every program once; per round, per program (round-robin), `warmup` untimed then
ceil(iters/rounds) timed executions, each timed around `execute` alone; then, if asked, a
separate ETDump pass whose executions are never part of the end-to-end latencies.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import time
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.jit.mobile import _load_for_lite_interpreter

from fbnet.lut import OpLatency
from profiler.export import runtime_versions
from profiler.protocol import BenchResult, InputSpec, Manifest, ProgramResult, RunnerInfo, \
    fill_pattern

PYTHON_RUNNER = "fbnet-python-runner"


CI_LEVEL = 0.95  # confidence of an entry's interval for its median
BOOTSTRAP_RESAMPLES = 1000


@dataclass
class Stats:
    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    n: int
    ci_low_ms: float | None = None  # CI_LEVEL confidence interval of the median
    ci_high_ms: float | None = None

    @classmethod
    def of(cls, latencies_ms, rounds: list[list[float]] | None = None) -> "Stats":
        """Statistics of timed runs; `rounds` (the same runs grouped by round) makes the
        median's confidence interval account for round-to-round changes."""
        a = np.asarray(latencies_ms, dtype=np.float64)
        low, high = median_ci(rounds if rounds else [a])
        return cls(float(np.median(a)), float(a.mean()), float(a.std(ddof=1) if a.size > 1 else 0),
                   float(np.percentile(a, 10)), float(np.percentile(a, 90)), float(a.min()),
                   float(a.max()), int(a.size), low, high)

    def to_dict(self) -> dict:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def median_ci(rounds, level: float = CI_LEVEL, resamples: int = BOOTSTRAP_RESAMPLES,
              seed: int = 0) -> tuple[float | None, float | None]:
    """Bootstrap confidence interval of the median of all runs, resampling rounds and then the
    runs within each drawn round: runs of one round share its conditions (frequency, other
    load), so resampling runs alone would claim a precision the rounds do not have.
    Deterministic (fixed seed); (None, None) without runs."""
    groups = [np.asarray(r, dtype=np.float64) for r in rounds if len(r)]
    if not groups:
        return None, None
    if len(groups) == 1 or len({g.size for g in groups}) > 1:
        # one round, or rounds of different sizes: resample the pooled runs
        groups = [np.concatenate(groups)]
    rng = np.random.default_rng(seed)
    table = np.stack(groups)  # rounds x runs
    n_rounds, n_runs = table.shape
    picked = table[rng.integers(n_rounds, size=(resamples, n_rounds))] if n_rounds > 1 \
        else np.broadcast_to(table, (resamples, 1, n_runs))
    runs = np.take_along_axis(picked, rng.integers(n_runs, size=picked.shape), axis=2)
    medians = np.median(runs.reshape(resamples, -1), axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(medians, [tail, 100 - tail])
    return float(low), float(high)


def set_threads(threads: int) -> int:
    """Size ExecuTorch's CPU thread pool (XNNPACK uses it); returns the size in effect."""
    # ExecuTorch's runtime takes seconds to load: only where programs run in this process
    from executorch.extension.pybindings import portable_lib

    if threads > 0 and portable_lib._threadpool_get_thread_count() != threads:
        portable_lib._unsafe_reset_threadpool(threads)
    return portable_lib._threadpool_get_thread_count()


def make_inputs(specs: list[InputSpec]):
    return [torch.from_numpy(fill_pattern(math.prod(s.shape)).reshape(s.shape)) for s in specs]


class _Loaded:
    """A program ready to execute: ExecuTorch method or TorchScript-lite module."""

    def __init__(self, path: Path, inputs: list, etdump: bool = False):
        self.path = path
        self.inputs = inputs
        self.program = None
        if path.suffix == ".ptl":
            self.module = _load_for_lite_interpreter(str(path))
            self.execute = lambda: self.module(*self.inputs)
        else:
            from executorch.runtime import Runtime  # seconds to load: see set_threads

            self.program = Runtime.get().load_program(path, enable_etdump=etdump)
            method = self.program.load_method("forward")
            self.execute = lambda: method.execute(self.inputs)


def executions_per_sample(warmup_ms: list[float], min_sample_ms: float) -> int:
    """How many executions one sample takes so that it lasts at least `min_sample_ms`, from
    the warm-up's median (1 without a warm-up or a minimum)."""
    if not warmup_ms or min_sample_ms <= 0:
        return 1
    return max(1, math.ceil(min_sample_ms / max(statistics.median(warmup_ms), 1e-6)))


def repeated(execute, k: int):
    def run() -> None:
        for _ in range(k):
            execute()
    return run


def timed_ms(execute, thread_cpu: bool) -> float:
    """One timed execution in ms: this thread's CPU time, or wall time. The timer's own cost
    inside the timed span is 0.1-0.2 us here (benchmarks/timer_overhead.py)."""
    c0, t0 = time.thread_time(), time.perf_counter()
    execute()
    wall = time.perf_counter() - t0
    # CPU time cannot exceed wall time; where it does, the (sandboxed) kernel charged a whole
    # scheduler tick to this run, and wall time is the truth
    return 1e3 * (min(time.thread_time() - c0, wall) if thread_cpu else wall)


def run_manifest(manifest: Manifest, base_dir: Path, out_dir: Path | None = None,
                 on_round: Callable[[int, BenchResult], None] | None = None,
                 on_program: Callable[[], None] | None = None) -> BenchResult:
    """Execute a manifest in this process; ETDumps go to out_dir/etdump/<index>.etdp."""
    threads = set_threads(manifest.threads)
    # torch's intra-op pool runs the lite interpreter and, for ExecuTorch, the bindings' copies
    # of inputs and outputs: left at its default (one OpenMP thread per core) a copy of over
    # 32k elements wakes a spinning OpenMP worker, which on a busy host costs whole 4 ms
    # scheduler ticks per run that belong to neither the block nor a network
    torch.set_num_threads(max(manifest.threads, 1))
    result = BenchResult(RunnerInfo(PYTHON_RUNNER, runtime_version=_et_version(),
                                    threads=threads),
                         device=host_device_dict(), started=_now())
    loaded: list[_Loaded | None] = []
    for spec in manifest.programs:
        path = Path(spec.path) if Path(spec.path).is_absolute() else base_dir / spec.path
        entry = ProgramResult(spec.id, spec.path)
        t0 = time.perf_counter()
        try:
            loaded.append(_Loaded(path, make_inputs(spec.inputs)))
            entry.load_ms = (time.perf_counter() - t0) * 1e3
        except Exception as err:  # noqa: BLE001 - a bad program is reported, others still run
            loaded.append(None)
            entry.status, entry.error = "error", f"load failed: {err}"
        result.programs.append(entry)
    per_round = manifest.iters_per_round
    if manifest.clock == "thread_cpu" and threads != 1:
        raise ValueError("the thread_cpu clock needs 1 runtime thread (other threads' work "
                         "would not be counted)")
    thread_cpu = manifest.clock == "thread_cpu"
    for rnd in range(manifest.rounds):
        for prog, entry in zip(loaded, result.programs):
            if prog is None or not entry.ok:
                continue
            try:
                warm = [timed_ms(prog.execute, thread_cpu) for _ in range(manifest.warmup)]
                k = executions_per_sample(warm, manifest.min_sample_ms)
                entry.executions_per_sample = max(entry.executions_per_sample, k)
                run = prog.execute if k == 1 else repeated(prog.execute, k)
                times = [timed_ms(run, thread_cpu) / k for _ in range(per_round)]
            except Exception as err:  # noqa: BLE001
                entry.status, entry.error = "error", f"execute failed: {err}"
                continue
            entry.rounds.append(times)
            entry.latencies_ms.extend(times)
            if on_program:
                on_program()
        if on_round:
            on_round(rnd, result)
        if manifest.cooldown_s and rnd + 1 < manifest.rounds:
            time.sleep(manifest.cooldown_s)
    if manifest.etdump and out_dir is not None:
        _etdump_pass(manifest, base_dir, out_dir, result)
    result.finished = _now()
    return result


def _etdump_pass(manifest: Manifest, base_dir: Path, out_dir: Path, result: BenchResult) -> None:
    (out_dir / "etdump").mkdir(parents=True, exist_ok=True)
    for index, (spec, entry) in enumerate(zip(manifest.programs, result.programs)):
        if not entry.ok or spec.path.endswith(".ptl"):
            continue
        path = Path(spec.path) if Path(spec.path).is_absolute() else base_dir / spec.path
        prog = _Loaded(path, make_inputs(spec.inputs), etdump=True)
        for _ in range(manifest.warmup + manifest.etdump_iters):
            prog.execute()
        dump = out_dir / "etdump" / f"{index}.etdp"
        prog.program.write_etdump_result_to_file(str(dump), str(dump.with_suffix(".dbg")))
        entry.etdump = str(dump)


# --- per-operator breakdowns ---------------------------------------------------------------
OP_TYPES = ("conv_1x1", "conv_kxk", "dwconv", "transpose", "add", "mean", "fc", "other")


def op_type(name: str, context: str = "") -> str:
    """Normalize an XNNPACK / portable / TorchScript operator name to an op class.

    context: the workload kind ("ConvBlock", "ConvNorm_k3", "FC", ...): XNNPACK runs 1x1 convs
    as "Fully Connected" GEMMs and names a grouped 1x1 conv like a kxk one, so the name alone
    cannot tell them apart.
    """
    n = name.lower()
    if "transpose" in n or "permute" in n or "copy (nc" in n:
        return "transpose"
    if "dwconv" in n or "depthwise" in n:
        return "dwconv"
    if "fully connected" in n or "linear" in n or "addmm" in n or n.startswith("aten::mm"):
        return "fc" if context == "FC" else "conv_1x1"
    if "conv" in n:
        return "conv_kxk" if context in ("ConvNorm_kxk", "network") else "conv_1x1"
    if n.startswith("add") or "aten::add" in n or "add.out" in n:
        return "add"
    if "mean" in n or "average pool" in n or "avg_pool" in n:
        return "mean"
    return "other"


@dataclass
class EtdumpBreakdown:
    ops: list[OpLatency]
    method_execute_ms: float | None  # the whole execute as the runtime saw it
    delegate_call_ms: float | None  # time inside the XNNPACK delegate
    boundary_ms: float  # NCHW<->NHWC transposes at the delegate's input and output


def parse_etdump(path: Path, etrecord: Path | None, warmup: int, context: str = "") -> \
        EtdumpBreakdown:
    """Per-op medians from an ETDump, dropping the first `warmup` executions of every event."""
    from executorch.devtools import Inspector  # ExecuTorch's devtools load in seconds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inspector = Inspector(etdump_path=str(path),
                              etrecord=str(etrecord) if etrecord else None)
    ops: list[OpLatency] = []
    method_ms = delegate_ms = None
    delegated: list[OpLatency] = []
    for block in inspector.event_blocks:
        if block.name != "Execute":
            continue
        for event in block.events:
            raw = list(event.perf_data.raw) if event.perf_data is not None else []
            timed = raw[warmup:] or raw
            if not timed:
                continue
            ms = float(np.median(timed))
            if event.name == "Method::execute":
                method_ms = ms
            elif event.name == "DELEGATE_CALL":
                delegate_ms = (delegate_ms or 0.0) + ms
            else:
                op = OpLatency(event.name, op_type(event.name, context), round(ms, 6))
                ops.append(op)
                if event.is_delegated_op:
                    delegated.append(op)
    boundary = 0.0
    if delegated:  # layout transposes XNNPACK inserts at the delegate's edges
        edges = [delegated[0]] + ([delegated[-1]] if len(delegated) > 1 else [])
        boundary = sum(op.latency_ms for op in edges if op.op_type == "transpose")
    return EtdumpBreakdown(ops, method_ms, delegate_ms, boundary)


def profile_torchscript_ops(path: Path, inputs: list, warmup: int, iters: int,
                            context: str = "") -> list[OpLatency]:
    """Per-op self CPU times of a .ptl program from the autograd profiler (averages per run)."""
    module = _load_for_lite_interpreter(str(path))
    for _ in range(warmup):
        module(*inputs)
    with torch.autograd.profiler.profile(record_shapes=True) as prof:
        for _ in range(iters):
            module(*inputs)
    ops = []
    for evt in prof.key_averages(group_by_input_shape=True):
        if not evt.key.startswith("aten::") or evt.self_cpu_time_total <= 0:
            continue
        shapes = [list(s) for s in evt.input_shapes or []]
        kind = op_type(evt.key, context)
        if "conv" in evt.key and len(shapes) > 1 and len(shapes[1]) == 4:
            # aten names do not say depthwise / kxk: the weight shape (Cout, Cin/g, k, k) does
            weight, channels = shapes[1], shapes[0][1] if shapes[0] else None
            kind = ("dwconv" if weight[1] == 1 and weight[0] == channels else
                    "conv_kxk" if weight[2] > 1 else "conv_1x1")
        name = f"{evt.key} {shapes[0]}" if shapes and shapes[0] else evt.key
        ops.append(OpLatency(name, kind, round(evt.self_cpu_time_total / 1e3 / iters, 6)))
    return ops


# --- host facts -----------------------------------------------------------------------------
def host_device_dict() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": cpu, "cores": os.cpu_count(), "os": f"{platform.system()} "
            f"{platform.release()}", "load_avg_1m": round(os.getloadavg()[0], 2)}


def _et_version() -> str:
    return runtime_versions()["executorch"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
