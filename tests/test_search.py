"""Tiny spaces and synthetic LUTs for the search tests (no dependency on luts/ files)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fbnet.lut import DeviceInfo, Lut, LutEntry, Provenance, RuntimeInfo, Summation
from fbnet.space import SpaceConfig
from fbnet.workloads import ConvBlock, Skip, Workload, space_workloads

TINY = dict(stem_channels=8, stage_widths=(8, 8, 16, 16, 16, 24, 24),
            stage_depths=(1, 2, 1, 2, 1, 1, 1), head_channels=32)


def tiny_space(resolution: int = 16, num_classes: int = 10) -> SpaceConfig:
    return SpaceConfig.create(resolution, num_classes=num_classes, **TINY)


def macs_cost(w: Workload) -> float:
    return 0.05 + w.macs * 1e-5


def kernel3_cheap(w: Workload) -> float:
    """A device where 5x5 kernels are slow and expansion is cheap."""
    if isinstance(w, ConvBlock):
        return 1.0 + (4.0 if w.kernel == 5 else 0.0) + 0.1 * w.expansion + 0.5 * (w.groups - 1)
    if isinstance(w, Skip):
        return 3.0
    return 0.2


def expansion_cheap_k5(w: Workload) -> float:
    """A device where expansion is slow and 5x5 kernels are free."""
    if isinstance(w, ConvBlock):
        return 1.0 + 0.8 * w.expansion + 0.5 * (w.groups - 1) - (0.5 if w.kernel == 5 else 0.0)
    if isinstance(w, Skip):
        return 6.0
    return 0.2


def make_lut(space: SpaceConfig, cost: Callable[[Workload], float] = macs_cost,
             classes: tuple[int, ...] = (10,), name: str = "testdev",
             summation: Summation | None = None, path: Path | None = None) -> Lut:
    entries = {}
    for c in classes:
        for w in space_workloads(space.with_classes(c)):
            entries[w.key] = LutEntry(latency_ms=cost(w))
    lut = Lut(DeviceInfo(name), RuntimeInfo("synthetic"),
              Provenance("estimated", {"model": "test cost function"}), entries,
              space, summation=summation or Summation())
    if path is not None:
        lut.save(path)
    return lut


# --- supernet ---------------------------------------------------------------------------------

import math

import pytest
import torch
import torch.nn.functional as F

from fbnet.arch import Architecture
from fbnet.errors import UserError
from fbnet.model import FBNet
from fbnet.space import CANDIDATE_NAMES
from search.core.dnas import (Dist, Search, TrainConfig, latency_only_search, sample_architectures)
from search.core.loss import LatencyModel, LossConfig, dnas_loss, latency_factor
from search.core.objective import Objective
from search.core.supernet import (TAU_FLOOR, EntangledBoundary, MixedLayer, SuperNet,
                             temperature)


@pytest.fixture(autouse=True)
def one_thread():
    """Search sets torch's thread count (--threads); keep other tests' setting intact."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_temperature_schedule():
    assert temperature(0) == 5.0
    assert temperature(1) == pytest.approx(1.0)
    assert temperature(0.5) == pytest.approx(math.sqrt(5.0))  # geometric midpoint
    # the paper's per-epoch exp(-0.045) over 90 epochs is the same exponential curve
    assert temperature(1 / 90, 5.0, 5.0 * math.exp(-0.045 * 90)) == pytest.approx(
        5.0 * math.exp(-0.045))
    assert temperature(2.0, 5.0, 0.001) == TAU_FLOOR


def test_soft_masks_are_per_example_and_safe():
    net = SuperNet(tiny_space(), mode="soft")
    masks = net.draw_masks(8, 5.0, torch.Generator().manual_seed(0), None)
    assert masks.weights.shape == (8, net.space.num_layers, 9)
    assert torch.allclose(masks.weights.sum(-1), torch.ones(8, net.space.num_layers))
    assert not torch.allclose(masks.weights[0], masks.weights[1])  # one draw per example
    with torch.no_grad():
        net.theta.normal_(0, 50)  # extreme logits and a tau far below the floor
    masks = net.draw_masks(8, 1e-9, None, None)
    assert torch.isfinite(masks.weights).all()


