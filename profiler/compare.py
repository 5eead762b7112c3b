"""Compare devices through their LUTs: which blocks are cheap where, in figures and one page.

Examples:
  python -m profiler.compare --lut luts/pixel3.json luts/raspi4.json luts/host.json --out reports/devices
  python -m profiler.compare --lut luts/pixel3_32.json luts/raspi4_32.json luts/edgegpu_32.json --out reports/c32
  python -m profiler.compare --lut luts/pixel3.json luts/raspi4.json --out reports/x --arch runs/s8/arch.json

Writes into --out: per LUT a layer x candidate latency heatmap; per pair of LUTs a relative-cost
ratio heatmap (where the devices disagree) and a log-log scatter of block latencies with Spearman
and Kendall rank correlations; the cheapest non-skip block per layer on each device; the dominant
operator types (for LUTs with per-operator data); FBNet-A/B/C/S8/iPhoneX (and each --arch)
priced by every LUT; and report.md / report.html showing them all with a short summary.
All LUTs must be built for the same space (resolution, widths, head) and cover all of it.
"""

from __future__ import annotations

import argparse
import html
import itertools
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fbnet.errors import UserError, cli_entry
from fbnet.io import atomic_write_text
from fbnet.lut import Lut, load_lut
from fbnet.metrics import kendall_tau, spearman_rho
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from fbnet.workloads import candidate_workload, fixed_parts, space_workloads
from fbnet.pricing import DEFAULT_ARCHS, ArchPrice, lut_space, price_arch

NON_SKIP = [i for i, c in enumerate(CANDIDATE_NAMES) if c != "skip"]
K3_E1 = CANDIDATE_NAMES.index("k3_e1")


@dataclass
class Device:
    """One LUT prepared for plotting."""

    slug: str  # file-name-safe short name
    lut: Lut
    grid_ms: np.ndarray  # [layer, candidate]
    fixed_ms: float

    @property
    def title(self) -> str:
        return self.lut.title


@dataclass
class Figure:
    path: Path
    caption: str
    section: str


@dataclass
class Report:
    space: SpaceConfig
    devices: list[Device]
    figures: list[Figure] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


# --- loading and checks --------------------------------------------------------------------------
def load_devices(paths: list[str]) -> tuple[SpaceConfig, list[Device]]:
    luts = [load_lut(p) for p in paths]
    spaces = [lut_space(lut) for lut in luts]
    resolutions = {s.resolution for s in spaces}
    if len(resolutions) > 1:
        listing = ", ".join(f"{lut.path} @{s.resolution}" for lut, s in zip(luts, spaces))
        raise UserError(f"the LUTs are for different input resolutions ({listing}); compare LUTs "
                        "of one resolution, e.g. luts/pixel3.json with luts/raspi4.json")
    for lut, space in zip(luts[1:], spaces[1:]):
        if space != spaces[0]:
            fields = [k for k, v in space.to_dict().items() if spaces[0].to_dict()[k] != v]
            raise UserError(f"{lut.path} and {luts[0].path} were built for different spaces "
                            f"(they differ in {', '.join(fields)}); compare LUTs of one space")
    space = spaces[0]
    keys = [w.key for w in space_workloads(space)]
    for lut in luts:
        missing = lut.missing_keys(keys)
        if missing:
            shown = ", ".join(missing[:8]) + (f", ... ({len(missing)} in all)" if len(missing) > 8 else "")
            raise UserError(f"{lut.path} lacks {len(missing)} of the {len(keys)} blocks of its space: "
                            f"{shown}; finish it (python -m profiler.run --resume) or merge partial LUTs")
    slugs = _unique_slugs([lut.path.stem if lut.path else lut.device.name for lut in luts])
    devices = []
    for slug, lut in zip(slugs, luts):
        table = lut.layer_table(space)
        devices.append(Device(slug, lut, np.array(table.per_layer_ms), table.fixed_ms))
    return space, devices


def _unique_slugs(names: list[str]) -> list[str]:
    slugs, seen = [], {}
    for name in names:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "lut"
        seen[slug] = seen.get(slug, 0) + 1
        slugs.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return slugs


def layer_labels(space: SpaceConfig) -> list[str]:
    return [f"{s.label}  {s.c_in}→{s.c_out}  {s.height}²  s{s.stride}" for s in space.layers()]


# --- figures -------------------------------------------------------------------------------------
def _plt():
    # matplotlib loads only where a figure is drawn, with the Agg backend set before pyplot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.dpi": 110})
    return plt


