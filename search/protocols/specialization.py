"""The best architecture of a searched supernet's space under a latency budget on any LUT:
Once-for-All's train once, specialize for many devices, on this space and these LUTs.

The objective comes from the supernet: each layer's preference log P_theta(candidate), summed
over the layers. The space is a chain, so the best architecture under a budget is found
exactly: dynamic programming over the layers keeps, for every reachable LUT price, the best
score, and drops every partial architecture that another one beats on both price and score (a
Pareto front). No discretization, no sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fbnet.arch import Architecture
from fbnet.errors import UserError
from fbnet.lut import LayerTable, Lut
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from search.core.budget import Budget
from search.core.dnas import load_trained_supernet
from search.core.loss import LossConfig
from search.core.objective import Objective


@dataclass(frozen=True)
class Specialized:
    candidates: tuple[str, ...]
    latency_ms: float
    score: float  # the objective summed over the layers (log P_theta for a supernet)
    budget_ms: float
    front_size: int  # largest Pareto front the dynamic program held


def best_under_budget(scores: np.ndarray, table: LayerTable, budget_ms: float
                      ) -> Specialized:
    """The architecture maximizing sum_l scores[l, c_l] with LUT price <= budget_ms, exactly.

    Dynamic programming over the chain of layers on Pareto fronts of (price, score): after each
    layer, a partial architecture is kept only if no other one is both cheaper-or-equal and
    better-or-equal. The prices are summed in float64 from the table's entries."""
    ms = np.asarray(table.per_layer_ms, dtype=np.float64)
    layers, k = ms.shape
    if scores.shape != (layers, k):
        raise UserError(f"the objective has {scores.shape[0]} layers x {scores.shape[1]} "
                        f"candidates but the LUT's space has {layers} x {k}")
    cheapest = table.fixed_ms + ms.min(1).sum()
    if budget_ms < cheapest:
        raise UserError(f"a budget of {budget_ms:.3f} ms is below the cheapest architecture of "
                        f"the space on this LUT ({cheapest:.3f} ms); raise the budget")
    # cheapest possible completion from layer l on: prunes partials that cannot fit the budget
    rest = np.concatenate([np.cumsum(ms.min(1)[::-1])[::-1], [0.0]])
    price = np.array([table.fixed_ms])
    score = np.array([0.0])
    back: list[tuple[np.ndarray, np.ndarray]] = []  # per layer: (parent index, candidate)
    largest = 1
    for l in range(layers):
        p = (price[:, None] + ms[l][None, :]).ravel()
        s = (score[:, None] + scores[l][None, :]).ravel()
        parent = np.repeat(np.arange(len(price)), k)
        cand = np.tile(np.arange(k), len(price))
        fits = p + rest[l + 1] <= budget_ms + 1e-12
        p, s, parent, cand = p[fits], s[fits], parent[fits], cand[fits]
        order = np.lexsort((-s, p))  # by price, best score first among equal prices
        p, s, parent, cand = p[order], s[order], parent[order], cand[order]
        best_so_far = np.maximum.accumulate(s)
        keep = np.ones(len(s), dtype=bool)
        keep[1:] = s[1:] > best_so_far[:-1]  # strictly better than every cheaper partial
        price, score = p[keep], s[keep]
        back.append((parent[keep], cand[keep]))
        largest = max(largest, len(price))
    best = int(np.argmax(score))
    picks = []
    for parent, cand in reversed(back):
        picks.append(int(cand[best]))
        best = int(parent[best])
    picks.reverse()
    chosen = tuple(CANDIDATE_NAMES[i] for i in picks)
    return Specialized(chosen, float(table.fixed_ms + ms[np.arange(layers), picks].sum()),
                       float(scores[np.arange(layers), picks].sum()), budget_ms, largest)


def same_space(a: SpaceConfig, b: SpaceConfig) -> bool:
    """One space up to the classifier's classes (a LUT may price 100 of them, a network 10)."""
    return _without_classes(a) == _without_classes(b)


def _without_classes(space: SpaceConfig) -> dict:
    fields = space.to_dict()
    fields.pop("num_classes", None)
    return fields


def check_same_space(supernet_space: SpaceConfig, lut_space: SpaceConfig, source: Path) -> None:
    if not same_space(supernet_space, lut_space):
        a, b = _without_classes(supernet_space), _without_classes(lut_space)
        diff = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        raise UserError(f"{source} was searched in another space than the LUT covers (differs "
                        f"in {', '.join(diff[:3])}); give a supernet searched at this LUT's "
                        "resolution and layout")


@dataclass(frozen=True)
class LayerPreferences:
    """What specializing maximizes: a score per layer and candidate, summed over the layers."""
    space: SpaceConfig
    scores: np.ndarray  # layers x candidates
    source: Path  # where it came from, named in errors

    def favourite(self) -> tuple[str, ...]:
        """The best-scored candidate of every layer: the answer under any budget it fits."""
        return tuple(CANDIDATE_NAMES[i] for i in self.scores.argmax(1))


def load_preferences(checkpoint: Path) -> LayerPreferences:
    """A trained supernet's preferences: log P_theta per layer and candidate."""
    trained = load_trained_supernet(checkpoint)
    log_probs = torch.log_softmax(trained.model.theta.detach().double(), -1).numpy()
    return LayerPreferences(trained.space, log_probs, checkpoint)


def budget_objective(preferences: LayerPreferences, lut: Lut, budget: Budget) -> Objective:
    """The objective of specializing `preferences` on `lut` (at their resolution:
    search.core.luts.resolve_lut picks a sibling) under `budget`: a one-line error where the
    LUT prices another space or no architecture meets the budget."""
    lut_space = lut.space or preferences.space
    check_same_space(preferences.space.with_classes(lut_space.num_classes), lut_space,
                     preferences.source)
    return Objective.build(lut, preferences.space, LossConfig("target"), budget)


def specialize(preferences: LayerPreferences, objective: Objective
               ) -> tuple[Architecture, Specialized]:
    """The architecture maximizing `preferences` within `objective`'s budget, exactly."""
    found = best_under_budget(preferences.scores, objective.table, objective.budget_ms)
    arch = Architecture(f"specialized_{Path(objective.lut.path).stem}", objective.space,
                        found.candidates)
    return arch, found
