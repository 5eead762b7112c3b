"""The latency lookup table (LUT): the contract between `profiler/` (writes) and `search/` (reads).

A LUT is one JSON file (schema `fbnet-lut/1`, see docs/luts.md, "LUT format"):

    {"schema": "fbnet-lut/1",
     "device": {...}, "runtime": {...}, "measurement": {...}, "provenance": {...},
     "space": {...}, "summation": {...}, "created": "...", "tool": {...},
     "entries": {"<block key>": {"latency_ms": 0.41, "mean_ms": ..., "ops": [...]}, ...}}

`latency_ms` is the value a LUT prices a block by (the median for measured LUTs). A network's
latency is the sum of its parts' entries, corrected by `summation` (costs a block pays when
measured alone that vanish inside a network, see `Summation`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from fbnet import __version__
from fbnet.errors import UserError
from fbnet.io import atomic_write_json
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from fbnet.workloads import candidate_workload, fixed_parts, parse_key

LUT_SCHEMA = "fbnet-lut/1"
PROVENANCE_KINDS = ("measured", "imported", "estimated")


@dataclass
class OpLatency:
    """One operator inside a block, from a per-operator profile (ETDump, autograd profiler)."""

    name: str  # e.g. "Convolution (NHWC, F32) IGEMM #1"
    op_type: str  # normalized class, e.g. "conv_1x1", "dwconv", "transpose", "add"
    latency_ms: float


@dataclass
class LutEntry:
    latency_ms: float
    mean_ms: float | None = None
    std_ms: float | None = None
    p10_ms: float | None = None
    p90_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    n: int | None = None
    # Part of latency_ms that a block pays only when measured alone (runtime call, delegate
    # boundary transposes); subtracted when Summation.subtract_boundary is set.
    boundary_ms: float | None = None
    ops: list[OpLatency] = field(default_factory=list)
    extra: dict[str, float] = field(default_factory=dict)  # other metrics, e.g. energy_mj
    # Confidence interval of latency_ms (measured LUTs; see profiler.measure.median_ci).
    ci_low_ms: float | None = None
    ci_high_ms: float | None = None
    # latency_ms against the build's reference block timed in the same jobs (profiler.run):
    # what holds when the machine's speed moves; the absolute scale is the reference's own
    ref_ratio: float | None = None

    @property
    def ci_half_ms(self) -> float | None:
        """Half the width of the median's confidence interval; None where not recorded."""
        if self.ci_low_ms is None or self.ci_high_ms is None:
            return None
        return (self.ci_high_ms - self.ci_low_ms) / 2

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if v not in (None, [], {})}
        return data

    def scaled(self, factor: float) -> "LutEntry":
        """The entry on a machine `factor` times as slow: every time in it scaled, counts kept."""
        def times(value: float | None) -> float | None:
            return None if value is None else round(value * factor, 6)

        return replace(
            self, latency_ms=times(self.latency_ms), mean_ms=times(self.mean_ms),
            std_ms=times(self.std_ms), p10_ms=times(self.p10_ms), p90_ms=times(self.p90_ms),
            min_ms=times(self.min_ms), max_ms=times(self.max_ms),
            boundary_ms=times(self.boundary_ms), ci_low_ms=times(self.ci_low_ms),
            ci_high_ms=times(self.ci_high_ms),
            ops=[replace(op, latency_ms=times(op.latency_ms)) for op in self.ops],
            extra={k: times(v) if k.endswith("_ms") else v for k, v in self.extra.items()})

    @classmethod
    def from_dict(cls, data: dict, where: str) -> "LutEntry":
        if not isinstance(data, dict) or "latency_ms" not in data:
            raise UserError(f"{where}: each entry needs a 'latency_ms' number")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for k, v in values.items():
            if k in ("ops", "extra"):
                continue
            if v is not None and not _is_valid_number(v):
                raise UserError(f"{where}: {k} = {v!r} is not a non-negative number; "
                                "re-measure or fix the file")
        ops = []
        for op in values.pop("ops", []) or []:
            try:
                ops.append(OpLatency(str(op["name"]), str(op.get("op_type", "other")),
                                     float(op["latency_ms"])))
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{where}: malformed per-op record {op!r}") from None
        return cls(ops=ops, **values)