def _save(fig, path: Path) -> None:
    """Write the PNG atomically (a Ctrl-C never leaves half a figure) and free it."""
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)


def _fmt(ms: float) -> str:
    if ms == 0:
        return "0"
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 0.1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def _ink(rgba) -> str:
    """Black or white text, whichever reads better on this cell colour."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def plot_heatmap(dev: Device, space: SpaceConfig, out: Path) -> Figure:
    from matplotlib.colors import LogNorm

    plt = _plt()
    grid = dev.grid_ms
    positive = grid[grid > 0]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    fig, ax = plt.subplots(figsize=(9.5, 9.5))
    im = ax.imshow(np.ma.masked_less_equal(grid, 0), cmap=cmap, norm=norm, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, _fmt(v), ha="center", va="center", fontsize=7.5,
                color=_ink(cmap(norm(v))) if norm and v > 0 else "black")
    ax.set_xticks(range(len(CANDIDATE_NAMES)), CANDIDATE_NAMES)
    ax.set_yticks(range(len(grid)), layer_labels(space), fontsize=8)
    ax.set_xlabel("candidate block")
    ax.set_ylabel("searchable layer (C_in→C_out, input H², stride)")
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    fig.colorbar(im, ax=ax, label="block latency (ms, log colour scale)", shrink=0.8)
    ax.set_title(f"{dev.title}\nper-block latency in ms; stem + head + pool + classifier = "
                 f"{dev.fixed_ms:.2f} ms", pad=28)
    fig.tight_layout()
    path = out / f"heatmap_{dev.slug}.png"
    _save(fig, path)
    return Figure(path, f"Latency of every candidate at every layer on {dev.title} (ms, annotated).",
                  "Per-device latency tables")


def relative_cost_ratio(a: Device, b: Device) -> np.ndarray:
    """(candidate / k3_e1 of its layer on A) / (the same on B); NaN where a latency is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_a = a.grid_ms / a.grid_ms[:, [K3_E1]]
        rel_b = b.grid_ms / b.grid_ms[:, [K3_E1]]
        ratio = rel_a / rel_b
    ratio[~np.isfinite(ratio) | (ratio <= 0)] = np.nan
    return ratio


def plot_ratio(a: Device, b: Device, space: SpaceConfig, out: Path) -> tuple[Figure, np.ndarray]:
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.ticker import FuncFormatter

    plt = _plt()
    ratio = relative_cost_ratio(a, b)
    cols = [j for j in range(len(CANDIDATE_NAMES)) if j != K3_E1]
    shown = np.log2(ratio[:, cols])
    finite = shown[np.isfinite(shown)]
    lim = max(float(np.abs(finite).max()) if finite.size else 1.0, 0.25)
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="#dddddd")
    fig, ax = plt.subplots(figsize=(9.5, 9.5))
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, aspect="auto",
                   norm=TwoSlopeNorm(0.0, -lim, lim))
    for (i, j), v in np.ndenumerate(shown):
        text = "–" if not np.isfinite(v) else f"{2 ** v:.2f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=7.5,
                color="white" if np.isfinite(v) and abs(v) > 0.6 * lim else "black")
    ax.set_xticks(range(len(cols)), [CANDIDATE_NAMES[j] for j in cols])
    ax.set_yticks(range(len(shown)), layer_labels(space), fontsize=8)
    ax.xaxis.set_ticks_position("top")
    ax.xaxis.set_label_position("top")
    ax.set_xlabel("candidate block (cost relative to the layer's k3_e1)")
    ax.set_ylabel("searchable layer")
    bar = fig.colorbar(im, ax=ax, shrink=0.8, format=FuncFormatter(lambda v, _: f"{2 ** v:.2g}×"))
    bar.set_label("(cand / k3_e1 on A) ÷ (cand / k3_e1 on B)   [log scale]")
    ax.set_title(f"Where the devices disagree\nA = {a.title}\nB = {b.title}\n"
                 "red: relatively pricier on A, blue: relatively pricier on B, grey: a zero latency",
                 pad=28)
    fig.tight_layout()
    path = out / f"relcost_{a.slug}_vs_{b.slug}.png"
    _save(fig, path)
    caption = (f"Relative cost ratio {a.slug} vs {b.slug}: each layer's candidates divided by that "
               "layer's k3_e1 on each device, then A's relative cost divided by B's.")
    return Figure(path, caption, "Where devices disagree"), ratio


