"""Lowering recipes: how a PyTorch module becomes a program a device runs.

A recipe names one way to lower, dtype x backend x runtime:
- dtype: fp32, or int8 (PT2E static quantization: XNNPACK quantizer, symmetric per-channel
  weights, calibrated on given inputs);
- backend: the ExecuTorch delegate, xnnpack, or portable (ExecuTorch's own undelegated kernels);
- runtime: executorch (.pte), or torchscript (.ptl, the PyTorch Mobile lite interpreter: fp32,
  no delegate to choose).

The profiler's artifact cache prices blocks lowered here and search.export ships networks
lowered here, by the same recipe, so a deployed program runs the kernels its LUT priced.
`lower` prepares (an eval-mode copy; BatchNorm folded where the recipe says; int8 quantized),
exports, lowers and serializes, with the ETRecord on request.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from fbnet.errors import UserError

if TYPE_CHECKING:
    import torch
    from executorch.devtools.etrecord import ETRecord

DTYPES = ("fp32", "int8")
BACKENDS = ("xnnpack", "portable")
RUNTIMES = ("executorch", "torchscript")
DEFAULT_BACKEND = "xnnpack"
RUNTIME_SUFFIX = {"executorch": ".pte", "torchscript": ".ptl"}


@dataclass(frozen=True)
class LoweringRecipe:
    name: str
    dtype: str
    backend: str | None  # the ExecuTorch delegate; None for TorchScript-lite, which has none
    runtime: str
    # Fold every BatchNorm into the convolution before it. Only where the backend fuses them
    # anyway (XNNPACK fp32): same arithmetic, and lowering the unfused graph costs over twice the
    # CPU (a 224 network: 14.7 s against 6.3 s). The portable kernels and TorchScript-lite run a
    # BatchNorm as its own op, and the int8 quantizer folds them itself.
    fold_batchnorm: bool = False

    @property
    def suffix(self) -> str:
        return RUNTIME_SUFFIX[self.runtime]


RECIPES: dict[str, LoweringRecipe] = {r.name: r for r in (
    LoweringRecipe("xnnpack-fp32", "fp32", "xnnpack", "executorch", fold_batchnorm=True),
    LoweringRecipe("xnnpack-int8", "int8", "xnnpack", "executorch"),
    LoweringRecipe("portable-fp32", "fp32", "portable", "executorch"),
    LoweringRecipe("portable-int8", "int8", "portable", "executorch"),
    LoweringRecipe("torchscript-fp32", "fp32", None, "torchscript"),
)}


def recipe_for(dtype: str, backend: str, runtime: str) -> LoweringRecipe:
    """The recipe for these settings (the --dtype/--backend/--runtime of profiler.run and
    search.export). TorchScript-lite takes the default backend and refuses any other."""
    for value, allowed, flag in ((dtype, DTYPES, "dtype"), (backend, BACKENDS, "backend"),
                                 (runtime, RUNTIMES, "runtime")):
        if value not in allowed:
            raise UserError(f"unknown --{flag} {value}; choose one of {', '.join(allowed)}")
    if runtime == "torchscript":
        if dtype != "fp32":
            raise UserError(f"{dtype} export is for ExecuTorch (TorchScript-lite runs fp32 only); "
                            "use --runtime executorch")
        if backend != DEFAULT_BACKEND:
            raise UserError(f"--backend {backend} is an ExecuTorch backend and TorchScript-lite "
                            "has none; drop --backend or use --runtime executorch")
        return RECIPES["torchscript-fp32"]
    return RECIPES[f"{backend}-{dtype}"]


@dataclass
class Lowered:
    recipe: LoweringRecipe
    module: torch.nn.Module  # what was lowered: int8, the quantized graph PyTorch can run
    program: bytes  # the serialized program (.pte or .ptl)
    etrecord: ETRecord | None  # ExecuTorch only, when asked for

    def save_etrecord(self, path: Path) -> None:
        if self.etrecord is None:
            raise ValueError(f"no ETRecord was made for this {self.recipe.name} program")
        self.etrecord.save(str(path))


# torch and ExecuTorch are imported where they are used, here and below: the registry above
# is read by every command line (flag choices, cache keys), which must start without loading
# them (seconds), and the TorchScript recipe needs no ExecuTorch.
def fold_batchnorm(module: torch.nn.Module) -> None:
    """Fold, in place, every BatchNorm2d that follows a Conv2d in an nn.Sequential."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for parent in module.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        for i in range(len(parent) - 1):
            if isinstance(parent[i], nn.Conv2d) and isinstance(parent[i + 1], nn.BatchNorm2d):
                parent[i] = fuse_conv_bn_eval(parent[i], parent[i + 1])
                parent[i + 1] = nn.Identity()


def prepare(module: torch.nn.Module, recipe: LoweringRecipe,
            calibration: Sequence[torch.Tensor] = ()) -> torch.nn.Module:
    """The module as `recipe` lowers it: an eval-mode copy (the caller's module is untouched),
    BatchNorms folded where the recipe says, and for int8 quantized and calibrated on
    `calibration` (inputs of the exported shape; the first one also traces the graph)."""
    prepared = copy.deepcopy(module).eval()
    if recipe.fold_batchnorm:
        fold_batchnorm(prepared)
    if recipe.dtype == "int8":
        if not calibration:
            raise ValueError(f"the {recipe.name} recipe needs calibration inputs")
        prepared = _quantize_int8(prepared, calibration)
    return prepared


def _quantize_int8(module: torch.nn.Module,
                   calibration: Sequence[torch.Tensor]) -> torch.nn.Module:
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=True))
    graph = torch.export.export(module, (calibration[0],)).module()
    observed = prepare_pt2e(graph, quantizer)
    with torch.no_grad():
        for x in calibration:
            observed(x)
    return convert_pt2e(observed)


def lower(module: torch.nn.Module, recipe: LoweringRecipe, example: torch.Tensor, *,
          calibration: Sequence[torch.Tensor] = (), etrecord: bool = False) -> Lowered:
    """Prepare `module` (see prepare), export it for inputs shaped like `example`, lower it
    by `recipe` and serialize it; etrecord: also make the ETRecord that maps the program's
    operators back to the graph (ExecuTorch only; it never changes the program's bytes)."""
    import torch

    prepared = prepare(module, recipe, calibration)
    if recipe.runtime == "torchscript":
        scripted = torch.jit.script(prepared)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "program.ptl"
            scripted._save_for_lite_interpreter(str(path))
            return Lowered(recipe, prepared, path.read_bytes(), None)
    from executorch.exir import to_edge_transform_and_lower

    partitioners = []
    if recipe.backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners = [XnnpackPartitioner()]
    elif recipe.dtype == "int8":
        # registers the out variants of the quantize/dequantize ops the portable program calls
        import executorch.kernels.quantized  # noqa: F401
    exported = torch.export.export(prepared, (example,))
    edge = to_edge_transform_and_lower(exported, partitioner=partitioners,
                                       generate_etrecord=etrecord)
    program = edge.to_executorch()
    return Lowered(recipe, prepared, program.buffer, program.get_etrecord() if etrecord else None)
