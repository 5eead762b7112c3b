"""The benchmark protocol every runner shares (docs/bench-protocol.md), as Python dataclasses.

The profiler writes a `Manifest`, a runner (the in-process Python runner in profiler.measure,
the native C++ `fbnet_bench` of bench_runner/, the iOS app) executes it and writes a
`BenchResult`. Field names are exactly the JSON ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fbnet.errors import UserError
from fbnet.io import atomic_write_json

MANIFEST_SCHEMA = "fbnet-bench-manifest/1"
RESULT_SCHEMA = "fbnet-bench-result/1"


@dataclass
class InputSpec:
    shape: list[int]
    dtype: str = "float32"


@dataclass
class ProgramSpec:
    id: str  # the block key (or "arch:<name>" for a whole network)
    path: str  # relative to the manifest's folder, or absolute
    inputs: list[InputSpec] = field(default_factory=list)


@dataclass
class Manifest:
    programs: list[ProgramSpec]
    warmup: int = 10
    iters: int = 50
    rounds: int = 5
    threads: int = 1
    etdump: bool = False
    etdump_iters: int = 10
    cooldown_s: float = 0.0
    # wall: a monotonic clock around execute (the protocol's default, what a phone runner uses);
    # thread_cpu: the calling thread's CPU time (capped by wall time), for a shared host where
    # other processes preempt long runs (valid with 1 runtime thread: XNNPACK then runs on the
    # calling thread).
    clock: str = "wall"
    # a sample shorter than this runs the program k times (the fewest that reach it, from the
    # warm-up's median) and records the mean, so the clock reads inside the timed span stay
    # under 1% of it; 0: one execution per sample. The Python runner applies it (its
    # thread_cpu clock costs ~0.2 us a sample); the native runner's steady clock does not need it.
    min_sample_ms: float = 0.0
    schema: str = MANIFEST_SCHEMA

    @property
    def iters_per_round(self) -> int:
        return math.ceil(self.iters / self.rounds)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
            raise UserError(f"not a benchmark manifest (schema must be {MANIFEST_SCHEMA!r})")
        try:
            programs = [ProgramSpec(p["id"], p["path"],
                                    [InputSpec(list(i["shape"]), i.get("dtype", "float32"))
                                     for i in p.get("inputs", [])])
                        for p in data["programs"]]
            rest = {k: data[k] for k in ("warmup", "iters", "rounds", "threads", "etdump",
                                         "etdump_iters", "cooldown_s", "clock",
                                         "min_sample_ms") if k in data}
        except (KeyError, TypeError) as err:
            raise UserError(f"malformed benchmark manifest: {err!r}") from None
        return cls(programs=programs, **rest)

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())


@dataclass
class ProgramResult:
    id: str
    path: str
    status: str = "ok"  # ok | error
    error: str | None = None
    load_ms: float | None = None
    latencies_ms: list[float] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)
    etdump: str | None = None  # relative to the result file (or absolute once pulled)
    executions_per_sample: int = 1  # Manifest.min_sample_ms: each sample the mean of this many

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class RunnerInfo:
    name: str
    runtime: str = "executorch"
    runtime_version: str | None = None
    threads: int | None = None


@dataclass
class BenchResult:
    runner: RunnerInfo
    device: dict = field(default_factory=dict)  # cpu_model, cores, governor, os, ...
    programs: list[ProgramResult] = field(default_factory=list)
    started: str | None = None
    finished: str | None = None
    schema: str = RESULT_SCHEMA

    def by_id(self) -> dict[str, ProgramResult]:
        return {p.id: p for p in self.programs}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "result") -> "BenchResult":
        if not isinstance(data, dict) or data.get("schema") != RESULT_SCHEMA:
            raise UserError(f"{source} is not a benchmark result (schema {RESULT_SCHEMA!r})")
        try:
            runner = RunnerInfo(**{k: v for k, v in data["runner"].items()
                                   if k in RunnerInfo.__dataclass_fields__})
            programs = [ProgramResult(**{k: v for k, v in p.items()
                                         if k in ProgramResult.__dataclass_fields__})
                        for p in data.get("programs", [])]
        except (KeyError, TypeError) as err:
            raise UserError(f"{source}: malformed benchmark result ({err!r})") from None
        return cls(runner=runner, device=data.get("device") or {}, programs=programs,
                   started=data.get("started"), finished=data.get("finished"))

    @classmethod
    def load(cls, path: Path) -> "BenchResult":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise UserError(f"cannot read benchmark result {path}: {err}") from None
        return cls.from_dict(data, str(path))

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.to_dict())


def fill_pattern(numel: int):
    """The deterministic input every runner feeds: value = ((i % 255) / 255) - 0.5 (float32)."""
    return ((np.arange(numel, dtype=np.int64) % 255) / 255.0 - 0.5).astype(np.float32)
