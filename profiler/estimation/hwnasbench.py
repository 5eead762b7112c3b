"""HW-NAS-Bench's FBNet-space lookup tables: imported as fbnet-hw LUTs, and fitted by the model.

HW-NAS-Bench (Li et al., ICLR 2021) ships one flat table per `<device>_<metric>` whose keys are
exactly our block keys (fbnet.workloads), covering the 224x224 ImageNet and the 32x32 CIFAR-100
layouts in one dict. Importing means: check every key parses, split the keys by the space they
belong to, attach the energy table as an extra metric, and record where it all came from.
The latency model (profiler.estimation) fits its coefficients to the measured CPU tables.
The dump this reads ships in the repository: data/hw-nas-bench/ (README: source, license MIT).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from fbnet.arch import NAMED_ARCHITECTURES, named_architecture
from fbnet.errors import UserError
from fbnet.lut import DeviceInfo, Lut, LutEntry, Measurement, Provenance, RuntimeInfo, Summation
from fbnet.space import SpaceConfig
from fbnet.workloads import FullyConnected, parse_key, space_workloads

# HW-NAS-Bench's FBNet-space tables as shipped with the project (MIT; data/hw-nas-bench/README.md).
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "data" / "hw-nas-bench" / "fbnet_cached_metrics.json"

# The two layouts HW-NAS-Bench priced: ImageNet (1000 classes) and CIFAR-100 (small layout).
RESOLUTIONS = (224, 32)
DATASET = {224: "ImageNet", 32: "cifar100"}

SOURCE = {
    "name": "HW-NAS-Bench (Li et al., ICLR 2021), FBNet search space",
    "repository": "https://github.com/GATECH-EIC/HW-NAS-Bench",
    "path": "HW-NAS-Bench-v1_0.pickle, key 'fbnet'",
    "blob": "b0634cb7f6e7be07192c77833df9eafa4baf705e",
    "commit": "6c67e04375d0b9016846cce627f67804235f5e9e",
    "license": "MIT, Copyright (c) 2022 GaTech-EIC",
    "json_dump": {
        "repository": "https://github.com/fracapuano/sim-is-more",
        "path": "fbnet_cached_metrics.json",
        "commit": "c8a9073b9d17d7e062b2cf8178c3084aa700af24",
        "blob": "978aa4096e1aafd1468aef99e108b736a678dee8",
        "license": "MIT, Copyright (c) 2023 Francesco Capuano",
    },
    "units": {"latency": "ms", "energy": "mJ"},
    "network_latency": "stem + 22 blocks + head conv + pool + classifier, a plain sum "
                       "(hw_nas_bench_api.fbnet_get_metrics)",
}


@dataclass(frozen=True)
class SourceDevice:
    """What HW-NAS-Bench says about one of its devices."""

    name: str
    description: str
    method: str  # "measured" or "estimated (simulated accelerator)"
    runtime: str
    model: str | None = None
    soc: str | None = None
    cpu: str | None = None
    has_energy: bool = False
    quirks: tuple[str, ...] = field(default=())


DEVICES: dict[str, SourceDevice] = {d.name: d for d in (
    SourceDevice("pixel3", "Google Pixel 3 phone, CPU", "measured", "tflite",
                 model="Pixel 3", soc="Snapdragon 845", cpu="4 big + 4 little cores",
                 quirks=("identity skips have small non-zero latencies",)),
    SourceDevice("raspi4", "Raspberry Pi 4 board, CPU", "measured", "tflite",
                 model="Raspberry Pi 4", soc="Broadcom BCM2711", cpu="4x Cortex-A72",
                 quirks=("identity skips have small non-zero latencies",)),
    SourceDevice("edgegpu", "NVIDIA Jetson TX2 edge GPU", "measured", "tensorrt",
                 model="Jetson TX2", has_energy=True,
                 quirks=("every ConvBlock is >= 0.51 ms: a per-block fixed overhead of its "
                         "separately built TensorRT engine", "identity skips are exactly 0")),
    SourceDevice("eyeriss", "Eyeriss ASIC accelerator", "estimated (simulated accelerator)",
                 "simulator", model="Eyeriss", has_energy=True,
                 quirks=("identity skips are exactly 0",)),
    SourceDevice("fpga", "FPGA accelerator", "estimated (simulated accelerator)",
                 "simulator", has_energy=True,
                 quirks=("stem, head conv, pool and classifier are 0: the source prices only "
                         "the searchable blocks", "identity skips are exactly 0")),
)}

# Devices of HW-NAS-Bench measured on a real CPU: the ones a roofline latency model describes.
MEASURED_DEVICES = ("pixel3", "raspi4")


@dataclass
class ImportedLut:
    device: str
    resolution: int
    lut: Lut

    @property
    def filename(self) -> str:
        return f"{self.device}.json" if self.resolution == 224 else f"{self.device}_{self.resolution}.json"


def read_source(path: Path | str) -> dict[str, dict[str, float]]:
    """The `<device>_<metric>` -> {block key: value} tables of a HW-NAS-Bench FBNet dump."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"HW-NAS-Bench data {path} not found; give HW-NAS-Bench's FBNet dump, "
                        f"e.g. {DEFAULT_SOURCE}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({err}); give HW-NAS-Bench's FBNet table dump "
                        "(json.dump of the pickle's 'fbnet' part)") from None
    if isinstance(data, dict) and isinstance(data.get("fbnet"), dict):
        data = data["fbnet"]  # a dump of the whole pickle rather than its FBNet part
    tables = {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}
    expected = [f"{d}_latency" for d in DEVICES]
    if not any(name in tables for name in expected):
        raise UserError(f"{path} holds none of HW-NAS-Bench's tables ({', '.join(expected)}); "
                        "is it the FBNet part of HW-NAS-Bench?")
    for name, table in tables.items():
        for key, value in table.items():
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"{path}: {name}[{key}] = {value!r} is not a non-negative number")
    return tables


