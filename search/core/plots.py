"""Figures of a search from its per-epoch log: candidate probabilities and training curves."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fbnet.space import CANDIDATE_NAMES


def _save(fig, path: Path) -> None:
    # atomic: render to a temp file in the same folder, then rename
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def plot_probabilities(history: list[dict], path: Path, title: str = "") -> None:
    """One panel per layer: P_theta of each candidate over the epochs (stacked)."""
    import matplotlib  # seconds to load: only where a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    n_layers = len(history[0]["probs"])
    cols = 6
    rows = -(-n_layers // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.9 * rows), sharex=True,
                             sharey=True, squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for l in range(n_layers):
        ax = axes[l // cols][l % cols]
        series = [[row["probs"][l][i] for row in history] for i in range(len(CANDIDATE_NAMES))]
        ax.stackplot(epochs, series, colors=colors[:len(CANDIDATE_NAMES)], linewidth=0)
        ax.set_title(f"L{l + 1}: {history[-1]['argmax_arch'][l]}", fontsize=8)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
    for l in range(n_layers, rows * cols):
        axes[l // cols][l % cols].axis("off")
    fig.legend(CANDIDATE_NAMES, loc="lower right", ncol=3, fontsize=8)
    fig.suptitle(f"candidate probabilities per layer over epochs {title}".strip(), fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    _save(fig, path)
    plt.close(fig)


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Expected and argmax LUT latency, and top-1 on both splits and val, over epochs."""
    import matplotlib  # seconds to load: only where a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]

    def series(key):
        return [row[key] if row[key] is not None else float("nan") for row in history]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, series("expected_latency_ms"), "o-", label="expected (Gumbel masks)")
    ax1.plot(epochs, series("argmax_latency_ms"), "s-", label="argmax architecture")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("LUT latency (ms)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    for key, label in (("w_top1", "weight split (train)"), ("theta_top1", "arch split"),
                       ("val_top1_argmax", "val, argmax arch")):
        ax2.plot(epochs, series(key), "o-", label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("top-1")
    ax2.set_ylim(0, 1)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
