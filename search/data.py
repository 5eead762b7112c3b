"""Datasets for the search and for training found networks, from one spec string.

Specs (the `--data` flag of search.run and search.train):

  fashion-mnist[:DIR]  Fashion-MNIST (Zalando; 60000 train / 10000 val 28x28 grayscale images of
                       10 clothing classes), from the four standard IDX files in DIR, gzipped or
                       not. DIR defaults to /usr/share/datasets/fashion-mnist, where Debian's
                       package `dataset-fashion-mnist` puts them. Zero-padded to 32x32 (resized
                       for any other --resolution), 3 channels. The default dataset of the search.
  digits               scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes),
                       upsampled to 32x32, 3 channels; fixed stratified 80/20 train/val split.
                       Tiny and easy (every network reaches 93-98%): for fast tests.
  cifar10:PATH         the python-pickle CIFAR-10 (`cifar-10-batches-py`, or its parent folder);
                       50000 train / 10000 val at 32x32.
  imagefolder:PATH     one subfolder of images per class. With PATH/train and PATH/val those are
                       the splits; otherwise a fixed stratified 80/20 split. Images are resized
                       to --resolution (default 224) as they are read.
  synthetic[:N]        N random images (default 512) of 10 classes, each class a fixed pattern
                       plus noise: learnable, for smoke tests.

Every dataset yields (image, label): a normalized float (C, H, W) tensor and an int. Train
splits add light augmentation (random shifts; horizontal flips where the classes allow it).
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset, Subset

from fbnet.errors import UserError

DATA_SPECS = ("fashion-mnist[:DIR]", "digits", "cifar10:PATH", "imagefolder:PATH", "synthetic[:N]")
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
DEFAULT_DATA = "fashion-mnist"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
# (split, images file, labels file) as the dataset's authors name them
FASHION_MNIST_FILES = (("train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                       ("val", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
# pixel mean and std of the 60000 training images (0..1 scale)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
# The digits split never changes with --seed, so top-1 numbers stay comparable across runs.
DIGITS_SPLIT_SEED = 0


@dataclass
class DataBundle:
    train: Dataset  # (C, H, W) float tensors, normalized; labels int
    val: Dataset
    num_classes: int
    resolution: int
    name: str

    def describe(self) -> str:
        return (f"{self.name}: {len(self.train)} train / {len(self.val)} val images, "
                f"{self.num_classes} classes, {self.resolution}x{self.resolution}")


@dataclass(frozen=True)
class Augment:
    """Light train-time augmentation: shift by up to `shift` pixels (zero padding), maybe flip."""

    shift: int = 0
    hflip: bool = False

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.shift:
            s = self.shift
            _, h, w = image.shape
            padded = F.pad(image, (s, s, s, s))
            dy, dx = torch.randint(0, 2 * s + 1, (2,)).tolist()
            image = padded[:, dy:dy + h, dx:dx + w]
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image


class TensorImages(Dataset):
    """Images held in memory as one normalized (N, C, H, W) tensor. Grayscale images are held
    with one channel and repeated to `channels` on access (a third of the memory)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: Augment | None = None,
                 channels: int | None = None):
        self.images, self.labels, self.augment = images, labels, augment
        self.channels = channels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = self.images[i]
        if self.augment is not None:
            image = self.augment(image)
        if self.channels is not None and image.shape[0] != self.channels:
            image = image.expand(self.channels, -1, -1).contiguous()
        return image, int(self.labels[i])


class ImageFiles(Dataset):
    """Images read from disk on access (PIL), resized to resolution x resolution."""

    def __init__(self, files: list[Path], labels: list[int], resolution: int,
                 augment: Augment | None = None):
        self.files, self.labels = files, labels
        self.resolution, self.augment = resolution, augment
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files[i]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB").resize((self.resolution, self.resolution),
                                                Image.Resampling.BILINEAR)
                array = np.asarray(img, dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError) as err:
            raise UserError(f"cannot read image {path} ({err}); remove or replace it") from None
        image = (torch.from_numpy(array).permute(2, 0, 1) - self._mean) / self._std
        if self.augment is not None:
            image = self.augment(image)
        return image, self.labels[i]


def _normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - m) / s


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear",
                         align_corners=False)