def block_points(a: Device, b: Device, space: SpaceConfig) -> list[tuple[str, str, float, float]]:
    """(key, group, ms on A, ms on B) for every unique workload of the space."""
    parts = fixed_parts(space)
    group = {parts.stem.key: "fixed", parts.head.key: "fixed", parts.pool.key: "fixed",
             parts.classifier.key: "fixed"}
    for shape in space.layers():
        for cand in CANDIDATE_NAMES:
            group.setdefault(candidate_workload(shape, cand).key, cand)
    return [(w.key, group[w.key], a.lut.latency_ms(w.key), b.lut.latency_ms(w.key))
            for w in space_workloads(space)]


def rank_stats(xs, ys) -> dict:
    return {"spearman": spearman_rho(xs, ys), "kendall": kendall_tau(xs, ys), "n": len(xs)}


def plot_scatter(a: Device, b: Device, space: SpaceConfig, out: Path) -> tuple[Figure, dict]:
    plt = _plt()
    points = block_points(a, b, space)
    stats = rank_stats([p[2] for p in points], [p[3] for p in points])
    pos = [p for p in points if p[2] > 0 and p[3] > 0]
    logs = [math.log(p[3] / p[2]) for p in pos]
    stats["geomean_ratio"] = math.exp(sum(logs) / len(logs)) if logs else float("nan")
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    colours = plt.get_cmap("tab10")
    for k, name in enumerate([*CANDIDATE_NAMES, "fixed"]):
        sel = [p for p in pos if p[1] == name]
        if sel:
            ax.scatter([p[2] for p in sel], [p[3] for p in sel], s=22, alpha=0.8,
                       color=colours(k % 10), marker="o" if name != "fixed" else "s",
                       label=name if name != "fixed" else "stem/head/pool/FC")
    if pos:
        lo = min(min(p[2] for p in pos), min(p[3] for p in pos))
        hi = max(max(p[2] for p in pos), max(p[3] for p in pos))
        line = np.array([lo, hi])
        ax.plot(line, line, color="grey", lw=0.8, ls=":", label="B = A")
        g = stats["geomean_ratio"]
        ax.plot(line, line * g, color="black", lw=0.8, ls="--", label=f"B = {g:.2f} × A (geomean)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"latency on A (ms)\nA = {a.title}")
    ax.set_ylabel(f"latency on B (ms)\nB = {b.title}")
    dropped = len(points) - len(pos)
    note = f"; {dropped} zero-latency blocks not drawn" if dropped else ""
    ax.set_title(f"Block latencies, {a.slug} vs {b.slug}: Spearman ρ = {stats['spearman']:.3f}, "
                 f"Kendall τ = {stats['kendall']:.3f}\n(over all {stats['n']} blocks of the space"
                 f"{note})")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="upper left", ncol=2)
    fig.tight_layout()
    path = out / f"scatter_{a.slug}_vs_{b.slug}.png"
    _save(fig, path)
    caption = (f"{a.slug} vs {b.slug}: every block's latency, log-log; Spearman "
               f"{stats['spearman']:.3f}, Kendall {stats['kendall']:.3f}.")
    return Figure(path, caption, "Do the devices rank blocks alike?"), stats


def cheapest_non_skip(dev: Device) -> list[str]:
    return [CANDIDATE_NAMES[NON_SKIP[int(np.argmin(row[NON_SKIP]))]] for row in dev.grid_ms]


def plot_cheapest(devices: list[Device], space: SpaceConfig, out: Path) -> Figure:
    from matplotlib.colors import ListedColormap

    plt = _plt()
    picks = np.array([[CANDIDATE_NAMES.index(c) for c in cheapest_non_skip(d)] for d in devices]).T
    colours = plt.get_cmap("tab10")
    cmap = ListedColormap([colours(k) for k in range(len(CANDIDATE_NAMES))])
    fig, ax = plt.subplots(figsize=(3.2 + 1.7 * len(devices), 8.5))
    ax.imshow(picks, cmap=cmap, vmin=-0.5, vmax=len(CANDIDATE_NAMES) - 0.5, aspect="auto", alpha=0.55)
    for (i, j), k in np.ndenumerate(picks):
        ms = devices[j].grid_ms[i, k]
        ax.text(j, i, f"{CANDIDATE_NAMES[k]}\n{_fmt(ms)} ms", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(devices)), [_wrap(d.title) for d in devices], fontsize=7.5)
    ax.xaxis.set_ticks_position("top")
    ax.set_yticks(range(len(picks)), layer_labels(space), fontsize=8)
    ax.set_ylabel("searchable layer")
    ax.set_title("Cheapest non-skip candidate per layer on each device (its latency in ms)")
    fig.tight_layout()
    path = out / "cheapest.png"
    _save(fig, path)
    return Figure(path, "The cheapest non-skip candidate of every layer on each device.",
                  "Cheapest blocks")


