"""Random architectures of the space at a given LUT price: the baselines and training samples
that searched networks are compared with at equal latency.

Uniform draws reach only the middle of the price range, so when they do not find enough, the
per-layer candidate probabilities are tilted towards cheap (or dear) blocks, exp(-lambda * ms),
with lambda set so that the expected price is the target.
"""

from __future__ import annotations

import numpy as np

from fbnet.errors import UserError


def _tilted_probs(ms: np.ndarray, lam: float) -> np.ndarray:
    logits = -lam * (ms - ms.min(axis=1, keepdims=True))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _draw(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    cum = probs.cumsum(axis=1)
    u = rng.random((n, probs.shape[0], 1))
    return (u > cum[None]).sum(axis=2).clip(max=probs.shape[1] - 1)


def random_at_latency(per_layer_ms: np.ndarray, fixed_ms: float, target_ms: float,
                      tolerance: float, count: int, seed: int,
                      exclude: tuple[int, ...] = ()) -> tuple[list[list[int]], str]:
    """`count` distinct architectures (candidate indices) priced within ±tolerance of target_ms,
    and the sampler that found them ("uniform" or "tilted lambda=...")."""
    rng = np.random.default_rng(seed)
    lo, hi = target_ms * (1 - tolerance), target_ms * (1 + tolerance)
    L, K = per_layer_ms.shape
    found: dict[tuple[int, ...], None] = {}

    def collect(probs: np.ndarray, batches: int) -> None:
        for _ in range(batches):
            idx = _draw(probs, 20000, rng)
            price = fixed_ms + per_layer_ms[np.arange(L)[None], idx].sum(axis=1)
            for row in idx[(price >= lo) & (price <= hi)]:
                key = tuple(int(k) for k in row)
                if key != exclude:
                    found.setdefault(key)
                if len(found) >= count:
                    return

    collect(np.full((L, K), 1.0 / K), 10)
    if len(found) >= count:
        return [list(k) for k in list(found)[:count]], "uniform"
    # tilt: the lambda whose expected price is the target (bisection; price falls as lambda grows)
    def mean_price(lam: float) -> float:
        return fixed_ms + float((_tilted_probs(per_layer_ms, lam) * per_layer_ms).sum())

    a, b = -50.0, 50.0
    for _ in range(60):
        mid = (a + b) / 2
        a, b = (mid, b) if mean_price(mid) > target_ms else (a, mid)
    lam = (a + b) / 2
    collect(_tilted_probs(per_layer_ms, lam), 20)
    if len(found) < count:
        raise UserError(f"found only {len(found)} architectures within ±{tolerance:.0%} of "
                        f"{target_ms:.3f} ms; widen --tolerance")
    return [list(k) for k in list(found)[:count]], f"tilted lambda={lam:.3g}"
