"""Latency budgets that mean the same on every device: relative to a reference price.

A budget in milliseconds means different things on different LUTs (the same network costs
about 10 ms on the S8 LUT at 32x32 and 1 ms on this host's), so comparing two devices' searches
at one --target-ms, or at one --latency-weight of the paper's loss, compares networks at
different points of their trade-off. The reference is the space's mean price on the same LUT:
the expected price of an architecture drawn with every candidate equally likely, which is
also where a search starts (theta uniform). It exists for every space and every LUT.

- `--target-rel F` sets the budget to F x the reference price on the LUT being searched;
- `--target-arch NAME` sets it to a named network's price on that LUT: what a user would
  otherwise ship. search.run's default is MobileNetV2's price (DEFAULT_TARGET_ARCH);
- `--latency-unit reference` (search.run's default) makes the fbnet loss use LAT / reference
  instead of LAT in ms, so a latency weight pushes equally hard, relative to the device's own
  scale, on every LUT.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fbnet.arch import Architecture, load_architecture
from fbnet.errors import UserError
from fbnet.lut import LayerTable, Lut
from fbnet.space import SpaceConfig

REFERENCE_NAME = "the space's mean price"
# search.run's budget when given none: the most accurate network at MobileNetV2's price on the
# searched LUT (the obvious alternative a searched network has to beat)
DEFAULT_TARGET_ARCH = "mobilenet_v2"


def reference_ms(table: LayerTable) -> float:
    """The expected price of an architecture of the space with uniform candidates."""
    return table.fixed_ms + float(np.asarray(table.per_layer_ms).mean(1).sum())


def price_range_ms(table: LayerTable) -> tuple[float, float]:
    """The cheapest and the most expensive architecture of the space on this table."""
    ms = np.asarray(table.per_layer_ms)
    return table.fixed_ms + float(ms.min(1).sum()), table.fixed_ms + float(ms.max(1).sum())


@dataclass(frozen=True)
class Budget:
    """--target-ms, --target-rel or --target-arch; resolved to milliseconds on one LUT."""

    target_ms: float | None = None
    target_rel: float | None = None
    target_arch: str | None = None
    arch_ms: float | None = None  # target_arch's price on the searched LUT (Budget.priced)

    def check(self) -> None:
        given = [f for f, v in (("--target-ms", self.target_ms), ("--target-rel", self.target_rel),
                                ("--target-arch", self.target_arch)) if v is not None]
        if len(given) > 1:
            raise UserError(f"give {given[0]} or {given[1]}, not both")
        if self.target_ms is not None and not self.target_ms > 0:
            raise UserError(f"--target-ms must be positive, got {self.target_ms}")
        if self.target_rel is not None and not self.target_rel > 0:
            raise UserError(f"--target-rel must be positive, got {self.target_rel}")

    @property
    def given(self) -> bool:
        return any(v is not None for v in (self.target_ms, self.target_rel, self.target_arch))

    def target_architecture(self, space: SpaceConfig) -> Architecture:
        return load_architecture(self.target_arch, resolution=space.resolution,
                                 num_classes=space.num_classes)

    def priced(self, lut: Lut, space: SpaceConfig) -> "Budget":
        """This budget with --target-arch's price on `lut` (a one-line error where the LUT
        does not price that network)."""
        if self.target_arch is None:
            return self
        return replace(self, arch_ms=lut.price(self.target_architecture(space)).total_ms)

    def to_ms(self, table: LayerTable) -> float:
        if self.target_ms is not None:
            return self.target_ms
        if self.target_arch is not None:
            if self.arch_ms is None:
                raise ValueError("Budget.priced() gives --target-arch its price first")
            return self.arch_ms
        return self.target_rel * reference_ms(table)

    def reachable(self, table: LayerTable) -> bool:
        """Whether some architecture of the space meets the budget on `table`."""
        return self.to_ms(table) >= price_range_ms(table)[0]

    def resolve_ms(self, table: LayerTable, source: str) -> float:
        """The budget in ms on the LUT `table` was priced from (named `source` in errors); a
        one-line error when no architecture can meet it."""
        ms = self.to_ms(table)
        cheapest, _ = price_range_ms(table)
        if ms < cheapest:
            asked = (f"--target-ms {self.target_ms:g}" if self.target_ms is not None else
                     f"--target-arch {self.target_arch} ({ms:.3f} ms)" if self.target_arch else
                     f"--target-rel {self.target_rel:g} ({ms:.3f} ms)")
            raise UserError(f"{asked} is below the cheapest architecture of the space on "
                            f"{source} ({cheapest:.3f} ms, every layer at its "
                            "cheapest candidate); raise the budget")
        return ms

    def describe(self) -> str:
        if self.target_ms is not None:
            return f"{self.target_ms:g} ms"
        if self.target_arch is not None:
            price = f" ({self.arch_ms:.3f} ms)" if self.arch_ms is not None else ""
            return f"the price of {self.target_arch}{price}"
        return f"{self.target_rel:g} x the space's mean price"
