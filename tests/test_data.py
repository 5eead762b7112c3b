import pickle

import numpy as np
import pytest
import torch

from fbnet.errors import UserError
from search.data import load_data, split_train


def test_digits_default_is_32px_3ch_normalized_with_fixed_split():
    a = load_data("digits")
    b = load_data("digits", seed=7)
    assert (a.num_classes, a.resolution) == (10, 32)
    assert len(a.train) + len(a.val) == 1797
    assert len(a.val) == pytest.approx(1797 * 0.2, abs=10)
    x, y = a.val[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    # the split does not depend on the seed, so top-1 numbers stay comparable
    assert torch.equal(a.val.images, b.val.images)
    assert abs(a.val.images.mean().item()) < 0.2
    assert set(a.val.labels.tolist()) == set(range(10))


def test_train_augmentation_shifts_but_val_does_not():
    data = load_data("digits", resolution=16)
    torch.manual_seed(0)
    views = [data.train[3][0] for _ in range(8)]
    assert any(not torch.equal(views[0], v) for v in views[1:])
    assert torch.equal(data.val[3][0], data.val[3][0])


def test_synthetic_sizes_and_resolution():
    data = load_data("synthetic:40", resolution=24)
    assert len(data.train) + len(data.val) == 40 and data.resolution == 24
    assert data.train[0][0].shape == (3, 24, 24)


def test_split_train_is_deterministic_disjoint_and_complete():
    data = load_data("synthetic:100")
    a, b = split_train(data.train, 0.8, seed=1)
    a2, _ = split_train(data.train, 0.8, seed=1)
    assert len(a) == 64 and len(b) == 16
    assert a.indices == a2.indices
    assert sorted(a.indices + b.indices) == list(range(80))
    with pytest.raises(UserError):
        split_train(data.train, 1.0, seed=0)


def test_cifar10_pickle_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 6) for i in range(1, 6)), ("test_batch", 4)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    data = load_data(f"cifar10:{tmp_path}")  # the parent folder works too
    assert (len(data.train), len(data.val), data.num_classes) == (30, 4, 10)
    assert data.val[0][0].shape == (3, 32, 32)


def test_imagefolder_resizes_and_splits(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.new("RGB", (20 + i, 30), (i * 40, 10, 200)).save(tmp_path / cls / f"{i}.png")
    data = load_data(f"imagefolder:{tmp_path}", resolution=16)
    assert data.num_classes == 2 and len(data.train) == 8 and len(data.val) == 2
    assert data.train[0][0].shape == (3, 16, 16)


@pytest.mark.parametrize("spec, message", [
    ("mnist", "unknown data spec"),
    ("synthetic:x", "whole number"),
    ("cifar10:", "give a folder"),
    ("cifar10:/nonexistent/cifar", "does not exist"),
    ("imagefolder:/nonexistent/imgs", "does not exist"),
])
def test_bad_specs_are_one_line_user_errors(spec, message):
    with pytest.raises(UserError, match=message) as err:
        load_data(spec)
    assert "\n" not in str(err.value)


def test_empty_imagefolder_and_broken_cifar(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class subfolders"):
        load_data(f"imagefolder:{tmp_path / 'empty'}")
    broken = tmp_path / "cifar"
    broken.mkdir()
    (broken / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a CIFAR-10 python batch"):
        load_data(f"cifar10:{broken}")
