"""`FBNet`: the nn.Module of any architecture, built from the same blocks the LUT measures."""

from __future__ import annotations

import torch
from torch import nn

from fbnet.arch import Architecture
from fbnet.blocks import build_workload_module


class FBNet(nn.Module):
    """stem -> searchable layers -> head conv -> global pool -> classifier.

    Each part is `build_workload_module` of the workload the LUT prices it by, so the network
    is exactly the sum of the measured blocks.
    """

    def __init__(self, arch: Architecture, dropout: float = 0.0):
        super().__init__()
        self.arch = arch
        layers = arch.layers()
        modules = {layer.label: build_workload_module(layer.workload) for layer in layers}
        self.stem = modules["stem"]
        self.blocks = nn.Sequential(*(modules[layer.label] for layer in layers[1:-3]))
        self.head = modules["head"]
        self.pool = modules["pool"]
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = modules["classifier"]
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.dropout(self.pool(x)))

    def example_input(self, batch: int = 1) -> torch.Tensor:
        s = self.arch.space
        return torch.randn(batch, s.in_channels, s.resolution, s.resolution)