def _wrap(text: str, width: int = 22) -> str:
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "\n".join(lines + [line])


def op_shares(dev: Device, space: SpaceConfig) -> dict[str, dict[str, float]] | None:
    """Per candidate, each operator type's share of the summed per-op latency over all layers."""
    totals: dict[str, dict[str, float]] = {}
    for shape in space.layers():
        for cand in CANDIDATE_NAMES:
            for op in dev.lut.entries[candidate_workload(shape, cand).key].ops:
                bucket = totals.setdefault(cand, {})
                bucket[op.op_type] = bucket.get(op.op_type, 0.0) + op.latency_ms
    if not totals:
        return None
    return {c: {t: v / (sum(ops.values()) or 1.0) for t, v in ops.items()} for c, ops in totals.items()}


def plot_ops(devices: list[Device], space: SpaceConfig, out: Path) -> tuple[Figure | None, dict]:
    shares = {d.slug: s for d in devices if (s := op_shares(d, space))}
    if not shares:
        return None, {}
    plt = _plt()
    with_ops = [d for d in devices if d.slug in shares]
    types = sorted({t for s in shares.values() for ops in s.values() for t in ops})
    colours = plt.get_cmap("tab10" if len(types) <= 10 else "tab20")  # tab20 pairs look alike
    fig, axes = plt.subplots(1, len(with_ops), figsize=(3.5 + 3.8 * len(with_ops), 4.6),
                             sharey=True, squeeze=False)
    for ax, dev in zip(axes[0], with_ops):
        cands = [c for c in CANDIDATE_NAMES if c in shares[dev.slug]]
        left = np.zeros(len(cands))
        for k, t in enumerate(types):
            vals = np.array([shares[dev.slug][c].get(t, 0.0) for c in cands]) * 100
            ax.barh(cands, vals, left=left, color=colours(k), label=t)
            left += vals
        ax.set_xlim(0, 100)
        ax.set_xlabel("share of the block's per-op latency (%)")
        ax.set_title(_wrap(dev.title, 40), fontsize=9)
    axes[0][0].invert_yaxis()  # once: the y axis is shared, a second flip would undo it
    axes[0][0].set_ylabel("candidate (summed over all layers)")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=min(len(types), 6),
               fontsize=8, title="operator type")
    fig.suptitle("Which operator types dominate each candidate's latency, per device")
    fig.tight_layout(rect=(0, 0.14, 1, 0.95))
    path = out / "ops.png"
    _save(fig, path)
    dominant = {slug: {c: max(ops, key=ops.get) for c, ops in s.items()} for slug, s in shares.items()}
    return Figure(path, "Share of per-operator latency by operator type, per candidate and device.",
                  "Operators"), dominant


def price_networks(devices: list[Device], specs: list[str], explicit: set[str]) -> dict:
    """{arch name: {slug: ArchPrice}}, in the order given."""
    table: dict[str, dict[str, ArchPrice]] = {}
    for spec in specs:
        for dev in devices:
            price = price_arch(dev.lut, spec, explicit=spec in explicit)
            table.setdefault(price.arch, {})[dev.slug] = price
    return table


