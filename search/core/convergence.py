"""Has a search converged? One criterion, stated once, used by the log, the summary and tests.

A search has converged when both hold:

- decisive: the median over layers of P_theta(argmax candidate) is at least
  MIN_MEDIAN_ARGMAX_PROB (0.5). A near-uniform theta has 1/9 = 0.11 everywhere and cannot meet
  it; 0.5 means that in most layers one candidate is drawn at least as often as all others
  together.
- stable: at most MAX_UNSTABLE_LAYERS_FRACTION (10%, 2 of 22 layers) changed their argmax at any
  point during the last STABLE_WINDOW (20%) of the theta steps. A layer whose two best candidates
  cost and score the same may keep swapping them without changing what the search found.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

MIN_MEDIAN_ARGMAX_PROB = 0.5
STABLE_WINDOW = 0.2
MAX_UNSTABLE_LAYERS_FRACTION = 0.1
CRITERION = (f"median P(argmax) >= {MIN_MEDIAN_ARGMAX_PROB} and at most "
             f"{MAX_UNSTABLE_LAYERS_FRACTION:.0%} of the layers changed their argmax in the last "
             f"{STABLE_WINDOW:.0%} of the theta steps")


def argmax_probabilities(theta: torch.Tensor) -> list[float]:
    """P_theta of each layer's argmax candidate."""
    return torch.softmax(theta.detach().float(), dim=-1).max(-1).values.tolist()


def layers_changed(trace: list[list[int]], window: float = STABLE_WINDOW) -> int | None:
    """How many layers took another argmax at any theta step in the last `window` of `trace`
    (one argmax row per theta step) than at its end; None before any theta step."""
    if not trace:
        return None
    start = max(0, len(trace) - max(1, math.ceil(window * len(trace))) - 1)
    final = trace[-1]
    return sum(any(row[l] != final[l] for row in trace[start:]) for l in range(len(final)))


@dataclass(frozen=True)
class Convergence:
    median_argmax_prob: float
    min_argmax_prob: float
    entropy_nats: float
    layers: int
    layers_changed_last: int | None  # in the last STABLE_WINDOW of the theta steps
    theta_steps: int

    @property
    def decisive(self) -> bool:
        return self.median_argmax_prob >= MIN_MEDIAN_ARGMAX_PROB

    @property
    def stable(self) -> bool:
        return (self.layers_changed_last is not None and
                self.layers_changed_last <= MAX_UNSTABLE_LAYERS_FRACTION * self.layers)

    @property
    def converged(self) -> bool:
        return self.decisive and self.stable

    def to_dict(self) -> dict:
        return {**asdict(self), "converged": self.converged, "criterion": CRITERION}

    def describe(self) -> str:
        verdict = "converged" if self.converged else "NOT converged"
        why = []
        if not self.decisive:
            why.append(f"median P(argmax) {self.median_argmax_prob:.2f} < "
                       f"{MIN_MEDIAN_ARGMAX_PROB}")
        if not self.stable:
            why.append("no theta steps yet" if self.layers_changed_last is None else
                       f"{self.layers_changed_last} layers still changing")
        return (f"{verdict}: P(argmax) median {self.median_argmax_prob:.2f}, min "
                f"{self.min_argmax_prob:.2f}; entropy {self.entropy_nats:.3f} nats (uniform "
                f"{math.log(9):.3f}); {self.layers_changed_last} of {self.layers} layers changed "
                f"argmax in the last {STABLE_WINDOW:.0%} of {self.theta_steps} theta steps"
                + (f" ({'; '.join(why)})" if why else "")
                + f". Criterion: {CRITERION}")


def assess(theta: torch.Tensor, trace: list[list[int]]) -> Convergence:
    probs = argmax_probabilities(theta)
    logp = torch.log_softmax(theta.detach().float(), dim=-1)
    entropy = float(-(logp.exp() * logp).sum(-1).mean())
    return Convergence(float(torch.tensor(probs).median()), min(probs), entropy, len(probs),
                       layers_changed(trace), len(trace))
