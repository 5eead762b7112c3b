"""Torch modules for the candidate blocks and fixed parts, exactly as measured in the LUT.

Block structure (FBNet paper + its era's code): 1x1 conv (groups g, kept even at e=1) + BN +
ReLU, channel shuffle when g=2, kxk depthwise (stride s) + BN + ReLU, 1x1 conv (groups g) + BN,
residual add when stride 1 and C_in == C_out. Convs have no bias; BN follows every conv.
"""

from __future__ import annotations

import torch
from torch import nn

from fbnet.workloads import AvgPool, ConvBlock, ConvNorm, FullyConnected, Skip, Workload


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1,
                 relu: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle; reshape/transpose only, so it exports and lowers cleanly."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    def __init__(self, spec: ConvBlock):
        super().__init__()
        mid = spec.mid_channels
        self.expand = ConvBN(spec.c_in, mid, 1, groups=spec.groups)
        self.shuffle = ChannelShuffle(spec.groups) if spec.groups > 1 else nn.Identity()
        self.depthwise = ConvBN(mid, mid, spec.kernel, spec.stride, groups=mid)
        self.project = ConvBN(mid, spec.c_out, 1, groups=spec.groups, relu=False)
        self.residual = spec.has_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.shuffle(self.expand(x))))
        return out + x if self.residual else out


class GlobalAvgPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def skip_module(spec: Skip) -> nn.Module:
    if spec.is_identity:
        return nn.Identity()
    return ConvBN(spec.c_in, spec.c_out, 1, spec.stride)


def build_workload_module(workload: Workload) -> nn.Module:
    if isinstance(workload, ConvBlock):
        return InvertedResidual(workload)
    if isinstance(workload, Skip):
        return skip_module(workload)
    if isinstance(workload, ConvNorm):
        return ConvBN(workload.c_in, workload.c_out, workload.kernel, workload.stride,
                      workload.groups)
    if isinstance(workload, AvgPool):
        return GlobalAvgPool()
    if isinstance(workload, FullyConnected):
        return nn.Linear(workload.c_in, workload.c_out)
    raise TypeError(f"not a workload: {workload!r}")
