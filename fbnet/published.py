"""Published facts about the named architectures: the one place their numbers live.

Every number the project compares with or calibrates to (ImageNet top-1, end-to-end latency on
the paper's phones) is one typed record here, cited one way: "<paper>, <table>". Records the
project's reference notes flag as transcriptions that could not be checked against the paper
itself carry `uncertain=True`.

Architecture names are those of fbnet.arch (`fbnet_a`, `mobilenet_v2`, ...), plus `mnasnet` and
`mobilenet_v2_1.3`, which the paper compares with; fbnet.arch.published_architecture builds
each of them in this block space.
"""

from __future__ import annotations

from dataclasses import dataclass

FBNET_PAPER = "FBNet (Wu et al., CVPR 2019)"
# ImageNet top-1 and latencies of the paper were measured on 224x224 inputs.
PUBLISHED_RESOLUTION = 224
METRICS = ("top1", "latency")


@dataclass(frozen=True)
class PublishedFact:
    architecture: str
    metric: str  # "top1" (ImageNet validation accuracy) or "latency" (end to end, batch 1)
    value: float
    unit: str  # "%" for top1, "ms" for latency
    source: str  # "FBNet (Wu et al., CVPR 2019), Table 3"
    device: str | None = None  # device profile name (fbnet-hw's), for latencies
    uncertain: bool = False  # a transcription not checked against the paper itself

    def __post_init__(self):
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; one of {', '.join(METRICS)}")
        if (self.metric == "latency") != (self.device is not None):
            raise ValueError(f"{self.architecture}: a latency needs a device, a top-1 none")

    @property
    def citation(self) -> str:
        return self.source + (" (transcription, unverified)" if self.uncertain else "")


def _table(n: int) -> str:
    return f"{FBNET_PAPER}, Table {n}"


def _top1(arch: str, percent: float, table: int, uncertain: bool = False) -> PublishedFact:
    return PublishedFact(arch, "top1", percent, "%", _table(table), None, uncertain)


def _latency(arch: str, device: str, ms: float, table: int,
             uncertain: bool = False) -> PublishedFact:
    return PublishedFact(arch, "latency", ms, "ms", _table(table), device, uncertain)


# Order: Table 3 (the S8 comparison) before Table 5 (S8 vs iPhone X); calibration keeps it.
FACTS: tuple[PublishedFact, ...] = (
    _top1("mobilenet_v2", 72.0, 3, uncertain=True),
    _top1("mobilenet_v2_1.3", 74.4, 3, uncertain=True),
    _top1("mnasnet", 74.0, 3),
    _top1("fbnet_a", 73.0, 3),
    _top1("fbnet_b", 74.1, 3),
    _top1("fbnet_c", 74.9, 3),
    _top1("fbnet_s8", 73.27, 5, uncertain=True),
    _top1("fbnet_iphonex", 73.20, 5, uncertain=True),
    _latency("mobilenet_v2", "s8", 21.7, 3),
    _latency("mobilenet_v2_1.3", "s8", 33.8, 3, uncertain=True),
    _latency("mnasnet", "s8", 23.7, 3),
    _latency("fbnet_a", "s8", 19.8, 3),
    _latency("fbnet_b", "s8", 23.1, 3),
    _latency("fbnet_c", "s8", 28.1, 3),
    _latency("fbnet_s8", "s8", 22.12, 5, uncertain=True),
    _latency("fbnet_iphonex", "s8", 23.33, 5, uncertain=True),
    _latency("fbnet_s8", "iphone_x", 27.53, 5, uncertain=True),
    _latency("fbnet_iphonex", "iphone_x", 19.84, 5, uncertain=True),
)


def latencies(device: str) -> list[PublishedFact]:
    """The published end-to-end latencies on one device, in table order."""
    return [f for f in FACTS if f.metric == "latency" and f.device == device]


def latency_ms(architecture: str, device: str) -> float | None:
    return next((f.value for f in latencies(device) if f.architecture == architecture), None)


def top1(architecture: str) -> PublishedFact | None:
    return next((f for f in FACTS if f.metric == "top1" and f.architecture == architecture),
                None)


def top1_fraction(architecture: str) -> float | None:
    """ImageNet top-1 in [0, 1]; None when the paper gives none."""
    fact = top1(architecture)
    return None if fact is None else round(fact.value / 100, 6)
