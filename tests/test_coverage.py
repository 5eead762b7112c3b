"""Every named architecture prices on every shipped whole-space LUT; an imported LUT names the
architectures its source cannot price, and pricing one of them says so in one line."""

import json
import shutil

import pytest

from conftest import ROOT
from fbnet.arch import NAMED_ARCHITECTURES, named_architecture
from fbnet.coverage import CLASSIFIER_CLASSES, lut_workloads, named_only_keys, named_workloads
from fbnet.errors import UserError
from fbnet.lut import load_lut
from fbnet.space import SpaceConfig
from profiler.build import extend_lut
from profiler.lut import addition_slowdown
from profiler.lut import main as lut_cli
from profiler.run import parse_args

KIND = {p.name: json.loads(p.read_text())["provenance"]["kind"]
        for p in sorted((ROOT / "luts").glob("*.json"))}
IMPORTED = [name for name, kind in KIND.items() if kind == "imported"]
BUILT = [name for name, kind in KIND.items() if kind != "imported"]


def _load(name):
    lut = load_lut(ROOT / "luts" / name)
    return lut, lut.space


def test_named_workloads_bring_their_own_parts():
    space = SpaceConfig.create(224)
    extra = named_only_keys(space)
    assert "ConvNorm_H7_W7_Cin352_Cout1504_kernel1_stride1_group1" in extra["fbnet_a"]
    assert extra["fbnet_b"] == [] and extra["fbnet_c"] == []
    assert set(extra) == set(NAMED_ARCHITECTURES)
    keys = {w.key for w in lut_workloads(space, named=True)}
    for parts in named_workloads(224).values():
        assert {w.key for w in parts} <= keys


def test_the_shipped_luts_are_measured_estimated_and_imported():
    assert {"host.json", "host_32.json", "s8.json", "iphone_x_32.json"} <= set(BUILT)
    assert {"pixel3.json", "fpga_32.json"} <= set(IMPORTED)


@pytest.mark.parametrize("name", BUILT)
def test_every_named_architecture_prices_on_every_shipped_lut(name):
    lut, space = _load(name)
    for arch_name in NAMED_ARCHITECTURES:
        for classes in CLASSIFIER_CLASSES:
            arch = named_architecture(arch_name, resolution=space.resolution,
                                      num_classes=classes)
            assert lut.price(arch).total_ms > 0, (arch_name, classes)


@pytest.mark.parametrize("name", IMPORTED)
def test_an_imported_lut_names_its_sources_gaps(name):
    lut, space = _load(name)
    gaps = lut.provenance.details["source_lacks"]["architectures"]
    assert "fbnet_a" in gaps or space.resolution != 224
    for arch_name in NAMED_ARCHITECTURES:
        arch = named_architecture(arch_name, resolution=space.resolution,
                                  num_classes=space.num_classes)
        if arch_name not in gaps:
            lut.price(arch)
            continue
        assert gaps[arch_name] == lut.missing_keys(layer.key for layer in arch.layers())
        with pytest.raises(UserError) as err:
            lut.price(arch)
        message = str(err.value)
        assert "\n" not in message
        assert "HW-NAS-Bench" in message and "does not include them" in message


def test_extend_records_the_addition(tmp_path):
    path = tmp_path / "host_32.json"
    shutil.copy(ROOT / "luts" / "host_32.json", path)
    fresh = load_lut(path)
    fresh.provenance.details = {"command": "python -m profiler.run --extend",
                                "load_avg_1m_start": 1.0}
    lut, record = extend_lut(path, fresh)
    assert lut.provenance.details["additions"][-1] is record
    assert record["command"] == "python -m profiler.run --extend" and record["date"]
    assert len(record["load_avg_start"]) == 3 and record["cpu_count"] >= 1
    assert lut.summation == load_lut(path).summation  # the build's fit is kept


@pytest.mark.parametrize("name", ["host.json", "host_32.json"])
def test_the_shipped_host_luts_record_what_was_added_and_under_which_load(name):
    lut, space = _load(name)
    added = lut.provenance.details["additions"]
    keys = {k for record in added for k in record["keys"]}
    assert keys == {w.key for w in lut_workloads(space, named=True)} - \
        {w.key for w in lut_workloads(space)}
    for record in added:
        assert record["command"].startswith("python -m profiler.run --device host")
        assert "--include-named --extend" in record["command"]
        assert record["date"] and len(record["load_avg_start"]) == 3
        assert record["load_avg_1m_end"] >= 0 and record["drift"]["medians_ms"]


def test_extend_needs_a_complete_lut(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        extend_lut(tmp_path / "none.json", load_lut(ROOT / "luts" / "host_32.json"))
    with pytest.raises(UserError, match="give one of them"):
        parse_args(["--extend", "--resume"])


def test_show_names_each_addition_and_an_imported_lut_its_source(capsys):
    lut_cli(["show", str(ROOT / "luts" / "host_32.json")])
    out = capsys.readouterr().out
    assert "added:" in out and "--include-named --extend" in out and "x the build's" in out
    lut, _ = _load("host_32.json")
    assert addition_slowdown(lut, lut.provenance.details["additions"][0]) > 0
    lut_cli(["show", str(ROOT / "luts" / "pixel3.json")])
    assert "its source, HW-NAS-Bench" in capsys.readouterr().out


@pytest.mark.slow
def test_extend_measures_only_what_a_complete_lut_lacks(tmp_path, cli):
    """A real build on a tiny space, one entry dropped, then --extend: only that entry is
    measured, the rest and the summation stay as they were, and the addition is recorded."""
    tiny = ["profiler.run", "--resolution", "8", "--stage-depths", "1,1,1,1,1,1,1",
            "--stage-widths", "8,8,8,8,8,8,8", "--warmup", "1", "--iters", "6", "--rounds", "2",
            "--calibrate", "0", "--quiet", "--only", "ConvNorm_H8_*,Skip_H8_W8_Cin8_Cout8_stride1",
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "tiny.json"), "--json"]
    built = cli(*tiny)
    assert built.returncode == 0, built.stderr
    data = json.loads((tmp_path / "tiny.json").read_text())
    dropped = "Skip_H8_W8_Cin8_Cout8_stride1"
    del data["entries"][dropped]
    (tmp_path / "tiny.json").write_text(json.dumps(data))
    before = load_lut(tmp_path / "tiny.json")
    extended = cli(*tiny, "--extend")
    assert extended.returncode == 0, extended.stderr
    assert json.loads(extended.stdout)["measured_now"] == 1
    lut = load_lut(tmp_path / "tiny.json")
    assert set(lut.entries) == set(before.entries) | {dropped}
    assert all(lut.entries[k] == e for k, e in before.entries.items())
    assert lut.summation == before.summation and lut.measurement == before.measurement
    (record,) = lut.provenance.details["additions"]
    assert record["keys"] == [dropped] and "--extend" in record["command"]
    assert record["drift"]["medians_ms"] and record["load_avg_1m_end"] >= 0
    # --cover: another architecture's parts (here, of those --only keeps, MobileNetV2's stem)
    covered = cli(*tiny, "--extend", "--cover", "mobilenet_v2")
    assert covered.returncode == 0, covered.stderr
    stem = "ConvNorm_H8_W8_Cin3_Cout32_kernel3_stride1_group1"
    assert json.loads(covered.stdout)["measured_now"] == 1 and stem in load_lut(
        tmp_path / "tiny.json").entries
    record = load_lut(tmp_path / "tiny.json").provenance.details["additions"][-1]
    assert record["keys"] == [stem] and record["architectures"] == ["mobilenet_v2"]