def _scaled_times(data, factor: float):
    """`data` (a summation's fit record) with every `*_ms` number in it times `factor`."""
    if isinstance(data, dict):
        return {k: round(v * factor, 6) if k.endswith("_ms") and isinstance(v, (int, float))
                else _scaled_times(v, factor) for k, v in data.items()}
    if isinstance(data, list):
        return [_scaled_times(v, factor) for v in data]
    return data


def _is_valid_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


@dataclass
class DeviceInfo:
    name: str  # profile name: host, s8, iphone_x, pixel3, android:<serial>, ...
    model: str | None = None  # e.g. SM-G950U, iPhone10,3
    soc: str | None = None
    cpu: str | None = None
    os: str | None = None
    extra: dict = field(default_factory=dict)  # governor, frequencies, temperatures, ...


@dataclass
class RuntimeInfo:
    name: str  # executorch, torchscript-lite, caffe2, tensorrt, ...
    version: str | None = None
    backend: str | None = None  # xnnpack, portable, ...
    dtype: str | None = None  # fp32, int8
    threads: int | None = None


@dataclass
class Provenance:
    kind: str  # measured | imported | estimated
    details: dict = field(default_factory=dict)  # source/license, model/fit error, settings...


@dataclass
class Measurement:
    """How a LUT's numbers were obtained. A measured LUT records profiler.run's settings, the
    lowering recipe (fbnet.lowering) its programs were exported by, and the build's own records;
    an imported or estimated LUT states what it can in `details`. Only the fields that are set
    are written, in this order, then `details`."""

    # profiler.settings.Settings of the build
    dtype: str | None = None
    backend: str | None = None
    runtime: str | None = None
    threads: int | None = None
    warmup: int | None = None
    iters: int | None = None
    rounds: int | None = None
    passes: int | None = None  # sets of freshly grouped jobs the rounds were spread over
    etdump_iters: int | None = None
    ops: bool | None = None
    clock: str | None = None  # wall | thread_cpu
    recipe: str | None = None  # the fbnet.lowering recipe's name, e.g. xnnpack-fp32
    protocol: str | None = None
    complete: bool | None = None  # False while a build is unfinished (--resume continues it)
    classifier_classes: list[int] | None = None
    # a build's --only globs; a build writes it even when None (it measured the whole space)
    only: str | None = None
    named_architectures: bool | None = None  # --include-named
    export: dict | None = None  # exported / cached counts and wall time
    drift: dict | None = None  # the reference block's medians and what was re-measured
    calibration_checks: dict | None = None  # re-measurements of the calibration networks
    stability: dict | None = None  # how much of the LUT is noise (profiler.build.stability)
    wall_s: dict | None = None
    # profiler.validate --record: one summary per validation of this LUT, oldest first, so a
    # LUT carries its own fidelity and its spread over validations
    validations: list[dict] | None = None
    # profiler.reanchor: each rescaling of the absolute values to a machine's speed at a later
    # time (date, ratio, its spread over the blocks timed), oldest first
    reanchors: list[dict] | None = None
    details: dict = field(default_factory=dict)  # what other producers state, e.g. batch_size

    def to_dict(self) -> dict:
        data = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "details" and (value is not None or
                                        (f.name == "only" and self.complete is not None)):
                data[f.name] = value
        return data | self.details

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "Measurement":
        if not isinstance(data, dict):
            raise UserError(f"{source}: 'measurement' must be an object")
        known = {f.name for f in fields(cls)} - {"details"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   details={k: v for k, v in data.items() if k not in known})


@dataclass
class Summation:
    """How block latencies add up to a network latency.

    A block measured alone pays costs that vanish inside a network (delegate call, NCHW<->NHWC
    transposes at the delegate boundary, input/output copies). The profiler measures them and
    records them here:

        network = scale * sum(max(entry - boundary - per_entry_offset_ms, 0)) + network_offset_ms

    where boundary is the entry's own `boundary_ms` when `subtract_boundary` is set (0 otherwise)
    and `scale` is a fitted factor for what blocks pay inside a network but not alone (weights
    and activations no longer hot in cache).
    Imported and estimated LUTs use zeros: a plain sum. `fit` holds the data the offsets were
    fitted on (calibration networks, residuals), so a reader can judge them.
    """

    per_entry_offset_ms: float = 0.0
    network_offset_ms: float = 0.0
    method: str = "plain sum of entries"
    subtract_boundary: bool = False
    scale: float = 1.0
    fit: dict = field(default_factory=dict)

    def entry_ms(self, entry: "LutEntry") -> float:
        """What one entry contributes to a network's latency."""
        boundary = (entry.boundary_ms or 0.0) if self.subtract_boundary else 0.0
        return self.scale * max(entry.latency_ms - boundary - self.per_entry_offset_ms, 0.0)