def plot_networks(devices: list[Device], prices: dict, out: Path) -> Figure:
    plt = _plt()
    archs = list(prices)
    fig, (ax, ax_rel) = plt.subplots(1, 2, figsize=(5 + 1.6 * len(archs), 5.2))
    width = 0.8 / len(devices)
    colours = plt.get_cmap("tab10")
    values = [p.latency_ms for a in archs for p in prices[a].values() if p.latency_ms]
    log = bool(values) and max(values) / min(values) > 20
    for j, dev in enumerate(devices):
        xs = np.arange(len(archs)) + (j - (len(devices) - 1) / 2) * width
        ms = [prices[a][dev.slug].latency_ms for a in archs]
        covered = [m for m in ms if m is not None]
        fastest = min(covered) if covered else None
        bars = ax.bar(xs, [m or 0 for m in ms], width, color=colours(j % 10), label=_wrap(dev.title, 45))
        rel = [m / fastest if m is not None else 0 for m in ms]
        ax_rel.bar(xs, rel, width, color=colours(j % 10))
        for x, m in zip(xs, ms):
            if m is None:
                ax_rel.text(x, 1.0, "n/a", ha="center", va="bottom", fontsize=6.5)
        for x, m, bar in zip(xs, ms, bars):
            ax.text(x, (m or (min(values) if log and values else 0)), "n/a" if m is None else _fmt(m),
                    ha="center", va="bottom", fontsize=6.5, rotation=90 if len(devices) > 3 else 0)
    if log:
        ax.set_yscale("log")
    for a in (ax, ax_rel):
        a.set_xticks(range(len(archs)), archs, rotation=20)
        a.grid(True, axis="y", alpha=0.3)
    ax.set_ylabel("network latency (ms" + (", log scale)" if log else ")"))
    ax.set_title("Networks priced by each LUT (sum of block latencies)")
    ax_rel.set_ylabel("latency / fastest of these networks on the device")
    ax_rel.set_ylim(0.9 if values else 0, None)
    ax_rel.axhline(1.0, color="grey", lw=0.8)
    ax_rel.set_title("Relative to the fastest network on each device")
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=min(len(devices), 3),
               fontsize=8)
    fig.tight_layout(rect=(0, 0.06 + 0.045 * math.ceil(len(devices) / 3), 1, 1))
    path = out / "networks.png"
    _save(fig, path)
    return Figure(path, "Named networks (and each --arch) priced by every LUT; n/a where a "
                  "network's own macro-architecture is not in the LUT.", "Networks")


# --- the report ----------------------------------------------------------------------------------
def build_report(paths: list[str], out: Path, arch_specs: list[str], progress: bool = True) -> Report:
    space, devices = load_devices(paths)
    specs = list(dict.fromkeys([*DEFAULT_ARCHS, *arch_specs]))
    prices = price_networks(devices, specs, set(arch_specs))  # bad --arch fails before any output
    out.mkdir(parents=True, exist_ok=True)
    report = Report(space, devices)
    pairs = list(itertools.combinations(devices, 2))
    steps = len(devices) + 2 * len(pairs) + 3
    bar = tqdm(total=steps, desc="figures", unit="fig", disable=not progress)
    for dev in devices:
        report.figures.append(plot_heatmap(dev, space, out))
        bar.update()
    pair_stats = []
    for a, b in pairs:
        fig, ratio = plot_ratio(a, b, space, out)
        report.figures.append(fig)
        bar.update()
        fig, stats = plot_scatter(a, b, space, out)
        report.figures.append(fig)
        bar.update()
        cheap_a, cheap_b = cheapest_non_skip(a), cheapest_non_skip(b)
        differ = [s.label for s, x, y in zip(space.layers(), cheap_a, cheap_b) if x != y]
        # identity skips cost ~0 and their ratios are noise: look for disagreement among real blocks
        blocks = ratio[:, NON_SKIP]
        spread = np.where(np.isfinite(blocks), np.abs(np.log(np.nan_to_num(blocks, nan=1.0))), -1)
        i, jj = np.unravel_index(int(np.argmax(spread)), spread.shape)
        j = NON_SKIP[jj]
        pair_stats.append({"a": a.slug, "b": b.slug, **stats, "cheapest_differs": differ,
                           "largest_disagreement": {"layer": space.layers()[i].label,
                                                    "candidate": CANDIDATE_NAMES[j],
                                                    "ratio": float(ratio[i, j])}})
    report.figures.append(plot_cheapest(devices, space, out))
    bar.update()
    fig, dominant = plot_ops(devices, space, out)
    if fig:
        report.figures.append(fig)
    bar.update()
    report.figures.append(plot_networks(devices, prices, out))
    bar.update()
    bar.close()
    report.stats = {
        "space": space.to_dict(),
        "luts": [{"slug": d.slug, "path": str(d.lut.path), "title": d.title,
                  "provenance": d.lut.provenance.kind} for d in devices],
        "pairs": pair_stats,
        "dominant_op_type": dominant,
        "networks_ms": {a: {s: p.latency_ms for s, p in row.items()} for a, row in prices.items()},
        "figures": [str(f.path) for f in report.figures],
    }
    report.summary = summarize(report, prices, pair_stats, dominant)
    write_pages(report, out)
    return report


