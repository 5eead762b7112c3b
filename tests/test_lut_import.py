"""HW-NAS-Bench import: lossless key mapping, network sums equal HW-NAS-Bench's own, LUT CLI."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from conftest import ROOT
from fbnet.arch import Architecture, load_architecture
from fbnet.lut import load_lut
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from fbnet.workloads import parse_key, space_workloads
from profiler.estimation.hwnasbench import DEFAULT_SOURCE, DEVICES, import_hwnasbench
from profiler.lut import merge_luts

SOURCE = ROOT / "data" / "hw-nas-bench" / "fbnet_cached_metrics.json"


def test_the_source_ships_with_the_repository_and_is_the_default():
    """The dump is in the repository with its license, byte for byte the documented file."""
    assert DEFAULT_SOURCE == SOURCE
    assert hashlib.sha256(SOURCE.read_bytes()).hexdigest() == \
        "2f566eddd6a6b50612345120f8c4a9d468b6ea0efb30fd94d3b1d72daf60b6ac"
    assert "MIT License" in (SOURCE.parent / "LICENSE").read_text()


@pytest.fixture(scope="module")
def source() -> dict:
    return json.loads(SOURCE.read_text())


@pytest.fixture(scope="module")
def imported() -> dict:
    return {(i.device, i.resolution): i for i in import_hwnasbench(SOURCE)}


def reference_sum(table: dict, indices: list[int], dataset: str) -> float:
    """HW-NAS-Bench's network cost, written from its definition (fbnet_get_metrics), not from
    fbnet/: stem + 22 blocks + head conv + pool + classifier, keys built from its own constants."""
    blocks = [(1, 3, 1), (1, 3, 2), (3, 3, 1), (6, 3, 1), (1, 5, 1), (1, 5, 2), (3, 5, 1), (6, 5, 1)]
    depths, widths = [1, 4, 4, 4, 4, 4, 1], [16, 24, 32, 64, 112, 184, 352]
    if dataset == "cifar100":
        strides, head, stem_stride, size, classes = [1, 1, 2, 2, 1, 2, 1], 1504, 1, 32, 100
    else:
        strides, head, stem_stride, size, classes = [1, 2, 2, 2, 1, 2, 1], 1984, 2, 224, 1000
    total = table[f"ConvNorm_H{size}_W{size}_Cin3_Cout16_kernel3_stride{stem_stride}_group1"]
    size //= stem_stride
    c_in, layer = 16, 0
    for depth, width, stride in zip(depths, widths, strides):
        for i in range(depth):
            s = stride if i == 0 else 1
            op = indices[layer]
            if op < 8:
                e, k, g = blocks[op]
                total += table[f"ConvBlock_H{size}_W{size}_Cin{c_in}_Cout{width}_exp{e}_kernel{k}"
                               f"_stride{s}_group{g}"]
            else:
                total += table[f"Skip_H{size}_W{size}_Cin{c_in}_Cout{width}_stride{s}"]
            size //= s
            c_in, layer = width, layer + 1
    total += table[f"ConvNorm_H{size}_W{size}_Cin352_Cout{head}_kernel1_stride1_group1"]
    total += table[f"AvgP_H{size}_W{size}_Cin{head}_Cout{head}_kernel{size}_stride1"]
    return total + table[f"FC_Cin{head}_Cout{classes}"]


def test_every_source_number_lands_in_exactly_one_lut(source, imported):
    assert {d for d, _ in imported} == set(DEVICES)
    for device in DEVICES:
        latency = source[f"{device}_latency"]
        energy = source.get(f"{device}_energy")
        lut224, lut32 = imported[(device, 224)].lut, imported[(device, 32)].lut
        assert not set(lut224.entries) & set(lut32.entries)
        assert set(lut224.entries) | set(lut32.entries) == set(latency)
        for lut in (lut224, lut32):
            for key, entry in lut.entries.items():
                parse_key(key)
                assert entry.latency_ms == latency[key]
                assert entry.extra == ({"energy_mj": energy[key]} if energy else {})
        # HW-NAS-Bench's stray 10-class classifier stays with the other 1504-wide head
        assert "FC_Cin1504_Cout10" in lut32.entries and "FC_Cin1504_Cout100" in lut32.entries
        assert "FC_Cin1984_Cout1000" in lut224.entries


def test_luts_cover_their_space_and_record_provenance(imported):
    for (device, resolution), item in imported.items():
        lut, space = item.lut, SpaceConfig.create(resolution)
        assert lut.space == space
        assert not lut.missing_keys(w.key for w in space_workloads(space))
        details = lut.provenance.details
        assert lut.provenance.kind == "imported"
        assert details["commit"] == "6c67e04375d0b9016846cce627f67804235f5e9e"
        assert "MIT" in details["license"] and "MIT" in details["json_dump"]["license"]
        assert details["units"]["latency"] == "ms"
        simulated = device in ("eyeriss", "fpga")
        assert ("estimated" in details["method"]) == simulated
        assert item.filename == (f"{device}.json" if resolution == 224 else f"{device}_32.json")


@pytest.mark.parametrize("device, resolution, published_ms", [
    ("edgegpu", 32, 15.8045), ("raspi4", 224, 57.6565), ("pixel3", 224, 27.5424)])
def test_all_k3_e1_matches_hwnasbench_published_values(imported, source, device, resolution,
                                                        published_ms):
    lut = imported[(device, resolution)].lut
    space = SpaceConfig.create(resolution)
    arch = Architecture("all_k3_e1", space, ("k3_e1",) * 22)
    total = lut.price(arch).total_ms
    assert total == pytest.approx(published_ms, abs=5e-5)
    dataset = "cifar100" if resolution == 32 else "ImageNet"
    assert total == pytest.approx(reference_sum(source[f"{device}_latency"], [0] * 22, dataset),
                                  rel=1e-12)


def test_network_sums_equal_hwnasbench_for_named_and_random_archs(imported, source):
    rng = random.Random(4)
    for (device, resolution), item in imported.items():
        dataset = "cifar100" if resolution == 32 else "ImageNet"
        table = source[f"{device}_latency"]
        space = SpaceConfig.create(resolution)
        archs = [load_architecture(n, resolution=resolution) for n in
                 ("fbnet_b", "fbnet_c", "fbnet_s8", "fbnet_iphonex")]
        archs += [Architecture("random", space, tuple(rng.choice(CANDIDATE_NAMES) for _ in range(22)))
                  for _ in range(5)]
        for arch in archs:
            indices = [CANDIDATE_NAMES.index(c) for c in arch.candidates]
            assert item.lut.price(arch).total_ms == pytest.approx(
                reference_sum(table, indices, dataset), rel=1e-12), (device, resolution, arch.name)


def test_shipped_luts_are_the_import_of_the_source(imported):
    for item in imported.values():
        shipped = load_lut(ROOT / "luts" / item.filename)
        assert {k: e.to_dict() for k, e in shipped.entries.items()} == \
               {k: e.to_dict() for k, e in item.lut.entries.items()}
        assert shipped.provenance.details == item.lut.provenance.details


def test_search_space_cli_prices_fbnet_b_as_hwnasbench(cli, source):
    res = cli("search.space", "fbnet_b", "--lut", "luts/pixel3.json", "--json")
    assert res.returncode == 0, res.stderr
    indices = [CANDIDATE_NAMES.index(c) for c in load_architecture("fbnet_b").candidates]
    expected = reference_sum(source["pixel3_latency"], indices, "ImageNet")
    assert json.loads(res.stdout)["latency_ms"] == pytest.approx(expected, rel=1e-12)


def test_import_cli_writes_luts(cli, tmp_path):
    res = cli("profiler.lut", "import", "hwnasbench", str(SOURCE), "--out-dir", str(tmp_path),
              "--devices", "pixel3,fpga", "--json")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == \
           ["fpga.json", "fpga_32.json", "pixel3.json", "pixel3_32.json"]
    assert {r["device"] for r in rows} == {"pixel3", "fpga"}


@pytest.mark.parametrize("content, message", [
    ("not json", "not valid JSON"),
    ('{"foo": {"a": 1}}', "none of HW-NAS-Bench's tables"),
    ('{"pixel3_latency": {"Bogus_key": 1.0}}', "not a block key"),
    ('{"pixel3_latency": {"FC_Cin7_Cout3": 1.0}}', "fit neither"),
])
def test_import_rejects_bad_sources(cli, tmp_path, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    res = cli("profiler.lut", "import", "hwnasbench", str(bad), "--out-dir", str(tmp_path / "o"))
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_merge_of_partial_luts_restores_the_whole(imported, tmp_path):
    whole = imported[("pixel3", 224)].lut
    keys = list(whole.entries)
    first, second = (load_lut(ROOT / "luts" / "pixel3.json") for _ in range(2))
    first.entries = {k: first.entries[k] for k in keys[:60]}
    second.entries = {k: second.entries[k] for k in keys[50:]}
    merged = merge_luts([first, second])
    assert merged.entries == whole.entries
    assert merged.provenance.details["merge_conflicts"]["count"] == 0
    assert [m["entries_used"] for m in merged.provenance.details["merged_from"]] == [60, 52]


def test_merge_cli_conflicts_and_device_mismatch(cli, tmp_path):
    a = load_lut(ROOT / "luts" / "pixel3.json")
    a.entries["FC_Cin1984_Cout1000"].latency_ms = 99.0
    a.save(tmp_path / "a.json")
    out = tmp_path / "m.json"
    res = cli("profiler.lut", "merge", str(tmp_path / "a.json"), "luts/pixel3.json", "--out", str(out))
    assert res.returncode == 2 and "FC_Cin1984_Cout1000" in res.stderr and not out.exists()
    res = cli("profiler.lut", "merge", str(tmp_path / "a.json"), "luts/pixel3.json", "--out",
              str(out), "--on-conflict", "last")
    assert res.returncode == 0, res.stderr
    assert load_lut(out).entries["FC_Cin1984_Cout1000"].latency_ms != 99.0
    res = cli("profiler.lut", "merge", "luts/pixel3.json", "luts/raspi4.json", "--out", str(out))
    assert res.returncode == 2 and "device or runtime" in res.stderr
    res = cli("profiler.lut", "merge", "luts/pixel3.json", "luts/pixel3_32.json", "--out", str(out),
              "--force")
    assert res.returncode == 2 and "different spaces" in res.stderr


def test_show_diff_to_csv(cli, tmp_path):
    res = cli("profiler.lut", "show", "luts/raspi4_32.json", "--json")
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["missing"] == [] and len(shown["layers"]) == 22
    prices = {a["arch"]: a["latency_ms"] for a in shown["architectures"]}
    assert prices["fbnet_a"] is not None  # FBNet-A's 1504 head is the 32 layout's own head
    res = cli("profiler.lut", "show", "luts/pixel3.json")
    assert res.returncode == 0 and "fbnet_a n/a" in res.stdout and "L22" in res.stdout

    res = cli("profiler.lut", "diff", "luts/pixel3.json", "luts/raspi4.json", "--json")
    assert res.returncode == 0, res.stderr
    diff = json.loads(res.stdout)
    assert diff["common"] == 112 and diff["only_in_a"] == [] and diff["only_in_b"] == []
    assert 0.9 < diff["stats"]["spearman"] <= 1.0

    res = cli("profiler.lut", "to-csv", "luts/pixel3.json", "--out", str(tmp_path / "p.csv"))
    assert res.returncode == 0 and len((tmp_path / "p.csv").read_text().splitlines()) == 113
    res = cli("profiler.lut", "to-csv", "luts/pixel3.json", "--out", str(tmp_path / "w.csv"), "--wide")
    assert res.returncode == 0 and len((tmp_path / "w.csv").read_text().splitlines()) == 23

    (tmp_path / "x.json").write_text('{"hello": 1}')
    res = cli("profiler.lut", "show", str(tmp_path / "x.json"))
    assert res.returncode == 2 and "is not a LUT" in res.stderr
