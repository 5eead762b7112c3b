"""search.specialize: the exact constrained search, checked against brute force."""

import itertools

import numpy as np
import pytest

from fbnet.errors import UserError
from fbnet.lut import LayerTable
from fbnet.space import CANDIDATE_NAMES, SpaceConfig
from fbnet.arch import Architecture
from search.core.budget import Budget, reference_ms
from search.protocols.pairing import (Network, PairSettings, accuracy_matched, check_resolutions,
                            pareto_holds, training_folder, within_std_holding)
from search.protocols.specialization import best_under_budget, check_same_space


def _brute_force(log_probs, table, budget_ms):
    ms = np.asarray(table.per_layer_ms)
    best = None
    for combo in itertools.product(range(ms.shape[1]), repeat=ms.shape[0]):
        price = table.fixed_ms + sum(ms[l, c] for l, c in enumerate(combo))
        if price <= budget_ms:
            score = sum(log_probs[l, c] for l, c in enumerate(combo))
            if best is None or score > best[0]:
                best = (score, combo, price)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dynamic_program_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    layers = 5
    ms = rng.uniform(0.1, 2.0, size=(layers, 9)).round(3)
    logits = rng.normal(size=(layers, 9))
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    table = LayerTable(0.5, ms.tolist())
    cheapest, priciest = 0.5 + ms.min(1).sum(), 0.5 + ms.max(1).sum()
    for frac in (0.0, 0.1, 0.3, 0.6, 1.0):
        budget = cheapest + frac * (priciest - cheapest)
        found = best_under_budget(log_probs, table, budget)
        score, combo, price = _brute_force(log_probs, table, budget)
        assert found.score == pytest.approx(score)
        assert found.latency_ms <= budget + 1e-9
        assert found.latency_ms == pytest.approx(0.5 + sum(ms[l, c] for l, c in enumerate(
            CANDIDATE_NAMES.index(n) for n in found.candidates)))
    # with the whole space affordable the answer is every layer's own favourite
    top = best_under_budget(log_probs, table, priciest)
    assert [CANDIDATE_NAMES.index(c) for c in top.candidates] == log_probs.argmax(1).tolist()


def test_budget_below_the_cheapest_architecture_is_one_line():
    table = LayerTable(1.0, [[1.0] * 9, [2.0] * 9])
    with pytest.raises(UserError, match=r"below the cheapest architecture .*4\.000 ms"):
        best_under_budget(np.zeros((2, 9)), table, 3.9)


def test_supernet_from_another_space_is_refused(tmp_path):
    a = SpaceConfig.create(32)
    with pytest.raises(UserError, match="another space"):
        check_same_space(a, SpaceConfig.create(224), tmp_path / "checkpoint.pt")
    check_same_space(a, SpaceConfig.create(32), tmp_path / "checkpoint.pt")


def test_budget_flags_exclude_each_other():
    with pytest.raises(UserError, match="not both"):
        Budget(5.0, 0.5).check()
    with pytest.raises(UserError, match="positive"):
        Budget(target_rel=0).check()


def test_relative_budget_is_a_fraction_of_the_spaces_mean_price():
    # two layers, fixed 1 ms: the mean architecture costs 1 + mean(row 0) + mean(row 1)
    table = LayerTable(1.0, [[1.0] * 8 + [10.0], [2.0] * 9])
    assert reference_ms(table) == pytest.approx(1.0 + 2.0 + 2.0)
    assert Budget(target_rel=0.9).resolve_ms(table, "t.json") == pytest.approx(4.5)
    with pytest.raises(UserError, match=r"--target-rel 0.5 .* below the cheapest.*4\.000 ms"):
        Budget(target_rel=0.5).resolve_ms(table, "t.json")