def test_sampled_masks_are_hard_with_gradient_on_the_sampled_set():
    net = SuperNet(tiny_space(), mode="sampled", paths=2)
    masks = net.draw_masks(16, 1.0, torch.Generator().manual_seed(1),
                           torch.Generator().manual_seed(2))
    w = masks.weights
    hard = [l for l in range(net.space.num_layers) if l not in masks.soft_layers]
    assert hard and masks.soft_layers  # the tiny space has both kinds of layers
    assert torch.equal(w[:, hard].detach(), F.one_hot(masks.choice[:, hard], 9).float())
    for l in hard:
        assert len(masks.choice[:, l].unique()) <= 2
    # stage boundaries mix all 9 candidates per example (softmax weights, no choice)
    soft = list(masks.soft_layers)
    assert (masks.choice[:, soft] == -1).all()
    assert torch.allclose(w[:, soft].sum(-1), torch.ones(16, len(soft)))
    assert (w[:, soft] > 0).all()
    (w[:, hard] * torch.arange(9.0)).sum().backward()
    touched = (net.theta.grad != 0).sum(-1)
    assert (touched <= 2).all() and touched.sum() > 0


def test_soft_layers_are_the_stage_boundaries():
    net = SuperNet(tiny_space(), mode="sampled")
    for l, shape in enumerate(net.space.layers()):
        boundary = shape.stride != 1 or shape.c_in != shape.c_out
        assert (l in net.soft_layers) == boundary


def test_sampled_draw_is_shared_by_step_seed():
    net = SuperNet(tiny_space(), mode="sampled", paths=2)
    a = net.draw_masks(64, 1.0, torch.Generator().manual_seed(1), torch.Generator().manual_seed(7))
    b = net.draw_masks(64, 1.0, torch.Generator().manual_seed(2), torch.Generator().manual_seed(7))
    other = net.draw_masks(64, 1.0, torch.Generator().manual_seed(1),
                           torch.Generator().manual_seed(8))
    hard = [l for l in range(net.space.num_layers) if l not in net.soft_layers]
    # other ranks: the same candidate set (both of its 2 candidates drawn among 64 examples at
    # theta = 0), own per-example draws; another step seed picks another set somewhere
    for l in hard:
        assert set(a.choice[:, l].tolist()) == set(b.choice[:, l].tolist())
        assert len(set(a.choice[:, l].tolist())) == 2
    assert not torch.equal(a.choice, b.choice)
    assert any(set(a.choice[:, l].tolist()) != set(other.choice[:, l].tolist()) for l in hard)


def test_uniform_paths_ignore_theta_at_the_residual_layers_only():
    net = SuperNet(tiny_space(), mode="sampled", paths=2)
    with torch.no_grad():
        net.theta[:, CANDIDATE_NAMES.index("skip")] = 30.0  # theta sure of skip everywhere
    hard = [l for l in range(net.space.num_layers) if l not in net.soft_layers]
    soft = list(net.soft_layers)
    skip = CANDIDATE_NAMES.index("skip")
    by_theta = [net.draw_masks(32, 1.0, torch.Generator().manual_seed(s),
                               torch.Generator().manual_seed(100 + s), theta_grad=False)
                for s in range(20)]
    uniform = [net.draw_masks(32, 1.0, torch.Generator().manual_seed(s),
                              torch.Generator().manual_seed(100 + s), theta_grad=False,
                              uniform_paths=True) for s in range(20)]
    assert all((m.choice[:, hard] == skip).all() for m in by_theta)
    chosen = torch.cat([m.choice[:, hard].reshape(-1) for m in uniform])
    # 20 steps x 2 paths per residual layer, drawn uniformly: skip is a minority, and most
    # of the 9 candidates get trained somewhere
    assert (chosen == skip).float().mean() < 0.5
    assert len(chosen.unique()) >= 6
    # the stage boundaries still mix by theta
    for m in uniform:
        assert (m.weights[:, soft, skip] > 0.99).all()


