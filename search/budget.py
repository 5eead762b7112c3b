"""Latency budgets that mean the same on every device: relative to a reference price.

A budget in milliseconds means different things on different LUTs (the same network costs
about 10 ms on the S8 LUT at 32x32 and 1 ms on this host's), so comparing two devices' searches
at one --target-ms, or at one --latency-weight of the paper's loss, compares networks at
different points of their trade-off. The reference is the space's mean price on the same LUT:
the expected price of an architecture drawn with every candidate equally likely, which is
also where a search starts (theta uniform). It exists for every space and every LUT.

- `--target-rel F` sets the budget to F x the reference price on the LUT being searched;
- `--latency-unit reference` (search.run's default) makes the fbnet loss use LAT / reference
  instead of LAT in ms, so a latency weight pushes equally hard, relative to the device's own
  scale, on every LUT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fbnet.errors import UserError
from fbnet.lut import LayerTable

REFERENCE_NAME = "the space's mean price"


def reference_ms(table: LayerTable) -> float:
    """The expected price of an architecture of the space with uniform candidates."""
    return table.fixed_ms + float(np.asarray(table.per_layer_ms).mean(1).sum())


def price_range_ms(table: LayerTable) -> tuple[float, float]:
    """The cheapest and the most expensive architecture of the space on this table."""
    ms = np.asarray(table.per_layer_ms)
    return table.fixed_ms + float(ms.min(1).sum()), table.fixed_ms + float(ms.max(1).sum())


@dataclass(frozen=True)
class Budget:
    """--target-ms or --target-rel; resolved to milliseconds on one LUT."""

    target_ms: float | None = None
    target_rel: float | None = None

    def check(self) -> None:
        if self.target_ms is not None and self.target_rel is not None:
            raise UserError("give --target-ms or --target-rel, not both")
        if self.target_ms is not None and not self.target_ms > 0:
            raise UserError(f"--target-ms must be positive, got {self.target_ms}")
        if self.target_rel is not None and not self.target_rel > 0:
            raise UserError(f"--target-rel must be positive, got {self.target_rel}")

    @property
    def given(self) -> bool:
        return self.target_ms is not None or self.target_rel is not None

    def to_ms(self, table: LayerTable) -> float:
        return self.target_ms if self.target_ms is not None \
            else self.target_rel * reference_ms(table)

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
                     f"--target-rel {self.target_rel:g} ({ms:.3f} ms)")
            raise UserError(f"{asked} is below the cheapest architecture of the space on "
                            f"{source} ({cheapest:.3f} ms, every layer at its "
                            "cheapest candidate); raise the budget")
        return ms

    def describe(self) -> str:
        if self.target_ms is not None:
            return f"{self.target_ms:g} ms"
        return f"{self.target_rel:g} x the space's mean price"
