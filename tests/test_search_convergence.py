"""The convergence criterion, and what search.run reports and refuses around it."""

import json
import math

import pytest
import torch

from search.core.convergence import (MAX_UNSTABLE_LAYERS_FRACTION, MIN_MEDIAN_ARGMAX_PROB, Convergence,
                                assess, layers_changed)
from test_search import make_lut, tiny_space

FAST = ["--data", "synthetic:200", "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "16",
        "--no-progress", "--resolution", "16"]


def test_uniform_theta_cannot_converge():
    theta = torch.zeros(22, 9)
    report = assess(theta, [[0] * 22] * 100)
    assert report.median_argmax_prob == pytest.approx(1 / 9)
    assert report.entropy_nats == pytest.approx(math.log(9), rel=1e-6)
    assert report.stable and not report.decisive and not report.converged


def test_decisive_and_stable_theta_converges():
    theta = torch.zeros(22, 9)
    theta[:, 3] = math.log(8) + 0.01  # P(argmax) just above 0.5 in every layer
    report = assess(theta, [[3] * 22] * 50)
    assert report.median_argmax_prob > MIN_MEDIAN_ARGMAX_PROB and report.converged
    assert "converged" in report.describe() and "Criterion" in report.describe()


def test_layers_changed_counts_the_last_fifth_of_the_steps():
    trace = [[0, 0, 0]] * 70 + [[1, 0, 0]] * 20 + [[1, 2, 0]] * 10
    # 100 theta steps: the window is the last 20 and the argmax just before them; layer 0
    # flipped at step 71 (outside), layer 1 at step 91 (inside)
    assert layers_changed(trace) == 1
    assert layers_changed([[0, 0]] * 4 + [[1, 1]]) == 2  # a flip at the last step counts
    assert layers_changed([]) is None


def test_unstable_theta_is_not_converged():
    theta = torch.zeros(22, 9)
    theta[:, 0] = 5.0
    trace = [[0] * 22] * 50 + [[1] * 22] * 5 + [[0] * 22] * 5
    report = assess(theta, trace)
    assert report.decisive and not report.stable and not report.converged
    assert "layers still changing" in report.describe()
    assert Convergence(0.6, 0.3, 1.0, 22, 2, 100).converged  # 2 of 22 is within 10%
    assert not Convergence(0.6, 0.3, 1.0, 22, 3, 100).converged


@pytest.fixture
def lut16(tmp_path):
    make_lut(tiny_space(16), path=tmp_path / "dev_16.json")
    return tmp_path / "dev_16.json"


def test_search_reports_convergence_and_the_lut_it_used(cli, lut16, tmp_path):
    out = tmp_path / "run"
    done = cli("search.run", "--lut", str(lut16), "--out", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    assert "Criterion: median P(argmax) >= 0.5" in done.stdout
    assert f"priced with {lut16}" in done.stdout
    # no budget given and a LUT that does not price MobileNetV2: the paper's loss, announced
    assert "does not price mobilenet_v2, so the search uses the fbnet loss" in done.stdout
    assert "layers skip" in done.stdout
    assert "this architecture alone" in done.stdout and "the supernet" in done.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["lut"] == str(lut16)
    conv = result["convergence"]
    assert set(conv) >= {"median_argmax_prob", "min_argmax_prob", "entropy_nats",
                         "layers_changed_last", "converged"}
    # the verdict follows the criterion, from the probabilities the search wrote
    probs = [layer["probs"] for layer in json.loads((out / "theta.json").read_text())["layers"]]
    top = sorted(max(p) for p in probs)
    median = (top[len(top) // 2] + top[(len(top) - 1) // 2]) / 2
    assert conv["median_argmax_prob"] == pytest.approx(median, abs=1e-6)
    assert conv["min_argmax_prob"] == pytest.approx(top[0], abs=1e-6)
    stable = conv["layers_changed_last"] is not None and \
        conv["layers_changed_last"] <= MAX_UNSTABLE_LAYERS_FRACTION * len(probs)
    assert conv["converged"] == (median >= MIN_MEDIAN_ARGMAX_PROB and stable)
    assert ("NOT converged" in done.stdout) != conv["converged"]
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    for key in ("argmax_prob_median", "argmax_prob_min", "argmax_changed_layers",
                "val_top1_argmax", "val_top1_supernet", "theta_entropy"):
        assert rows[-1][key] is not None, key
    # one theta step per weight step in the search epoch, all in the trace
    assert rows[-1]["theta_steps"] > 0 and rows[0]["theta_steps"] == 0


def test_out_dir_with_another_runs_files_is_refused(cli, lut16, tmp_path):
    out = tmp_path / "other"
    out.mkdir()
    (out / "log.jsonl").write_text('{"epoch": 1}\n')
    done = cli("search.run", "--lut", str(lut16), "--out", str(out), *FAST)
    assert done.returncode == 2 and "already holds a search's files (log.jsonl)" in done.stderr
    assert done.stderr.count("\n") == 1
    assert (out / "log.jsonl").read_text() == '{"epoch": 1}\n'


def test_budget_below_the_cheapest_network_is_one_line(cli, lut16, tmp_path):
    done = cli("search.run", "--lut", str(lut16), "--out", str(tmp_path / "b"), *FAST,
               "--target-ms", "0.0001")
    assert done.returncode == 2 and "below the cheapest architecture" in done.stderr
    assert done.stderr.count("\n") == 1


def test_recalibrated_bn_scores_one_architecture_and_restores_the_supernet():
    from search.core.supernet import SuperNet, recalibrated_bn

    torch.manual_seed(0)
    net = SuperNet(tiny_space(16))
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    images = [torch.randn(8, 3, 16, 16) + 3.0 for _ in range(3)]  # far from the init stats
    cands = [0] * tiny_space(16).num_layers
    with recalibrated_bn(net, cands, images):
        assert not net.training
        stem_bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
        assert stem_bn.running_mean.abs().sum() > 0  # re-estimated on the shifted images
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not net.training