def test_sampled_forward_runs_each_example_through_its_own_candidates():
    torch.manual_seed(0)
    net = SuperNet(tiny_space(), mode="sampled", paths=3).eval()
    x = torch.randn(6, 3, 16, 16)
    masks = net.draw_masks(6, 1.0, torch.Generator().manual_seed(3),
                           torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = net(x, masks)
        for b in range(6):
            ref = net.stem(x[b:b + 1])
            for l, layer in enumerate(net.layers):
                ref = (layer.forward_soft(ref, masks.weights[b:b + 1, l])
                       if l in masks.soft_layers else layer.forward_single(ref, int(masks.choice[b, l])))
            ref = net.classifier(net.pool(net.head(ref)))
            assert torch.allclose(out[b], ref[0], atol=1e-5)


@pytest.mark.parametrize("boundary", ["entangled", "separate"])
def test_sampled_supernet_learns_an_easy_task(boundary):
    """Regression: with a random path per step and example, the supernet stayed at chance
    (residual candidates adding unit-variance noise, stage boundaries switching feature
    basis). 4 classes of fixed patterns + noise: it must reach well above chance (0.25)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    patterns = torch.randn(4, 3, 16, 16, generator=g)
    y = torch.arange(96) % 4
    x = patterns[y] + 0.8 * torch.randn(96, 3, 16, 16, generator=g)
    net = SuperNet(tiny_space(num_classes=4), mode="sampled", paths=2, boundary=boundary)
    opt = torch.optim.SGD(net.weight_parameters(), lr=0.02, momentum=0.9)
    ex_gen, step_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    net.train()
    for step in range(40):
        idx = torch.randperm(96, generator=g)[:16]
        masks = net.draw_masks(16, 5.0, ex_gen, step_gen, theta_grad=False)
        loss = F.cross_entropy(net(x[idx], masks), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # fresh random paths on all 96 examples, batch statistics
        masks = net.draw_masks(96, 5.0, ex_gen, step_gen, theta_grad=False)
        top1 = float((net(x, masks).argmax(-1) == y).float().mean())
    assert top1 > 0.6, top1


def test_sampled_backward_with_tiny_sub_batches():
    # Sub-batches of 1-3 examples through a strided 1x1 skip conv crashed torch's channels-last
    # backward with 2 threads (heap corruption); the supernet keeps that conv NCHW.
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        net = SuperNet(tiny_space(), mode="sampled", paths=9)
        masks = net.draw_masks(16, 5.0, None, None, theta_grad=False)
        F.cross_entropy(net(torch.randn(16, 3, 16, 16), masks),
                        torch.randint(0, 10, (16,))).backward()
    finally:
        torch.set_num_threads(threads)


def test_pointwise_convs_run_dilated_on_cpu_with_identical_outputs():
    # Dilation 2 steers torch's 1x1 convs on < 16 examples to oneDNN (search/core/supernet.py); a
    # 1x1 kernel must compute exactly what it did undilated, and only the supernet does this.
    torch.manual_seed(0)
    net = SuperNet(tiny_space(), mode="sampled")
    layer = next(l for l in net.layers if isinstance(l, MixedLayer) and l.residual)
    block = layer.ops[CANDIDATE_NAMES.index("k3_e6")].train()
    x = torch.randn(5, block.expand[0].in_channels, 8, 8).contiguous(
        memory_format=torch.channels_last)
    hooked = block(x)
    convs = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d)
             and m.kernel_size == (1, 1)]
    assert convs and all(m.dilation == (2, 2) for m in convs)
    for m in convs:
        m._forward_pre_hooks.clear()
        m.dilation = (1, 1)
    assert torch.equal(hooked, block(x))
    final = Architecture("a", net.space, ["k3_e6"] * net.space.num_layers)
    assert all(m.dilation == (1, 1) for m in FBNet(final).modules()
               if isinstance(m, torch.nn.Conv2d))


def test_soft_forward_is_the_weighted_sum_of_candidates():
    torch.manual_seed(0)
    net = SuperNet(tiny_space(), mode="soft").eval()
    x = torch.randn(2, 3, 16, 16)
    one_hot = net.fixed_masks(2, [3] * net.space.num_layers)
    with torch.no_grad():
        soft = net(x, type(one_hot)(one_hot.weights))  # one-hot weights through the soft path
        assert torch.allclose(soft, net.forward_arch(x, [3] * net.space.num_layers), atol=1e-5)


def _standalone_from_superblock(layer: EntangledBoundary, shape, k: int) -> torch.nn.Module:
    """Candidate k built on its own (fbnet.blocks) with its slice of the superblock's weights."""
    from fbnet.blocks import build_workload_module
    from fbnet.space import CANDIDATES
    from fbnet.workloads import candidate_workload

    block = build_workload_module(candidate_workload(shape, CANDIDATE_NAMES[k])).eval()
    cand = CANDIDATES[k]
    mid, g = shape.c_in * cand.expansion, cand.groups
    dense_mid = layer.expand.out_channels - (shape.c_in if any(
        c.groups > 1 for c in CANDIDATES) else 0)
    # hidden channel j (after the shuffle) of the candidate sits at superblock channel start + j;
    # before the shuffle (expand conv and its BN), channel o is shuffled to j(o)
    start = dense_mid if g > 1 else 0
    after = torch.arange(mid) if g == 1 else torch.tensor(
        [(o % (mid // g)) * g + o // (mid // g) for o in range(mid)])
    rows = start + after
    kernel = layer.kernels.index(cand.kernel)

    def copy_bn(dst, src, index):
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(dst, name).copy_(getattr(src, name)[index])

    with torch.no_grad():
        w = layer.expand.weight[rows]  # [mid, c_in]: keep each row's own input group
        per_group = shape.c_in // g
        block.expand[0].weight.copy_(torch.stack(
            [w[o, (o // (mid // g)) * per_group:(o // (mid // g) + 1) * per_group]
             for o in range(mid)]))
        copy_bn(block.expand[1], layer.expand_bn, rows)
        cols = start + torch.arange(mid)
        block.depthwise[0].weight.copy_(layer.depthwise[kernel].weight[cols])
        copy_bn(block.depthwise[1], layer.depthwise_bn, cols)
        out_per_group = shape.c_out // g
        block.project[0].weight.copy_(torch.stack(
            [layer.project.weight[q, start + (q // out_per_group) * (mid // g) + torch.arange(
                mid // g)] for q in range(shape.c_out)]))
        copy_bn(block.project[1], layer.project_bn, torch.arange(shape.c_out))
    return block


def test_entangled_boundary_runs_each_candidate_exactly_as_a_sub_network():
    """A one-hot weight runs exactly candidate k: the block the final network will have,
    holding its slice of the superblock (expand rows, depthwise channels, project columns;
    the grouped candidates through block-diagonal masks with their shuffle folded in)."""
    torch.manual_seed(0)
    space = tiny_space()
    shape = next(s for s in space.layers() if s.stride == 2)
    layer = EntangledBoundary(shape).eval()
    for module in layer.modules():  # non-trivial BN statistics and affine parameters
        if isinstance(module, torch.nn.BatchNorm2d):
            for t in (module.weight, module.bias, module.running_mean):
                t.data.normal_(0, 0.5)
            module.running_var.data.uniform_(0.5, 2.0)
    x = torch.randn(3, shape.c_in, shape.height, shape.width)
    with torch.no_grad():
        for k, name in enumerate(CANDIDATE_NAMES):
            got = layer.forward_single(x, k)
            want = (layer.skip(x) if name == "skip" else
                    _standalone_from_superblock(layer, shape, k)(x))
            assert torch.allclose(got, want, atol=1e-5), name


def test_entangled_boundary_mixes_skip_and_the_superblock_by_weight():
    torch.manual_seed(0)
    shape = next(s for s in tiny_space().layers() if s.stride == 2)
    layer = EntangledBoundary(shape).eval()
    x = torch.randn(2, shape.c_in, shape.height, shape.width)
    skip = CANDIDATE_NAMES.index("skip")
    weights = torch.zeros(2, 9)
    weights[:, skip], weights[:, 3] = 0.3, 0.7
    with torch.no_grad():
        mixed = layer.forward_soft(x, weights)
        want = 0.3 * layer.forward_single(x, skip) + 0.7 * layer.forward_single(x, 3)
    assert torch.allclose(mixed, want, atol=1e-5)


@pytest.mark.parametrize("boundary,kind", [("entangled", EntangledBoundary),
                                            ("separate", MixedLayer)])
def test_boundary_option_picks_the_stage_boundary_layer(boundary, kind):
    net = SuperNet(tiny_space(), mode="sampled", boundary=boundary)
    assert all(isinstance(net.layers[l], kind) for l in net.soft_layers)
    soft = SuperNet(tiny_space(), mode="soft", boundary=boundary)  # soft mode: always separate
    assert all(isinstance(layer, MixedLayer) for layer in soft.layers)
    with pytest.raises(UserError, match="--boundary"):
        SuperNet(tiny_space(), boundary="shared")


@pytest.mark.parametrize("boundary", ["entangled", "separate"])
def test_theta_gets_a_gradient_for_every_candidate_at_the_boundaries(boundary):
    torch.manual_seed(0)
    net = SuperNet(tiny_space(), mode="sampled", boundary=boundary)
    masks = net.draw_masks(8, 5.0, torch.Generator().manual_seed(0),
                           torch.Generator().manual_seed(1))
    F.cross_entropy(net(torch.randn(8, 3, 16, 16), masks), torch.randint(0, 10, (8,))).backward()
    boundary = list(net.soft_layers)
    assert (net.theta.grad[boundary] != 0).all()


# --- latency and loss -------------------------------------------------------------------------

def test_expected_latency_of_a_one_hot_mask_is_the_lut_price():
    from fbnet.lut import Summation

    space = tiny_space()
    lut = make_lut(space, summation=Summation(0.01, 0.7, "test"))
    latency = LatencyModel(lut.layer_table(space))
    picks = [0, 3, 8, 7, 2, 5, 1, 4, 6][:space.num_layers]
    arch = Architecture("x", space, tuple(CANDIDATE_NAMES[i] for i in picks))
    mask = F.one_hot(torch.tensor([picks]), 9).float()
    assert float(latency(mask)[0]) == pytest.approx(lut.price(arch).total_ms, rel=1e-5)
    objective = Objective.build(lut, space, LossConfig())
    assert objective.price_ms(arch.candidates) == lut.price(arch).total_ms


def test_lut_missing_keys_is_a_user_error():
    space = tiny_space()
    lut = make_lut(space, classes=(100,))  # no FC key for 10 classes
    with pytest.raises(UserError, match="FC_Cin32_Cout10"):
        lut.layer_table(space)


def test_fbnet_loss_rule_below_e_ms():
    cfg = LossConfig()
    lat = torch.tensor([0.0, 0.3, 1.0, 2.0, 23.0, 500.0], requires_grad=True)
    factor = latency_factor(cfg, lat)
    assert torch.isfinite(factor).all() and (factor >= 0).all()
    assert (factor[1:] > factor[:-1]).all()  # always a penalty that grows with latency
    factor.sum().backward()
    assert (lat.grad[1:] > 0).all()  # a gradient even for sub-millisecond networks
    assert float(factor[4].detach()) == pytest.approx(0.2 * math.log(24.0) ** 0.6)
    ce = torch.tensor([2.0])
    plain = dnas_loss(LossConfig(latency_weight=0), ce, torch.tensor([9.0]))
    assert float(plain) == pytest.approx(0.2 * 2.0)  # accuracy only


def test_target_loss_only_penalizes_above_budget():
    cfg = LossConfig("target", target_ms=5.0, latency_weight=2.0)
    ce = torch.tensor([1.0, 1.0])
    assert float(dnas_loss(cfg, ce, torch.tensor([4.0, 5.0]))) == pytest.approx(1.0)
    assert float(dnas_loss(cfg, ce, torch.tensor([10.0, 10.0]))) == pytest.approx(3.0)
    with pytest.raises(UserError):
        LossConfig("target").check()


# --- sanity behaviour (issue #8, item 7) --------------------------------------------------------

@pytest.mark.parametrize("mode", ["soft", "sampled"])
def test_sanity_a_latency_only_picks_the_cheapest_candidates(mode):
    space = tiny_space()
    objective = Objective.build(make_lut(space, kernel3_cheap), space,
                                LossConfig(latency_weight=4.0))
    torch.manual_seed(0)
    net = SuperNet(space, mode=mode)
    picks = latency_only_search(net, objective, steps=400, lr=0.1)
    assert picks == objective.latency_model().cheapest()


def _search(space, lut, tmp_path, loss=LossConfig(), epochs=4, seed=0, data=None,
            alternate="step"):
    from search.data import load_data, split_train

    bundle = data or load_data("synthetic:480", resolution=16, seed=0)
    w, th = split_train(bundle.train, 0.8, 0)
    cfg = TrainConfig(epochs=epochs, warmup_epochs=1, batch_size=16, seed=seed, theta_lr=0.05,
                      alternate=alternate)
    return Search(space, Objective.build(lut, space, loss), cfg, w, th, bundle.val, tmp_path,
                  torch.device("cpu"), {"test": 1}, progress=False)


def test_sanity_b_latency_falls_as_latency_weight_grows(tmp_path):
    # theta's expected latency (its final probabilities over the LUT) falls with every step of
    # the weight, in the mean over seeds (here it falls for each seed alone: 8.95 > 6.20 >
    # 5.58 ms and 9.26 > 6.05 > 5.64 ms); the argmax architecture, one short search's noisy
    # readout of theta (~60 steps; a neighbouring pair of weights can swap it on another CPU's
    # float rounding), is checked from no pressure to the strongest, seed by seed.
    space = tiny_space()
    lut = make_lut(space, macs_cost)
    table = lut.layer_table(space)
    weights, seeds = (0.0, 4.0, 16.0), (0, 1)
    rows = [[_search(space, lut, tmp_path / f"{seed}_{weight}",
                     LossConfig(latency_weight=weight), seed=seed).run()[-1]
             for weight in weights] for seed in seeds]
    expected = [[table.fixed_ms + sum(p * ms for probs, costs in zip(row["probs"],
                                                                      table.per_layer_ms)
                                      for p, ms in zip(probs, costs)) for row in per_seed]
                for per_seed in rows]
    mean = [sum(column) / len(seeds) for column in zip(*expected)]
    assert all(b < a for a, b in zip(mean, mean[1:])), expected
    argmax = [[row["argmax_latency_ms"] for row in per_seed] for per_seed in rows]
    assert all(per_seed[-1] < per_seed[0] for per_seed in argmax), argmax


def test_sanity_c_two_devices_get_different_archs_each_faster_on_its_own(tmp_path):
    space = tiny_space()
    luts = {"a": make_lut(space, kernel3_cheap), "b": make_lut(space, expansion_cheap_k5)}
    archs = {}
    for name, lut in luts.items():
        search = _search(space, lut, tmp_path / name, LossConfig(latency_weight=4.0))
        search.run()
        archs[name] = Architecture(name, space, search.model.argmax_candidates())
    assert archs["a"].candidates != archs["b"].candidates
    for own, other in (("a", "b"), ("b", "a")):
        lut = luts[own]
        assert lut.price(archs[own]).total_ms < lut.price(archs[other]).total_ms


# --- training loop ----------------------------------------------------------------------------

@pytest.mark.parametrize("alternate, cut", [
    ("step", "w"), ("step", "theta"), ("epoch", "w"), ("epoch", "theta")])
def test_interrupted_search_resumes_to_the_same_result(tmp_path, monkeypatch, alternate, cut):
    space = tiny_space()
    lut = make_lut(space)
    straight = _search(space, lut, tmp_path / "straight", epochs=2, alternate=alternate)
    straight.run()

    interrupted = _search(space, lut, tmp_path / "cut", epochs=2, alternate=alternate)
    n_w, n_theta = (interrupted.steps_per_epoch[p] for p in ("w", "theta"))
    # epoch 1 is warm-up (n_w weight steps, n_theta scoring steps); cut inside epoch 2 at a
    # weight or theta step (interleaved: w, theta, w, theta, ...)
    epoch2 = n_w + n_theta
    at = {("step", "w"): epoch2 + 3, ("step", "theta"): epoch2 + 4,
          ("epoch", "w"): epoch2 + 3, ("epoch", "theta"): epoch2 + n_w + 2}[alternate, cut]
    real_step, calls = Search._step, {"n": 0}

    def step_then_interrupt(self, phase, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at:
            assert phase == cut
            raise KeyboardInterrupt
        return real_step(self, phase, *args, **kwargs)

    monkeypatch.setattr(Search, "_step", step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    monkeypatch.setattr(Search, "_step", real_step)
    resumed = _search(space, lut, tmp_path / "cut", epochs=2, alternate=alternate)
    resumed.load_checkpoint()
    history = resumed.run()
    assert len(history) == 2
    assert torch.equal(resumed.model.theta, straight.model.theta)
    assert history[-1]["argmax_arch"] == straight.history[-1]["argmax_arch"]
    assert history[-1]["theta_loss"] == pytest.approx(straight.history[-1]["theta_loss"])


def test_step_alternation_takes_a_theta_step_after_every_weight_step(tmp_path, monkeypatch):
    space = tiny_space()
    search = _search(space, make_lut(space), tmp_path, epochs=2)
    phases, real_step = [], Search._step

    def record(self, phase, *args, **kwargs):
        train = args[5] if len(args) > 5 else kwargs.get("train", True)
        phases.append((phase, train))
        return real_step(self, phase, *args, **kwargs)

    monkeypatch.setattr(Search, "_step", record)
    search.run()
    n_w, n_theta = search.steps_per_epoch["w"], search.steps_per_epoch["theta"]
    assert n_theta < n_w  # so the arch split must be cycled
    warmup, searching = phases[:n_w + n_theta], phases[n_w + n_theta:]
    assert warmup == [("w", True)] * n_w + [("theta", False)] * n_theta
    assert searching == [("w", True), ("theta", True)] * n_w


def test_foreign_checkpoint_is_a_user_error(tmp_path):
    space = tiny_space()
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    search = _search(space, make_lut(space), tmp_path)
    with pytest.raises(UserError, match="not a readable search checkpoint"):
        search.load_checkpoint()
    torch.save({"format": "something/else"}, tmp_path / "checkpoint.pt")
    with pytest.raises(UserError, match="another tool"):
        search.load_checkpoint()


def test_samples_follow_theta():
    theta = torch.full((4, 9), -20.0)
    theta[:, 2] = 20.0
    assert sample_architectures(theta, 3, 0) == [[2, 2, 2, 2]] * 3


def test_gradient_averaging_keeps_unused_parameters_untouched():
    p, q = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    p.grad = torch.ones(2)
    Dist().average_gradients([p, q])  # one process: nothing to do, nothing invented
    assert q.grad is None and torch.equal(p.grad, torch.ones(2))
