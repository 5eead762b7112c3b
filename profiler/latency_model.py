"""A per-operator latency model of a device, its fitting, validation and calibration.

Every workload (fbnet.workloads) decomposes into operators of a few classes: dense 1x1 conv,
grouped 1x1 conv, kxk depthwise conv (by k), full conv (the stem), fully connected, and the
memory-only operators channel shuffle, residual add, pooling and copy. One operator costs

    latency_ms = max(MACs / throughput[class], bytes moved / bandwidth) + overhead

(a roofline plus a fixed dispatch cost), so a device is a handful of coefficients: one
throughput per MAC class (GMAC/s), a streaming bandwidth and a (slower, strided) transpose
bandwidth for the channel shuffle (GB/s), and one per-operator overhead (ms).
Coefficients are fitted in log space (so they stay positive and the fit minimizes relative
error) to either measured blocks (HW-NAS-Bench's Pixel 3 and Raspberry Pi 4 tables) or to
published end-to-end network latencies, regularized toward a prior where the data are few.

What the model does not know: kernel fusion across blocks, cache effects between layers,
threading, thermal state. Its validation on real phone data (`validate`) says how much that
costs; `python -m profiler.estimate --report` prints it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fbnet.arch import Architecture, named_architecture, published_architecture
from fbnet.errors import UserError
from fbnet.published import latencies
from fbnet.space import SpaceConfig
from fbnet.workloads import (AvgPool, ConvBlock, ConvNorm, FullyConnected, Skip, Workload,
                             conv_out, parse_key, space_workloads)
from profiler.hwnasbench import DEFAULT_SOURCE

MODEL_NAME = "fbnet-hw per-operator roofline/1"
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
MAC_CLASSES = ("conv1x1", "gconv1x1", "dwconv3", "dwconv5", "conv_full", "fc")
MEMORY_CLASSES = ("shuffle", "add", "pool", "copy")
OP_CLASSES = MAC_CLASSES + MEMORY_CLASSES
# Coefficient names, in the order of the fitted parameter vector.
THROUGHPUTS = tuple(f"{c}_gmacs" for c in MAC_CLASSES)
COEFFICIENTS = THROUGHPUTS + ("bandwidth_gbps", "transpose_gbps", "overhead_ms")
# A channel shuffle is a strided permutation, not a stream: on HW-NAS-Bench's Pixel 3 pricing
# it at the streaming bandwidth leaves every group-2 block ~40% off (too cheap at 112x112, too
# dear at 7x7), so it gets its own bandwidth.
_BANDWIDTH_OF = {"shuffle": "transpose_gbps"}
# Log-space bounds keep a coefficient that the data cannot see (e.g. an overhead far below the
# measurement resolution) finite instead of running off to 0 or infinity.
_BOUNDS = {"bandwidth_gbps": (1e-2, 1e4), "transpose_gbps": (1e-2, 1e4),
           "overhead_ms": (1e-6, 10.0)}
_THROUGHPUT_BOUNDS = (1e-3, 1e4)


# --- operators ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Op:
    """One operator of a workload: its class, multiply-accumulates, and tensor elements moved."""

    op_class: str
    macs: int
    elements: int  # activations read + written + weights read


def _conv(h: int, w: int, c_in: int, c_out: int, kernel: int, stride: int, groups: int) -> Op:
    ho, wo = conv_out(h, stride), conv_out(w, stride)
    macs = ho * wo * c_out * (c_in // groups) * kernel * kernel
    elements = h * w * c_in + ho * wo * c_out + c_out * (c_in // groups) * kernel * kernel
    if groups == c_in == c_out and groups > 1:
        # depthwise: kernels other than 3 and 5 (not in the FBNet space) use the nearer class;
        # the k*k MAC count still scales their cost.
        op_class = "dwconv3" if kernel <= 3 else "dwconv5"
    elif kernel == 1:
        op_class = "conv1x1" if groups == 1 else "gconv1x1"
    else:
        op_class = "conv_full"
    return Op(op_class, macs, elements)


def decompose(workload: Workload) -> list[Op]:
    """The operators a workload runs (BN folded into the conv, ReLU fused, as deployed)."""
    if isinstance(workload, ConvBlock):
        b = workload
        mid = b.mid_channels
        ho, wo = conv_out(b.height, b.stride), conv_out(b.width, b.stride)
        ops = [_conv(b.height, b.width, b.c_in, mid, 1, 1, b.groups)]
        if b.groups > 1:
            ops.append(Op("shuffle", 0, 2 * b.height * b.width * mid))
        ops.append(_conv(b.height, b.width, mid, mid, b.kernel, b.stride, mid))
        ops.append(_conv(ho, wo, mid, b.c_out, 1, 1, b.groups))
        if b.has_residual:
            ops.append(Op("add", 0, 3 * ho * wo * b.c_out))
        return ops
    if isinstance(workload, Skip):
        if workload.is_identity:
            return [Op("copy", 0, 2 * workload.height * workload.width * workload.c_in)]
        return [_conv(workload.height, workload.width, workload.c_in, workload.c_out, 1,
                      workload.stride, 1)]
    if isinstance(workload, ConvNorm):
        return [_conv(workload.height, workload.width, workload.c_in, workload.c_out,
                      workload.kernel, workload.stride, workload.groups)]
    if isinstance(workload, AvgPool):
        n = workload.height * workload.width * workload.c_in
        return [Op("pool", 0, n + workload.c_out)]
    if isinstance(workload, FullyConnected):
        f = workload
        return [Op("fc", f.c_in * f.c_out, f.c_in + f.c_out + f.c_in * f.c_out + f.c_out)]
    raise TypeError(f"not a workload: {workload!r}")


# --- the device model -----------------------------------------------------------------------

@dataclass
class DeviceModel:
    """Coefficients of one device (and runtime/dtype) for the per-operator model."""

    name: str
    coefficients: dict[str, float]
    dtype: str = "fp32"
    # Inside a deployed network an identity skip is no operator at all; a block measured alone
    # (HW-NAS-Bench) still pays a copy for it.
    elide_identity: bool = False

    def __post_init__(self):
        missing = [c for c in COEFFICIENTS if c not in self.coefficients]
        if missing:
            raise UserError(f"device model {self.name!r} lacks coefficient(s) {missing}")
        if self.dtype not in DTYPE_BYTES:
            raise UserError(f"unknown dtype {self.dtype!r}; use one of {', '.join(DTYPE_BYTES)}")

    def op_latency_ms(self, op: Op) -> float:
        c = self.coefficients
        bandwidth = c[_BANDWIDTH_OF.get(op.op_class, "bandwidth_gbps")]
        memory_ms = op.elements * DTYPE_BYTES[self.dtype] / (bandwidth * 1e6)
        compute_ms = op.macs / (c[f"{op.op_class}_gmacs"] * 1e6) if op.macs else 0.0
        return max(compute_ms, memory_ms) + c["overhead_ms"]

    def ops(self, workload: Workload) -> list[Op]:
        if self.elide_identity and isinstance(workload, Skip) and workload.is_identity:
            return []
        return decompose(workload)

    def latency_ms(self, workload: Workload) -> float:
        return sum(self.op_latency_ms(op) for op in self.ops(workload))

    def breakdown(self, workload: Workload) -> list[tuple[Op, float]]:
        return [(op, self.op_latency_ms(op)) for op in self.ops(workload)]

    def network_latency_ms(self, arch: Architecture) -> float:
        return sum(self.latency_ms(layer.workload) for layer in arch.layers())

    def to_dict(self) -> dict:
        return {"name": self.name, "dtype": self.dtype, "elide_identity": self.elide_identity,
                "coefficients": dict(self.coefficients)}

    @classmethod
    def from_dict(cls, data: dict) -> "DeviceModel":
        try:
            return cls(str(data["name"]), {k: float(v) for k, v in data["coefficients"].items()},
                       str(data.get("dtype", "fp32")), bool(data.get("elide_identity", False)))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UserError("malformed device model record; expected name, dtype and "
                            f"coefficients ({', '.join(COEFFICIENTS)})") from None


# --- fitting --------------------------------------------------------------------------------

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
        assert set(_BANDWIDTH_OF) == {"shuffle"}  # predict() below knows only this one
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
    from scipy.optimize import least_squares

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


# --- real data: HW-NAS-Bench ----------------------------------------------------------------

DEFAULT_HWNAS_PATH = DEFAULT_SOURCE  # the dump in data/hw-nas-bench/
# Devices of HW-NAS-Bench measured on a real CPU, which this model describes.
MEASURED_DEVICES = ("pixel3", "raspi4")


def load_hwnasbench(path: Path | str | None = None) -> dict[str, dict[str, float]]:
    """{device: {block key: latency_ms}} for the measured CPU devices of HW-NAS-Bench."""
    path = Path(path) if path else DEFAULT_HWNAS_PATH
    if not path.is_file():
        raise UserError(f"HW-NAS-Bench data {path} not found; pass --hw-nas-bench "
                        "PATH/fbnet_cached_metrics.json (HW-NAS-Bench's FBNet tables)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); give HW-NAS-Bench's FBNet dump") from None
    if isinstance(data, dict) and isinstance(data.get("fbnet"), dict):
        data = data["fbnet"]
    tables = {}
    for device in MEASURED_DEVICES:
        table = data.get(f"{device}_latency") if isinstance(data, dict) else None
        if not isinstance(table, dict):
            raise UserError(f"{path} has no {device}_latency table; is it HW-NAS-Bench's FBNet part?")
        tables[device] = {k: float(v) for k, v in table.items()}
    return tables


def block_observations(table: dict[str, float]) -> list[Observation]:
    return [Observation(key, (parse_key(key),), ms) for key, ms in table.items() if ms > 0]


def shape_group(workload: Workload) -> str:
    """The layer shape a block belongs to (what a held-out split holds out), or 'fixed'."""
    if isinstance(workload, (ConvBlock, Skip)):
        return (f"H{workload.height}_Cin{workload.c_in}_Cout{workload.c_out}"
                f"_s{workload.stride}")
    return "fixed"


def fit_blocks(table: dict[str, float], name: str, dtype: str = "fp32") -> FitResult:
    """The model of a device whose blocks were measured one by one (identity skips copy)."""
    return fit(block_observations(table), name=name, dtype=dtype, elide_identity=False)


# --- validation -----------------------------------------------------------------------------

@dataclass
class SplitScore:
    """Errors of held-out predictions pooled over the folds of one split scheme."""

    split: str
    folds: int
    blocks: int
    mape_pct: float
    within_10_pct: float
    within_20_pct: float
    spearman: float
    networks: dict[str, float] = field(default_factory=dict)  # arch -> rel. error of the sum


def _score(split: str, folds: int, measured: list[float], predicted: list[float]) -> SplitScore:
    from scipy.stats import spearmanr

    m, p = np.array(measured), np.array(predicted)
    rel = np.abs(p / m - 1)
    return SplitScore(split, folds, len(m), float(100 * rel.mean()),
                      float(100 * np.mean(rel <= 0.10)), float(100 * np.mean(rel <= 0.20)),
                      float(spearmanr(m, p).statistic))


# Networks whose every block HW-NAS-Bench measured at 224 (FBNet-A's 1504 head is not there).
VALIDATION_NETWORKS = ("fbnet_b", "fbnet_c", "fbnet_s8", "fbnet_iphonex")


def validation_fits(table: dict[str, float], seeds: int = 5) -> int:
    """How many fits `validate` runs (for progress bars)."""
    shapes = {shape_group(parse_key(k)) for k in table} - {"fixed"}
    return len(shapes) + seeds + 2


def validate(table: dict[str, float], device: str, *, seeds: int = 5,
             progress: Callable[[], None] | None = None) -> list[SplitScore]:
    """Fit on some layer shapes, predict the others, for several split schemes.

    - leave-one-shape-out: each of the 24 layer shapes (12 per resolution) held out in turn;
    - half of the shapes: a random half held out, `seeds` times;
    - 224 -> 32 and 32 -> 224: fit on one input size, predict every block of the other.
    The stem, head, pool and classifier (one each) stay in every training set: their operator
    classes appear nowhere else. Scores pool the held-out blocks' predictions. For the
    leave-one-shape-out split, each network's latency is also summed from held-out predictions.
    """
    obs = block_observations(table)
    groups = [shape_group(o.workloads[0]) for o in obs]
    shapes = sorted(set(g for g in groups if g != "fixed"))
    scores = []

    def run(held_out: Callable[[int], bool]) -> dict[str, float]:
        train = [o for i, o in enumerate(obs) if not held_out(i)]
        model = fit(train, name=device).model
        if progress:
            progress()
        return {o.label: model.latency_ms(o.workloads[0]) for i, o in enumerate(obs) if held_out(i)}

    # leave one shape out
    loso: dict[str, float] = {}
    for shape in shapes:
        loso.update(run(lambda i, s=shape: groups[i] == s))
    score = _score("leave-one-shape-out", len(shapes), [table[k] for k in loso], list(loso.values()))
    for arch_name in VALIDATION_NETWORKS:
        arch = named_architecture(arch_name)
        keys = [layer.key for layer in arch.layers()]
        if all(k in table for k in keys):
            # fixed parts are never held out: take their measured values, and held-out
            # predictions for every searchable block
            pred = sum(loso.get(k, table[k]) for k in keys)
            score.networks[arch_name] = pred / sum(table[k] for k in keys) - 1
    scores.append(score)

    # random halves of the shapes
    rng = np.random.default_rng(0)
    measured, predicted = [], []
    for _ in range(seeds):
        held = set(rng.choice(shapes, size=len(shapes) // 2, replace=False))
        out = run(lambda i: groups[i] in held)
        measured += [table[k] for k in out]
        predicted += list(out.values())
    scores.append(_score(f"half of the shapes x{seeds}", seeds, measured, predicted))

    # across input sizes
    keys_224 = {w.key for w in space_workloads(SpaceConfig.create(224))}
    space_res = [224 if o.label in keys_224 or (isinstance(o.workloads[0], FullyConnected)
                                                and o.workloads[0].c_in == 1984) else 32
                 for o in obs]
    for src, dst in ((224, 32), (32, 224)):
        out = run(lambda i: space_res[i] == dst)
        scores.append(_score(f"{src} -> {dst}", 1, [table[k] for k in out], list(out.values())))
    return scores


# --- calibration to published network latencies --------------------------------------------

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
