"""A network's latency read off a LUT, in the LUT's own space: the named architectures every
LUT report prices (profiler.lut show/diff, profiler.compare) and the pricing of one of them or
of an arch file."""

from __future__ import annotations

from dataclasses import dataclass

from fbnet.arch import load_architecture
from fbnet.errors import UserError
from fbnet.lut import Lut
from fbnet.space import SpaceConfig

DEFAULT_ARCHS = ("fbnet_a", "fbnet_b", "fbnet_c", "fbnet_s8", "fbnet_iphonex")


def lut_space(lut: Lut) -> SpaceConfig:
    if not lut.space:
        raise UserError(f"{lut.path or lut.device.name} records no 'space'; re-create it with "
                        "python -m profiler.run or profiler.lut import")
    return lut.space


@dataclass
class ArchPrice:
    arch: str
    latency_ms: float | None  # None when the LUT lacks some of the network's blocks
    missing: list[str]


def price_arch(lut: Lut, spec: str, *, explicit: bool = False) -> ArchPrice:
    """Price a named architecture in the LUT's space (its resolution and classes), or an arch file.

    Named architectures whose own macro-architecture differs from the LUT's (FBNet-A's 1504-wide
    head at 224) come back with the keys the LUT lacks; `explicit` (a user's --arch) makes that
    an error instead.
    """
    space = lut_space(lut)
    named = not spec.endswith(".json")
    arch = (load_architecture(spec, resolution=space.resolution, num_classes=space.num_classes)
            if named else load_architecture(spec))
    missing = lut.missing_keys(layer.key for layer in arch.layers())
    if missing and explicit:
        lut.require([layer.key for layer in arch.layers()], f"architecture {arch.name}")
    if missing:
        return ArchPrice(arch.name, None, missing)
    return ArchPrice(arch.name, lut.price(arch).total_ms, [])
