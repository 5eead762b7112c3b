"""Export a network for deployment and check it against PyTorch, as a library.

The network is lowered by fbnet.lowering's recipe (the one profiler.run prices blocks with), the
written program is loaded with the real runtime and run on a few inputs, and the report gives
the largest difference from PyTorch against a tolerance. `python -m search.export` is its
command line.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.jit.mobile
from torch import nn

from fbnet.arch import Architecture, load_architecture
from fbnet.errors import UserError
from fbnet.io import atomic_write_bytes
from fbnet.lowering import LoweringRecipe, lower
from fbnet.model import FBNet
from search.data import load_data

# Relative to the largest |logit| of the reference: XNNPACK fp32 reorders sums (~1e-6);
# int8 kernels may round a value one quantization step differently from PyTorch's reference.
DEFAULT_TOLERANCE = {"fp32": 1e-3, "int8": 0.1}


@dataclass
class CheckResult:
    inputs: int
    reference: str  # what the exported program was compared with
    max_abs_diff: float
    max_rel_diff: float  # max |diff| / max |reference logit|
    tolerance: float  # on max_rel_diff
    top1_agreement: float
    passed: bool
    # int8 only: the exported program against the fp32 PyTorch model (quantization error)
    vs_fp32_max_rel_diff: float | None = None
    vs_fp32_top1_agreement: float | None = None


@dataclass
class ExportReport:
    out: str
    recipe: str
    runtime: str
    backend: str | None
    dtype: str
    arch_name: str
    arch: dict
    resolution: int
    weights: str | None
    calibration: str | None
    size_bytes: int
    export_seconds: float
    check: CheckResult


# --- model -------------------------------------------------------------------------------------

def load_model(arch_spec: str | None, weights: str | None, *, resolution: int | None = None,
               width: float = 1.0, num_classes: int | None = None) -> tuple[FBNet, str | None]:
    """The network in eval mode, and the data spec its checkpoint was trained on (if any)."""
    state, data_spec = None, None
    arch: Architecture | None = None
    if weights:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"weights file {path} does not exist; give a search.train checkpoint.pt")
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # torch raises many types for foreign or corrupt files
            raise UserError(f"cannot read weights {path} ({type(err).__name__}); is it a "
                            "torch.save file?") from None
        if isinstance(state, dict) and "arch" in state and "model" in state:
            arch = Architecture.from_dict(state["arch"], source=str(path))
            data_spec = state.get("data")
            state = state["model"]
    if arch_spec:
        requested = load_architecture(arch_spec, resolution=resolution or (
            arch.space.resolution if arch else None), width=width,
            num_classes=num_classes or (arch.space.num_classes if arch else None))
        if arch and (requested.candidates != arch.candidates or requested.space != arch.space):
            raise UserError(f"--arch {arch_spec} differs from the architecture stored in "
                            f"{weights} ({arch.name}); drop --arch or pass matching weights")
        arch = requested
    if arch is None:
        raise UserError("give --arch (a plain state_dict does not record its architecture)"
                        if weights else "give --arch or --weights (a search.train checkpoint)")
    model = FBNet(arch)
    if state is not None:
        if not isinstance(state, dict):
            raise UserError(f"{weights} holds no state_dict; give a search.train checkpoint.pt")
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise UserError(f"{weights} does not fit {arch.name} at resolution "
                            f"{arch.space.resolution} ({first}); pass the matching --arch") from None
    return model.eval(), data_spec


def _sample_inputs(data_spec: str | None, resolution: int, n: int, split: str,
                   seed: int) -> list[torch.Tensor]:
    """n batch-1 inputs from a dataset split, or standard-normal noise without data."""
    if data_spec is None:
        g = torch.Generator().manual_seed(seed)
        return [torch.randn(1, 3, resolution, resolution, generator=g) for _ in range(n)]
    data = load_data(data_spec, resolution=resolution, seed=seed)
    ds = data.train if split == "train" else data.val
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=g)[:n].tolist()
    return [ds[i][0].unsqueeze(0) for i in idx]


# --- exporters ---------------------------------------------------------------------------------

def quiet_logs():
    """ExecuTorch and torchao warn loudly about internals a user cannot act on."""
    warnings.filterwarnings("ignore")
    logging.getLogger("torch").setLevel(logging.ERROR)


def runtime_runner(path: Path, runtime: str):
    """A callable running the written file with the deployment runtime."""
    if runtime == "executorch":
        from executorch.runtime import Runtime  # seconds to load; TorchScript needs none

        method = Runtime.get().load_program(str(path)).load_method("forward")
        return lambda x: method.execute([x])[0]
    lite = torch.jit.mobile._load_for_lite_interpreter(str(path))
    return lambda x: lite(x)


def compare(run, reference: nn.Module, inputs: list[torch.Tensor]) -> tuple[float, float, float]:
    """(max |diff|, max |diff| / max |ref|, top-1 agreement) of run vs reference."""
    max_abs, max_ref, agree = 0.0, 0.0, 0
    with torch.no_grad():
        for x in inputs:
            ref = reference(x)
            got = run(x)
            max_abs = max(max_abs, (got - ref).abs().max().item())
            max_ref = max(max_ref, ref.abs().max().item())
            agree += int(got.argmax(-1).item() == ref.argmax(-1).item())
    return max_abs, max_abs / max(max_ref, 1e-30), agree / len(inputs)


def export(model: FBNet, out: Path, recipe: LoweringRecipe, *, data_spec: str | None = None,
           calibration_samples: int = 64, check_inputs: int = 8, tolerance: float | None = None,
           seed: int = 0, weights: str | None = None, log=print) -> ExportReport:
    """Export `model` to `out` by `recipe`, run it with the runtime and compare with PyTorch."""
    runtime, dtype = recipe.runtime, recipe.dtype
    if out.suffix != recipe.suffix:
        raise UserError(f"--runtime {runtime} writes a {recipe.suffix} file; use --out "
                        f"{out.with_suffix(recipe.suffix)}")
    if dtype == "int8" and data_spec is None:
        raise UserError("int8 needs calibration data: pass --data (e.g. digits) or a "
                        "search.train checkpoint as --weights")
    if check_inputs < 1 or calibration_samples < 1:
        raise UserError("--check-inputs and --calibration-samples must be at least 1")
    tolerance = DEFAULT_TOLERANCE[dtype] if tolerance is None else tolerance
    res = model.arch.space.resolution
    inputs = _sample_inputs(data_spec, res, check_inputs, "val", seed + 1)
    t0 = time.perf_counter()
    calibration: list[torch.Tensor] = []
    if dtype == "int8":
        log(f"calibrating int8 on {calibration_samples} images of {data_spec}")
        calibration = _sample_inputs(data_spec, res, calibration_samples, "train", seed)
    log(f"exporting {model.arch.name} by the {recipe.name} recipe")
    lowered = lower(model, recipe, inputs[0], calibration=calibration)
    blob = lowered.program
    seconds = time.perf_counter() - t0
    atomic_write_bytes(out, blob)

    run = runtime_runner(out, runtime)
    # int8: PyTorch runs the same quantized graph; fp32: the model as given (BatchNorm unfolded)
    reference = lowered.module if dtype == "int8" else model
    max_abs, max_rel, agree = compare(run, reference, inputs)
    check = CheckResult(len(inputs), "pytorch int8 (same quantized graph)" if dtype == "int8"
                        else "pytorch fp32", max_abs, max_rel, tolerance, agree,
                        max_rel <= tolerance)
    if dtype == "int8":
        _, check.vs_fp32_max_rel_diff, check.vs_fp32_top1_agreement = compare(run, model, inputs)
    return ExportReport(str(out), recipe.name, runtime, recipe.backend, dtype,
                        model.arch.name, model.arch.to_dict(), res, weights,
                        data_spec if dtype == "int8" else None, len(blob), seconds, check)
