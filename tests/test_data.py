import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from fbnet.errors import UserError
from search.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, load_data, split_train


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


# --- Fashion-MNIST -------------------------------------------------------------------------------

def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


def _fake_fashion(folder, gz: bool, n_train=30, n_val=10):
    """Four IDX files in the standard names: class c's images are filled with 10*c."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        labels = np.arange(n) % 10
        images = np.repeat((labels * 10)[:, None, None], 28, 1).repeat(28, 2)
        _write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
    return folder


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_idx_files_gzipped_or_not(tmp_path, gz):
    data = load_data(f"fashion-mnist:{_fake_fashion(tmp_path / 'f', gz)}")
    assert (len(data.train), len(data.val), data.num_classes, data.resolution) == (30, 10, 10, 32)
    x, y = data.val[3]
    assert x.shape == (3, 32, 32) and y == 3
    # 28x28 zero-padded to 32x32: the 2-pixel border is the normalized value of a 0 pixel
    border = (0 - 0.2860) / 0.3530
    assert x[0, 0, 0].item() == pytest.approx(border, abs=1e-5)
    assert x[0, 16, 16].item() == pytest.approx((30 / 255 - 0.2860) / 0.3530, abs=1e-5)


def test_fashion_mnist_bad_input_is_one_line(tmp_path):
    with pytest.raises(UserError, match="dataset-fashion-mnist"):
        load_data(f"fashion-mnist:{tmp_path / 'absent'}")
    folder = _fake_fashion(tmp_path / "partial", gz=True)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError, match="lacks the Fashion-MNIST file t10k-labels-idx1-ubyte"):
        load_data(f"fashion-mnist:{folder}")
    folder = _fake_fashion(tmp_path / "truncated", gz=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_data(f"fashion-mnist:{folder}")
    folder = _fake_fashion(tmp_path / "corrupt", gz=True)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(UserError, match="corrupt"):
        load_data(f"fashion-mnist:{folder}")
    folder = _fake_fashion(tmp_path / "header", gz=False)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x0d\x03" + bytes(12))
    with pytest.raises(UserError, match="bad header"):
        load_data(f"fashion-mnist:{folder}")


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (make setup installs "
                           "it where apt-get runs as root)")
def test_fashion_mnist_from_debian_package():
    data = load_data("fashion-mnist")
    assert (len(data.train), len(data.val)) == (60000, 10000)
    assert torch.bincount(data.val.labels).tolist() == [1000] * 10
    # the first test labels the dataset's authors publish, and the pixels of those images
    # (their byte sums in t10k-images-idx3-ubyte): images stay aligned with their labels
    assert data.val.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    pixels = data.val.images[:10, 0, 2:30, 2:30] * FASHION_MNIST_STD + FASHION_MNIST_MEAN
    byte_sums = (pixels * 255).round().sum(dim=(1, 2)).int().tolist()
    assert byte_sums == [33456, 100994, 51520, 35377, 62655, 50259, 28111, 47766, 10246, 25492]
    assert float(data.val.images[:, :, :2].abs().max()) == pytest.approx(
        FASHION_MNIST_MEAN / FASHION_MNIST_STD, abs=1e-5)  # the zero padding, normalized