def _stratified_split(labels: np.ndarray, val_fraction: float, seed: int):
    """Indices (train, val): `val_fraction` of every class goes to val, at least one each."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, int(round(len(idx) * val_fraction))) if len(idx) > 1 else 0
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return sorted(train), sorted(val)


# --- the datasets ------------------------------------------------------------------------------

def _digits(resolution: int) -> DataBundle:
    from sklearn.datasets import load_digits  # a second to load; only this dataset needs it

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    images = _resize(images, resolution).expand(-1, 3, -1, -1)
    mean, std = images.mean().item(), images.std().item()
    images = ((images - mean) / std).contiguous()
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, val_idx = _stratified_split(digits.target, 0.2, DIGITS_SPLIT_SEED)
    # a digit is not a digit mirrored: shifts only, by 1/8 of the image (one source pixel)
    augment = Augment(shift=max(1, resolution // 8))
    return DataBundle(TensorImages(images[train_idx], labels[train_idx], augment),
                      TensorImages(images[val_idx], labels[val_idx]), 10, resolution, "digits")


def _fashion_file(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    files = ", ".join(f"{im}[.gz] {lb}[.gz]" for _, im, lb in FASHION_MNIST_FILES)
    if not folder.is_dir():
        raise UserError(f"Fashion-MNIST folder {folder} does not exist; install the Debian "
                        f"package {FASHION_MNIST_PACKAGE} (apt-get install {FASHION_MNIST_PACKAGE}) "
                        f"or place the four IDX files ({files}) in a folder and pass "
                        "--data fashion-mnist:DIR")
    raise UserError(f"{folder} lacks the Fashion-MNIST file {name}[.gz]; it needs all four IDX "
                    f"files ({files}); reinstall {FASHION_MNIST_PACKAGE} or copy them there")


def read_idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST format) with `dims` dimensions, as uint8."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise UserError(f"cannot read {path} ({err}); the file is corrupt: reinstall "
                        f"{FASHION_MNIST_PACKAGE} or copy it again") from None
    header = 4 + 4 * dims
    if len(raw) < header or raw[:3] != b"\0\0\x08" or raw[3] != dims:
        raise UserError(f"{path} is not a {dims}-dimensional IDX file of unsigned bytes (bad "
                        "header); reinstall the dataset or copy the file again")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise UserError(f"{path} holds {len(raw)} bytes but its header promises {expected} "
                        f"(shape {'x'.join(map(str, shape))}); the file is truncated or corrupt: "
                        "copy it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _fashion_mnist(folder: Path, resolution: int) -> DataBundle:
    splits = {}
    for split, images_name, labels_name in FASHION_MNIST_FILES:
        images = read_idx(_fashion_file(folder, images_name), 3)
        labels = read_idx(_fashion_file(folder, labels_name), 1)
        if len(images) != len(labels) or images.shape[1:] != (28, 28) or labels.max() > 9:
            raise UserError(f"{folder}: {images_name} and {labels_name} do not form a "
                            "Fashion-MNIST split (28x28 images, one label 0-9 each); "
                            "reinstall the dataset")
        x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
        # 28 -> 32 by zero padding keeps every pixel exact; other sizes resize
        x = F.pad(x, (2, 2, 2, 2)) if resolution == 32 else _resize(x, resolution)
        x = ((x - FASHION_MNIST_MEAN) / FASHION_MNIST_STD).contiguous()
        splits[split] = (x, torch.from_numpy(labels.astype(np.int64)))
    # clothes stay clothes mirrored; shifts by 1/16 of the image
    augment = Augment(shift=max(1, resolution // 16), hflip=True)
    return DataBundle(TensorImages(*splits["train"], augment, channels=3),
                      TensorImages(*splits["val"], channels=3), 10, resolution,
                      f"fashion-mnist:{folder}")


def _cifar_folder(path: Path) -> Path:
    for candidate in (path, path / "cifar-10-batches-py"):
        if (candidate / "data_batch_1").is_file():
            return candidate
    if not path.exists():
        raise UserError(f"CIFAR-10 folder {path} does not exist; give the folder that holds "
                        "data_batch_1..5 and test_batch (cifar-10-batches-py)")
    raise UserError(f"{path} has no data_batch_1; give the cifar-10-batches-py folder of the "
                    "python version of CIFAR-10")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise UserError(f"CIFAR-10 file {path} is missing; re-extract cifar-10-python.tar.gz")
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
        raise UserError(f"{path} is not a CIFAR-10 python batch ({err!r}); re-extract "
                        "cifar-10-python.tar.gz") from None
    return data, labels


def _cifar10(path: Path, resolution: int) -> DataBundle:
    folder = _cifar_folder(path)
    parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    train_x = np.concatenate([p[0] for p in parts])
    train_y = np.concatenate([p[1] for p in parts])
    val_x, val_y = _read_cifar_batch(folder / "test_batch")

    def prepare(x: np.ndarray) -> torch.Tensor:
        images = torch.from_numpy(x).float().div_(255.0)
        return _normalize(_resize(images, resolution), CIFAR_MEAN, CIFAR_STD).contiguous()

    augment = Augment(shift=max(1, resolution // 8), hflip=True)
    return DataBundle(TensorImages(prepare(train_x), torch.from_numpy(train_y), augment),
                      TensorImages(prepare(val_x), torch.from_numpy(val_y)), 10, resolution,
                      f"cifar10:{folder}")


def _class_files(root: Path) -> dict[str, list[Path]]:
    classes = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.rglob("*")
                       if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        if files:
            classes[sub.name] = files
    return classes


def _imagefolder(path: Path, resolution: int) -> DataBundle:
    if not path.is_dir():
        raise UserError(f"image folder {path} does not exist; give a folder with one subfolder "
                        "of images per class")
    augment = Augment(shift=max(1, resolution // 16), hflip=True)
    if (path / "train").is_dir() and (path / "val").is_dir():
        train_cls, val_cls = _class_files(path / "train"), _class_files(path / "val")
        if not train_cls or not val_cls:
            raise UserError(f"{path}/train or {path}/val has no class subfolders with images "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
        names = sorted(train_cls)
        extra = sorted(set(val_cls) - set(names))
        if extra:
            raise UserError(f"{path}/val has classes missing from train: {', '.join(extra[:5])}")
        index = {n: i for i, n in enumerate(names)}

        def flat(cls):
            pairs = [(f, index[n]) for n in sorted(cls) for f in cls[n]]
            return [f for f, _ in pairs], [y for _, y in pairs]

        (tf, ty), (vf, vy) = flat(train_cls), flat(val_cls)
    else:
        classes = _class_files(path)
        if not classes:
            raise UserError(f"{path} has no class subfolders with images "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS))}); one subfolder per class")
        names = sorted(classes)
        files = [f for n in names for f in classes[n]]
        labels = np.array([i for i, n in enumerate(names) for _ in classes[n]])
        t_idx, v_idx = _stratified_split(labels, 0.2, 0)
        tf, ty = [files[i] for i in t_idx], [int(labels[i]) for i in t_idx]
        vf, vy = [files[i] for i in v_idx], [int(labels[i]) for i in v_idx]
    if len(names) < 2:
        raise UserError(f"{path} has only one class ({names[0]}); a classifier needs at least two")
    if not vf:
        raise UserError(f"{path} has too few images for a validation split; add more per class")
    return DataBundle(ImageFiles(tf, ty, resolution, augment), ImageFiles(vf, vy, resolution),
                      len(names), resolution, f"imagefolder:{path}")


def _synthetic(n: int, resolution: int, seed: int) -> DataBundle:
    num_classes = 10
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, 3, resolution, resolution, generator=g)
    labels = torch.arange(n) % num_classes
    images = patterns[labels] + 0.5 * torch.randn(n, 3, resolution, resolution, generator=g)
    n_val = max(num_classes, n // 5)
    if n - n_val < num_classes:
        raise UserError(f"synthetic:{n} is too small; use at least {2 * num_classes} images")
    return DataBundle(TensorImages(images[n_val:], labels[n_val:], Augment(shift=1)),
                      TensorImages(images[:n_val], labels[:n_val]), num_classes, resolution,
                      f"synthetic:{n}")


def load_data(spec: str, *, resolution: int | None = None, seed: int = 0) -> DataBundle:
    """The dataset a spec names (see the module docstring); resolution defaults per dataset."""
    kind, sep, arg = spec.partition(":")
    if resolution is not None and resolution < 8:
        raise UserError(f"resolution {resolution} is too small; use e.g. 32 or 224")
    if kind == "fashion-mnist":
        return _fashion_mnist(Path(arg).expanduser() if arg else FASHION_MNIST_DIR,
                              resolution or 32)
    if kind == "digits" and not sep:
        return _digits(resolution or 32)
    if kind == "synthetic":
        if sep and not arg.isdigit():
            raise UserError(f"bad data spec {spec!r}: synthetic:N needs a whole number N")
        return _synthetic(int(arg) if sep else 512, resolution or 32, seed)
    if kind in ("cifar10", "imagefolder"):
        if not arg:
            raise UserError(f"bad data spec {spec!r}: give a folder, e.g. {kind}:/data/{kind}")
        path = Path(arg).expanduser()
        if kind == "cifar10":
            return _cifar10(path, resolution or 32)
        return _imagefolder(path, resolution or 224)
    raise UserError(f"unknown data spec {spec!r}; use one of: {', '.join(DATA_SPECS)}")


def split_train(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split a dataset at random: the first part holds `fraction` of it, the second the rest.

    DNAS uses it to train weights on 80% of the train split and architecture parameters on 20%.
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"split fraction must be between 0 and 1, got {fraction}")
    n = len(ds)
    n_first = int(round(n * fraction))
    if n_first < 1 or n_first >= n:
        raise UserError(f"cannot split {n} examples {fraction:.0%}/{1 - fraction:.0%}: one part "
                        "would be empty; use more data")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(ds, order[:n_first]), Subset(ds, order[n_first:])
