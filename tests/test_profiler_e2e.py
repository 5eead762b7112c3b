"""End to end on the host with real exports and the real ExecuTorch runtime, on a tiny space
(8x8 input, one layer per stage, 8 channels) so it stays fast."""

import json
import random

import pytest

from fbnet.lut import load_lut
from fbnet.space import SpaceConfig
from profiler.run import random_architecture

pytestmark = pytest.mark.slow

TINY = ["--resolution", "8", "--stage-depths", "1,1,1,1,1,1,1",
        "--stage-widths", "8,8,8,8,8,8,8"]
FAST = ["--warmup", "1", "--iters", "6", "--rounds", "2", "--calibrate", "0", "--quiet"]
BLOCKS = ("ConvBlock_H8_W8_Cin8_Cout8_exp1_kernel3_stride1_group1,"
          "ConvBlock_H8_W8_Cin8_Cout8_exp1_kernel5_stride1_group2,"
          "Skip_H8_W8_Cin8_Cout8_stride1,ConvNorm_H8_*")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("artifacts")


def tiny_space():
    return SpaceConfig.create(8, stage_depths=(1,) * 7, stage_widths=(8,) * 7)


def validation_keys() -> list[str]:
    rng = random.Random(0)  # the same draws profiler.validate makes with --seed 0
    archs = [random_architecture(tiny_space(), rng, f"random_{i}") for i in range(2)]
    return sorted({layer.key for a in archs for layer in a.layers()})


def build_args(cache, out):
    return ["profiler.run", *TINY, *FAST, "--only", ",".join([BLOCKS, *validation_keys()]),
            "--cache", str(cache), "--out", str(out), "--json"]


@pytest.fixture(scope="module")
def tiny_lut(cache, tmp_path_factory):
    """One real build shared by the tests: the blocks checked below + validate's networks."""
    from conftest import run_cli

    out = tmp_path_factory.mktemp("lut") / "tiny.json"
    proc = run_cli(*build_args(cache, out))
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


def test_build_resume_and_cache(cli, tmp_path, cache, tiny_lut):
    built, summary = tiny_lut
    out = tmp_path / "tiny.json"
    out.write_bytes(built.read_bytes())
    args = build_args(cache, out)
    lut = load_lut(out)
    expected = {"ConvBlock_H8_W8_Cin8_Cout8_exp1_kernel3_stride1_group1",
                "ConvBlock_H8_W8_Cin8_Cout8_exp1_kernel5_stride1_group2",
                "Skip_H8_W8_Cin8_Cout8_stride1",
                "ConvNorm_H8_W8_Cin3_Cout16_kernel3_stride1_group1"} | set(validation_keys())
    assert set(lut.entries) == expected
    assert lut.provenance.kind == "measured" and lut.measurement["complete"]
    assert summary["measured_now"] == len(expected)
    assert summary["exported"] + summary["cached"] >= len(expected)
    for key, entry in lut.entries.items():
        assert entry.n == 6 and entry.min_ms <= entry.p10_ms <= entry.latency_ms <= entry.p90_ms
        assert 0 <= entry.boundary_ms <= entry.latency_ms
    # per-op breakdown parsed from a real ETDump: XNNPACK op names, classified
    block = lut.entries["ConvBlock_H8_W8_Cin8_Cout8_exp1_kernel3_stride1_group1"]
    kinds = {op.op_type for op in block.ops}
    assert {"dwconv", "conv_1x1", "transpose"} <= kinds, block.ops
    assert "Method::execute" not in {op.name for op in block.ops}
    assert block.extra["method_execute_ms"] > 0
    stem = lut.entries["ConvNorm_H8_W8_Cin3_Cout16_kernel3_stride1_group1"]
    assert "conv_kxk" in {op.op_type for op in stem.ops}
    # the identity skip runs for real: its whole cost is the call, which a network never pays
    identity = lut.entries["Skip_H8_W8_Cin8_Cout8_stride1"]
    assert identity.latency_ms > 0 and identity.boundary_ms == pytest.approx(
        identity.latency_ms, rel=0.5)
    assert lut.summation.subtract_boundary

    # an interrupted run: an entry missing and the build marked unfinished
    data = json.loads(out.read_text())
    dropped = data["entries"].pop("Skip_H8_W8_Cin8_Cout8_stride1")
    kept = data["entries"]["ConvNorm_H8_W8_Cin3_Cout16_kernel3_stride1_group1"]
    data["measurement"]["complete"] = False
    out.write_text(json.dumps(data))
    refused = cli(*args)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads(resumed.stdout)
    assert again["measured_now"] == 1 and again["exported"] == 0  # everything from the cache
    lut = load_lut(out)
    assert len(lut.entries) == len(expected) and lut.measurement["complete"]
    assert lut.entries["ConvNorm_H8_W8_Cin3_Cout16_kernel3_stride1_group1"].to_dict() == kept
    assert lut.entries["Skip_H8_W8_Cin8_Cout8_stride1"].n == dropped["n"]


