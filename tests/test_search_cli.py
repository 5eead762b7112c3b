"""End-to-end tests of `python -m search.run` on a tiny space, synthetic data and LUTs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fbnet.arch import load_architecture
from fbnet.lut import load_lut
from search.core.budget import price_range_ms, reference_ms
from test_search import kernel3_cheap, make_lut, tiny_space

from conftest import ROOT

FAST = ["--data", "synthetic:200", "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "16",
        "--no-progress"]


@pytest.fixture
def luts(tmp_path):
    """dev.json at 32x32 (the tiny space) and its sibling dev_16.json at 16x16."""
    make_lut(tiny_space(32), path=tmp_path / "dev.json")
    make_lut(tiny_space(16), path=tmp_path / "dev_16.json")
    return tmp_path


def test_search_writes_every_output(cli, luts, tmp_path):
    out = tmp_path / "run"
    done = cli("search.run", "--lut", str(luts / "dev_16.json"), "--resolution", "16",
               "--out", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    assert "chosen architecture" in done.stdout and f"wrote {out}" in done.stdout
    for name in ("arch.json", "samples.json", "theta.json", "log.jsonl", "log.csv", "probs.png",
                 "curves.png", "checkpoint.pt"):
        assert (out / name).stat().st_size > 0, name
    arch = load_architecture(str(out / "arch.json"))
    assert arch.space == tiny_space(16)
    sample = load_architecture(f"{out}/samples.json#2")
    assert sample.space == arch.space
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0]["phase"] == "warmup"
    for key in ("loss", "ce", "expected_latency_ms", "tau", "w_top1", "theta_top1",
                "theta_entropy", "argmax_arch", "argmax_latency_ms"):
        assert rows[-1][key] is not None, key
    lut = load_lut(luts / "dev_16.json")
    assert rows[-1]["argmax_latency_ms"] == pytest.approx(lut.price(arch).total_ms, rel=1e-5)
    shown = cli("search.space", str(out / "arch.json"))
    assert shown.returncode == 0, shown.stderr

    # --resume extends a finished search by one epoch; a different setting is refused
    more = cli("search.run", "--lut", str(luts / "dev_16.json"), "--resolution", "16",
               "--out", str(out), *FAST[:2], "--epochs", "3", "--warmup-epochs", "1",
               "--batch-size", "16", "--no-progress", "--resume", "--json")
    assert more.returncode == 0, more.stderr
    assert json.loads(more.stdout)["epochs"] == 3
    again = cli("search.run", "--lut", str(luts / "dev_16.json"), "--resolution", "16",
                "--out", str(out), *FAST)
    assert again.returncode == 2 and "--resume" in again.stderr
    other = cli("search.run", "--lut", str(luts / "dev_16.json"), "--resolution", "16",
                "--out", str(out), *FAST, "--resume", "--mode", "soft")
    assert other.returncode == 2 and "different search" in other.stderr
    assert other.stderr.count("\n") == 1


def test_lut_for_another_resolution_uses_its_sibling(cli, luts, tmp_path):
    done = cli("search.run", "--lut", str(luts / "dev.json"), "--resolution", "16",
               "--out", str(tmp_path / "sib"), *FAST, "--epochs", "2")
    assert done.returncode == 0, done.stderr
    assert "searching with its sibling" in done.stdout and "dev_16.json" in done.stdout


@pytest.mark.parametrize("args,message", [
    (["--lut", "nope.json"], "does not exist"),
    (["--lut", "{bad}"], "not valid JSON"),
    (["--lut", "{dev}", "--resolution", "24"], "no dev_24.json"),
    (["--lut", "{dev100}", "--resolution", "16"], "missing FC_Cin32_Cout10"),
    (["--lut", "{dev16}", "--resolution", "16", "--data", "imagefolder:/nonexistent"],
     "does not exist"),
    (["--lut", "{dev16}", "--loss", "target"], "--target-ms"),
    (["--lut", "{dev16}", "--warmup-epochs", "10"], "--warmup-epochs"),
    (["--lut", "{dev16}", "--resolution", "16", "--resume"], "no checkpoint"),
])
def test_user_errors_are_one_line(luts, tmp_path, capsys, args, message):
    from search.run import main

    (tmp_path / "bad.json").write_text("{not json")
    make_lut(tiny_space(16), classes=(100,), path=tmp_path / "big" / "dev100_16.json")
    paths = {"{bad}": tmp_path / "bad.json", "{dev}": luts / "dev.json",
             "{dev16}": luts / "dev_16.json", "{dev100}": tmp_path / "big" / "dev100_16.json"}
    args = [str(paths.get(a, a)) for a in args]
    code = main(["--data", "synthetic:200", "--batch-size", "8", *args,
                 "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and err.startswith("error: "), err


@pytest.mark.parametrize("phase", ["w", "theta"])
def test_two_ranks_see_each_example_once_and_the_single_process_batches(tmp_path, phase):
    """Rank 0 and rank 1 of a 2-rank search with batch 8 together take exactly the global
    batch a single process with batch 16 takes at each step, each example once; evaluation
    splits the same subset between the ranks without overlap."""
    import torch
    from search.data import load_data, split_train
    from search.core.dnas import Dist, Search, TrainConfig
    from search.core.loss import LossConfig
    from search.core.objective import Objective

    space = tiny_space(16)
    objective = Objective.build(make_lut(space), space, LossConfig())
    bundle = load_data("synthetic:200", resolution=16, seed=0)
    w, th = split_train(bundle.train, 0.8, 0)

    def search(rank: int, world: int, batch: int) -> Search:
        cfg = TrainConfig(epochs=2, warmup_epochs=1, batch_size=batch, seed=0)
        return Search(space, objective, cfg, w, th, bundle.val, tmp_path / f"{rank}",
                      torch.device("cpu"), {"test": 1}, Dist(rank, world), progress=False)

    single, ranks = search(0, 1, 16), [search(r, 2, 8) for r in range(2)]
    for epoch in range(2):
        alone = single._batches(phase, epoch)
        shards = [r._batches(phase, epoch) for r in ranks]
        assert len(alone) == len(shards[0]) == len(shards[1]) > 0
        for step, batch in enumerate(alone):
            a, b = shards[0][step], shards[1][step]
            assert len(a) == len(b) == 8 and not set(a) & set(b)
            assert sorted(a + b) == sorted(batch)
    evaluated = [i for r in ranks for batch in r._eval_batches(bundle.val) for i in batch]
    assert sorted(evaluated) == sorted(i for batch in single._eval_batches(bundle.val)
                                       for i in batch) == list(range(len(bundle.val)))


def _search_run(out, *extra, ranks: int = 1) -> subprocess.CompletedProcess:
    launcher = (["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
                if ranks > 1 else [])
    return subprocess.run(
        [sys.executable, *launcher, "-m", "search.run", "--out", str(out),
         "--data", "synthetic:200", "--epochs", "2", "--warmup-epochs", "1", "--no-progress",
         "--json", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_ddp_two_cpu_ranks(luts, tmp_path):
    """torchrun with 2 gloo ranks of batch 8 against one process of batch 16: the same number
    of weight and theta steps (each rank takes half of every global batch, not the whole
    split), theta in sync (checked by the run itself)."""
    lut = ["--lut", str(luts / "dev_16.json"), "--resolution", "16"]
    done = _search_run(tmp_path / "ddp", *lut, "--batch-size", "8", ranks=2)
    assert done.returncode == 0, done.stderr[-3000:]
    alone = _search_run(tmp_path / "one", *lut, "--batch-size", "16")
    assert alone.returncode == 0, alone.stderr[-3000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["epochs"] == 2
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    single = [json.loads(line) for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    assert [r["theta_steps"] for r in rows] == [r["theta_steps"] for r in single]
    assert rows[-1]["theta_steps"] > 0
    assert rows[-1]["theta_top1"] is not None and rows[-1]["expected_latency_ms"] > 0


# search.pair's searches and trainings cut to seconds: synthetic data, tiny recipes
QUICK_PAIR = ["--data", "synthetic:200",
              "--search-args", "--epochs 2 --warmup-epochs 1 --batch-size 16",
              "--train-epochs", "1", "--train-images", "64", "--val-images", "32",
              "--train-seeds", "0,1", "--jobs", "2"]


def test_pair_end_to_end_with_sibling_luts(cli, tmp_path):
    """search.pair on two devices whose given LUTs are at 16x16 and searched through their 32x32
    siblings (as luts/s8.json -> s8_32.json), at a sweep of two latency weights: searches and
    trainings two at a time, specialize from each search's folder, trainings cached by
    architecture, the Table 5 matrix and the claims at matched accuracy."""
    make_lut(tiny_space(16), path=tmp_path / "a.json")
    make_lut(tiny_space(32), path=tmp_path / "a_32.json")
    make_lut(tiny_space(16), kernel3_cheap, path=tmp_path / "b.json")
    make_lut(tiny_space(32), kernel3_cheap, path=tmp_path / "b_32.json")
    out = tmp_path / "pair"
    args = ["search.pair", "--lut", str(tmp_path / "a.json"), "--lut", str(tmp_path / "b.json"),
            "--latency-weight", "2", "--latency-weight", "8", "--specialize", *QUICK_PAIR,
            "--out", str(out), "--json"]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [Path(p).name for p in result["luts"]] == ["a_32.json", "b_32.json"]
    names = [n["name"] for n in result["networks"]]
    assert names == ["dnas:a_32/w2#0", "dnas:b_32/w2#0", "dnas:a_32/w8#0", "dnas:b_32/w8#0",
                     "spec:a_32->b_32/w2#0", "spec:b_32->a_32/w2#0", "spec:a_32->b_32/w8#0",
                     "spec:b_32->a_32/w8#0"]
    for n in result["networks"]:
        assert set(n["latency_ms"]) == {"a_32", "b_32"} and len(n["top1"]) == 2
    # each specialized network fits the price the other device's own search reached at its weight
    own = {(n["device"], n["setting"]): n for n in result["networks"] if n["origin"] == "dnas"}
    for n in result["networks"]:
        if n["origin"] == "specialize":
            reached = own[(n["device"], n["setting"])]["latency_ms"][n["device"]]
            assert n["latency_ms"][n["device"]] <= reached * (1 + 1e-9)
    # the claim is checked on the accuracy-matched pair: the closest top-1 of the 4 pairs
    assert result["of"] == 1 and len(result["claims"][0]["checks"]) == 2
    first = result["claims"][0]["checks"][0]
    by_name = {n["name"]: n for n in result["networks"]}
    gap = abs(by_name[first["own"]]["top1_mean"] - by_name[first["other"]]["top1_mean"])
    assert gap == min(abs(own[("a_32", u)]["top1_mean"] - own[("b_32", v)]["top1_mean"])
                      for u in ("w2", "w8") for v in ("w2", "w8"))
    # every verdict and margin, recomputed from the printed networks (their prices and top-1s)
    front = [n for n in result["networks"] if n["origin"] == "dnas"]
    for check in result["claims"][0]["checks"]:
        own, other, device = by_name[check["own"]], by_name[check["other"]], check["device"]
        tol = max(own["top1_std"], other["top1_std"])
        gap = own["top1_mean"] - other["top1_mean"]
        speedup = other["latency_ms"][device] / own["latency_ms"][device] - 1
        holds = own["latency_ms"][device] <= other["latency_ms"][device] and gap >= -tol
        assert (check["holds"], check["top1_gap"], check["speedup"]) == \
            (holds, pytest.approx(gap), pytest.approx(speedup))
        assert check["margin"] == (holds and (speedup >= 0.05 or gap >= 0.005))
    assert result["claims"][0]["holds"] == all(c["holds"] for c in result["claims"][0]["checks"])
    robust = result["claims"][0]["within_std"][0]
    assert robust["devices"] == ["a_32", "b_32"]

    def holds_on(a, b, device):
        return a["latency_ms"][device] <= b["latency_ms"][device] and \
            a["top1_mean"] - b["top1_mean"] >= -max(a["top1_std"], b["top1_std"])

    agreeing = [(a, b) for a in front if a["device"] == "a_32" for b in front
                if b["device"] == "b_32"
                and abs(a["top1_mean"] - b["top1_mean"]) <= max(a["top1_std"], b["top1_std"])]
    assert robust["pairs"] == len(agreeing)
    assert robust["holding"] == sum(holds_on(a, b, "a_32") and holds_on(b, a, "b_32")
                                    for a, b in agreeing)
    assert len(result["specialize_vs_dnas"]) == 4
    assert (out / "search_a_w8_seed0" / "specialized_b_32.json").is_file()
    trained = {p.parent.parent.name for p in (out / "train").glob("*/seed*/result.json")}
    unique = {json.dumps(n["arch"]["candidates"]) for n in result["networks"]}
    assert len(trained) == len(unique)  # a network found twice is trained once
    # a re-run reuses every search and training
    again = cli(*args)
    assert again.returncode == 0 and json.loads(again.stdout)["networks"] == result["networks"]


def test_pair_shared_specializes_one_supernet_to_every_device(cli, tmp_path):
    """search.pair --shared: one accuracy-only search, specialized to both LUTs at two relative
    budgets: each device's front comes from the same supernet, each network fits its budget on
    its own LUT, and the claim is checked on the accuracy-matched pair of the two fronts."""
    for name, rule in (("a", None), ("b", kernel3_cheap)):
        make_lut(tiny_space(32), *([rule] if rule else []), path=tmp_path / f"{name}.json")
    out = tmp_path / "shared"
    args = ["search.pair", "--lut", str(tmp_path / "a.json"), "--lut", str(tmp_path / "b.json"),
            "--shared", "--target-rel", "0.4", "--target-rel", "0.8", *QUICK_PAIR,
            "--out", str(out), "--json"]
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert [n["name"] for n in result["networks"]] == [
        "shared:a/rel0.4#0", "shared:b/rel0.4#0", "shared:a/rel0.8#0", "shared:b/rel0.8#0"]
    assert [p.name for p in out.glob("search_*")] == ["search_a_shared_seed0"]
    luts = {stem: load_lut(tmp_path / f"{stem}.json") for stem in ("a", "b")}
    for n in result["networks"]:
        assert n["origin"] == "shared" and len(n["top1"]) == 2
        rel = float(n["setting"][3:])
        mean_ms = reference_ms(luts[n["device"]].layer_table(tiny_space(32)))
        assert n["latency_ms"][n["device"]] <= rel * mean_ms * (1 + 1e-9)
        assert (out / "search_a_shared_seed0" / f"shared_{n['device']}_{n['setting']}.json"
                ).is_file()
    assert result["of"] == 1 and len(result["claims"][0]["checks"]) == 2
    by_name = {n["name"]: n for n in result["networks"]}
    first = result["claims"][0]["checks"][0]
    gap = abs(by_name[first["own"]]["top1_mean"] - by_name[first["other"]]["top1_mean"])
    assert gap == min(abs(by_name[f"shared:a/{u}#0"]["top1_mean"]
                          - by_name[f"shared:b/{v}#0"]["top1_mean"])
                      for u in ("rel0.4", "rel0.8") for v in ("rel0.4", "rel0.8"))
    assert result["unreachable"] == []
    # a budget between the two LUTs' cheapest networks is one more point on one device's front
    fractions = {stem: price_range_ms(t)[0] / reference_ms(t) for stem, t in
                 ((stem, lut.layer_table(tiny_space(32))) for stem, lut in luts.items())}
    low, high = sorted(fractions, key=fractions.get)
    assert fractions[low] < fractions[high]
    between = round((fractions[low] + fractions[high]) / 2, 4)
    wider = cli(*args[:6], "--target-rel", str(between), *args[6:])
    assert wider.returncode == 0, wider.stderr
    widened = json.loads(wider.stdout)
    assert f"shared:{low}/rel{between:g}#0" in [n["name"] for n in widened["networks"]]
    assert len(widened["networks"]) == 5
    assert widened["unreachable"] == [{"lut": high, "target_rel": between}]
    alone = cli(*args[:6], "--target-rel", str(between), *QUICK_PAIR, "--out", str(out))
    assert alone.returncode == 2 and f"no --target-rel is reachable on {high}" in alone.stderr
    for bad, message in ((["--target-rel", "0.4", "--latency-weight", "2"],
                          "without --latency-weight"),
                         ([], "give --target-rel")):
        base = [a for a in args[:7] if a not in ("--target-rel", "0.4")]
        refused = cli(*base, *bad)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
    two = cli("search.pair", "--lut", str(tmp_path / "a.json"), "--lut", str(tmp_path / "b.json"),
              "--target-rel", "0.4", "--target-rel", "0.8")
    assert two.returncode == 2 and "only with --shared" in two.stderr


def test_the_default_budget_is_mobilenet_v2s_price_on_the_lut(cli, tmp_path):
    """search.run with no budget on a LUT that prices MobileNetV2: the target loss at its
    price, said in the plan line and recorded in result.json."""
    out = tmp_path / "s8"
    done = cli("search.run", "--lut", str(ROOT / "luts" / "s8_32.json"), "--out", str(out),
               "--data", "synthetic:160", "--epochs", "1", "--warmup-epochs", "0",
               "--batch-size", "16", "--proxy-width", "0.25", "--eval-images", "32",
               "--no-progress", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    lut = load_lut(ROOT / "luts" / "s8_32.json")
    price = lut.price(load_architecture("mobilenet_v2", resolution=32, num_classes=10)).total_ms
    assert result["budget"] == f"the price of mobilenet_v2 ({price:.3f} ms)"
    assert result["latency_ms"] > 0 and 0 <= result["skips"] <= 22
