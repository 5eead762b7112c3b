"""benchmarks/supernet_ranking.py: a real (tiny) search's supernet scores finished trainings of
its space (one network per architecture and recipe, its training seeds averaged); trainings of
another space or unfinished ones are left out."""

import importlib
import json

import pytest
import torch

from fbnet.arch import Architecture, save_architecture
from fbnet.errors import UserError
from search.run import main as search_main
from search.runs import SearchRun, TrainRun
from test_search import make_lut, tiny_space

from conftest import ROOT


@pytest.fixture
def ranking(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    return importlib.import_module("supernet_ranking")


def _trained(root, arch, top1, recipe="tiny"):
    run = TrainRun(root / arch.name)
    run.root.mkdir(parents=True)
    save_architecture(arch, run.arch)
    run.result.write_text(json.dumps({"top1": top1, "recipe": {"name": recipe}}))


def test_a_supernet_ranks_the_trainings_of_its_space(tmp_path, ranking):
    threads = torch.get_num_threads()
    try:
        make_lut(tiny_space(16), path=tmp_path / "dev_16.json")
        search = tmp_path / "search" / "seed0"
        assert search_main(["--lut", str(tmp_path / "dev_16.json"), "--resolution", "16",
                            "--data", "synthetic:200", "--epochs", "2", "--warmup-epochs", "1",
                            "--batch-size", "16", "--no-progress", "--out", str(search)]) == 0
    finally:
        torch.set_num_threads(threads)
    found = json.loads(SearchRun(search).result.read_text())["arch"]["candidates"]
    space = tiny_space(16)
    trained = tmp_path / "train"
    nets = [Architecture("found", space, tuple(found)),
            Architecture("all_k3", space, ("k3_e1",) * space.num_layers),
            Architecture("all_k5", space, ("k5_e6",) * space.num_layers)]
    for arch, top1 in zip(nets, (0.9, 0.8, 0.7)):
        _trained(trained, arch, top1)
    # the same network and recipe trained with another seed: one network, the mean top-1
    _trained(trained, Architecture("all_k3_seed1", space, ("k3_e1",) * space.num_layers), 0.9)
    _trained(trained, Architecture("elsewhere", tiny_space(32), ("k3_e1",) * tiny_space(32).num_layers), 0.5)
    _trained(trained, Architecture("other_recipe", space, ("k3_e3",) * space.num_layers), 0.6,
             recipe="another")
    (trained / "unfinished").mkdir()

    rankings, unscored = ranking.run(trained, tmp_path / "search", val_images=64,
                                     log=lambda msg: None)
    assert unscored == ["elsewhere", "other_recipe"]  # alone in its recipe: nothing to rank
    (r,) = rankings
    assert r.recipe == "tiny" and r.networks == ["all_k3", "all_k5", "found"]
    assert r.trained_top1 == pytest.approx([0.85, 0.7, 0.9])
    assert all(0.0 <= s <= 1.0 for s in r.shared_weights_top1)
    assert max(r.theta_score) == r.theta_score[2]  # the search's own argmax, by construction
    assert r.tau_theta is not None and -1.0 <= r.tau_theta <= 1.0


def test_missing_folders_are_one_line(tmp_path, ranking):
    with pytest.raises(UserError, match="--val-images 0"):
        ranking.run(tmp_path, tmp_path, 0, print)
    with pytest.raises(UserError, match="no folder"):
        ranking.run(tmp_path / "none", tmp_path, 64, print)
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="0 finished trainings"):
        ranking.run(tmp_path / "train", tmp_path, 64, print)
