"""One whole network measured end to end on a device, with its per-op breakdown."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from fbnet.arch import Architecture, to_arch_string
from fbnet.errors import UserError
from profiler.export import ArtifactCache, export_all
from profiler.jobs import arch_job, measured_entry, run_programs
from profiler.settings import Settings, Target


def measure_arch(arch: Architecture, target: Target, s: Settings, cache: Path) -> dict:
    """The network's latency statistics on `target`, its device and runtime, and its per-op
    time by operator type."""
    artifact_cache = ArtifactCache(cache)
    job = arch_job(arch, s)
    with target.open(s, "arch") as backend:
        artifacts, stats = export_all([job], artifact_cache, workers=1, etrecord=s.ops)
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
