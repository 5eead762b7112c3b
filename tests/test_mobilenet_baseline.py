"""The MobileNetV2 baseline a searched network is compared with: the family, its prices on the
shipped LUTs, the named training recipes, and the budget search.run uses by default."""

import importlib
import json
import shutil
from pathlib import Path

import pytest

from fbnet.arch import MOBILENET_V2_WIDTHS, Architecture, load_architecture, mobilenet_v2
from fbnet.errors import UserError
from fbnet.lut import load_lut
from fbnet.space import SpaceConfig
from profiler.settings import Target
from profiler.validate import Row
from search.core.budget import DEFAULT_TARGET_ARCH, Budget
from search.networks.training import RECIPES, default_recipe_name, named_recipe
from test_search import make_lut, tiny_space

ROOT = Path(__file__).resolve().parents[1]


def test_the_family_scales_every_width_and_keeps_the_head():
    base = load_architecture("mobilenet_v2", resolution=32, num_classes=10)
    half = load_architecture("mobilenet_v2_0.5", resolution=32, num_classes=10)
    assert half.name == "mobilenet_v2_0.5" and half.candidates == base.candidates
    assert half.space.stage_widths == (8, 16, 16, 32, 48, 80, 160)
    assert half.space.stem_channels == 16 and half.space.head_channels == 1280
    assert mobilenet_v2(1.0, resolution=32).space == base.space.__class__.create(
        32, stem_channels=32, stage_widths=(16, 24, 32, 64, 96, 160, 320),
        stage_depths=(1, 2, 3, 4, 3, 3, 1), head_channels=1280)
    macs = [mobilenet_v2(w, resolution=32).macs for w in MOBILENET_V2_WIDTHS]
    assert macs == sorted(macs) and len(set(macs)) == len(macs)
    with pytest.raises(UserError, match="positive"):
        load_architecture("mobilenet_v2_0")


@pytest.mark.parametrize("lut_name", ["s8_32.json", "iphone_x_32.json"])
def test_the_estimated_phone_luts_price_every_width(lut_name, cli):
    lut = load_lut(ROOT / "luts" / lut_name)
    prices = [lut.price(mobilenet_v2(w, resolution=32, num_classes=10)).total_ms
              for w in MOBILENET_V2_WIDTHS]
    assert prices == sorted(prices) and prices[0] > 0
    added = lut.provenance.details["additions"][-1]
    assert added["command"].startswith("python -m profiler.estimate --extend")
    assert {"mobilenet_v2_0.35", "mobilenet_v2_0.5", "mobilenet_v2_0.75"} <= \
        set(added["architectures"])
    shown = cli("profiler.lut", "show", str(ROOT / "luts" / lut_name), "--arch",
                "mobilenet_v2_0.5")
    assert shown.returncode == 0, shown.stderr
    assert "added:" in shown.stdout and "mobilenet_v2_0.5" in shown.stdout.splitlines()[-1]