@dataclass
class Lut:
    device: DeviceInfo
    runtime: RuntimeInfo
    provenance: Provenance
    entries: dict[str, LutEntry] = field(default_factory=dict)
    space: SpaceConfig | None = None  # the space the LUT was built for
    measurement: Measurement = field(default_factory=Measurement)
    summation: Summation = field(default_factory=Summation)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(
        timespec="seconds"))
    tool: dict = field(default_factory=lambda: {"name": "fbnet-hw", "version": __version__})
    schema: str = LUT_SCHEMA
    path: Path | None = field(default=None, compare=False)

    # --- describing ---------------------------------------------------------------------------
    @property
    def title(self) -> str:
        """A short label for plots and tables: device and runtime."""
        rt = self.runtime
        bits = [rt.name, rt.backend, rt.dtype, f"{rt.threads}T" if rt.threads else None]
        label = " ".join(b for b in bits if b)
        res = f" @{self.space.resolution}" if self.space else ""
        return f"{self.device.name} ({label}, {self.provenance.kind}){res}"

    # --- lookups ------------------------------------------------------------------------------
    def latency_ms(self, key: str) -> float:
        """The latency a network pays for this block (summation offset applied)."""
        try:
            entry = self.entries[key]
        except KeyError:
            raise UserError(f"{self._name()} has no entry for {key}; profile it "
                            "(python -m profiler.run) or use a LUT that covers this space") from None
        return self.summation.entry_ms(entry)

    def missing_keys(self, keys: Iterable[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self.entries]

    def require(self, keys: Iterable[str], what: str = "this space",
                arch_name: str | None = None) -> None:
        """A one-line error naming what the LUT lacks for `what` and how to add it (for a
        named architecture `arch_name`, the exact command)."""
        missing = self.missing_keys(keys)
        if missing:
            shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
            res = f" (the LUT was built at resolution {self.space.resolution})" if self.space else ""
            if self.provenance.kind == "imported":
                # an imported LUT holds what its source measured; nothing can be added to it
                source = self.provenance.details.get("name", "its source")
                raise UserError(
                    f"{self._name()} does not cover {what}: missing {shown}{res}; its source, "
                    f"{source}, does not include them: price it on a measured or estimated LUT "
                    "(python -m profiler.run or profiler.estimate)"
                )
            how = "build a LUT for it with python -m profiler.run or profiler.estimate"
            if arch_name and self.path and self.provenance.kind == "estimated":
                how = (f"add them with python -m profiler.estimate --extend {self.path} "
                       f"--arch {arch_name}")
            elif arch_name and self.path and self.space:
                how = (f"add them with python -m profiler.run --device {self.device.name} "
                       f"--resolution {self.space.resolution} --out {self.path} --extend "
                       f"--cover {arch_name}")
            raise UserError(f"{self._name()} does not cover {what}: missing {shown}{res}; {how}")

    def network_latency_ms(self, keys: Iterable[str]) -> float:
        keys = list(keys)
        self.require(keys, "this network")
        return sum(self.latency_ms(k) for k in keys) + self.summation.network_offset_ms

    def network_ci_half_ms(self, keys: Iterable[str]) -> float | None:
        """Half-width of the interval of `network_latency_ms(keys)` that the entries' own
        intervals give: a key that occurs k times adds k times its error, distinct keys are
        measured independently (their errors add in quadrature). None when no entry records
        an interval (imported, estimated and older LUTs)."""
        counts: dict[str, int] = {}
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
        self.require(counts, "this network")
        halves = [(n, self.entries[k].ci_half_ms) for k, n in counts.items()]
        if all(h is None for _, h in halves):
            return None
        return self.summation.scale * math.sqrt(sum((n * (h or 0.0)) ** 2 for n, h in halves))

    def reanchored(self, factor: float, record: dict) -> "Lut":
        """This LUT on its machine running `factor` times as slow as when it was measured
        (profiler.reanchor): every entry, the summation's offsets and the times its fit was
        made from scaled (its `scale` and the fit's errors are ratios and stay), `record`
        appended to measurement.reanchors."""
        measurement = replace(self.measurement,
                              reanchors=[*(self.measurement.reanchors or []), record])
        summation = replace(self.summation,
                            per_entry_offset_ms=self.summation.per_entry_offset_ms * factor,
                            network_offset_ms=self.summation.network_offset_ms * factor,
                            fit=_scaled_times(self.summation.fit, factor))
        return replace(self, entries={k: e.scaled(factor) for k, e in self.entries.items()},
                       summation=summation, measurement=measurement)

    def price(self, arch) -> "NetworkPrice":
        """Per-layer and total latency of an `Architecture`."""
        layers = arch.layers()
        self.require([layer.key for layer in layers], f"architecture {arch.name}", arch.name)
        per_layer = [(layer.label, layer.key, self.latency_ms(layer.key)) for layer in layers]
        total = sum(ms for _, _, ms in per_layer) + self.summation.network_offset_ms
        return NetworkPrice(arch.name, per_layer, self.summation.network_offset_ms, total)

    def layer_table(self, space: SpaceConfig) -> "LayerTable":
        """Latency of every candidate at every searchable layer, plus the fixed parts' total.

        This is what the DNAS loss prices a relaxed architecture with.
        """
        parts = fixed_parts(space)
        fixed_keys = [parts.stem.key, parts.head.key, parts.pool.key, parts.classifier.key]
        layer_keys = [[candidate_workload(shape, c).key for c in CANDIDATE_NAMES]
                      for shape in space.layers()]
        self.require(fixed_keys + [k for row in layer_keys for k in row], "the search space")
        fixed = sum(self.latency_ms(k) for k in fixed_keys) + self.summation.network_offset_ms
        return LayerTable(fixed, [[self.latency_ms(k) for k in row] for row in layer_keys])

    def _name(self) -> str:
        return f"LUT {self.path}" if self.path else f"LUT for {self.device.name}"

    # --- (de)serialization --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "device": asdict(self.device),
            "runtime": asdict(self.runtime),
            "measurement": self.measurement.to_dict(),
            "provenance": asdict(self.provenance),
            "space": self.space.to_dict() if self.space else None,
            "summation": asdict(self.summation),
            "created": self.created,
            "tool": self.tool,
            "unit": "ms",
            "entries": {k: e.to_dict() for k, e in self.entries.items()},
        }

    @classmethod
    def from_dict(cls, data: dict, source: str = "LUT") -> "Lut":
        if not isinstance(data, dict) or "entries" not in data:
            raise UserError(f"{source} is not a LUT (no 'entries'); expected a {LUT_SCHEMA} JSON file")
        schema = data.get("schema")
        if schema != LUT_SCHEMA:
            raise UserError(f"{source} has schema {schema!r}, this tool reads {LUT_SCHEMA!r}; "
                            "re-create it with this version of the profiler")
        for part in ("device", "runtime", "provenance"):
            if not isinstance(data.get(part), dict):
                raise UserError(f"{source} lacks the '{part}' metadata object; every LUT must say "
                                "where its numbers came from")
        try:
            device = DeviceInfo(**data["device"])
            runtime = RuntimeInfo(**data["runtime"])
            provenance = Provenance(**data["provenance"])
            summation = Summation(**data.get("summation") or {})
        except TypeError as err:
            raise UserError(f"{source} has malformed metadata: {err}") from None
        if provenance.kind not in PROVENANCE_KINDS:
            raise UserError(f"{source}: provenance kind {provenance.kind!r} is not one of "
                            f"{', '.join(PROVENANCE_KINDS)}")
        if not isinstance(data["entries"], dict):
            raise UserError(f"{source}: 'entries' must map block keys to entries")
        entries = {}
        for key, raw in data["entries"].items():
            parse_key(key)  # rejects keys that are not canonical block keys
            entries[key] = LutEntry.from_dict(raw, f"{source} entry {key}")
        kwargs = {k: data[k] for k in ("created", "tool") if k in data}
        space = SpaceConfig.from_dict(data["space"]) if data.get("space") else None
        measurement = Measurement.from_dict(data.get("measurement") or {}, source)
        return cls(device=device, runtime=runtime, provenance=provenance, entries=entries,
                   space=space, measurement=measurement, summation=summation, **kwargs)

    def save(self, path: Path | str) -> None:
        atomic_write_json(Path(path), self.to_dict())
        self.path = Path(path)

    # --- tables -------------------------------------------------------------------------------
    def to_dataframe(self):
        """One row per entry: key, kind, shape fields, latency statistics."""
        import pandas as pd  # every command reads LUTs; few need pandas (a second to load)

        rows = []
        for key, entry in self.entries.items():
            workload = parse_key(key)
            row = {"key": key, "kind": type(workload).__name__}
            row.update(asdict(workload))
            row.update({k: v for k, v in entry.to_dict().items() if k not in ("ops", "extra")})
            row.update(entry.extra)
            rows.append(row)
        return pd.DataFrame(rows)

    def to_csv(self, path: Path | str) -> None:
        self.to_dataframe().to_csv(path, index=False)


