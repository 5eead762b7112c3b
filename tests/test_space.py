import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fbnet.arch import (NAMED_ARCHITECTURES, Architecture, from_arch_string, load_architecture,
                        named_architecture, save_architecture, to_arch_string)
from fbnet.blocks import ChannelShuffle, InvertedResidual, build_workload_module
from fbnet.errors import UserError
from fbnet.model import FBNet
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from fbnet.workloads import (ConvBlock, Skip, candidate_workload, parse_key, space_workloads)


def test_candidates_in_hwnasbench_order():
    assert CANDIDATE_NAMES == ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2",
                               "k5_e3", "k5_e6", "skip")


@pytest.mark.parametrize("resolution,layout,final", [(224, "imagenet", 7), (32, "small", 4),
                                                     (96, "imagenet", 3)])
def test_layouts(resolution, layout, final):
    space = SpaceConfig.create(resolution)
    assert space.layout == layout and space.num_layers == 22 and space.final_size == final


def test_small_layout_strides_and_head():
    space = SpaceConfig.create(32)
    assert space.stem_stride == 1 and space.stage_strides == (1, 1, 2, 2, 1, 2, 1)
    assert space.head_channels == 1504


@pytest.mark.parametrize("resolution", [224, 32])
def test_unique_workload_count(resolution):
    space = SpaceConfig.create(resolution)
    shapes = {(l.height, l.c_in, l.c_out, l.stride) for l in space.layers()}
    assert len(shapes) == 12
    assert len(space_workloads(space)) == 12 * 9 + 4


def test_keys_match_hwnasbench_and_round_trip():
    space = SpaceConfig.create(224)
    layer = space.layers()[1]  # L2: 112x112, 16 -> 24, stride 2
    w = candidate_workload(layer, "k5_e1_g2")
    assert w.key == "ConvBlock_H112_W112_Cin16_Cout24_exp1_kernel5_stride2_group2"
    assert candidate_workload(layer, "skip").key == "Skip_H112_W112_Cin16_Cout24_stride2"
    for workload in space_workloads(space):
        assert parse_key(workload.key) == workload
    with pytest.raises(UserError):
        parse_key("Conv_H1")


@pytest.mark.parametrize("cand", CANDIDATE_NAMES)
@pytest.mark.parametrize("stride,c_in,c_out", [(1, 16, 16), (2, 16, 24), (1, 24, 32)])
def test_block_shapes_and_residual(cand, stride, c_in, c_out):
    layer_w = candidate_workload(
        SpaceConfig.create(224).layers()[0].__class__(0, 1, 14, 14, c_in, c_out, stride), cand)
    module = build_workload_module(layer_w).eval()
    out = module(torch.randn(1, c_in, 14, 14))
    assert out.shape == (1, c_out, 7 if stride == 2 else 14, 7 if stride == 2 else 14)
    if isinstance(layer_w, ConvBlock):
        assert module.residual == (stride == 1 and c_in == c_out)


def test_skip_identity_vs_projection():
    assert isinstance(build_workload_module(Skip(8, 8, 16, 16, 1)), torch.nn.Identity)
    proj = build_workload_module(Skip(8, 8, 16, 24, 2))
    assert [type(m).__name__ for m in proj] == ["Conv2d", "BatchNorm2d", "ReLU"]
    assert proj[0].stride == (2, 2) and proj[0].kernel_size == (1, 1)


def test_channel_shuffle_only_for_groups_and_after_first_conv():
    g2 = InvertedResidual(ConvBlock(8, 8, 16, 16, 1, 3, 1, 2))
    names = [n for n, _ in g2.named_children()]
    assert names.index("shuffle") == names.index("expand") + 1
    assert isinstance(g2.shuffle, ChannelShuffle) and g2.expand[0].groups == 2
    assert g2.project[0].groups == 2 and len(g2.project) == 2  # no ReLU after the last conv
    g1 = InvertedResidual(ConvBlock(8, 8, 16, 16, 1, 3, 1, 1))
    assert isinstance(g1.shuffle, torch.nn.Identity) and g1.expand[0].out_channels == 16


