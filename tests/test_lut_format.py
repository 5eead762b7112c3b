"""The LUT contract (fbnet.lut): round trip, validation errors, summation, tables, pricing."""

import json
import math

import pytest

from conftest import ROOT
from fbnet.arch import named_architecture
from fbnet.errors import UserError
from fbnet.lut import (LUT_SCHEMA, DeviceInfo, Lut, LutEntry, Measurement, OpLatency, Provenance,
                       RuntimeInfo, Summation, load_lut)
from fbnet.space import SpaceConfig
from fbnet.workloads import space_workloads


def make_lut(space: SpaceConfig, **summation) -> Lut:
    """A LUT whose every entry costs 1 ms + MACs/1e9 (an `estimated` LUT for tests)."""
    entries = {w.key: LutEntry(latency_ms=1.0 + w.macs / 1e9, boundary_ms=0.25, n=5,
                               ops=[OpLatency("Transpose (ND, X32) #1", "transpose", 0.01)])
               for w in space_workloads(space)}
    return Lut(DeviceInfo("host", cpu="test cpu"), RuntimeInfo("executorch", "1.5.1", "xnnpack",
                                                                "fp32", 1),
               Provenance("estimated", {"model": "1 ms + MACs/1e9 (test fixture)"}), entries,
               space=space, summation=Summation(**summation))


def test_round_trip_keeps_everything(tmp_path):
    space = SpaceConfig.create(32)
    lut = make_lut(space, network_offset_ms=0.5, subtract_boundary=True,
                   fit={"networks": [{"measured_ms": 1.0}]})
    lut.measurement = Measurement(warmup=10, complete=True, recipe="xnnpack-fp32")
    lut.save(tmp_path / "a.json")
    back = load_lut(tmp_path / "a.json")
    assert back.entries == lut.entries
    assert back.summation == lut.summation and back.space == lut.space
    assert back.measurement == lut.measurement and back.device == lut.device
    assert json.loads((tmp_path / "a.json").read_text())["schema"] == LUT_SCHEMA


@pytest.mark.parametrize("path", sorted((ROOT / "luts").glob("*.json")), ids=lambda p: p.name)
def test_shipped_luts_round_trip_unchanged(path):
    """The typed space and measurement record write back exactly what they read, in the same
    order, for every shipped LUT (measured ones without a recorded recipe included)."""
    data = json.loads(path.read_text())
    lut = load_lut(path)
    assert lut.space is None or lut.space.resolution == data["space"]["resolution"]
    assert json.dumps(lut.to_dict()) == json.dumps(data)


def test_summation_subtracts_boundary_and_adds_offset():
    space = SpaceConfig.create(32)
    arch = named_architecture("fbnet_b", resolution=32)
    keys = [layer.key for layer in arch.layers()]
    plain = make_lut(space)
    corrected = make_lut(space, network_offset_ms=0.5, subtract_boundary=True)
    assert plain.price(arch).total_ms == pytest.approx(
        sum(plain.entries[k].latency_ms for k in keys))
    assert corrected.price(arch).total_ms == pytest.approx(
        plain.price(arch).total_ms - 0.25 * len(keys) + 0.5)
    table = corrected.layer_table(space)
    assert len(table.per_layer_ms) == space.num_layers and len(table.per_layer_ms[0]) == 9


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d.update(schema="fbnet-lut/0"), "schema"),
    (lambda d: d.pop("device"), "device"),
    (lambda d: d["provenance"].update(kind="guessed"), "provenance kind"),
    (lambda d: next(iter(d["entries"].values())).update(latency_ms=-1.0), "non-negative"),
    (lambda d: next(iter(d["entries"].values())).update(std_ms=math.nan), "non-negative"),
    (lambda d: d["entries"].update({"Conv_H1": {"latency_ms": 1.0}}), "not a block key"),
    (lambda d: next(iter(d["entries"].values())).pop("latency_ms"), "latency_ms"),
])
def test_loader_rejects_bad_files(tmp_path, mutate, message):
    data = make_lut(SpaceConfig.create(32)).to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    # json.dumps writes NaN literally, as a broken writer would
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        load_lut(path)


def test_loader_errors_for_missing_and_non_json(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_lut(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        load_lut(tmp_path / "x.json")


def test_lut_of_another_space_is_refused_with_the_missing_keys():
    lut = make_lut(SpaceConfig.create(32))
    with pytest.raises(UserError, match=r"missing .*resolution 32"):
        lut.price(named_architecture("fbnet_b"))  # 224 network, 32 LUT
    with pytest.raises(UserError, match="does not cover the search space"):
        lut.layer_table(SpaceConfig.create(224))


def test_dataframe_and_csv(tmp_path):
    lut = make_lut(SpaceConfig.create(32))
    df = lut.to_dataframe()
    assert len(df) == len(lut.entries) and {"key", "kind", "latency_ms", "boundary_ms"} <= set(df)
    lut.to_csv(tmp_path / "a.csv")
    assert (tmp_path / "a.csv").read_text().count("\n") == len(lut.entries) + 1


def test_search_space_prices_with_lut(tmp_path, cli):
    lut = make_lut(SpaceConfig.create(32), network_offset_ms=0.5, subtract_boundary=True)
    lut.save(tmp_path / "l.json")
    proc = cli("search.space", "fbnet_b", "--resolution", "32", "--lut", str(tmp_path / "l.json"),
               "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    arch = named_architecture("fbnet_b", resolution=32)
    assert out["latency_ms"] == pytest.approx(lut.price(arch).total_ms)
    assert sum(layer["latency_ms"] for layer in out["layers"]) + 0.5 == \
        pytest.approx(out["latency_ms"])
    text = cli("search.space", "fbnet_b", "--resolution", "32", "--lut", str(tmp_path / "l.json"))
    assert "ms on host" in text.stdout
    wrong = cli("search.space", "fbnet_b", "--lut", str(tmp_path / "l.json"))  # 224 vs 32 LUT
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert "does not cover" in wrong.stderr


def test_lut_file_names_have_one_scheme():
    from fbnet.lut import lut_file_name, lut_sibling_name

    assert lut_file_name("s8") == "s8.json"
    assert lut_file_name("host", 32, "int8", "portable") == "host_32_int8_portable.json"
    assert lut_file_name("android:10.0.0.2:5555", 32) == "android_10.0.0.2_5555_32.json"
    # a sibling at another size keeps the device and the qualifiers
    for stem, res, sibling in [("s8", 32, "s8_32.json"), ("s8_32", 224, "s8.json"),
                               ("iphone_x", 32, "iphone_x_32.json"),
                               ("host_32_int8", 224, "host_int8.json"),
                               ("s8_measured", 32, "s8_32_measured.json"),
                               ("android_10.0.0.2_5555_32", 224, "android_10.0.0.2_5555.json"),
                               ("android_10.0.0.2_5555", 32, "android_10.0.0.2_5555_32.json")]:
        assert lut_sibling_name(stem, res) == sibling
    # what profiler.run writes, search.run finds again
    name = lut_file_name("pixel3", 224, "int8").removesuffix(".json")
    assert lut_sibling_name(lut_sibling_name(name, 32).removesuffix(".json"), 224) == name + ".json"
