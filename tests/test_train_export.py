"""search.train and search.export on a tiny architecture (16x16, one layer per stage)."""

import json

import pytest
import torch

from fbnet.arch import Architecture, save_architecture
from fbnet.model import FBNet
from fbnet.space import SpaceConfig
from search.data import load_data
from search.protocols.standalone import StandaloneRecipe, StandaloneTrainer
from search.networks.training import Recipe, load_checkpoint, train

TINY_CANDIDATES = ("k3_e1", "k3_e1_g2", "k5_e3", "skip", "k3_e6", "k5_e1_g2", "k5_e6")


def tiny_arch(num_classes: int = 10) -> Architecture:
    space = SpaceConfig.create(16, stem_channels=8, stage_widths=(8, 8, 16, 16, 24, 24, 32),
                               stage_depths=(1,) * 7, head_channels=32, num_classes=num_classes)
    return Architecture("tiny", space, TINY_CANDIDATES)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch run of the train CLI on synthetic data, shared by the export tests."""
    from tests.conftest import run_cli

    root = tmp_path_factory.mktemp("train")
    save_architecture(tiny_arch(), root / "arch.json")
    out = root / "run"
    args = ["--arch", str(root / "arch.json"), "--data", "synthetic:80", "--resolution", "16",
            "--out", str(out), "--batch-size", "16", "--max-steps", "3"]
    first = run_cli("search.train", *args, "--epochs", "1")
    assert first.returncode == 0, first.stderr
    return root, out, args


def test_train_cli_writes_run_and_resumes(trained, capsys):
    from search.train import main

    root, out, args = trained
    result = json.loads((out / "result.json").read_text())
    # 3 steps teach nothing that could be bounded; the recorded top-1 must be the checkpoint's
    # own, counted here by hand on the same validation split
    model = FBNet(tiny_arch())
    model.load_state_dict(load_checkpoint(out / "checkpoint.pt")["model"])
    val = load_data("synthetic:80", resolution=16).val
    images = torch.stack([val[i][0] for i in range(len(val))])
    labels = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        correct = int((model.eval()(images).argmax(1) == labels).sum())
    assert result["epochs_done"] == 1 and result["top1"] == correct / len(val)
    assert result["arch"]["candidates"] == list(TINY_CANDIDATES)
    assert main([*args, "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and err.count("\n") == 1
    assert main([*args, "--epochs", "2", "--resume", "--json"]) == 0
    result2 = json.loads(capsys.readouterr().out)
    assert result2["epochs_done"] == 2
    assert result2["history"][0] == result["history"][0]  # epoch 1 kept, not redone
    assert len((out / "log.jsonl").read_text().splitlines()) == 2


def test_interrupted_then_resumed_training_equals_uninterrupted(tmp_path):
    data = load_data("synthetic:64", resolution=16)
    recipe = Recipe(epochs=2, batch_size=16, max_steps_per_epoch=2, lr=0.05)
    arch = tiny_arch()
    train(arch, data, recipe, tmp_path / "straight", progress=False, log=lambda _: None)

    def ctrl_c_after_epoch_1(message):  # called right after epoch 1 is checkpointed
        if message.startswith("epoch   1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(arch, data, recipe, tmp_path / "split", progress=False, log=ctrl_c_after_epoch_1)
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["epoch"] == 1
    train(arch, data, recipe, tmp_path / "split", resume=True, progress=False, log=lambda _: None)
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert b["epoch"] == 2
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert [h["val_top1"] for h in a["history"]] == [h["val_top1"] for h in b["history"]]


def test_trainings_side_by_side_equal_trainings_one_at_a_time(tmp_path):
    """The stand-alone trainer's worker processes give the same top-1 as one process, in the
    order asked, and a (name, seed) asked twice is trained once."""
    space = SpaceConfig.create(32, stem_channels=8, stage_widths=(8, 8, 16, 16, 24, 24, 32),
                               stage_depths=(1,) * 7, head_channels=32)
    a = Architecture("a", space, TINY_CANDIDATES)
    b = Architecture("b", space, ("k3_e1",) * 7)
    recipe = StandaloneRecipe(data="synthetic:64", epochs=1, train_images=32, val_images=32)
    trainings = [(a, "a", 0), (b, "b", 0), (a, "a", 1), (a, "a", 0)]
    alone = StandaloneTrainer(recipe, tmp_path / "alone").top1_many(trainings, jobs=1)
    pooled = StandaloneTrainer(recipe, tmp_path / "pooled").top1_many(trainings, jobs=2)
    assert pooled == alone and alone[0] == alone[3]
    assert len(list((tmp_path / "pooled").glob("*/seed*/result.json"))) == 3


def test_recipe_schedules():
    cos = Recipe(epochs=10, lr=0.1)
    assert cos.lr_at(0, 0, 10) == pytest.approx(0.1)
    assert cos.lr_at(5, 0, 10) == pytest.approx(0.05)
    assert cos.lr_at(9, 9, 10) < 0.01
    step = Recipe(epochs=8, lr=0.1, schedule="step")
    assert [round(step.lr_at(e, 0, 10), 6) for e in (0, 2, 4, 6)] == [0.1, 0.01, 0.001, 0.0001]
    warm = Recipe(epochs=10, lr=0.1, warmup_epochs=2)
    assert warm.lr_at(0, 0, 10) < warm.lr_at(1, 0, 10) < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("runtime, dtype", [("executorch", "fp32"), ("executorch", "int8"),
                                            ("torchscript", "fp32")])
def test_export_runs_in_runtime_and_matches_pytorch(trained, capsys, runtime, dtype):
    from search.export import main

    root, out, _ = trained
    suffix = ".pte" if runtime == "executorch" else ".ptl"
    target = root / f"model_{runtime}_{dtype}{suffix}"
    code = main(["--weights", str(out / "checkpoint.pt"), "--out", str(target), "--runtime",
                 runtime, "--dtype", dtype, "--calibration-samples", "8", "--check-inputs", "4",
                 "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    report = json.loads(captured.out)
    assert target.stat().st_size == report["size_bytes"] > 0
    check = report["check"]
    assert check["passed"] and check["max_rel_diff"] <= check["tolerance"]
    assert check["tolerance"] == (1e-3 if dtype == "fp32" else 0.1)
    assert check["inputs"] == 4
    assert json.loads(target.with_name(target.name + ".json").read_text())["dtype"] == dtype
    if dtype == "fp32":
        # the same float graph: only summation order differs (float32 rounding, ~1e-7)
        assert check["max_rel_diff"] < 1e-5 and check["top1_agreement"] == 1.0
    else:
        # the runtime and PyTorch run the same quantized graph: they may differ by an output
        # rounding step (1/127 of the logit range; 0 to 0.8e-2 observed); int8 vs fp32 by the
        # quantization error (0.55e-2 observed); 3 steps of the int8 scale bound both
        assert report["calibration"] == "synthetic:80"
        assert check["max_rel_diff"] <= 3 / 127
        assert check["vs_fp32_max_rel_diff"] <= 3 / 127
        # an untrained net's logits can nearly tie: allow one flip among the 4 inputs
        assert check["top1_agreement"] >= 0.75 and check["vs_fp32_top1_agreement"] >= 0.75


@pytest.mark.parametrize("extra, message", [
    (["--runtime", "torchscript"], "writes a .ptl file"),
    (["--dtype", "int8", "--runtime", "torchscript", "--out", "x.ptl"], "int8 export is for"),
    (["--arch", "fbnet_b"], "differs from the architecture"),
])
def test_export_user_errors(trained, capsys, extra, message):
    from search.export import main

    root, out, _ = trained
    args = ["--weights", str(out / "checkpoint.pt"), *extra]
    if "--out" not in extra:
        args += ["--out", str(root / "bad.pte")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0, err


def test_export_int8_without_data_is_a_user_error(tmp_path, capsys):
    from search.export import main

    save_architecture(tiny_arch(), tmp_path / "arch.json")
    assert main(["--arch", str(tmp_path / "arch.json"), "--dtype", "int8",
                 "--out", str(tmp_path / "m.pte")]) == 2
    assert "calibration data" in capsys.readouterr().err
