"""profiler.compare on small synthetic LUTs built with fbnet.lut: figures, page, numbers, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fbnet.arch import load_architecture, save_architecture
from fbnet.lut import DeviceInfo, Lut, LutEntry, OpLatency, Provenance, RuntimeInfo
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from fbnet.workloads import ConvBlock, candidate_workload, space_workloads
from profiler import compare


def synthetic_lut(name: str, resolution: int = 224, scale: float = 1.0, ops: bool = False,
                  cheap: dict | None = None) -> Lut:
    """Latency = scale * (0.05 ms + MACs / 50 M); `cheap` makes chosen keys nearly free."""
    space = SpaceConfig.create(resolution)
    entries = {}
    for w in space_workloads(space):
        ms = scale * (0.05 + w.macs / 5e7)
        if cheap and w.key in cheap:
            ms = cheap[w.key]
        op_list = []
        if ops and isinstance(w, ConvBlock):
            # the depthwise conv dominates k5 blocks, the 1x1 convs the others
            dw = 0.7 if w.kernel == 5 else 0.2
            op_list = [OpLatency("Convolution (NHWC, F32) DWConv #1", "dwconv", ms * dw),
                       OpLatency("Convolution (NHWC, F32) GEMM #1", "conv_1x1", ms * (1 - dw))]
        entries[w.key] = LutEntry(latency_ms=ms, ops=op_list)
    return Lut(device=DeviceInfo(name=name), runtime=RuntimeInfo("executorch", backend="xnnpack"),
               provenance=Provenance("estimated", {"model": "synthetic test LUT"}),
               entries=entries, space=space)


@pytest.fixture
def luts(tmp_path):
    space = SpaceConfig.create(224)
    l6 = space.layers()[5]  # make k5_e1 the cheapest non-skip block of L6 on device "b"
    cheap_key = candidate_workload(l6, "k5_e1").key
    paths = []
    for lut in (synthetic_lut("a", ops=True), synthetic_lut("b", scale=3.0, cheap={cheap_key: 1e-3})):
        path = tmp_path / f"{lut.device.name}.json"
        lut.save(path)
        paths.append(str(path))
    return paths


def test_compare_writes_figures_page_and_numbers(luts, tmp_path):
    out = tmp_path / "report"
    report = compare.build_report(luts, out, [], progress=False)
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["cheapest.png", "heatmap_a.png", "heatmap_b.png", "networks.png", "ops.png",
                     "relcost_a_vs_b.png", "scatter_a_vs_b.png"]
    assert all((out / n).stat().st_size > 10_000 for n in names)
    page = (out / "report.md").read_text()
    assert all(f"]({n})" in page for n in names)
    assert all(f'src="{n}"' in (out / "report.html").read_text() for n in names)

    pair = report.stats["pairs"][0]
    # b is 3 x a everywhere except one nearly free block, which pulls the geomean down a little
    assert pair["spearman"] > 0.99 and 2.7 < pair["geomean_ratio"] < 3.0
    assert pair["cheapest_differs"] == ["L6"]
    assert pair["largest_disagreement"]["layer"] == "L6"
    assert pair["largest_disagreement"]["candidate"] == "k5_e1"
    assert report.stats["dominant_op_type"]["a"]["k5_e6"] == "dwconv"
    assert report.stats["dominant_op_type"]["a"]["k3_e6"] == "conv_1x1"
    nets = report.stats["networks_ms"]
    assert nets["fbnet_a"] == {"a": None, "b": None}  # its 1504-wide head is not in a 224 LUT
    arch = load_architecture("fbnet_b")
    expected = sum(0.05 + layer.macs / 5e7 for layer in arch.layers())
    assert nets["fbnet_b"]["a"] == pytest.approx(expected)


def test_relative_cost_ratio_is_one_for_proportional_devices():
    space = SpaceConfig.create(224)
    a, b = synthetic_lut("a"), synthetic_lut("b", scale=5.0)
    devs = [compare.Device(n, lut, np.array(lut.layer_table(space).per_layer_ms), 0.0)
            for n, lut in (("a", a), ("b", b))]
    ratio = compare.relative_cost_ratio(*devs)
    assert ratio.shape == (22, len(CANDIDATE_NAMES))
    assert np.allclose(ratio[np.isfinite(ratio)], 1.0)


def test_compare_cli_summary_and_arch(luts, tmp_path, cli):
    arch = load_architecture("fbnet_c")
    save_architecture(arch, tmp_path / "mine.json")
    res = cli("profiler.compare", "--lut", *luts, "--out", str(tmp_path / "r"), "--arch",
              str(tmp_path / "mine.json"), "--json")
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)
    assert stats["networks_ms"]["fbnet_c"]["a"] > 0


@pytest.mark.parametrize("case, message", [
    ("resolution", "different input resolutions"),
    ("missing", "lacks 1 of the 112 blocks of its space: ConvBlock_H"),
    ("head", "different spaces (they differ in head_channels"),
    ("notlut", "is not a LUT"),
])
def test_compare_rejects_bad_inputs(luts, tmp_path, cli, case, message):
    bad = tmp_path / "bad.json"
    if case == "resolution":
        synthetic_lut("c", resolution=32).save(bad)
    elif case == "missing":
        lut = synthetic_lut("c")
        del lut.entries[next(k for k in lut.entries if k.startswith("ConvBlock"))]
        lut.save(bad)
    elif case == "head":
        lut = synthetic_lut("c")
        lut.space = SpaceConfig.create(224, head_channels=1280)
        lut.save(bad)
    else:
        bad.write_text('{"latency": 3}')
    res = cli("profiler.compare", "--lut", luts[0], str(bad), "--out", str(tmp_path / "r"))
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_arch_outside_the_space_is_an_error(luts, tmp_path, cli):
    arch = load_architecture("fbnet_b", resolution=32)
    save_architecture(arch, tmp_path / "small.json")
    res = cli("profiler.compare", "--lut", *luts, "--out", str(tmp_path / "r"), "--arch",
              str(tmp_path / "small.json"))
    assert res.returncode == 2 and "does not cover architecture fbnet_b" in res.stderr
