"""search.crossdevice on synthetic LUTs: device A rewards few MACs, device B punishes big kernels."""

import json

import pytest

from fbnet.arch import Architecture, at_resolution, save_architecture
from fbnet.errors import UserError
from fbnet.lut import DeviceInfo, Lut, LutEntry, Provenance, RuntimeInfo
from fbnet.space import SpaceConfig
from fbnet.workloads import ConvBlock, space_workloads
from search.crossdevice import main
from search.protocols.crossdevice_table import (ArchRow, Measurement, build_table, fastest_lines,
                                                format_table, load_arch_row)

RES = 16


def space(resolution: int = RES) -> SpaceConfig:
    return SpaceConfig.create(resolution, stem_channels=8, stage_widths=(8, 8, 16, 16, 24, 24, 32),
                              stage_depths=(1,) * 7, head_channels=32, num_classes=10)


def make_lut(device: str, cost, resolution: int = RES, drop: str | None = None) -> Lut:
    sp = space(resolution)
    entries = {w.key: LutEntry(latency_ms=cost(w)) for w in space_workloads(sp)
               if drop is None or drop not in w.key}
    return Lut(DeviceInfo(device), RuntimeInfo("synthetic"), Provenance("estimated", {"test": 1}),
               entries, space=sp)


def macs_cost(w) -> float:
    return w.macs / 1e6 + 0.01


def kernel_cost(w) -> float:  # k5 is 10x dearer than k3: small kernels win
    k = getattr(w, "kernel", 3) if isinstance(w, ConvBlock) else 1
    return (10.0 if k == 5 else 1.0) * (w.macs / 1e6 + 0.01)


K3 = Architecture("k3_wide", space(), ("k3_e6",) * 7)
K5 = Architecture("k5_thin", space(), ("k5_e1",) * 7)


def test_each_device_prices_and_marks_its_fastest():
    lut_a, lut_b = make_lut("a", macs_cost), make_lut("b", kernel_cost)
    table = build_table([lut_a, lut_b], [ArchRow("k3_wide", "x", K3), ArchRow("k5_thin", "y", K5)], [])
    cells = {r["label"]: r["cells"] for r in table.rows}
    assert cells["k3_wide"]["a@16"]["latency_ms"] == pytest.approx(lut_a.price(K3).total_ms)
    assert cells["k5_thin"]["b@16"]["latency_ms"] == pytest.approx(lut_b.price(K5).total_ms)
    # few MACs win on A; small kernels win on B
    assert cells["k5_thin"]["a@16"]["fastest"] and not cells["k3_wide"]["a@16"]["fastest"]
    assert cells["k3_wide"]["b@16"]["fastest"] and not cells["k5_thin"]["b@16"]["fastest"]
    lines = fastest_lines(table)
    assert lines[0].startswith("a@16: fastest k5_thin") and "faster than k3_wide" in lines[0]
    text = format_table(table)
    assert "*" in text and "MACs at 16x16" in text


def test_measurement_goes_to_the_same_device_column_with_the_lut_error():
    from fbnet.arch import to_arch_string

    lut = make_lut("host", macs_cost)
    predicted = lut.price(K3).total_ms
    m = Measurement("k3_wide", to_arch_string(K3), RES, "host", predicted * 2, "executorch", "m.json")
    other = Measurement("k3_wide", to_arch_string(K3), RES, "pixel9", 1.0, "executorch", "p.json")
    table = build_table([lut], [ArchRow("k3_wide", "x", K3)], [m, other])
    assert table.rows[0]["cells"]["host@16"]["measured_ms"] == pytest.approx(predicted * 2)
    assert [e["device"] for e in table.extra_measured] == ["pixel9"]
    text = format_table(table)
    assert "(-50%)" in text and "measured pixel9@16 ms" in text


def test_uncovered_architecture_is_a_cell_not_a_crash():
    lut = make_lut("a", macs_cost, drop="kernel5")
    table = build_table([lut], [ArchRow("k3_wide", "x", K3), ArchRow("k5_thin", "y", K5)], [])
    cells = {r["label"]: r["cells"]["a@16"] for r in table.rows}
    assert cells["k5_thin"]["latency_ms"] is None and cells["k5_thin"]["missing"] > 0
    assert cells["k3_wide"]["fastest"]
    assert "keys missing" in format_table(table)


def test_luts_of_other_resolutions_price_the_relaid_architecture():
    lut32 = make_lut("a", macs_cost, resolution=32)
    table = build_table([make_lut("a", macs_cost), lut32], [ArchRow("k3_wide", "x", K3)], [])
    cell32 = table.rows[0]["cells"]["a@32"]
    assert cell32["resolution"] == 32
    assert cell32["latency_ms"] == pytest.approx(lut32.price(at_resolution(K3, 32)).total_ms)
    assert cell32["macs"] > table.rows[0]["cells"]["a@16"]["macs"]
    with pytest.raises(UserError, match="built for 32x32, not 16"):
        build_table([lut32], [ArchRow("k3_wide", "x", K3)], [], resolution=16)


def test_relayout_switches_default_head_and_classes():
    from fbnet.arch import load_architecture

    b224 = load_architecture("fbnet_b")
    b32 = at_resolution(b224, 32)
    assert (b32.space.layout, b32.space.head_channels, b32.space.num_classes) == ("small", 1504, 100)
    assert b32.candidates == b224.candidates


def test_named_arch_has_published_top1_and_train_run_its_own(tmp_path):
    assert load_arch_row("fbnet_c").top1.value == pytest.approx(0.749)
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(json.dumps({
        "arch": K3.to_dict(), "top1": 0.875, "data": "digits", "resolution": RES, "epochs_done": 3}))
    row = load_arch_row(str(run))
    assert row.top1.value == 0.875 and "digits" in row.top1.source
    with pytest.raises(UserError, match="neither result.json"):
        load_arch_row(str(tmp_path))


def test_cli_json_and_plot(tmp_path, capsys):
    make_lut("a", macs_cost).save(tmp_path / "a.json")
    make_lut("b", kernel_cost).save(tmp_path / "b.json")
    save_architecture(K3, tmp_path / "k3.json")
    save_architecture(K5, tmp_path / "k5.json")
    args = ["--lut", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
            "--arch", str(tmp_path / "k3.json"), str(tmp_path / "k5.json")]
    assert main([*args, "--json", "--plot", str(tmp_path / "t.png")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [c["label"] for c in data["columns"]] == ["a@16", "b@16"]
    assert (tmp_path / "t.png").stat().st_size > 1000
    assert main([*args[:3], "--arch", "no_such_arch"]) == 2
    assert "unknown architecture" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    assert main([*args, "--measured", str(tmp_path / "bad.json")]) == 2
    assert "neither a profiler.run" in capsys.readouterr().err
