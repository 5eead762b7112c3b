"""The device model: a roofline per operator plus a fixed dispatch cost.

One operator costs

    latency_ms = max(MACs / throughput[class], bytes moved / bandwidth) + overhead

so a device is a handful of coefficients: one throughput per MAC class (GMAC/s), a streaming
bandwidth and a (slower, strided) transpose bandwidth for the channel shuffle (GB/s), and one
per-operator overhead (ms).

What the model does not know: kernel fusion across blocks, cache effects between layers,
threading, thermal state. Its validation on real phone data (profiler.estimation.validation)
says how much that costs; `python -m profiler.estimate --report` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fbnet.arch import Architecture
from fbnet.errors import UserError
from fbnet.workloads import Skip, Workload
from profiler.estimation.operators import MAC_CLASSES, Op, decompose

MODEL_NAME = "fbnet-hw per-operator roofline/1"
DTYPE_BYTES = {"fp32": 4, "fp16": 2, "int8": 1}
# Coefficient names, in the order of the fitted parameter vector.
THROUGHPUTS = tuple(f"{c}_gmacs" for c in MAC_CLASSES)
COEFFICIENTS = THROUGHPUTS + ("bandwidth_gbps", "transpose_gbps", "overhead_ms")
# A channel shuffle is a strided permutation, not a stream: on HW-NAS-Bench's Pixel 3 pricing
# it at the streaming bandwidth leaves every group-2 block ~40% off (too cheap at 112x112, too
# dear at 7x7), so it gets its own bandwidth.
BANDWIDTH_OF = {"shuffle": "transpose_gbps"}


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
        bandwidth = c[BANDWIDTH_OF.get(op.op_class, "bandwidth_gbps")]
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

