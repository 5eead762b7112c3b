"""Workloads: one distinct measured unit of latency, and its canonical key.

A workload is a block at a fixed input shape: a candidate at one layer shape, or a fixed part
(stem/head conv, pool, classifier). Its key is the string a LUT is indexed by. The keys are
HW-NAS-Bench's own, so its LUTs import without any mapping:

    ConvBlock_H{H}_W{W}_Cin{ci}_Cout{co}_exp{e}_kernel{k}_stride{s}_group{g}
    Skip_H{H}_W{W}_Cin{ci}_Cout{co}_stride{s}
    ConvNorm_H{H}_W{W}_Cin{ci}_Cout{co}_kernel{k}_stride{s}_group{g}   (conv + BN + ReLU)
    AvgP_H{H}_W{W}_Cin{ci}_Cout{co}_kernel{k}_stride{s}                (global average pool)
    FC_Cin{ci}_Cout{co}

H and W are the workload's input size; batch size is always 1. The LUT's metadata (device,
runtime, dtype, threads) says how the numbers were obtained, so keys carry only the shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Union

from fbnet.errors import UserError
from fbnet.space import (CANDIDATE_NAMES, LayerShape, SpaceConfig, conv_out, get_candidate,
                         keeps_shape)


@dataclass(frozen=True)
class ConvBlock:
    """Inverted-residual candidate: 1x1 (g) -> [shuffle] -> kxk depthwise (s) -> 1x1 (g)."""

    height: int
    width: int
    c_in: int
    c_out: int
    expansion: int
    kernel: int
    stride: int
    groups: int

    @property
    def key(self) -> str:
        return (f"ConvBlock_H{self.height}_W{self.width}_Cin{self.c_in}_Cout{self.c_out}"
                f"_exp{self.expansion}_kernel{self.kernel}_stride{self.stride}_group{self.groups}")

    @property
    def mid_channels(self) -> int:
        return self.c_in * self.expansion

    @property
    def has_residual(self) -> bool:
        return keeps_shape(self.stride, self.c_in, self.c_out)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.c_in, self.height, self.width)

    @property
    def macs(self) -> int:
        ho, wo = conv_out(self.height, self.stride), conv_out(self.width, self.stride)
        mid = self.mid_channels
        expand = self.height * self.width * self.c_in * mid // self.groups
        depthwise = ho * wo * mid * self.kernel * self.kernel
        project = ho * wo * mid * self.c_out // self.groups
        return expand + depthwise + project

    @property
    def params(self) -> int:
        mid = self.mid_channels
        convs = (self.c_in * mid + mid * self.c_out) // self.groups + mid * self.kernel**2
        batchnorms = 2 * (mid + mid + self.c_out)
        return convs + batchnorms


@dataclass(frozen=True)
class Skip:
    """The `skip` candidate: identity when shapes match, else 1x1 conv (stride s) + BN + ReLU."""

    height: int
    width: int
    c_in: int
    c_out: int
    stride: int

    @property
    def key(self) -> str:
        return (f"Skip_H{self.height}_W{self.width}_Cin{self.c_in}_Cout{self.c_out}"
                f"_stride{self.stride}")

    @property
    def is_identity(self) -> bool:
        return keeps_shape(self.stride, self.c_in, self.c_out)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.c_in, self.height, self.width)

    @property
    def macs(self) -> int:
        if self.is_identity:
            return 0
        ho, wo = conv_out(self.height, self.stride), conv_out(self.width, self.stride)
        return ho * wo * self.c_in * self.c_out

    @property
    def params(self) -> int:
        return 0 if self.is_identity else self.c_in * self.c_out + 2 * self.c_out


@dataclass(frozen=True)
class ConvNorm:
    """A fixed conv + BN + ReLU: the 3x3 stem and the 1x1 head conv."""

    height: int
    width: int
    c_in: int
    c_out: int
    kernel: int
    stride: int
    groups: int = 1

    @property
    def key(self) -> str:
        return (f"ConvNorm_H{self.height}_W{self.width}_Cin{self.c_in}_Cout{self.c_out}"
                f"_kernel{self.kernel}_stride{self.stride}_group{self.groups}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.c_in, self.height, self.width)

    @property
    def macs(self) -> int:
        ho, wo = conv_out(self.height, self.stride), conv_out(self.width, self.stride)
        return ho * wo * self.c_in * self.c_out * self.kernel**2 // self.groups

    @property
    def params(self) -> int:
        return self.c_in * self.c_out * self.kernel**2 // self.groups + 2 * self.c_out


@dataclass(frozen=True)
class AvgPool:
    """Global average pool over the final H x W (kernel = H), then flatten."""

    height: int
    width: int
    c_in: int
    c_out: int
    kernel: int
    stride: int = 1

    @property
    def key(self) -> str:
        return (f"AvgP_H{self.height}_W{self.width}_Cin{self.c_in}_Cout{self.c_out}"
                f"_kernel{self.kernel}_stride{self.stride}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.c_in, self.height, self.width)

    macs = 0
    params = 0


@dataclass(frozen=True)
class FullyConnected:
    """The classifier: C_in features -> C_out classes, with bias."""

    c_in: int
    c_out: int

    @property
    def key(self) -> str:
        return f"FC_Cin{self.c_in}_Cout{self.c_out}"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.c_in)

    @property
    def macs(self) -> int:
        return self.c_in * self.c_out

    @property
    def params(self) -> int:
        return self.c_in * self.c_out + self.c_out


Workload = Union[ConvBlock, Skip, ConvNorm, AvgPool, FullyConnected]

_INT = r"(\d+)"
_KEY_PATTERNS: tuple[tuple[re.Pattern, type], ...] = (
    (re.compile(rf"ConvBlock_H{_INT}_W{_INT}_Cin{_INT}_Cout{_INT}_exp{_INT}_kernel{_INT}"
                rf"_stride{_INT}_group{_INT}"), ConvBlock),
    (re.compile(rf"Skip_H{_INT}_W{_INT}_Cin{_INT}_Cout{_INT}_stride{_INT}"), Skip),
    (re.compile(rf"ConvNorm_H{_INT}_W{_INT}_Cin{_INT}_Cout{_INT}_kernel{_INT}_stride{_INT}"
                rf"_group{_INT}"), ConvNorm),
    (re.compile(rf"AvgP_H{_INT}_W{_INT}_Cin{_INT}_Cout{_INT}_kernel{_INT}_stride{_INT}"),
     AvgPool),
    (re.compile(rf"FC_Cin{_INT}_Cout{_INT}"), FullyConnected),
)


def parse_key(key: str) -> Workload:
    """The workload a canonical key names (inverse of `.key`)."""
    for pattern, kind in _KEY_PATTERNS:
        match = pattern.fullmatch(key)
        if match:
            return kind(*(int(g) for g in match.groups()))
    raise UserError(
        f"{key!r} is not a block key; keys look like "
        "ConvBlock_H56_W56_Cin24_Cout24_exp3_kernel3_stride1_group1 (see README, 'Block keys')"
    )


def workload_kind(workload: Workload) -> str:
    return type(workload).__name__


def candidate_workload(layer: LayerShape, candidate_name: str) -> Workload:
    """The workload of `candidate_name` placed at `layer`."""
    cand = get_candidate(candidate_name)
    if cand.is_skip:
        return Skip(layer.height, layer.width, layer.c_in, layer.c_out, layer.stride)
    return ConvBlock(layer.height, layer.width, layer.c_in, layer.c_out,
                     cand.expansion, cand.kernel, layer.stride, cand.groups)


@dataclass(frozen=True)
class FixedParts:
    stem: ConvNorm
    head: ConvNorm
    pool: AvgPool
    classifier: FullyConnected


def fixed_parts(space: SpaceConfig) -> FixedParts:
    last = space.layers()[-1]
    final = last.out_height
    r = space.resolution
    return FixedParts(
        stem=ConvNorm(r, r, space.in_channels, space.stem_channels, 3, space.stem_stride),
        head=ConvNorm(final, final, last.c_out, space.head_channels, 1, 1),
        pool=AvgPool(final, final, space.head_channels, space.head_channels, final, 1),
        classifier=FullyConnected(space.head_channels, space.num_classes),
    )


def space_workloads(space: SpaceConfig) -> list[Workload]:
    """Every unique workload of a space: all candidates at every layer shape, plus fixed parts.

    Layers of a stage after its first share a shape, so they share keys; the order is stable
    (fixed stem, layers in order with candidates in index order, then head, pool, classifier).
    """
    parts = fixed_parts(space)
    ordered: dict[str, Workload] = {parts.stem.key: parts.stem}
    for layer in space.layers():
        for name in CANDIDATE_NAMES:
            w = candidate_workload(layer, name)
            ordered.setdefault(w.key, w)
    for w in (parts.head, parts.pool, parts.classifier):
        ordered.setdefault(w.key, w)
    return list(ordered.values())