def summarize(report: Report, prices: dict, pair_stats: list[dict], dominant: dict) -> list[str]:
    lines = []
    space = report.space
    lines.append(f"{len(report.devices)} LUTs of the {space.resolution}x{space.resolution} "
                 f"{space.layout} space: " + "; ".join(
                     f"{d.slug} = {d.title}" for d in report.devices) + ".")
    for p in pair_stats:
        dis = p["largest_disagreement"]
        lines.append(
            f"{p['a']} vs {p['b']}: blocks rank alike with Spearman {p['spearman']:.3f} / Kendall "
            f"{p['kendall']:.3f}; B is {p['geomean_ratio']:.2f}x A on a typical block; the cheapest "
            f"non-skip block differs at {len(p['cheapest_differs'])} of {space.num_layers} layers"
            + (f" ({', '.join(p['cheapest_differs'][:6])}{', ...' if len(p['cheapest_differs']) > 6 else ''})"
               if p["cheapest_differs"] else "")
            + f"; the largest relative-cost disagreement is {dis['candidate']} at {dis['layer']}, "
              f"{max(dis['ratio'], 1 / dis['ratio']):.2f}x relatively pricier on "
              f"{p['a'] if dis['ratio'] > 1 else p['b']} (cost relative to the layer's k3_e1).")
    for dev in report.devices:
        row = {a: prices[a][dev.slug].latency_ms for a in prices}
        covered = {a: v for a, v in row.items() if v is not None}
        if covered:
            order = sorted(covered, key=covered.get)
            lines.append(f"On {dev.slug} the networks rank " + " < ".join(
                f"{a} ({covered[a]:.2f} ms)" for a in order)
                + (f"; n/a: {', '.join(a for a in row if row[a] is None)} (its head/classifier "
                   "blocks are not in the LUT)" if len(covered) < len(row) else "") + ".")
    if dominant:
        for slug, per_cand in dominant.items():
            lines.append(f"Dominant operator type on {slug}: " + ", ".join(
                f"{c} {t}" for c, t in per_cand.items()) + ".")
    else:
        lines.append("No LUT carries per-operator data, so the operator figure is left out "
                     "(LUTs measured by the profiler with per-op profiling have it).")
    return lines


def write_pages(report: Report, out: Path) -> None:
    sections: dict[str, list[Figure]] = {}
    for fig in report.figures:
        sections.setdefault(fig.section, []).append(fig)
    title = f"Device comparison: {', '.join(d.slug for d in report.devices)}"
    md = [f"# {title}", "", "## Summary", ""] + [f"- {line}" for line in report.summary]
    md += ["", "LUTs:", ""] + [f"- `{d.lut.path}`: {d.title}, provenance {d.lut.provenance.kind}"
                               for d in report.devices]
    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Summary</h2><ul>"]
    body += [f"<li>{html.escape(line)}</li>" for line in report.summary] + ["</ul>"]
    for name, figs in sections.items():
        md += ["", f"## {name}", ""]
        body.append(f"<h2>{html.escape(name)}</h2>")
        for fig in figs:
            rel = fig.path.name
            md += [f"![{fig.caption}]({rel})", "", f"*{fig.caption}*", ""]
            body.append(f'<figure><img src="{html.escape(rel)}" style="max-width:100%">'
                        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>")
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")
    page = ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;max-width:1100px;"
            "margin:auto}figure{margin:1em 0}figcaption{color:#555}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")
    atomic_write_text(out / "report.html", page)


# --- CLI -----------------------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m profiler.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lut", nargs="+", action="extend", required=True, metavar="LUT",
                   help="LUT files of one space (--lut A B or --lut A --lut B)")
    p.add_argument("--out", required=True, help="directory for the PNGs and report.md/html")
    p.add_argument("--arch", nargs="+", action="extend", default=[],
                   help="also price these architectures (named, or arch JSON files)")
    p.add_argument("--json", action="store_true", help="print the summary statistics as JSON")
    return p.parse_args(argv)


@cli_entry
def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a directory for the figures")
    report = build_report(args.lut, out, args.arch, progress=not args.json)
    if args.json:
        print(json.dumps(report.stats, indent=1))
        return 0
    print("\n".join(report.summary))
    print(f"wrote {len(report.figures)} figures and report.md / report.html to {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
