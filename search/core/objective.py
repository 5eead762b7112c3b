"""What a search optimizes, as one object: a LUT's latency over a space, a budget, and the loss.

An `Objective` is built once per command from a LUT (parsed once), the space it prices, a loss
(search/core/loss.py) and a budget (search/core/budget.py). Building it prices the budget on
that LUT (--target-arch's price, --target-rel's reference, the one-line error when no
architecture of the space meets it) and settles the loss's constants. After that:

- `price_ms(candidates)` prices an architecture of the space, the one way every command does it
  (the search's log, its result, specializing, the pair protocol's tables);
- `latency_model()` is the LUT as tensors, for the relaxed architecture's expected latency;
- `loss(ce, latency_ms)` is what theta trains on; `latency_loss` is its latency term alone.

A new objective (energy from a LUT's extra fields, a measured-accuracy term) is a new metric
table and loss here; the search, specializing and the pair protocol take it unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from fbnet.arch import Architecture
from fbnet.lut import LayerTable, Lut
from fbnet.space import SpaceConfig
from search.core.budget import DEFAULT_TARGET_ARCH, Budget, reference_ms
from search.core.loss import LatencyModel, LossConfig, dnas_loss, latency_only_loss


@dataclass(frozen=True)
class Objective:
    lut: Lut
    space: SpaceConfig  # the space priced (full width; a search's supernet may train narrower)
    table: LayerTable
    loss_config: LossConfig  # settled: target_ms and reference_ms set where they apply
    budget: Budget = Budget()  # priced on `lut`
    note: str | None = None  # how the objective differs from the one asked for, and why

    @classmethod
    def build(cls, lut: Lut, space: SpaceConfig, loss_config: LossConfig,
              budget: Budget = Budget(), *, default_budget: bool = False,
              normalize_latency: bool = False) -> "Objective":
        """Price `budget` on `lut` and settle the loss. With the default budget (MobileNetV2's
        price) on a LUT that does not price MobileNetV2, the fbnet loss and a note saying so;
        `normalize_latency` prices the fbnet loss in units of the space's mean price."""
        table = lut.layer_table(space)  # a one-line error listing what the LUT lacks
        note = None
        if default_budget and lut.missing_keys(
                layer.key for layer in budget.target_architecture(space).layers()):
            budget, loss_config = Budget(), replace(loss_config, kind="fbnet")
            note = (f"{lut.path} does not price {DEFAULT_TARGET_ARCH}, so the search uses the "
                    f"fbnet loss (--latency-weight {loss_config.latency_weight:g})")
        budget = budget.priced(lut, space)
        if budget.given:
            loss_config = replace(loss_config,
                                  target_ms=budget.resolve_ms(table, str(lut.path)))
        if normalize_latency:
            loss_config = replace(loss_config, reference_ms=reference_ms(table))
        loss_config.check()
        return cls(lut, space, table, loss_config, budget, note)

    @property
    def budget_ms(self) -> float | None:
        return self.loss_config.target_ms if self.budget.given else None

    def price_ms(self, candidates: Sequence[str]) -> float:
        """The LUT price of the architecture of this space with these candidates."""
        return self.lut.price(Architecture("priced", self.space, tuple(candidates))).total_ms

    def latency_model(self) -> LatencyModel:
        return LatencyModel(self.table)

    def loss(self, ce: torch.Tensor, latency_ms: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the latency-aware loss; `ce` and `latency_ms` are [B]."""
        return dnas_loss(self.loss_config, ce, latency_ms)

    def latency_loss(self, latency_ms: torch.Tensor) -> torch.Tensor:
        """The latency term alone (CE held at 1)."""
        return latency_only_loss(self.loss_config, latency_ms)

    def describe(self) -> str:
        return self.loss_config.describe() + (f" (budget: {self.budget.describe()})"
                                              if self.budget.given else "")
