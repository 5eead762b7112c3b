"""The latency-aware DNAS loss, priced by a LUT.

Expected latency of a relaxed architecture, per example b (paper, Sec. 3.2):

    LAT_b = fixed_ms + sum_l sum_i m_{b,l,i} * LUT_ms[l][i]

`fbnet` (the paper's loss, alpha 0.2, beta 0.6, latency in ms):

    L_b = CE_b * alpha * log(1 + LAT_b) ** (beta * latency_weight)

  The paper writes log(LAT). log(LAT) is negative below 1 ms (a fractional power of it is NaN),
  and as LAT falls toward 1 ms the factor falls to 0 and wipes out CE, so the search would
  reward a network for being fast at any accuracy. Our rule: use
  log(1 + LAT_ms). It is positive and smooth for every latency, keeps a gradient for tiny
  networks, and differs from log(LAT) by log(1 + 1/LAT): < 4.4% of the log at 23 ms (FBNet-B on
  the S8), so ImageNet-scale searches behave as in the paper. `latency_weight` scales the
  exponent beta, the paper's knob for the latency term's strength: 1 is the paper's loss, 0 is
  alpha * CE (accuracy only), larger values push harder toward fast networks.

Only theta is trained on this loss. The weight step minimizes plain CE: the latency factor does
not depend on w and would only rescale each example's CE gradient (by a factor that moves with
--latency-weight), i.e. silently change the weights' learning rate.

With a reference price R (`--latency-unit reference`, search.run's default; search/core/budget.py)
the loss uses LAT / R in place of LAT_ms, so one latency weight pushes alike on devices of
different speed.

`target` (drive the network to a budget T ms):

    L_b = CE_b + latency_weight * max(0, LAT_b / T - 1)

  No pull below the budget, a penalty that grows linearly with the relative excess above it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fbnet.errors import UserError
from fbnet.lut import LayerTable

LOSSES = ("fbnet", "target")


@dataclass(frozen=True)
class LossConfig:
    kind: str = "fbnet"
    alpha: float = 0.2
    beta: float = 0.6
    latency_weight: float = 1.0
    target_ms: float | None = None
    # fbnet loss: price LAT in units of this reference price (search/core/budget.py) instead of ms
    reference_ms: float | None = None

    def check(self) -> None:
        if self.kind not in LOSSES:
            raise UserError(f"unknown loss {self.kind!r}; use one of {', '.join(LOSSES)}")
        if self.kind == "target" and (self.target_ms is None or not self.target_ms > 0):
            raise UserError("--loss target needs a positive budget, e.g. --target-ms 5")
        if self.kind == "fbnet" and not (self.alpha > 0 and self.beta > 0):
            raise UserError(f"--alpha and --beta must be positive, got {self.alpha}, {self.beta}")
        if self.reference_ms is not None and not self.reference_ms > 0:
            raise UserError(f"the reference price must be positive, got {self.reference_ms}")
        if self.latency_weight < 0:
            raise UserError(f"--latency-weight must be >= 0, got {self.latency_weight}")

    def describe(self) -> str:
        if self.kind == "fbnet":
            lat = (f"LAT / {self.reference_ms:.4g} ms" if self.reference_ms is not None
                   else "LAT_ms")
            return f"CE * {self.alpha} * log(1 + {lat})^({self.beta} * {self.latency_weight})"
        return f"CE + {self.latency_weight} * max(0, LAT_ms / {self.target_ms} - 1)"


class LatencyModel(torch.nn.Module):
    """The LUT as tensors: expected latency of per-example masks [B, L, 9] -> [B] in ms."""

    def __init__(self, table: LayerTable):
        super().__init__()
        self.fixed_ms = float(table.fixed_ms)
        self.register_buffer("per_layer_ms", torch.tensor(table.per_layer_ms, dtype=torch.float32))

    def forward(self, mask_weights: torch.Tensor) -> torch.Tensor:
        return self.fixed_ms + (mask_weights * self.per_layer_ms).sum(dim=(1, 2))

    def cheapest(self) -> list[int]:
        return self.per_layer_ms.argmin(-1).tolist()


def latency_factor(cfg: LossConfig, latency_ms: torch.Tensor) -> torch.Tensor:
    """The fbnet loss's multiplier on CE (per example)."""
    lat = latency_ms.clamp_min(0)
    if cfg.reference_ms is not None:
        lat = lat / cfg.reference_ms
    return cfg.alpha * torch.log1p(lat).pow(cfg.beta * cfg.latency_weight)


def dnas_loss(cfg: LossConfig, ce: torch.Tensor, latency_ms: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the per-example loss; `ce` and `latency_ms` are [B]."""
    if cfg.kind == "fbnet":
        return (ce * latency_factor(cfg, latency_ms)).mean()
    excess = torch.relu(latency_ms / cfg.target_ms - 1.0)
    return (ce + cfg.latency_weight * excess).mean()


def latency_only_loss(cfg: LossConfig, latency_ms: torch.Tensor) -> torch.Tensor:
    """The latency term alone (CE held at 1): what sanity check (a) optimizes."""
    if cfg.kind == "fbnet":
        return latency_factor(cfg, latency_ms).mean()
    return (cfg.latency_weight * torch.relu(latency_ms / cfg.target_ms - 1.0)).mean()
