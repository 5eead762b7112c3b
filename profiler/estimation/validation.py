"""Validation of the model on real phone data: fit on some layer shapes, predict the others."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fbnet.arch import named_architecture
from fbnet.metrics import mape_pct, spearman_rho
from fbnet.space import SpaceConfig
from fbnet.workloads import ConvBlock, FullyConnected, Skip, Workload, parse_key, space_workloads
from profiler.estimation.fit import block_observations, fit

def shape_group(workload: Workload) -> str:
    """The layer shape a block belongs to (what a held-out split holds out), or 'fixed'."""
    if isinstance(workload, (ConvBlock, Skip)):
        return (f"H{workload.height}_Cin{workload.c_in}_Cout{workload.c_out}"
                f"_s{workload.stride}")
    return "fixed"


@dataclass
class SplitScore:
    """Errors of held-out predictions pooled over the folds of one split scheme."""

    split: str
    folds: int
    blocks: int
    mape_pct: float
    within_10_pct: float
    within_20_pct: float
    spearman: float
    networks: dict[str, float] = field(default_factory=dict)  # arch -> rel. error of the sum


def _score(split: str, folds: int, measured: list[float], predicted: list[float]) -> SplitScore:
    m, p = np.array(measured), np.array(predicted)
    rel = np.abs(p / m - 1)
    return SplitScore(split, folds, len(m), mape_pct(m, p),
                      float(100 * np.mean(rel <= 0.10)), float(100 * np.mean(rel <= 0.20)),
                      spearman_rho(m, p))


# Networks whose every block HW-NAS-Bench measured at 224 (FBNet-A's 1504 head is not there).
VALIDATION_NETWORKS = ("fbnet_b", "fbnet_c", "fbnet_s8", "fbnet_iphonex")


def validation_fits(table: dict[str, float], seeds: int = 5) -> int:
    """How many fits `validate` runs (for progress bars)."""
    shapes = {shape_group(parse_key(k)) for k in table} - {"fixed"}
    return len(shapes) + seeds + 2


def validate(table: dict[str, float], device: str, *, seeds: int = 5,
             progress: Callable[[], None] | None = None) -> list[SplitScore]:
    """Fit on some layer shapes, predict the others, for several split schemes.

    - leave-one-shape-out: each of the 24 layer shapes (12 per resolution) held out in turn;
    - half of the shapes: a random half held out, `seeds` times;
    - 224 -> 32 and 32 -> 224: fit on one input size, predict every block of the other.
    The stem, head, pool and classifier (one each) stay in every training set: their operator
    classes appear nowhere else. Scores pool the held-out blocks' predictions. For the
    leave-one-shape-out split, each network's latency is also summed from held-out predictions.
    """
    obs = block_observations(table)
    groups = [shape_group(o.workloads[0]) for o in obs]
    shapes = sorted(set(g for g in groups if g != "fixed"))
    scores = []

    def run(held_out: Callable[[int], bool]) -> dict[str, float]:
        train = [o for i, o in enumerate(obs) if not held_out(i)]
        model = fit(train, name=device).model
        if progress:
            progress()
        return {o.label: model.latency_ms(o.workloads[0]) for i, o in enumerate(obs) if held_out(i)}

    # leave one shape out
    loso: dict[str, float] = {}
    for shape in shapes:
        loso.update(run(lambda i, s=shape: groups[i] == s))
    score = _score("leave-one-shape-out", len(shapes), [table[k] for k in loso], list(loso.values()))
    for arch_name in VALIDATION_NETWORKS:
        arch = named_architecture(arch_name)
        keys = [layer.key for layer in arch.layers()]
        if all(k in table for k in keys):
            # fixed parts are never held out: take their measured values, and held-out
            # predictions for every searchable block
            pred = sum(loso.get(k, table[k]) for k in keys)
            score.networks[arch_name] = pred / sum(table[k] for k in keys) - 1
    scores.append(score)

    # random halves of the shapes
    rng = np.random.default_rng(0)
    measured, predicted = [], []
    for _ in range(seeds):
        held = set(rng.choice(shapes, size=len(shapes) // 2, replace=False))
        out = run(lambda i: groups[i] in held)
        measured += [table[k] for k in out]
        predicted += list(out.values())
    scores.append(_score(f"half of the shapes x{seeds}", seeds, measured, predicted))

    # across input sizes
    keys_224 = {w.key for w in space_workloads(SpaceConfig.create(224))}
    space_res = [224 if o.label in keys_224 or (isinstance(o.workloads[0], FullyConnected)
                                                and o.workloads[0].c_in == 1984) else 32
                 for o in obs]
    for src, dst in ((224, 32), (32, 224)):
        out = run(lambda i: space_res[i] == dst)
        scores.append(_score(f"{src} -> {dst}", 1, [table[k] for k in out], list(out.values())))
    return scores