@dataclass
class NetworkPrice:
    arch_name: str
    per_layer: list[tuple[str, str, float]]  # (label, key, latency_ms)
    network_offset_ms: float
    total_ms: float


@dataclass
class LayerTable:
    fixed_ms: float  # stem + head + pool + classifier (+ network offset)
    per_layer_ms: list[list[float]]  # [layer][candidate index], candidate order = CANDIDATE_NAMES


# --- file naming ---------------------------------------------------------------------------------
# luts/<device>[_<resolution>][_<dtype>][_<backend>][_<runtime>][_measured].json; the defaults
# (224, fp32, xnnpack, executorch) are left out: luts/s8.json, luts/s8_32.json, host_32_int8.json.
DEFAULT_LUT_RESOLUTION = 224
MAX_LUT_RESOLUTION = 1024
LUT_NAME_DEFAULTS = {"dtype": "fp32", "backend": "xnnpack", "runtime": "executorch"}
# the words after the resolution that qualify a LUT (kept when its sibling is named)
LUT_NAME_QUALIFIERS = {"int8", "portable", "torchscript", "measured"}


def lut_file_name(device: str, resolution: int = DEFAULT_LUT_RESOLUTION, dtype: str = "fp32",
                  backend: str = "xnnpack", runtime: str = "executorch") -> str:
    parts = [device.replace(":", "_").replace(",", "_")]
    if resolution != DEFAULT_LUT_RESOLUTION:
        parts.append(str(resolution))
    for key, value in (("dtype", dtype), ("backend", backend), ("runtime", runtime)):
        if value != LUT_NAME_DEFAULTS[key]:
            parts.append(value)
    return "_".join(parts) + ".json"


def lut_sibling_name(stem: str, resolution: int) -> str:
    """The file name of the same device's LUT at another input size (same qualifiers)."""
    tokens = stem.split("_")
    end = len(tokens)
    while end > 1 and tokens[end - 1] in LUT_NAME_QUALIFIERS:
        end -= 1
    rest = tokens[end:]
    # a number just before the qualifiers is the resolution; device serials may end in numbers
    # too (adb's host:port), which are larger than any input size
    last = tokens[end - 1]
    is_size = end > 1 and last.isdigit() and int(last) <= MAX_LUT_RESOLUTION
    device = tokens[:end - 1] if is_size else tokens[:end]
    size = [str(resolution)] if resolution != DEFAULT_LUT_RESOLUTION else []
    return "_".join(device + size + rest) + ".json"


def load_lut(path: Path | str) -> Lut:
    """Read and validate a LUT file; any problem is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        hint = " (LUTs shipped with the project are in luts/)" if not path.exists() else ""
        raise UserError(f"LUT file {path} does not exist{hint}; check the path")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); is it a LUT file?") from None
    lut = Lut.from_dict(data, source=str(path))
    lut.path = path
    return lut