def test_pair_refuses_luts_of_different_sizes_and_a_single_lut(tmp_path):
    from test_search import make_lut

    a = make_lut(SpaceConfig.create(32), path=tmp_path / "a_32.json")
    b = make_lut(SpaceConfig.create(64), path=tmp_path / "b_64.json")
    with pytest.raises(UserError, match="different input sizes"):
        check_resolutions([a, b])
    with pytest.raises(UserError, match="at least two LUTs"):
        PairSettings((tmp_path / "a_32.json",), Budget(target_rel=0.5)).check()
    with pytest.raises(UserError, match="matched budget"):
        PairSettings((tmp_path / "a_32.json", tmp_path / "b_64.json"), Budget()).check()


def test_pair_takes_exactly_one_matched_setting_and_passes_it_to_every_search(tmp_path):
    luts = (tmp_path / "a_32.json", tmp_path / "b_32.json")
    with pytest.raises(UserError, match="one matched setting"):
        PairSettings(luts, Budget(target_rel=0.8), latency_weights=(2.0,)).check()
    with pytest.raises(UserError, match="positive"):
        PairSettings(luts, latency_weights=(1.0, 0.0)).check()
    with pytest.raises(UserError, match="repeats a weight"):
        PairSettings(luts, latency_weights=(2.0, 2.0)).check()
    [rel] = PairSettings(luts, Budget(target_rel=0.8)).matched_settings()
    assert (rel.label, rel.flags) == ("rel0.8", ("--target-rel", "0.8"))
    with pytest.raises(UserError, match="--shared .* without --latency-weight"):
        PairSettings(luts, latency_weights=(2.0,), shared_rels=(0.3,)).check()
    with pytest.raises(UserError, match="--shared"):
        PairSettings(luts, Budget(target_ms=3.0), shared_rels=(0.3,)).check()
    with pytest.raises(UserError, match="repeats a budget"):
        PairSettings(luts, shared_rels=(0.3, 0.3)).check()
    with pytest.raises(UserError, match="positive"):
        PairSettings(luts, shared_rels=(0.3, 0.0)).check()
    [shared] = PairSettings(luts, shared_rels=(0.2, 0.5)).matched_settings()
    assert shared.flags == ("--loss", "fbnet", "--latency-weight", "0")
    sweep = PairSettings(luts, latency_weights=(1.0, 2.5)).matched_settings()
    assert [m.label for m in sweep] == ["w1", "w2.5"]
    assert sweep[1].flags == ("--loss", "fbnet", "--latency-unit", "reference",
                              "--latency-weight", "2.5")


def _net(name, latency_ms, top1, first="skip"):
    arch = Architecture(name, SpaceConfig.create(32), (first,) + ("skip",) * 21)
    return Network(name, "dnas", name, 0, arch, latency_ms, top1)


def test_pareto_check_and_the_table5_margin_by_hand():
    # on d: own 10 ms at 80.0 +- 1.0, other 10.4 ms at 79.5 +- 0.5: 4% faster, +0.5 points
    own = _net("own", {"d": 10.0}, [0.79, 0.80, 0.81])
    other = _net("other", {"d": 10.4}, [0.79, 0.795, 0.80])
    check = pareto_holds(own, other, "d")
    assert check["speedup"] == pytest.approx(0.04)
    assert check["top1_gap"] == pytest.approx(0.005)
    assert check["tolerance"] == pytest.approx(0.01)
    assert check["holds"] and check["margin"]  # 0.5 points more accurate at lower latency
    # 2 points less accurate (beyond the 1-point std): faster but not Pareto-better
    worse = _net("worse", {"d": 5.0}, [0.77, 0.78, 0.79])
    assert not pareto_holds(worse, other, "d")["holds"]
    # within the std and 3% faster: holds, but not by the margin
    close = _net("close", {"d": 10.1}, [0.785, 0.795, 0.805])
    check = pareto_holds(close, other, "d")
    assert check["holds"] and not check["margin"]
    # slower is never Pareto-better, however accurate
    assert not pareto_holds(other, own, "d")["holds"]


