"""How well predicted latencies agree with measured ones: the one definition of each figure the
project reports (relative error, MAPE, median absolute error, Kendall tau, Spearman rho)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import stats


def errors_pct(measured: Sequence[float], predicted: Sequence[float]) -> np.ndarray:
    """Each prediction's signed error, in % of its measured value."""
    m, p = np.asarray(measured), np.asarray(predicted)
    return 100.0 * (p - m) / m


def mape_pct(measured: Sequence[float], predicted: Sequence[float]) -> float:
    """Mean absolute percentage error."""
    return float(np.mean(np.abs(errors_pct(measured, predicted))))


def median_abs_error_pct(measured: Sequence[float], predicted: Sequence[float]) -> float:
    return float(np.median(np.abs(errors_pct(measured, predicted))))


def kendall_tau(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Kendall's tau-b rank correlation (nan when either side is constant)."""
    return float(stats.kendalltau(xs, ys).statistic)


def spearman_rho(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (nan when either side is constant)."""
    return float(stats.spearmanr(xs, ys).statistic)
