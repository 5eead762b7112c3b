"""The accuracy model (an additive objective fit on trainings) and the random sampler at a price."""

import numpy as np
import pytest

from fbnet.errors import UserError
from fbnet.lut import LayerTable
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from search.protocols.accuracy_model import ATTRIBUTES, features, fit_accuracy_model, layer_groups
from search.protocols.sampling import random_at_latency
from search.protocols.specialization import best_under_budget

SPACE = SpaceConfig.create(32)
LAYERS = SPACE.num_layers


def _archs(n, seed):
    rng = np.random.default_rng(seed)
    return [list(rng.integers(0, len(CANDIDATE_NAMES), LAYERS)) for _ in range(n)]


def test_groups_split_residual_from_shape_changing_layers():
    names, of_layer = layer_groups(SPACE)
    assert len(of_layer) == LAYERS
    shapes = SPACE.layers()
    for layer, group in enumerate(of_layer):
        residual = shapes[layer].stride == 1 and shapes[layer].c_in == shapes[layer].c_out
        assert names[group].endswith("residual" if residual else "boundary")
        assert names[group].startswith(f"stage{shapes[layer].stage}_")
    # a skip at every layer counts each group's layers once under "skip", nothing else
    counts = features(SPACE, [CANDIDATE_NAMES.index("skip")] * LAYERS).reshape(len(names), -1)
    assert counts[:, ATTRIBUTES.index("skip")].sum() == LAYERS and counts[:, 1:].sum() == 0


def test_fit_recovers_an_additive_truth_and_its_scores_are_its_predictions():
    names, _ = layer_groups(SPACE)
    truth = np.random.default_rng(1).normal(0, 0.01, (len(names), len(ATTRIBUTES)))
    archs = _archs(120, 0)
    top1 = [0.8 + float(features(SPACE, a) @ truth.ravel()) for a in archs]
    model = fit_accuracy_model(SPACE, archs, top1)
    assert model.samples == 120 and model.loo_kendall_tau > 0.95 and model.loo_mae < 0.005
    held_out = _archs(20, 2)
    predicted = [model.predict(a) for a in held_out]
    actual = [0.8 + float(features(SPACE, a) @ truth.ravel()) for a in held_out]
    assert np.abs(np.array(predicted) - actual).max() < 0.01
    scores = model.layer_scores()
    for a, p in zip(held_out, predicted):
        assert p == pytest.approx(model.intercept + scores[np.arange(LAYERS), a].sum())


def test_specializing_on_the_model_under_a_loose_budget_takes_every_layers_best():
    archs = _archs(60, 3)
    rng = np.random.default_rng(4)
    model = fit_accuracy_model(SPACE, archs, list(0.8 + rng.normal(0, 0.02, 60)))
    scores = model.layer_scores()
    table = LayerTable(0.5, rng.uniform(0.01, 0.2, (LAYERS, len(CANDIDATE_NAMES))).tolist())
    found = best_under_budget(scores, table, budget_ms=1e6)
    assert [CANDIDATE_NAMES.index(c) for c in found.candidates] == list(scores.argmax(1))


def test_fit_needs_three_trainings():
    with pytest.raises(UserError, match="at least 3"):
        fit_accuracy_model(SPACE, _archs(2, 0), [0.5, 0.6])


def test_random_architectures_at_a_price():
    rng = np.random.default_rng(5)
    ms = rng.uniform(0.01, 0.3, (LAYERS, len(CANDIDATE_NAMES)))
    fixed = 0.4
    cheapest = fixed + ms.min(1).sum()
    for target in (fixed + ms.mean(1).sum(), 1.3 * cheapest):  # uniform, then tilted
        picks, sampler = random_at_latency(ms, fixed, target, 0.05, 6, seed=0)
        assert len({tuple(p) for p in picks}) == 6
        for p in picks:
            assert abs(fixed + ms[np.arange(LAYERS), p].sum() - target) <= 0.05 * target + 1e-9
    assert sampler.startswith("tilted")
    with pytest.raises(UserError, match="widen --tolerance"):
        random_at_latency(ms, fixed, 0.5 * cheapest, 0.05, 2, seed=0)