def test_corrupted_artifact_is_rebuilt(cache):
    from profiler.export import ArtifactCache, ExportJob, export_all

    job = ExportJob("FC_Cin16_Cout10", (1, 16))
    store = ArtifactCache(cache)
    first, stats = export_all([job], store, workers=1)
    program = first[job.key].program
    program.write_bytes(program.read_bytes()[:-8] + b"garbage!")
    again, stats = export_all([job], store, workers=1)
    assert stats.rebuilt_corrupt == 1 and stats.exported == 1
    assert again[job.key].sha256 == first[job.key].sha256  # deterministic export


def test_etrecord_is_optional_and_added_when_needed(cache):
    from profiler.export import ArtifactCache, ExportJob, export_all

    job = ExportJob("FC_Cin16_Cout12", (1, 16))
    store = ArtifactCache(cache)
    bare, stats = export_all([job], store, workers=1, etrecord=False)
    assert stats.exported == 1 and bare[job.key].etrecord is None
    reused, stats = export_all([job], store, workers=1, etrecord=False)
    assert stats.cached == 1
    full, stats = export_all([job], store, workers=1)  # an ETRecord is needed: re-exported
    assert stats.exported == 1 and full[job.key].etrecord.is_file()
    assert full[job.key].sha256 == bare[job.key].sha256  # the ETRecord never changes the program
    again, stats = export_all([job], store, workers=1, etrecord=False)
    assert stats.cached == 1 and again[job.key].etrecord is not None


@pytest.mark.parametrize("runtime,dtype", [("executorch", "int8"), ("torchscript", "fp32")])
def test_other_runtimes_and_dtypes_run(cache, tmp_path, runtime, dtype):
    from profiler.export import ArtifactCache, ExportJob, export_all
    from profiler.measure import make_inputs, profile_torchscript_ops, run_manifest
    from profiler.protocol import Manifest, ProgramSpec

    key = "ConvBlock_H8_W8_Cin8_Cout8_exp3_kernel3_stride1_group1"
    job = ExportJob(key, (1, 8, 8, 8), dtype=dtype, runtime=runtime)
    artifacts, stats = export_all([job], ArtifactCache(cache), workers=1)
    assert not stats.failures, stats.failures
    program = artifacts[key].to_program()
    result = run_manifest(Manifest([ProgramSpec(key, str(program.path), program.inputs)],
                                   warmup=1, iters=4, rounds=2), tmp_path, tmp_path)
    assert result.programs[0].ok and len(result.programs[0].latencies_ms) == 4
    if runtime == "torchscript":
        ops = profile_torchscript_ops(program.path, make_inputs(program.inputs), 1, 3,
                                      "ConvBlock")
        assert {"dwconv", "conv_1x1"} <= {op.op_type for op in ops}


def test_validate_on_tiny_space(cli, tmp_path, cache, tiny_lut):
    lut_path, _ = tiny_lut
    plot = tmp_path / "fidelity.png"
    proc = cli("profiler.validate", "--lut", str(lut_path), "--samples", "2", "--seed", "0",
               "--no-named", "--iters", "6", "--rounds", "2", "--warmup", "1", "--cache",
               str(cache), "--json", "--plot", str(plot), "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["networks"] == 2 and len(report["rows"]) == 2
    for field in ("mape", "median_abs_error_pct", "max_abs_error_pct", "within_10pct",
                  "kendall_tau", "spearman"):
        assert field in report
    assert all(r["measured_ms"] > 0 and r["predicted_ms"] > 0 for r in report["rows"])
    assert plot.stat().st_size > 1000