def measured_tables(path: Path | str | None = None) -> dict[str, dict[str, float]]:
    """{device: {block key: latency_ms}} of the MEASURED_DEVICES (default: the shipped dump)."""
    path = Path(path) if path else DEFAULT_SOURCE
    tables = read_source(path)
    for device in MEASURED_DEVICES:
        if f"{device}_latency" not in tables:
            raise UserError(f"{path} has no {device}_latency table; is it HW-NAS-Bench's FBNet part?")
    return {d: {k: float(v) for k, v in tables[f"{d}_latency"].items()} for d in MEASURED_DEVICES}


def split_by_resolution(keys) -> dict[int, list[str]]:
    """Assign every key to the 224 or 32 space by its shapes; unknown keys are an error.

    Block, stem, head and pool keys belong to the space whose workloads contain them. FC keys
    carry no spatial size, so they go by the head width feeding them (1984 at 224, 1504 at 32);
    this keeps HW-NAS-Bench's stray FC_Cin1504_Cout10 (a 10-class head) in the 32 LUT.
    """
    spaces = {r: SpaceConfig.create(r) for r in RESOLUTIONS}
    known = {r: {w.key for w in space_workloads(s)} for r, s in spaces.items()}
    split: dict[int, list[str]] = {r: [] for r in RESOLUTIONS}
    unplaced = []
    for key in keys:
        workload = parse_key(key)
        owners = [r for r in RESOLUTIONS if key in known[r]]
        if not owners and isinstance(workload, FullyConnected):
            owners = [r for r in RESOLUTIONS if spaces[r].head_channels == workload.c_in]
        if len(owners) != 1:
            unplaced.append(key)
        else:
            split[owners[0]].append(key)
    if unplaced:
        raise UserError(f"{len(unplaced)} key(s) fit neither the 224 nor the 32 FBNet space: "
                        f"{', '.join(unplaced[:5])}; is this HW-NAS-Bench's FBNet table?")
    return split


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def import_hwnasbench(path: Path | str, devices: list[str] | None = None) -> list[ImportedLut]:
    """One LUT per device and resolution, every source number kept exactly."""
    path = Path(path)
    tables = read_source(path)
    devices = devices or [d for d in DEVICES if f"{d}_latency" in tables]
    unknown = [d for d in devices if d not in DEVICES]
    if unknown:
        raise UserError(f"unknown HW-NAS-Bench device(s) {unknown}; known: {', '.join(DEVICES)}")
    missing = [d for d in devices if f"{d}_latency" not in tables]
    if missing:
        raise UserError(f"{path} has no latency table for {', '.join(missing)}")
    sha = _sha256(path)
    results = []
    for name in devices:
        spec = DEVICES[name]
        latency = tables[f"{name}_latency"]
        energy = tables.get(f"{name}_energy")
        if energy is not None and set(energy) != set(latency):
            raise UserError(f"{path}: {name}_energy and {name}_latency have different keys")
        for resolution, keys in split_by_resolution(latency).items():
            space = SpaceConfig.create(resolution)
            entries = {}
            for key in keys:
                extra = {"energy_mj": float(energy[key])} if energy is not None else {}
                entries[key] = LutEntry(latency_ms=float(latency[key]), extra=extra)
            lut = Lut(
                device=DeviceInfo(name=name, model=spec.model, soc=spec.soc, cpu=spec.cpu,
                                  extra={"description": spec.description}),
                runtime=RuntimeInfo(name=spec.runtime),
                provenance=Provenance(kind="imported", details={
                    **SOURCE,
                    "source_file": path.name,
                    "source_sha256": sha,
                    "tables": [f"{name}_latency"] + ([f"{name}_energy"] if energy else []),
                    "dataset": DATASET[resolution],
                    "device": spec.description,
                    "method": spec.method,
                    "runtime": spec.runtime,
                    "source_says": _source_says(spec),
                    "quirks": list(spec.quirks),
                    **({"extra_metrics": {"energy_mj": "energy of the block in mJ"}}
                       if energy else {}),
                }),
                entries=entries,
                space=space,
                measurement=Measurement(details={"batch_size": 1}),
                summation=Summation(method="plain sum of entries (as HW-NAS-Bench sums)"),
            )
            lut.require([w.key for w in space_workloads(space)], f"the {resolution} space")
            lut.provenance.details["source_lacks"] = {
                "what": "named architectures (python -m search.space --list) at this "
                        "resolution and class count that this LUT cannot price, with the keys "
                        "the source does not include",
                "architectures": named_gaps(lut, space)}
            results.append(ImportedLut(name, resolution, lut))
    return results


def named_gaps(lut: Lut, space: SpaceConfig) -> dict[str, list[str]]:
    """Per named architecture laid out in `space` (its resolution and classes), the keys `lut`
    lacks; architectures it prices in full are left out."""
    gaps = {}
    for name in NAMED_ARCHITECTURES:
        arch = named_architecture(name, resolution=space.resolution,
                                  num_classes=space.num_classes)
        missing = lut.missing_keys(layer.key for layer in arch.layers())
        if missing:
            gaps[name] = missing
    return gaps


def _source_says(spec: SourceDevice) -> str:
    if spec.method == "measured":
        return (f"{spec.description}; latencies measured with {spec.runtime}, per the HW-NAS-Bench "
                "paper; threads, dtype and clocks are not recorded in the data")
    return (f"{spec.description}; latency{' and energy' if spec.has_energy else ''} estimated by "
            "a hardware simulator, not measured on silicon, per the HW-NAS-Bench paper")