def test_estimate_extend_adds_with_the_luts_own_model(cli, tmp_path):
    path = tmp_path / "s8_32.json"
    shutil.copy(ROOT / "luts" / "s8_32.json", path)
    before = load_lut(path)
    done = cli("profiler.estimate", "--extend", str(path), "--arch", "mobilenet_v2_1.3",
               "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    after = load_lut(path)
    assert record["keys"] and set(after.entries) == set(before.entries) | set(record["keys"])
    assert all(after.entries[k].to_dict() == e.to_dict() for k, e in before.entries.items())
    after.price(load_architecture("mobilenet_v2_1.3", resolution=32))
    # a measured LUT has no model to extend it with: one line that names the way on
    host = tmp_path / "host_32.json"
    shutil.copy(ROOT / "luts" / "host_32.json", host)
    refused = cli("profiler.estimate", "--extend", str(host), "--arch", "mobilenet_v2_0.5")
    assert refused.returncode == 2 and "profiler.run --extend" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_named_recipes():
    full = RECIPES["fmnist-full"]
    assert default_recipe_name("fashion-mnist") == default_recipe_name("fashion-mnist:/x") \
        == "fmnist-full"
    assert default_recipe_name("digits") == "small"
    assert (full.batch_size, full.lr, full.warmup_epochs, full.max_steps_per_epoch) == \
        (128, 0.1, 1, None)  # the whole train split
    short = named_recipe("fmnist-full", epochs=3, lr=0.1, seed=0)
    assert short.name == "fmnist-full(epochs=3)" and short.epochs == 3  # unchanged fields unnamed
    assert named_recipe("fmnist-full").name == "fmnist-full"
    with pytest.raises(UserError, match="unknown recipe 'nope'; named recipes: fmnist-full"):
        named_recipe("nope")
    with pytest.raises(UserError, match="--epochs must be at least 1"):
        named_recipe("small", epochs=0)


def test_the_full_recipe_on_a_handful_of_batches(cli, tmp_path):
    """search.train's default on Fashion-MNIST (skipped without Debian's dataset): the recipe's
    name in the result, the last epoch's top-1 on all 10,000 test images."""
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed (make setup installs it)")
    out = tmp_path / "run"
    done = cli("search.train", "--arch", "mobilenet_v2_0.35", "--epochs", "1", "--max-steps", "3",
               "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["recipe"]["name"] == \
        "fmnist-full(epochs=1, max_steps_per_epoch=3, warmup_epochs=0)"
    assert result["recipe"]["batch_size"] == 128 and result["arch_name"] == "mobilenet_v2_0.35"
    assert result["top1"] == result["history"][-1]["val_top1"]
    assert "with recipe fmnist-full(epochs=1" in done.stderr
    bad = cli("search.train", "--arch", "mobilenet_v2_0.35", "--recipe", "fast")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "error: unknown recipe 'fast'")


def test_a_budget_at_a_networks_price():
    space = SpaceConfig.create(32, num_classes=10)
    lut = load_lut(ROOT / "luts" / "s8_32.json")
    budget = Budget(target_arch="mobilenet_v2_0.5")
    budget.check()
    priced = budget.priced(lut, space)
    price = lut.price(mobilenet_v2(0.5, resolution=32, num_classes=10)).total_ms
    table = lut.layer_table(space)
    assert priced.resolve_ms(table, "s8_32.json") == pytest.approx(price)
    assert priced.describe() == f"the price of mobilenet_v2_0.5 ({price:.3f} ms)"
    with pytest.raises(UserError, match="give --target-ms or --target-arch, not both"):
        Budget(target_ms=3.0, target_arch="mobilenet_v2").check()
    with pytest.raises(UserError, match="unknown architecture 'nope'"):
        Budget(target_arch="nope").priced(lut, space)
    # a network cheaper than the space's cheapest is a one-line error naming both prices
    tiny = make_lut(tiny_space())
    with pytest.raises(UserError, match="--target-arch .* is below the cheapest architecture"):
        Budget(target_arch="x", arch_ms=1e-6).resolve_ms(tiny.layer_table(tiny_space()), "t")
    assert DEFAULT_TARGET_ARCH == "mobilenet_v2"


def test_bad_input_is_one_line(cli, tmp_path):
    """A width the LUT does not price, a MobileNetV2 it does not price, a budget no network
    of the space meets: each one line and exit 2, before any training."""
    lut = str(ROOT / "luts" / "s8_32.json")
    common = ["--data", "synthetic:160", "--out", str(tmp_path / "run"), "--no-progress"]
    cases = [
        (["search.run", "--lut", lut, "--width", "0.35", *common], "does not cover the search space"),
        (["search.run", "--lut", str(ROOT / "luts" / "host_32.json"), "--target-arch",
          "mobilenet_v2_0.35", *common], "does not cover architecture mobilenet_v2_0.35"),
        (["search.run", "--lut", lut, "--target-ms", "0.5", *common],
         "below the cheapest architecture of the space"),
    ]
    for args, needle in cases:
        done = cli(*args)
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert needle in lines[-1], lines[-1]


def test_the_measured_column_needs_a_lut_a_device_can_measure(tmp_path, monkeypatch, capsys):
    """`benchmarks/vs_mobilenet.py --measure` times every network on --device with the LUT's
    own settings: an estimated LUT is one line and exit 2 before any data is read."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    vs_mobilenet = importlib.import_module("vs_mobilenet")
    code = vs_mobilenet.main(["--lut", str(ROOT / "luts" / "s8_32.json"), "--widths", "0.35",
                              "--measure", "--out", str(tmp_path / "run")])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "cannot re-measure" in lines[0], lines
    assert not (tmp_path / "run").exists()


def test_the_measured_column_takes_each_networks_own_timing(tmp_path, monkeypatch):
    """--measure hands every network of the table to profiler.validate as an architecture
    file and puts each one's measured median beside its LUT price; the measured speed is
    MobileNetV2's measured time over the found networks' mean."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    vs_mobilenet = importlib.import_module("vs_mobilenet")
    space = SpaceConfig.create(32, num_classes=10)
    mnv2 = mobilenet_v2(0.35, resolution=32, num_classes=10)
    found = Architecture("dnas_w0.35_seed0", space, ("k3_e1",) * 22)
    asked = {}

    def timed(cfg):
        asked["archs"] = [load_architecture(p).candidates for p in cfg.archs]
        asked["lut"], asked["device"] = cfg.lut, cfg.target.device
        return {}, [Row(mnv2.name, "", 0.6, 0.75, 0.8), Row(found.name, "", 0.5, 0.7, 0.8)], None

    monkeypatch.setattr(vs_mobilenet, "validate", timed)
    trained = {a.name: vs_mobilenet.Trained(a.name, 1.0, 0.9, 0, 0, 1.0, "")
               for a in (mnv2, found)}
    out = vs_mobilenet.measure({a.name: (a, trained[a.name]) for a in (mnv2, found)},
                               "x/host_32.json", Target("host"), tmp_path, tmp_path / "cache")
    assert out == tmp_path / "measure" / "host_32-host.json"
    assert asked == {"archs": [mnv2.candidates, found.candidates], "lut": "x/host_32.json",
                     "device": "host"}
    row = vs_mobilenet.WidthRow(0.35, 1.0, trained[mnv2.name], [trained[found.name]])
    assert row.measured_speedup == pytest.approx(0.6 / 0.5)
    assert "measured: MNV2 0.600 ms, x1.20" in vs_mobilenet.format_row(row)
    assert row.to_dict()["measured_speedup"] == pytest.approx(1.2)


def test_random_networks_are_priced_within_five_percent_of_the_found_one(monkeypatch):
    """--random N: N distinct architectures of the found network's space, not it, each within
    5% of its LUT price; the row ranks every found network among them."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    vs_mobilenet = importlib.import_module("vs_mobilenet")
    lut = load_lut(ROOT / "luts" / "s8_32.json")
    space = SpaceConfig.create(32, num_classes=10)
    found = Architecture("dnas_w0.5_seed0", space, ("k3_e3", "skip") * 11)
    price = lut.price(found).total_ms
    randoms = vs_mobilenet.random_matches(found, lut, 4, seed=0)
    assert len({r.candidates for r in randoms}) == 4
    assert found.candidates not in {r.candidates for r in randoms}
    assert all(r.space == space and abs(lut.price(r).total_ms / price - 1) <= 0.05
               for r in randoms)
    assert [r.name for r in randoms] == [f"random_dnas_w0.5_seed0_{k}" for k in range(4)]

    def net(name, top1):
        return vs_mobilenet.Trained(name, 1.0, top1, 0, 0, 1.0, "")
    row = vs_mobilenet.WidthRow(0.5, 1.0, net("mnv2", 0.90), [net("a", 0.92), net("b", 0.90)],
                                [net("r0", 0.91), net("r1", 0.89), net("r2", 0.93)])
    assert row.searched_ranks == [2, 3] and row.random_top1 == pytest.approx(0.91)
    assert "random: 91.00% (mean of 3), found networks' rank 2, 3 of 4" in \
        vs_mobilenet.format_row(row)


def test_a_negative_random_count_is_one_line(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    vs_mobilenet = importlib.import_module("vs_mobilenet")
    assert vs_mobilenet.main(["--random", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--random -1" in err, err
    assert vs_mobilenet.main(["--train-seeds", "0", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--train-seeds 0 -1" in err, err


def test_matched_accuracy_reads_the_family_curve_without_extrapolating(monkeypatch):
    """The family's ms at a top-1: on the straight line between the two widths around it, the
    first from the cheapest; None below the cheapest width's top-1 or above every width's."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    vs_mobilenet = importlib.import_module("vs_mobilenet")

    def net(ms, top1):
        return vs_mobilenet.Trained("m", ms, top1, 0, 0, 1.0, "")
    family = [net(6.0, 0.915), net(5.0, 0.913), net(7.0, 0.925)]
    assert vs_mobilenet.mobilenet_ms_at(family, 0.920) == pytest.approx(6.5)
    assert vs_mobilenet.mobilenet_ms_at(family, 0.914) == pytest.approx(5.5)
    assert vs_mobilenet.mobilenet_ms_at(family, 0.913) == pytest.approx(5.0)
    assert vs_mobilenet.mobilenet_ms_at(family, 0.910) is None
    assert vs_mobilenet.mobilenet_ms_at(family, 0.930) is None
    row = vs_mobilenet.WidthRow(0.35, 5.0, family[1], [net(4.0, 0.92), net(5.0, 0.92)],
                                matched_mobilenet_ms=6.5)
    assert row.matched_speedup == pytest.approx(6.5 / 4.5)
    assert row.to_dict()["matched_accuracy_speedup"] == pytest.approx(1.4444, abs=1e-4)
    assert "x1.44" in vs_mobilenet.format_row(row)
    alone = vs_mobilenet.WidthRow(0.75, 7.0, family[2], [])
    assert alone.matched_speedup is None and alone.gain_points is None
    assert vs_mobilenet.format_row(alone).split() == ["0.75", "7.000", "92.50%"]


def test_family_widths_are_trained_for_the_curve_and_not_searched(monkeypatch, tmp_path):
    """--family: MobileNetV2 at more widths, trained and not searched at; every width a row,
    cheapest first; the searched row's speed at matched accuracy read off the whole family."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    vs_mobilenet = importlib.import_module("vs_mobilenet")
    lut = load_lut(ROOT / "luts" / "s8_32.json")
    space = SpaceConfig.create(32, num_classes=10)
    top1 = {"mobilenet_v2_0.35": 0.913, "mobilenet_v2_0.5": 0.915, "mobilenet_v2_0.75": 0.925,
            "dnas_w0.35_seed0": 0.920}
    searched = []

    def fake_search(out, args):
        searched.append(float(args[args.index("--target-ms") + 1]))
        return {"arch": Architecture("x", space, ("k3_e3", "skip") * 11).to_dict()}

    def fake_train(arch, lut_, data, recipe, data_spec, root, log, train_seeds=(0,)):
        return vs_mobilenet.Trained(arch.name, lut_.price(arch).total_ms, top1[arch.name],
                                    arch.macs, 0, 1.0, "")
    monkeypatch.setattr(vs_mobilenet, "cached_search", fake_search)
    monkeypatch.setattr(vs_mobilenet, "trained", fake_train)
    recipe = named_recipe("small", epochs=1)
    rows = vs_mobilenet.run(str(ROOT / "luts" / "s8_32.json"), [0.35], [0], recipe,
                            "synthetic:64", tmp_path, lambda msg: None, family=(0.75, 0.5))
    prices = {w: lut.price(mobilenet_v2(w, resolution=32, num_classes=10)).total_ms
              for w in (0.35, 0.5, 0.75)}
    assert [r.width for r in rows] == [0.35, 0.5, 0.75]
    assert searched == [pytest.approx(prices[0.35], abs=1e-5)]
    assert [len(r.searched) for r in rows] == [1, 0, 0]
    expected = prices[0.5] + (prices[0.75] - prices[0.5]) * (0.920 - 0.915) / (0.925 - 0.915)
    assert rows[0].matched_mobilenet_ms == pytest.approx(expected)
    assert rows[1].matched_mobilenet_ms is None


def test_training_seeds_each_get_a_cached_training_and_the_mean(monkeypatch, tmp_path):
    """--train-seeds: one training per seed, each in its own cache folder (seed 0's the folder
    of a training without the option), the top-1 their mean and the spread printed."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    vs_mobilenet = importlib.import_module("vs_mobilenet")
    lut = load_lut(ROOT / "luts" / "s8_32.json")
    arch = mobilenet_v2(0.35, resolution=32, num_classes=10)
    recipe = named_recipe("small", epochs=1)
    for seed, top1 in ((0, 0.91), (1, 0.92), (2, 0.93)):
        folder = vs_mobilenet.training_folder(tmp_path, arch,
                                              vs_mobilenet.replace(recipe, seed=seed), "d")
        folder.mkdir(parents=True)
        (folder / "result.json").write_text(json.dumps({"top1": top1, "train_seconds": 10.0}))
    one = vs_mobilenet.trained(arch, lut, None, recipe, "d", tmp_path, lambda m: None)
    assert one.top1 == 0.91 and one.top1_sd is None and one.label() == "91.00%"
    assert one.folder == str(vs_mobilenet.training_folder(tmp_path, arch, recipe, "d"))
    three = vs_mobilenet.trained(arch, lut, None, recipe, "d", tmp_path, lambda m: None,
                                 train_seeds=(0, 1, 2))
    assert three.top1 == pytest.approx(0.92) and three.train_seconds == 30.0
    assert three.top1_per_train_seed == [0.91, 0.92, 0.93]
    assert three.label() == "92.00% (sd 1.00 over 3)"
    row = vs_mobilenet.WidthRow(0.35, 5.0, three, [])
    assert vs_mobilenet.format_row(row).endswith("MobileNetV2: 92.00% (sd 1.00 over 3)")
