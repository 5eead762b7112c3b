"""The LUT's summation fit: how block latencies add up inside a network (fbnet.lut.Summation),
fitted on calibration networks measured whole on the device (see docs/profiler.md,
"Fidelity")."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np

from fbnet.arch import Architecture, to_arch_string
from fbnet.lut import Lut, LutEntry, Summation
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from profiler.backends.base import Backend
from profiler.jobs import Exporter, arch_job, measure_in_passes, measured_entry, pass_share
from profiler.noise import SpeedBlock, remeasure_noisy, speed_block_jobs, speed_ratio
from profiler.settings import Settings

CALIBRATION_NETWORKS = 12  # 6 gave fits that moved with the noise of single networks


@dataclass(frozen=True)
class Calibration:
    """The networks a summation is fitted on: how many (0: no fit) and their seed."""

    networks: int = CALIBRATION_NETWORKS
    seed: int = 0


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


def fit_summation(lut: Lut, backend: Backend, space: SpaceConfig, s: Settings,
                  calibration: Calibration, exporter: Exporter, checks: dict,
                  passes: int = 1) -> Summation:
    """How block latencies add up in a network, fitted on calibration networks.

    A block measured alone pays a runtime call and the NCHW<->NHWC transposes at the XNNPACK
    delegate's edges (entry.boundary_ms, from its own ETDump); inside one network these are
    paid once. What is left is fitted on `calibration.networks` networks (never validate's
    samples): measured = scale * sum + network_offset_ms, where the offset is the network's own
    call and edge transposes and the scale what blocks pay inside a network but not alone
    (weights and activations no longer hot in cache). The networks are timed over `passes`
    passes, as the blocks are, and noisy ones are measured again like noisy blocks (counts in
    `checks`). A few of the LUT's blocks are timed beside them, and the fit is made with the
    networks at the blocks' speed (divided by `speed_ratio`): a machine that sped up or slowed
    down between the blocks and the calibration would otherwise be fitted into the scale.
    """
    has_boundary = any(e.boundary_ms is not None for e in lut.entries.values())
    base = Summation(method="sum of medians minus each block's boundary cost (runtime call + "
                     "delegate-edge transposes, from its ETDump) + one network offset",
                     subtract_boundary=has_boundary) if has_boundary else \
        Summation(method="plain sum of medians (no per-op data to find boundary costs)")
    if calibration.networks == 0:
        base.fit = {"networks": [], "note": "not calibrated (--calibrate 0 or --only)"}
        return base
    archs = calibration_architectures(space, calibration.networks, calibration.seed)
    jobs = {a.name: arch_job(a, s) for a in archs}
    block_jobs = speed_block_jobs(lut, archs, s)
    # timed without ETDump: no ETRecord needed (the blocks come from the build's cache)
    artifacts, _ = exporter.export([*jobs.values(), *block_jobs.values()], etrecord=False,
                                   desc="export calibration networks")
    # networks run for milliseconds, so measuring them as long as the blocks costs seconds
    # and keeps their noise below the blocks'
    net = replace(s, warmup=max(2, s.warmup // 2), ops=False)
    pool = measure_in_passes(backend, list(artifacts.values()), net, passes, len(artifacts))
    one_pass = pass_share(net, passes)
    nets: dict[str, LutEntry] = {}

    def remake(keys: list[str]) -> None:
        for key in keys:
            nets[key] = measured_entry(pool.pooled(key), artifacts[key], None, one_pass)

    remake(pool.keys())  # the networks and the blocks beside them
    remeasure_noisy(backend, nets, pool, artifacts, None, one_pass, checks, remake)
    blocks = [SpeedBlock(k, lut.entries[k].latency_ms, nets[k].latency_ms) for k in block_jobs]
    ratio = speed_ratio(blocks) or 1.0
    rows, arch_keys = [], []
    for arch in archs:
        keys = [layer.key for layer in arch.layers()]
        arch_keys.append(keys)
        entry = nets[jobs[arch.name].key]
        rows.append({"arch": to_arch_string(arch), "measured_ms": round(entry.latency_ms, 4),
                     "measured_ci_ms": [entry.ci_low_ms, entry.ci_high_ms],
                     "sum_ms": round(replace(lut, summation=base).network_latency_ms(keys), 4)})
    measured = np.array([r["measured_ms"] for r in rows]) / ratio  # at the blocks' speed
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
        at_blocks_speed = r["measured_ms"] / ratio
        r["error_pct"] = round(100 * (pred - at_blocks_speed) / at_blocks_speed, 2)
        half = fitted.network_ci_half_ms(keys)
        if half is not None:
            r["lut_ci_pct"] = round(100 * half / pred, 2)
    base.fit = {"networks": rows, "seed": f"calibration-{calibration.seed}", "how": how,
                "speed_ratio": ratio,
                "speed_blocks": [b.record() for b in blocks]}
    return base
