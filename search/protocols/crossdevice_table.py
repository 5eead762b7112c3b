"""The cross-device table (FBNet paper, Table 5), as a library: every architecture priced on
every LUT, with MACs, params, top-1 where known and measured latencies; each device's fastest
marked. `python -m search.crossdevice` is its command line (the rules are in its help).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fbnet.arch import Architecture, at_resolution, load_architecture, to_arch_string
from fbnet.errors import UserError
from fbnet.lut import Lut
from fbnet.published import PUBLISHED_RESOLUTION, latency_ms, top1_fraction
from search.runs import SearchRun, TrainRun


@dataclass
class Top1:
    value: float  # in [0, 1]
    source: str  # e.g. "ImageNet, paper" or "digits, 5 epochs"


@dataclass
class ArchRow:
    label: str
    source: str  # what the user passed
    arch: Architecture
    top1: Top1 | None = None


@dataclass
class Measurement:
    arch_name: str
    arch_string: str
    resolution: int
    device: str
    median_ms: float
    runtime: str
    path: str


@dataclass
class Cell:
    resolution: int
    latency_ms: float | None  # None: the LUT does not cover this architecture
    macs: int
    missing: int = 0  # keys the LUT lacks
    fastest: bool = False
    measured_ms: float | None = None
    published_ms: float | None = None


@dataclass
class Column:
    label: str
    path: str
    device: str
    resolution: int
    provenance: str
    title: str


@dataclass
class Table:
    columns: list[Column]
    rows: list[dict] = field(default_factory=list)  # label, source, macs, params, top1, cells
    extra_measured: list[dict] = field(default_factory=list)  # measurements with no LUT column


def _from_train_result(path: Path, source: str) -> ArchRow:
    try:
        result = json.loads(path.read_text())
        arch = Architecture.from_dict(result["arch"], source=str(path))
        top1 = Top1(float(result["top1"]),
                    f"{result['data']} @{result['resolution']}, {result['epochs_done']} ep")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{path} is not a search.train result.json; give the train folder or "
                        "an architecture") from None
    return ArchRow(arch.name, source, arch, top1)


def load_arch_row(spec: str, num_classes: int | None = None) -> ArchRow:
    path = Path(spec.partition("#")[0])
    if path.is_dir():
        train_run, search_run = TrainRun(path), SearchRun(path)
        if train_run.result.is_file():
            return _from_train_result(train_run.result, spec)
        if search_run.arch.is_file():
            arch = load_architecture(str(search_run.arch))
            return ArchRow(arch.name, spec, arch)
        raise UserError(f"{path} holds neither result.json (search.train) nor arch.json "
                        "(search.run); give an architecture file or name")
    if path.name == "result.json" and path.is_file():
        return _from_train_result(path, spec)
    arch = load_architecture(spec, num_classes=num_classes)
    top1 = None
    if top1_fraction(spec) is not None:
        top1 = Top1(top1_fraction(spec), f"ImageNet @{PUBLISHED_RESOLUTION}, paper")
    return ArchRow(arch.name, spec, arch, top1)


def load_measurements(path: Path) -> list[Measurement]:
    """The measured networks of `path`: one from `profiler.run --arch A --json`, or every
    network of a `profiler.validate --json` report."""
    if not path.is_file():
        raise UserError(f"measurement file {path} does not exist; write it with "
                        "python -m profiler.run --device host --arch ARCH --json > FILE")
    try:
        data = json.loads(path.read_text())
        if "rows" in data and "lut_path" in data:  # a profiler.validate report
            return [Measurement(str(r["name"]), str(r["arch_string"]), int(data["resolution"]),
                                str(data["device"]), float(r["measured_ms"]),
                                str(data["runtime"]), str(path)) for r in data["rows"]]
        return [Measurement(str(data["arch"]), str(data.get("arch_string", "")),
                            int(data["resolution"]), str(data["device"]["name"]),
                            float(data["median_ms"]),
                            str((data.get("runtime") or {}).get("name", "")), str(path))]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{path} is neither a profiler.run --arch --json result (arch, "
                        "resolution, device.name, median_ms) nor a profiler.validate --json "
                        "report") from None


def _lut_resolution(lut: Lut) -> int:
    if not lut.space:
        raise UserError(f"{lut.path} does not record the space it was built for; rebuild it "
                        "with this version of the profiler")
    return lut.space.resolution


def _column_labels(luts: list[Lut]) -> list[str]:
    labels = [f"{lut.device.name}@{_lut_resolution(lut)}" for lut in luts]
    for i, label in enumerate(labels):
        if labels.count(label) > 1:  # same device twice: tell them apart by file
            labels[i] = f"{label} ({Path(str(luts[i].path)).stem})"
    return labels


# --- the table ---------------------------------------------------------------------------------

def build_table(luts: list[Lut], rows: list[ArchRow], measurements: list[Measurement],
                resolution: int | None = None) -> Table:
    if resolution is not None:
        for lut in luts:
            if _lut_resolution(lut) != resolution:
                raise UserError(f"{lut.path} is built for {_lut_resolution(lut)}x"
                                f"{_lut_resolution(lut)}, not {resolution}; drop --resolution or "
                                f"pass LUTs built at {resolution}")
    labels = [r.label for r in rows]
    for r in rows:
        if labels.count(r.label) > 1:
            r.label = f"{r.label} ({r.source})"
    columns = [Column(label, str(lut.path), lut.device.name, _lut_resolution(lut),
                      lut.provenance.kind, lut.title)
               for label, lut in zip(_column_labels(luts), luts)]
    used: set[int] = set()

    def measured(arch: Architecture, device: str) -> float | None:
        s = to_arch_string(arch)
        for i, m in enumerate(measurements):
            same_arch = m.arch_string == s if m.arch_string else m.arch_name == arch.name
            if same_arch and m.device == device and m.resolution == arch.space.resolution:
                used.add(i)
                return m.median_ms
        return None

    table = Table(columns)
    grid: list[list[Cell]] = []
    for row in rows:
        cells = []
        for col, lut in zip(columns, luts):
            arch = at_resolution(row.arch, col.resolution)
            keys = [layer.key for layer in arch.layers()]
            missing = lut.missing_keys(keys)
            published = None
            if col.resolution == PUBLISHED_RESOLUTION:
                published = latency_ms(row.source, col.device)
            cells.append(Cell(col.resolution,
                              None if missing else lut.price(arch).total_ms, arch.macs,
                              len(missing), measured_ms=measured(arch, col.device),
                              published_ms=published))
        grid.append(cells)
    for j in range(len(columns)):
        priced = [row[j] for row in grid if row[j].latency_ms is not None]
        if priced:
            min(priced, key=lambda c: c.latency_ms).fastest = True
    for row, cells in zip(rows, grid):
        table.rows.append({
            "label": row.label, "source": row.source, "arch_name": row.arch.name,
            "arch_string": to_arch_string(row.arch), "resolution": row.arch.space.resolution,
            "macs": row.arch.macs, "params": row.arch.params,
            "top1": asdict(row.top1) if row.top1 else None,
            "cells": {col.label: asdict(c) for col, c in zip(columns, cells)}})
    # measurements of devices or sizes no LUT column covers get a column of their own
    for i, m in enumerate(measurements):
        if i not in used:
            table.extra_measured.append(asdict(m))
    return table


def fastest_lines(table: Table) -> list[str]:
    """Per device: the fastest architecture and how much faster than each other one."""
    lines = []
    for col in table.columns:
        cells = [(r["label"], r["cells"][col.label]["latency_ms"]) for r in table.rows
                 if r["cells"][col.label]["latency_ms"] is not None]
        if len(cells) < 1:
            lines.append(f"{col.label}: no architecture is covered by {col.path}")
            continue
        cells.sort(key=lambda c: c[1])
        best, best_ms = cells[0]
        others = ", ".join(f"{ms / best_ms:.2f}x faster than {label}" for label, ms in cells[1:]
                           if best_ms > 0)
        lines.append(f"{col.label}: fastest {best} ({best_ms:.3f} ms)" +
                     (f", {others}" if others else ""))
    return lines


def _fmt_ms(ms: float) -> str:
    return f"{ms:.2f}" if ms >= 0.1 else f"{ms:.4f}"


def format_table(table: Table) -> str:
    resolutions = {c.resolution for c in table.columns}
    header = ["architecture", "MMACs", "Mparams", "top-1"]
    header += [f"{c.label} ms" for c in table.columns]
    extra_keys = sorted({(m["device"], m["resolution"]) for m in table.extra_measured})
    header += [f"measured {d}@{r} ms" for d, r in extra_keys]
    body = []
    for row in table.rows:
        cells = list(row["cells"].values())
        # MACs at the table's size when the LUTs agree on one, else at the architecture's own
        macs = cells[0]["macs"] if len(resolutions) == 1 else row["macs"]
        top1 = row["top1"]
        line = [row["label"], f"{macs / 1e6:.1f}", f"{row['params'] / 1e6:.2f}",
                f"{top1['value']:.1%} ({top1['source']})" if top1 else "-"]
        for c in cells:
            if c["latency_ms"] is None:
                line.append(f"n/a ({c['missing']} key{'s' if c['missing'] > 1 else ''} missing)")
                continue
            text = _fmt_ms(c["latency_ms"]) + (" *" if c["fastest"] else "")
            if c["measured_ms"] is not None:
                err = c["latency_ms"] / c["measured_ms"] - 1
                text += f" | meas {_fmt_ms(c['measured_ms'])} ({err:+.0%})"
            if c["published_ms"] is not None:
                text += f" | paper {c['published_ms']:.2f}"
            line.append(text)
        for d, r in extra_keys:
            ms = [m["median_ms"] for m in table.extra_measured
                  if m["device"] == d and m["resolution"] == r
                  and m["arch_name"] == row["arch_name"]]
            line.append(_fmt_ms(ms[0]) if ms else "-")
        body.append(line)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    out = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in body]
    out.append("")
    macs_at = (f"{next(iter(resolutions))}x{next(iter(resolutions))}" if len(resolutions) == 1
               else "each architecture's own input size")
    out.append(f"* fastest on that device.  meas: measured network latency (LUT error in "
               f"brackets).  MACs at {macs_at}.")
    for col in table.columns:
        out.append(f"  {col.label}: {col.path} — {col.title}")
    return "\n".join(out)


def plot_table(table: Table, path: Path) -> None:
    import matplotlib  # seconds to load: only where a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(table.columns)
    fig, axes = plt.subplots(1, n, figsize=(max(4.0, 3.2 * n), 0.5 * len(table.rows) + 1.8),
                             squeeze=False, sharey=True)
    labels = [r["label"] for r in table.rows]
    for ax, col in zip(axes[0], table.columns):
        cells = [r["cells"][col.label] for r in table.rows]
        values = [c["latency_ms"] or 0.0 for c in cells]
        colors = ["tab:orange" if c["fastest"] else "tab:blue" for c in cells]
        ys = range(len(labels))
        ax.barh(ys, values, color=colors)
        for y, c in zip(ys, cells):
            if c["measured_ms"] is not None:
                ax.plot(c["measured_ms"], y, "k|", markersize=14, markeredgewidth=2)
            if c["latency_ms"] is None:
                ax.text(0, y, " not covered", va="center", fontsize=8)
        ax.set_yticks(list(ys), labels)
        ax.set_title(f"{col.label}\n({col.provenance})", fontsize=9)
        ax.set_xlabel("latency (ms)")
        ax.invert_yaxis()
    fig.suptitle("LUT-predicted latency per device (orange: fastest; |: measured)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
