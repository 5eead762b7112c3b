"""A model of stand-alone top-1 from an architecture's blocks, fit on measured trainings: an
objective for specializing by measured accuracy instead of the supernet's preferences.

It is additive over the layers, so search.protocols.specialization's exact dynamic program maximizes it
under a budget. A layer's candidate is described by five attributes (skip, 5x5 kernel,
expansion 3, expansion 6, grouped; the rest is the 3x3 e1 block), with one coefficient per
attribute and layer group: each stage's residual layers (stride 1, same width: `skip` is the
identity) and its shape-changing layer (`skip` is a 1x1 convolution) are separate groups. Ridge
regression, its strength chosen by leave-one-out error over a grid (closed form).
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np

from fbnet.errors import UserError
from fbnet.metrics import kendall_tau
from fbnet.space import CANDIDATES, SpaceConfig

ATTRIBUTES = ("skip", "k5", "e3", "e6", "g2")
RIDGE_GRID = tuple(float(a) for a in np.logspace(-3, 2, 21))


def candidate_attributes() -> np.ndarray:
    """candidates x ATTRIBUTES, 0/1."""
    return np.array([[c.is_skip, c.kernel == 5, c.expansion == 3, c.expansion == 6,
                      c.groups > 1] for c in CANDIDATES], dtype=np.float64)


def layer_groups(space: SpaceConfig) -> tuple[list[str], list[int]]:
    """The groups' names and each layer's group."""
    names: list[str] = []
    of_layer = []
    for shape in space.layers():
        residual = shape.stride == 1 and shape.c_in == shape.c_out
        name = f"stage{shape.stage}_{'residual' if residual else 'boundary'}"
        if name not in names:
            names.append(name)
        of_layer.append(names.index(name))
    return names, of_layer


def features(space: SpaceConfig, candidates: list[int]) -> np.ndarray:
    """Per group and attribute: how many of the group's layers have the attribute."""
    names, of_layer = layer_groups(space)
    attrs = candidate_attributes()
    out = np.zeros((len(names), len(ATTRIBUTES)))
    for layer, c in enumerate(candidates):
        out[of_layer[layer]] += attrs[c]
    return out.ravel()


def _ridge_loo(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float, np.ndarray]:
    """(coefficients, intercept, leave-one-out predictions) of ridge on centred data."""
    mean_x, mean_y = x.mean(0), y.mean()
    xc, yc = x - mean_x, y - mean_y
    inv = np.linalg.inv(xc.T @ xc + alpha * np.eye(x.shape[1]))
    coef = inv @ xc.T @ yc
    hat = np.einsum("ij,jk,ik->i", xc, inv, xc) + 1.0 / len(y)  # + the intercept's leverage
    fitted = xc @ coef + mean_y
    loo = y - (y - fitted) / (1.0 - hat)
    return coef, float(mean_y - mean_x @ coef), loo


@dataclass(frozen=True)
class AccuracyModel:
    space: SpaceConfig
    coef: np.ndarray  # groups x ATTRIBUTES, top-1 per layer with the attribute
    intercept: float
    ridge: float
    samples: int
    loo_kendall_tau: float  # leave-one-out predictions against the measured top-1
    loo_mae: float  # leave-one-out mean absolute error, top-1 as a fraction

    def layer_scores(self) -> np.ndarray:
        """layers x candidates: each candidate's contribution to the predicted top-1."""
        _, of_layer = layer_groups(self.space)
        per_group = self.coef @ candidate_attributes().T  # groups x candidates
        return per_group[of_layer]

    def predict(self, candidates: list[int]) -> float:
        scores = self.layer_scores()
        return self.intercept + float(scores[np.arange(len(candidates)), candidates].sum())

    def to_dict(self) -> dict:
        names, _ = layer_groups(self.space)
        return {"space": self.space.to_dict(), "attributes": list(ATTRIBUTES),
                "groups": names, "coef": self.coef.tolist(), "intercept": self.intercept,
                "ridge": self.ridge, "samples": self.samples,
                "loo_kendall_tau": self.loo_kendall_tau, "loo_mae": self.loo_mae}


def fit_accuracy_model(space: SpaceConfig, archs: list[list[int]], top1: list[float]
                       ) -> AccuracyModel:
    """Ridge fit of top-1 on the architectures' features, the strength with the lowest
    leave-one-out squared error."""
    if len(archs) != len(top1) or len(archs) < 3:
        raise UserError(f"an accuracy model needs at least 3 trained architectures, got "
                        f"{len(archs)}")
    x = np.array([features(space, a) for a in archs])
    y = np.asarray(top1, dtype=np.float64)
    best = None
    for alpha in RIDGE_GRID:
        coef, intercept, loo = _ridge_loo(x, y, alpha)
        mse = float(((loo - y) ** 2).mean())
        if best is None or mse < best[0]:
            best = (mse, alpha, coef, intercept, loo)
    _, alpha, coef, intercept, loo = best
    names, _ = layer_groups(space)
    return AccuracyModel(space, coef.reshape(len(names), len(ATTRIBUTES)), intercept, alpha,
                         len(y), kendall_tau(loo, y), float(np.abs(loo - y).mean()))