def test_channel_shuffle_permutation():
    x = torch.arange(4.0).reshape(1, 4, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0.0, 2.0, 1.0, 3.0]


def _counted_macs(model, x):
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


@pytest.mark.parametrize("name", ["fbnet_a", "fbnet_b", "fbnet_96", "mobilenet_v2"])
def test_macs_and_params_match_independent_count(name):
    arch = named_architecture(name, resolution=None if name == "fbnet_96" else 64)
    model = FBNet(arch).eval()
    assert arch.params == sum(p.numel() for p in model.parameters())
    assert arch.macs == _counted_macs(model, model.example_input())


def test_published_numbers_are_close_to_paper():
    # paper: FBNet-A 249M MACs 4.3M params; B 295M 4.5M; C 375M 5.5M (B, C in-space versions)
    assert abs(named_architecture("fbnet_a").macs / 1e6 - 249) < 3
    assert abs(named_architecture("fbnet_b").macs / 1e6 - 295) < 5
    assert abs(named_architecture("fbnet_c").macs / 1e6 - 375) < 15


def test_arch_json_round_trip(tmp_path):
    for name in NAMED_ARCHITECTURES:
        arch = named_architecture(name)
        path = tmp_path / f"{name}.json"
        save_architecture(arch, path)
        assert load_architecture(str(path)) == arch


def test_arch_string_round_trip():
    for name in ("fbnet_a", "fbnet_c", "fbnet_iphonex"):
        arch = named_architecture(name)
        back = from_arch_string(to_arch_string(arch), name=name,
                                head_channels=arch.space.head_channels)
        assert back == arch
    assert to_arch_string(named_architecture("fbnet_b")).startswith("ir_r1_k3_s1_e1_c16|ir_r1_k3_s2_e6_c24")


def test_arch_validation_errors():
    space = SpaceConfig.create(224)
    with pytest.raises(UserError, match="22 searchable layers"):
        Architecture("x", space, ("k3_e1",) * 21)
    with pytest.raises(UserError, match="unknown candidate"):
        Architecture("x", space, ("k7_e1",) * 22)
    with pytest.raises(UserError, match="impossible"):
        SpaceConfig.create(16, layout="imagenet")


def test_every_candidate_exports():
    space = SpaceConfig.create(32)
    layer = space.layers()[1]
    for cand in CANDIDATE_NAMES:
        w = candidate_workload(layer, cand)
        ep = torch.export.export(build_workload_module(w).eval(), (torch.randn(w.input_shape),))
        assert ep is not None


def test_whole_network_exports():
    arch = named_architecture("fbnet_b", resolution=32)
    model = FBNet(arch).eval()
    torch.export.export(model, (model.example_input(),))


def test_cli_json(cli):
    out = cli("search.space", "fbnet_b", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["macs"] == named_architecture("fbnet_b").macs and len(data["layers"]) == 26


@pytest.mark.parametrize("args,needle", [
    (["nope"], "unknown architecture"),
    (["fbnet_b", "--resolution", "4"], "impossible"),
    (["missing.json"], "does not exist"),
])
def test_cli_errors(cli, args, needle):
    out = cli("search.space", *args)
    assert out.returncode == 2 and needle in out.stderr and "Traceback" not in out.stderr


def test_cli_malformed_json(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = cli("search.space", str(bad))
    assert out.returncode == 2 and "not valid JSON" in out.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"candidates": ["k3_e1"] * 3}))
    out = cli("search.space", str(wrong))
    assert out.returncode == 2 and "22 searchable layers" in out.stderr


@pytest.mark.parametrize("resolution", [None, 32])
def test_arch_strings_are_accepted_wherever_an_architecture_is(resolution, cli):
    from fbnet.arch import load_architecture, named_architecture, to_arch_string

    ref = named_architecture("fbnet_b", resolution=resolution)
    text = to_arch_string(ref)
    back = load_architecture(text)  # no resolution: the strides say the layout
    assert back.space == ref.space and back.candidates == ref.candidates
    shown = cli("search.space", text, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["macs"] == ref.macs