def test_matched_accuracy_pairs_the_closest_top1_and_never_looks_at_latency():
    # a's front: 78 and 80; b's front: 79.1 and 81. The closest pair is (80, 79.1) even though
    # a far faster b network exists, and the latency of neither side changes the choice.
    a = [_net("a78", {"a": 1.0}, [0.78]), _net("a80", {"a": 2.0}, [0.80])]
    b = [_net("b79", {"a": 9.0}, [0.791]), _net("b81", {"a": 0.1}, [0.81])]
    assert [n.name for n in accuracy_matched(a, b)] == ["a80", "b79"]
    b[0].latency_ms, b[1].latency_ms = {"a": 0.1}, {"a": 9.0}
    assert [n.name for n in accuracy_matched(a, b)] == ["a80", "b79"]
    # a single setting per device is the plain comparison
    assert [n.name for n in accuracy_matched(a[:1], b[1:])] == ["a78", "b81"]


def test_robustness_counts_every_pair_matched_within_the_std():
    # a1 and b1 agree and each is faster on its own device; a2 agrees with b1 too but is slower
    # on a; b2 is 19 points off everything, so it is matched with nothing
    a1 = _net("a1", {"a": 1.0, "b": 2.0}, [0.79, 0.80, 0.81])
    a2 = _net("a2", {"a": 3.0, "b": 1.5}, [0.80, 0.80, 0.80])
    b1 = _net("b1", {"a": 2.0, "b": 1.0}, [0.795, 0.80, 0.805])
    b2 = _net("b2", {"a": 0.5, "b": 0.5}, [0.60, 0.61, 0.62])
    assert within_std_holding([a1, a2], [b1, b2], "a", "b") == (2, 1)
    assert within_std_holding([a2], [b2], "a", "b") == (0, 0)


def test_a_network_found_twice_is_trained_once():
    a, b, c = _net("a", {}, []), _net("b", {}, []), _net("c", {}, [], first="k3_e1")
    assert training_folder(a.arch) == training_folder(b.arch) != training_folder(c.arch)


def test_an_accuracy_supernet_gives_each_budget_its_own_network(cli, tmp_path):
    """The documented flow: one search for accuracy alone (--latency-weight 0), then
    search.specialize per budget. A budget the supernet's favourite network fits returns that
    network and says so; tighter budgets each get their own network within the budget."""
    import json

    from fbnet.lut import load_lut
    from test_search import make_lut, tiny_space

    lut_path = tmp_path / "dev_16.json"
    make_lut(tiny_space(16), path=lut_path)
    out = tmp_path / "shared"
    searched = cli("search.run", "--lut", str(lut_path), "--latency-weight", "0", "--out",
                   str(out), "--data", "synthetic:200", "--epochs", "2", "--warmup-epochs", "1",
                   "--batch-size", "16", "--no-progress", "--resolution", "16")
    assert searched.returncode == 0, searched.stderr
    lut = load_lut(lut_path)
    table = lut.layer_table(tiny_space(16))

    def specialize(*budget):
        done = cli("search.specialize", "--supernet", str(out / "checkpoint.pt"), "--lut",
                   str(lut_path), *budget, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    top = specialize("--target-ms", f"{sum(max(row) for row in table.per_layer_ms) + 1e3:.3f}")
    assert top["supernet_favourite"]
    text = cli("search.specialize", "--supernet", str(out / "checkpoint.pt"), "--lut",
               str(lut_path), "--target-ms", f"{top['latency_ms'] + 1:.3f}")
    assert "the supernet's own favourite network" in text.stdout.strip().splitlines()[-1]
    found = [specialize("--target-rel", str(rel)) for rel in (0.5, 0.7, 0.9)]
    for result in found:
        assert result["latency_ms"] <= result["budget_ms"] + 1e-9
        arch = Architecture.from_dict(result["arch"])
        assert lut.price(arch).total_ms == pytest.approx(result["latency_ms"])
    under = [r for r in found if r["budget_ms"] < top["latency_ms"]]
    assert under and not any(r["supernet_favourite"] for r in under)
    assert len({r["arch_string"] for r in found}) >= 2, found
