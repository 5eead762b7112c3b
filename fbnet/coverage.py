"""What a whole-space LUT covers: the workloads its builders write and its readers can price.

A whole-space LUT holds every unique workload of its space (fbnet.workloads.space_workloads)
and the classifier for the common class counts, so a search on CIFAR-10/100 or ImageNet prices.
With the named architectures (fbnet.arch.NAMED_ARCHITECTURES), it also holds every part of each
of them laid out at the space's resolution: their own stems, widths and heads (FBNet-A's 1504
head, MobileNetV2's 32-channel stem) are not in the FBNet space.
"""

from __future__ import annotations

from fbnet.arch import NAMED_ARCHITECTURES, Architecture, named_architecture
from fbnet.space import SpaceConfig
from fbnet.workloads import FullyConnected, Workload, space_workloads

# Classifier sizes every whole-space LUT covers (CIFAR-10, CIFAR-100, ImageNet).
CLASSIFIER_CLASSES = (10, 100, 1000)


def _classifiers(head_channels: int) -> list[Workload]:
    return [FullyConnected(head_channels, n) for n in CLASSIFIER_CLASSES]


def architecture_workloads(arch: Architecture) -> list[Workload]:
    """An architecture's unique workloads, with a classifier for every one of
    CLASSIFIER_CLASSES (so it prices on CIFAR-10/100, Fashion-MNIST and ImageNet alike)."""
    parts = [layer.workload for layer in arch.layers()] + _classifiers(arch.space.head_channels)
    return list({w.key: w for w in parts}.values())


def named_workloads(resolution: int) -> dict[str, list[Workload]]:
    """Per named architecture, its unique workloads at `resolution`, with a classifier for
    every one of CLASSIFIER_CLASSES."""
    return {name: architecture_workloads(named_architecture(name, resolution=resolution))
            for name in NAMED_ARCHITECTURES}


def lut_workloads(space: SpaceConfig, *, named: bool = False) -> list[Workload]:
    """The space's unique workloads plus its classifiers for the common class counts and, with
    `named`, every named architecture's workloads at the space's resolution."""
    workloads = {w.key: w for w in space_workloads(space) + _classifiers(space.head_channels)}
    if named:
        for parts in named_workloads(space.resolution).values():
            workloads.update({w.key: w for w in parts if w.key not in workloads})
    return list(workloads.values())


def named_only_keys(space: SpaceConfig) -> dict[str, list[str]]:
    """Per named architecture, the keys it needs beyond the space's own coverage."""
    own = {w.key for w in lut_workloads(space)}
    return {name: [w.key for w in parts if w.key not in own]
            for name, parts in named_workloads(space.resolution).items()}
