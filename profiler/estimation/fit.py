"""Fitting a device model's coefficients to measured latencies.

Coefficients are fitted in log space (so they stay positive and the fit minimizes relative
error) to either measured blocks (HW-NAS-Bench's Pixel 3 and Raspberry Pi 4 tables) or to
published end-to-end network latencies, regularized toward a prior where the data are few.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from scipy.optimize import least_squares

from fbnet.errors import UserError
from fbnet.workloads import Workload, parse_key
from profiler.estimation.model import BANDWIDTH_OF, COEFFICIENTS, DTYPE_BYTES, DeviceModel
from profiler.estimation.operators import MAC_CLASSES, OP_CLASSES

# Log-space bounds keep a coefficient that the data cannot see (e.g. an overhead far below the
# measurement resolution) finite instead of running off to 0 or infinity.
_BOUNDS = {"bandwidth_gbps": (1e-2, 1e4), "transpose_gbps": (1e-2, 1e4),
           "overhead_ms": (1e-6, 10.0)}
_THROUGHPUT_BOUNDS = (1e-3, 1e4)


@dataclass
class Observation:
    """A measured latency of a sum of workloads: one block, or every layer of a network."""

    label: str
    workloads: tuple[Workload, ...]
    latency_ms: float
    sigma: float = 1.0  # relative uncertainty (log space); weights the residual by 1/sigma


@dataclass
class Prior:
    """Where coefficients should be when the data say little (log-normal around `model`).

    `scale_sigma` is the looser uncertainty of one factor shared by every throughput (how fast
    the device computes overall); `log_sigma` that of each coefficient's own
    deviation from it (the device's shape: which operators are relatively cheap).
    """

    model: DeviceModel
    log_sigma: dict[str, float]
    scale_sigma: float
    notes: list[str] = field(default_factory=list)


@dataclass
class FitResult:
    model: DeviceModel
    observations: list[Observation]
    predicted_ms: list[float]
    success: bool
    prior_penalty: float = 0.0  # sum of squared prior residuals at the optimum

    @property
    def rel_errors(self) -> list[float]:
        return [p / o.latency_ms - 1 for p, o in zip(self.predicted_ms, self.observations)]


class _Design:
    """Observations flattened into operator arrays so one evaluation is a few numpy calls."""

    def __init__(self, observations: Sequence[Observation], dtype: str, elide_identity: bool):
        probe = DeviceModel("probe", {c: 1.0 for c in COEFFICIENTS}, dtype, elide_identity)
        cls_idx, macs, elements, owner = [], [], [], []
        for i, obs in enumerate(observations):
            for workload in obs.workloads:
                for op in probe.ops(workload):
                    cls_idx.append(OP_CLASSES.index(op.op_class))
                    macs.append(op.macs)
                    elements.append(op.elements)
                    owner.append(i)
        self.n = len(observations)
        self.cls = np.array(cls_idx, dtype=int)
        self.macs = np.array(macs, dtype=float)
        self.bytes = np.array(elements, dtype=float) * DTYPE_BYTES[dtype]
        self.owner = np.array(owner, dtype=int)
        self.has_macs = self.macs > 0
        self.is_shuffle = self.cls == OP_CLASSES.index("shuffle")
        assert set(BANDWIDTH_OF) == {"shuffle"}  # predict() below knows only this one
        # the MAC class of each op (memory-only ops get index 0 and are masked out)
        self.mac_cls = np.where(self.cls < len(MAC_CLASSES), self.cls, 0)

    def predict(self, coeffs: np.ndarray) -> np.ndarray:
        throughput = coeffs[: len(MAC_CLASSES)]
        bandwidth = np.where(self.is_shuffle, coeffs[COEFFICIENTS.index("transpose_gbps")],
                             coeffs[COEFFICIENTS.index("bandwidth_gbps")])
        overhead = coeffs[COEFFICIENTS.index("overhead_ms")]
        compute = np.where(self.has_macs, self.macs / (throughput[self.mac_cls] * 1e6), 0.0)
        per_op = np.maximum(compute, self.bytes / (bandwidth * 1e6)) + overhead
        return np.bincount(self.owner, weights=per_op, minlength=self.n)


def _bounds() -> tuple[np.ndarray, np.ndarray]:
    lo = [math.log(_BOUNDS.get(c, _THROUGHPUT_BOUNDS)[0]) for c in COEFFICIENTS]
    hi = [math.log(_BOUNDS.get(c, _THROUGHPUT_BOUNDS)[1]) for c in COEFFICIENTS]
    return np.array(lo), np.array(hi)


def fit(observations: Sequence[Observation], *, name: str, dtype: str = "fp32",
        elide_identity: bool = False, prior: Prior | None = None,
        init: DeviceModel | None = None) -> FitResult:
    """Least-squares fit of the coefficients to relative (log) errors, optionally with a prior.

    Without a prior every coefficient is free (bounded); a few starting points guard against
    the kinks of the max(). With a prior the parameters are one shared log speed factor plus
    each coefficient's log deviation, both penalized by the prior's sigmas.
    """
    if not observations:
        raise UserError(f"no observations to fit the {name} model to")
    design = _Design(observations, dtype, elide_identity)
    measured = np.array([o.latency_ms for o in observations], dtype=float)
    if np.any(measured <= 0):
        raise UserError(f"latencies to fit for {name} must be positive")
    weights = 1.0 / np.array([o.sigma for o in observations], dtype=float)
    lo, hi = _bounds()
    n_rates = len(MAC_CLASSES)  # the throughputs share the speed factor

    if prior is None:
        def unpack(x):
            return x

        def residuals(x):
            pred = design.predict(np.exp(unpack(x)))
            return (np.log(pred) - np.log(measured)) * weights

        starts = []
        if init is not None:
            starts.append(np.log([init.coefficients[c] for c in COEFFICIENTS]))
        # generic starts: slow to fast devices, so the max() kinks are approached from both sides
        for rate, overhead in ((1.0, 1e-3), (10.0, 1e-2), (100.0, 1e-4)):
            starts.append(np.log([rate] * len(MAC_CLASSES) + [rate, rate, overhead]))
        bounds = (lo, hi)
    else:
        base = np.log([prior.model.coefficients[c] for c in COEFFICIENTS])
        sig = np.array([prior.log_sigma[c] for c in COEFFICIENTS])

        def unpack(z):
            x = base + z[1:]
            x[:n_rates] += z[0]
            return np.clip(x, lo, hi)

        def residuals(z):
            pred = design.predict(np.exp(unpack(z)))
            data = (np.log(pred) - np.log(measured)) * weights
            return np.concatenate([data, [z[0] / prior.scale_sigma], z[1:] / sig])

        starts = [np.zeros(len(COEFFICIENTS) + 1)]
        bounds = (-np.inf, np.inf)

    best = None
    for x0 in starts:
        x0 = np.clip(x0, lo, hi) if prior is None else x0
        res = least_squares(residuals, x0, bounds=bounds, method="trf", x_scale=1.0,
                            diff_step=1e-6, max_nfev=4000)
        if best is None or res.cost < best.cost:
            best = res
    coeffs = np.exp(unpack(best.x))
    model = DeviceModel(name, {c: float(v) for c, v in zip(COEFFICIENTS, coeffs)}, dtype,
                        elide_identity)
    predicted = design.predict(coeffs)
    penalty = float(np.sum(best.fun[design.n:] ** 2)) if prior is not None else 0.0
    return FitResult(model, list(observations), [float(p) for p in predicted],
                     bool(best.success), penalty)


def block_observations(table: dict[str, float]) -> list[Observation]:
    return [Observation(key, (parse_key(key),), ms) for key, ms in table.items() if ms > 0]


def fit_blocks(table: dict[str, float], name: str, dtype: str = "fp32") -> FitResult:
    """The model of a device whose blocks were measured one by one (identity skips copy)."""
    return fit(block_observations(table), name=name, dtype=dtype, elide_identity=False)

