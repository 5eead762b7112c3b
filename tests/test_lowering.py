"""fbnet.lowering: the recipe registry, and the promise that what ships is what was priced."""

import dataclasses
import itertools
import json

import pytest
import torch

from fbnet.arch import save_architecture
from fbnet.errors import UserError
from fbnet.lowering import BACKENDS, DTYPES, RECIPES, RUNTIMES, recipe_for
from profiler.export import ArtifactCache, ExportJob, export_all
from profiler.jobs import arch_job
from profiler.settings import Settings
from tests.test_train_export import tiny_arch


def test_every_combination_has_a_recipe_or_a_one_line_error():
    found = set()
    for dtype, backend, runtime in itertools.product(DTYPES, BACKENDS, RUNTIMES):
        try:
            recipe = recipe_for(dtype, backend, runtime)
        except UserError as err:
            assert runtime == "torchscript" and "\n" not in str(err)
            continue
        assert RECIPES[recipe.name] is recipe
        assert (recipe.dtype, recipe.runtime) == (dtype, runtime)
        assert recipe.backend == (backend if runtime == "executorch" else None)
        found.add(recipe.name)
    assert found == set(RECIPES)  # every recipe is reachable from the flags
    assert [n for n, r in RECIPES.items() if r.fold_batchnorm] == ["xnnpack-fp32"]
    with pytest.raises(UserError, match="int8 export is for ExecuTorch"):
        recipe_for("int8", "xnnpack", "torchscript")
    with pytest.raises(UserError, match="unknown --backend"):
        recipe_for("fp32", "coreml", "executorch")


def test_cache_key_holds_the_recipe(monkeypatch):
    """A recipe that lowers differently never reuses an artifact lowered the old way."""
    job = ExportJob("FC_Cin8_Cout2", (1, 8))
    before = job.artifact_id()
    monkeypatch.setitem(RECIPES, "xnnpack-fp32",
                        dataclasses.replace(RECIPES["xnnpack-fp32"], fold_batchnorm=False))
    assert job.artifact_id() != before


@pytest.mark.slow
@pytest.mark.parametrize("dtype, backend, runtime", [("fp32", "xnnpack", "executorch"),
                                                     ("fp32", "portable", "executorch"),
                                                     ("fp32", "xnnpack", "torchscript")])
def test_search_export_ships_the_bytes_the_profiler_priced(tmp_path, capsys, dtype, backend,
                                                           runtime):
    """A network exported by the profiler's artifact cache (as its calibration and --arch
    measurements are) and the same network with the same weights through search.export's
    command line, under the same flags, are the same program, byte for byte."""
    from search.export import main

    arch = tiny_arch()
    job = arch_job(arch, Settings(dtype=dtype, backend=backend, runtime=runtime))
    found, stats = export_all([job], ArtifactCache(tmp_path / "cache"), workers=1,
                              etrecord=False)
    assert not stats.failures, stats.failures
    priced = found[job.key].program.read_bytes()

    save_architecture(arch, tmp_path / "arch.json")
    torch.save(job.build_module().state_dict(), tmp_path / "weights.pt")
    shipped = tmp_path / f"model{job.recipe.suffix}"
    code = main(["--arch", str(tmp_path / "arch.json"), "--weights", str(tmp_path / "weights.pt"),
                 "--out", str(shipped), "--dtype", dtype, "--backend", backend, "--runtime",
                 runtime, "--check-inputs", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert json.loads(captured.out)["recipe"] == job.recipe.name
    assert shipped.read_bytes() == priced
