"""An estimated LUT: the device model of a device out of reach, and the LUT it prices.

The model's coefficients come from:
  s8, iphone_x    the FBNet paper's published end-to-end latencies, regularized toward a prior
                  built from the Pixel 3 fit and the phones' hardware (profiler.estimation.devices)
  pixel3, raspi4  HW-NAS-Bench's measured blocks (to price spaces HW-NAS-Bench never measured)
The provenance records the coefficients, the calibration targets with their residuals and the
model's validation on real Pixel 3 / Raspberry Pi 4 blocks.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from fbnet.arch import Architecture, named_architecture
from fbnet.coverage import CLASSIFIER_CLASSES, named_only_keys
from fbnet.errors import UserError
from fbnet.lut import (DeviceInfo, Lut, LutEntry, Measurement, OpLatency, Provenance, RuntimeInfo,
                       load_lut)
from fbnet.space import SpaceConfig
from fbnet.workloads import Workload
from profiler.estimation import hwnasbench
from profiler.estimation.devices import DEVICE_SPECS, calibrate, device_spec
from profiler.estimation.fit import FitResult, fit_blocks
from profiler.estimation.hwnasbench import MEASURED_DEVICES
from profiler.estimation.model import MODEL_NAME, DeviceModel
from profiler.estimation.operators import MAC_CLASSES, MEMORY_CLASSES
from profiler.estimation.validation import validate, validation_fits

DEVICES = tuple(DEVICE_SPECS) + MEASURED_DEVICES
CROSS_DEVICE_ARCHS = ("fbnet_s8", "fbnet_iphonex")
HOW_TO_MEASURE = "python -m profiler.run --device {device}"
# raspi4 has no device profile: the profiler measures a board by running on it as the host
MEASURE_AS = {"raspi4": "host"}
SHIPPED_LUTS = Path(__file__).resolve().parents[2] / "luts"


def how_to_measure(device: str) -> str:
    return HOW_TO_MEASURE.format(device=MEASURE_AS.get(device, device))


def _target_rows(result: FitResult) -> list[dict]:
    rows = []
    for obs, pred in zip(result.observations, result.predicted_ms):
        rows.append({"arch": obs.label, "published_ms": obs.latency_ms,
                     "predicted_ms": round(pred, 4),
                     "residual_pct": round(100 * (pred / obs.latency_ms - 1), 2),
                     "sigma_pct": round(100 * obs.sigma, 1)})
    return rows


def _validation(tables, device: str, bar) -> list[dict]:
    scores = validate(tables[device], device, progress=bar.update)
    return [{k: (round(v, 4) if isinstance(v, float) else
                 {a: round(e, 4) for a, e in v.items()} if isinstance(v, dict) else v)
             for k, v in asdict(s).items()} for s in scores]


def build_model(device: str, hw_path: str | None, *, with_validation: bool = True,
                quiet: bool = False) -> tuple[DeviceModel, dict]:
    """The device model and the provenance details that explain it."""
    if device not in DEVICES:
        raise UserError(f"unknown device {device!r}; this model estimates {', '.join(DEVICES)} "
                        "(measure any other device with python -m profiler.run)")
    if hw_path is None and not hwnasbench.DEFAULT_SOURCE.is_file():
        return _model_from_shipped_lut(device)
    tables = hwnasbench.measured_tables(hw_path)
    reference_name = "pixel3" if device in DEVICE_SPECS else device
    n_fits = 1 + (sum(validation_fits(tables[d]) for d in MEASURED_DEVICES)
                  if with_validation else 0)
    with tqdm(total=n_fits, desc=f"fitting {device}", unit="fit", disable=quiet,
              leave=False) as bar:
        reference = fit_blocks(tables[reference_name], reference_name)
        bar.update()
        validation = {}
        if with_validation:
            for d in MEASURED_DEVICES:
                validation[d] = _validation(tables, d, bar)
    details: dict = {
        "model": MODEL_NAME,
        "formula": "per operator: max(MACs / throughput[class], bytes / bandwidth) + overhead; "
                   "block = sum of its operators; network = plain sum of blocks",
        "operator_classes": {"mac": list(MAC_CLASSES), "memory": list(MEMORY_CLASSES)},
    }
    if device in DEVICE_SPECS:
        spec = device_spec(device)
        result, prior = calibrate(spec, reference.model)
        model = result.model
        details.update({
            "method": "calibrated to published end-to-end latencies (FBNet paper), regularized "
                      "toward a hardware prior (MAP, log space)",
            "device_model": model.to_dict(),
            "calibration_targets": _target_rows(result),
            "prior": {"coefficients": prior.model.coefficients, "log_sigma": prior.log_sigma,
                      "shared_throughput_scale_log_sigma": prior.scale_sigma,
                      "notes": prior.notes, "penalty": round(result.prior_penalty, 4)},
            "reference_fit": reference.model.to_dict(),
        })
    else:
        model = reference.model
        errs = [abs(e) for e in reference.rel_errors]
        details.update({
            "method": "fitted to HW-NAS-Bench's measured blocks of this device (log space, "
                      "least squares); identity skips priced as the copy the source measured",
            "device_model": model.to_dict(),
            "in_sample": {"blocks": len(errs), "mape_pct": round(100 * sum(errs) / len(errs), 2)},
        })
    details["cross_device"] = {a: round(model.network_latency_ms(named_architecture(a)), 4)
                               for a in CROSS_DEVICE_ARCHS}
    if validation:
        details["validation"] = {"data": "HW-NAS-Bench measured block latencies (224 and 32)",
                                 **validation}
    details["replace_with_measurement"] = how_to_measure(device)
    return model, details


def _model_from_shipped_lut(device: str) -> tuple[DeviceModel, dict]:
    """Without the HW-NAS-Bench data, reuse the model a shipped LUT recorded (same numbers)."""
    path = SHIPPED_LUTS / f"{device}.json"
    if not path.is_file():
        raise UserError(f"HW-NAS-Bench data {hwnasbench.DEFAULT_SOURCE} not found and no shipped "
                        f"{path} to reuse; pass --hw-nas-bench PATH/fbnet_cached_metrics.json")
    details = dict(load_lut(path).provenance.details)
    if "device_model" not in details:
        raise UserError(f"HW-NAS-Bench data {hwnasbench.DEFAULT_SOURCE} not found and {path} "
                        "records no fitted model to reuse; pass --hw-nas-bench PATH")
    details["reused_from"] = f"{path.name} (HW-NAS-Bench data not found, so not re-fitted)"
    return DeviceModel.from_dict(details["device_model"]), details


# --- writing the LUT ------------------------------------------------------------------------

def estimated_entry(model: DeviceModel, workload: Workload) -> LutEntry:
    parts = model.breakdown(workload)
    ops = [OpLatency(f"{op.op_class} #{i + 1}", op.op_class, round(ms, 6))
           for i, (op, ms) in enumerate(parts)]
    return LutEntry(latency_ms=round(sum(ms for _, ms in parts), 6), ops=ops)


def make_lut(device: str, model: DeviceModel, details: dict, workloads: list[Workload],
             space: SpaceConfig, arch_name: str | None) -> Lut:
    entries = {w.key: estimated_entry(model, w) for w in workloads}
    spec = DEVICE_SPECS.get(device)
    if spec:
        dev = DeviceInfo(device, spec.model, spec.soc, spec.cpu, extra={"description": spec.description})
        runtime = RuntimeInfo(spec.runtime, None, spec.backend, spec.dtype, None)
    else:
        dev = DeviceInfo(device, extra={"description": f"{device} as measured by HW-NAS-Bench"})
        runtime = RuntimeInfo("tflite", None, None, model.dtype, None)
    measurement = Measurement(details={
        "method": "none: estimated by a per-operator latency model",
        "coverage": f"architecture {arch_name}" if arch_name else
        f"whole space at resolution {space.resolution}, classifiers for "
        f"{', '.join(map(str, CLASSIFIER_CLASSES))} classes, and every named "
        "architecture (provenance: named_architectures)"})
    if not arch_name:
        # the keys beyond the space's own that each named architecture brought in
        details = {**details, "named_architectures": named_only_keys(space)}
    return Lut(device=dev, runtime=runtime, provenance=Provenance("estimated", details),
               entries=entries, space=space, measurement=measurement)



def extend_estimated_lut(path: Path, archs: list[Architecture], command: str) -> dict:
    """Add the workloads of `archs` that the estimated LUT in `path` lacks, priced by the model
    it records (so old and new entries agree), and record the addition in its provenance's
    `additions`. Returns that record."""
    lut = load_lut(path)
    details = lut.provenance.details
    if lut.provenance.kind != "estimated" or "device_model" not in details:
        raise UserError(f"{path} is a {lut.provenance.kind} LUT without a recorded latency "
                        "model; profiler.estimate --extend adds to estimated LUTs (extend a "
                        "measured one with python -m profiler.run --extend)")
    model = DeviceModel.from_dict(details["device_model"])
    added: dict[str, Workload] = {}
    for arch in archs:
        if arch.space.resolution != lut.space.resolution:
            raise UserError(f"{arch.name} is laid out at {arch.space.resolution}x"
                            f"{arch.space.resolution} and {path} prices {lut.space.resolution}x"
                            f"{lut.space.resolution}; give --resolution {lut.space.resolution}")
        added.update({layer.key: layer.workload for layer in arch.layers()
                      if layer.key not in lut.entries})
    for key, workload in added.items():
        lut.entries[key] = estimated_entry(model, workload)
    record = {"command": command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "model": "the device_model recorded above", "architectures": [a.name for a in archs],
              "keys": list(added)}
    details.setdefault("additions", []).append(record)
    lut.save(path)
    return record
