"""Devices out of reach: their calibration targets, hardware priors and calibrated models.

A device we cannot measure is modelled as the Pixel 3 fit (the relative cost of operator
classes on a phone CPU) scaled by what its hardware suggests, then calibrated to the published
end-to-end latencies of fbnet.published.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from fbnet.arch import Architecture, published_architecture
from fbnet.errors import UserError
from fbnet.published import latencies
from profiler.estimation.fit import FitResult, Observation, Prior, fit
from profiler.estimation.hwnasbench import MEASURED_DEVICES
from profiler.estimation.model import COEFFICIENTS, THROUGHPUTS, DeviceModel

@dataclass
class CalibrationTarget:
    """A published end-to-end latency the device model is fitted to."""

    arch_name: str
    latency_ms: float
    sigma: float  # relative uncertainty we assign (log space)
    note: str = ""

    def architecture(self) -> Architecture:
        return published_architecture(self.arch_name)


@dataclass
class DeviceSpec:
    """What we know or assume about a device we cannot measure."""

    name: str
    description: str
    runtime: str  # what the published numbers ran on (modelled, not run)
    backend: str | None
    dtype: str
    targets: list[CalibrationTarget]
    # prior = Pixel 3 fit x these factors (per coefficient; missing = 1), with reasons
    prior_factors: dict[str, float]
    prior_notes: list[str]
    shape_sigma: float  # log-sigma of each coefficient's deviation from the prior's shape
    scale_sigma: float  # log-sigma of the shared speed factor
    model: str | None = None
    soc: str | None = None
    cpu: str | None = None


_TIGHT = 0.03  # a published number we trust: 3%
# Looser where the number or the in-space architecture it is compared with is less certain.
_LOOSER = {"mobilenet_v2_1.3": (0.10, "loose"),
           "mnasnet": (0.06, "in-space approximation (first block +1x1): looser")}


def calibration_targets(device: str) -> list[CalibrationTarget]:
    """The published latencies on `device` (fbnet.published), each with the sigma we give it."""
    targets = []
    for fact in latencies(device):
        sigma, why = _LOOSER.get(fact.architecture, (_TIGHT, ""))
        targets.append(CalibrationTarget(fact.architecture, fact.value, sigma,
                                         "; ".join(n for n in (fact.citation, why) if n)))
    return targets


_INT8_MAC_GAIN = 2.0
_SD835_VS_SD845 = 0.8  # big-core clock 2.45 vs 2.8 GHz, A73-class vs A75-class core

DEVICE_SPECS: dict[str, DeviceSpec] = {
    "s8": DeviceSpec(
        name="s8",
        description="Samsung Galaxy S8, as in the FBNet paper (Caffe2 int8 / QNNPACK, batch 1)",
        runtime="caffe2", backend="qnnpack", dtype="int8",
        model="SM-G950U", soc="Snapdragon 835", cpu="4 big + 4 little cores, arm64",
        targets=calibration_targets("s8"),
        prior_factors={**{t: _SD835_VS_SD845 * _INT8_MAC_GAIN for t in THROUGHPUTS}},
        prior_notes=[
            "shape prior: the Pixel 3 (HW-NAS-Bench, fp32) fit, i.e. the relative cost of "
            "operator classes on a Snapdragon 845 CPU",
            f"throughputs x{_SD835_VS_SD845 * _INT8_MAC_GAIN:.1f}: Snapdragon 835 big cores "
            f"~{_SD835_VS_SD845}x a Snapdragon 845's (2.45 vs 2.8 GHz, older core) and int8 "
            f"QNNPACK ~{_INT8_MAC_GAIN}x fp32 MAC throughput (assumption)",
            "bandwidth x1: both SoCs use LPDDR4X at similar speeds; int8 tensors move 4x fewer "
            "bytes than fp32",
            "identity skips cost nothing (no operator in a deployed network)",
        ],
        shape_sigma=0.5, scale_sigma=1.0),
    "iphone_x": DeviceSpec(
        name="iphone_x",
        description="iPhone X as in the FBNet paper (framework and threads not stated)",
        runtime="unknown", backend=None, dtype="int8",
        model="iPhone10,3", soc="Apple A11 Bionic", cpu="2 performance + 4 efficiency cores",
        targets=calibration_targets("iphone_x"),
        prior_factors={**{t: 1.5 * _INT8_MAC_GAIN for t in THROUGHPUTS}},
        prior_notes=[
            "shape prior: the Pixel 3 (HW-NAS-Bench, fp32) fit",
            f"throughputs x{1.5 * _INT8_MAC_GAIN:.1f}: an A11 performance core ~1.5x a Snapdragon "
            "845 big core in single-thread benchmarks, and the same int8 path as the S8 "
            "(assumption: the paper does not say what ran on the iPhone)",
            "bandwidth x1 (LPDDR4X); identity skips cost nothing",
            "only two targets for 8 coefficients: the result is the prior, moved as little as "
            "the two published numbers require",
        ],
        shape_sigma=0.5, scale_sigma=1.0),
}


def device_spec(name: str) -> DeviceSpec:
    try:
        return DEVICE_SPECS[name]
    except KeyError:
        raise UserError(f"no latency model for device {name!r}; estimated devices: "
                        f"{', '.join(DEVICE_SPECS)} (fitted from HW-NAS-Bench: "
                        f"{', '.join(MEASURED_DEVICES)})") from None


def hardware_prior(spec: DeviceSpec, reference: DeviceModel) -> Prior:
    coeffs = {c: reference.coefficients[c] * spec.prior_factors.get(c, 1.0) for c in COEFFICIENTS}
    # the reference's overhead may sit at its lower bound (unseen); start from a plausible
    # framework dispatch cost instead of "zero"
    coeffs["overhead_ms"] = max(coeffs["overhead_ms"], 0.005)
    sigma = {c: spec.shape_sigma for c in COEFFICIENTS}
    sigma["overhead_ms"] = 2.0  # dispatch cost of an unknown framework: barely constrained
    return Prior(DeviceModel(f"{spec.name} prior", coeffs, spec.dtype, True), sigma,
                 spec.scale_sigma, list(spec.prior_notes))


def calibrate(spec: DeviceSpec, reference: DeviceModel) -> tuple[FitResult, Prior]:
    prior = hardware_prior(spec, reference)
    observations = []
    for target in spec.targets:
        arch = target.architecture()
        observations.append(Observation(target.arch_name, tuple(l.workload for l in arch.layers()),
                                        target.latency_ms, target.sigma))
    result = fit(observations, name=spec.name, dtype=spec.dtype, elide_identity=True, prior=prior)
    return result, prior


@dataclass
class HeldOut:
    """A published latency predicted by a model calibrated without it."""

    arch_name: str
    published_ms: float
    predicted_ms: float
    calibrated_on: int  # how many other published latencies the model was calibrated to

    @property
    def error_pct(self) -> float:
        return 100 * (self.predicted_ms / self.published_ms - 1)


def held_out_check(spec: DeviceSpec, reference: DeviceModel,
                   held_out: Sequence[str]) -> list[HeldOut]:
    """Calibrate on every target but `held_out` and predict those: how well the model does on
    published latencies it never saw. With no target left, the prediction is the prior's."""
    kept = [t for t in spec.targets if t.arch_name not in held_out]
    model = (calibrate(replace(spec, targets=kept), reference)[0].model if kept
             else hardware_prior(spec, reference).model)
    return [HeldOut(t.arch_name, t.latency_ms, model.network_latency_ms(t.architecture()),
                    len(kept)) for t in spec.targets if t.arch_name in held_out]

