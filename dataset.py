"""MNIST: shipped with the package, verified, loaded once into tensors, served in batches.

The four IDX files travel gzip-compressed in data/bundle/. On first use they are
decompressed into torchvision's layout (<data-dir>/MNIST/raw/*-ubyte), checked
against the SHA-256 sums below and read with torchvision.datasets.MNIST.
"""
import gzip
import hashlib
import math
import os
import tempfile
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLE_DIR = DEFAULT_DATA_DIR / "bundle"

# Mean and std of the 60,000 training images, pixels scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
# What a blank (0) pixel becomes after normalization.
BACKGROUND = (0.0 - MNIST_MEAN) / MNIST_STD

# SHA-256 of the decompressed files, identical to the original MNIST distribution.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


class DataError(Exception):
    """The data is missing, unreadable or corrupt. The message names the file and the fix."""


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _extract(archive, target):
    """Decompress archive into target; target appears only once whole and verified."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out, gzip.open(archive, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
        if sha256_of(tmp) != SHA256[target.name]:
            raise DataError(f"{archive} decompresses to the wrong SHA-256: the file is corrupt; "
                            f"restore it with `git checkout -- {archive.name}` in {archive.parent}")
        os.replace(tmp, target)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{archive} is truncated or not gzip ({e}); "
                        f"restore it with `git checkout -- {archive.name}` in {archive.parent}") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _download(data_dir, bundle_dir):
    """Fallback when the bundle is gone: torchvision's own download, which checks its MD5s."""
    try:
        for train in (True, False):
            datasets.MNIST(data_dir, train=train, download=True)
    except Exception as e:
        raise DataError(f"MNIST is not bundled in {bundle_dir} and its download failed ({e}); "
                        f"copy the four *-ubyte.gz files into {bundle_dir}") from e


def prepare_mnist(data_dir=DEFAULT_DATA_DIR, bundle_dir=None):
    """Make <data_dir>/MNIST/raw hold the four MNIST files, each matching its SHA-256."""
    data_dir, bundle_dir = Path(data_dir), Path(bundle_dir or BUNDLE_DIR)
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist; create it or pass another --data-dir")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise DataError(f"data directory {data_dir} cannot be read; fix its permissions or pass another --data-dir")
    raw = data_dir / "MNIST" / "raw"
    missing = [name for name in SHA256 if not (raw / name).exists()]
    if missing and all((bundle_dir / f"{name}.gz").exists() for name in missing):
        try:
            raw.mkdir(parents=True, exist_ok=True)
            for name in missing:
                _extract(bundle_dir / f"{name}.gz", raw / name)
        except OSError as e:
            raise DataError(f"cannot write the extracted data to {raw} ({e.strerror}); "
                            f"pass a writable --data-dir") from e
    elif missing:
        _download(data_dir, bundle_dir)
    for name, expected in SHA256.items():
        path = raw / name
        try:
            actual = sha256_of(path)
        except OSError as e:
            raise DataError(f"cannot read {path} ({e.strerror}); delete it and rerun to re-extract it") from e
        if actual != expected:
            raise DataError(f"{path} fails its SHA-256 check (truncated or corrupt); "
                            f"delete it and rerun to re-extract it from {bundle_dir}")
    return raw


def load_split(data_dir, train, device="cpu"):
    """One split as (images, labels): images (N, 1, 28, 28) float32, normalized once, on device."""
    split = datasets.MNIST(data_dir, train=train, download=False)
    images = split.data.to(device=device, dtype=torch.float32).div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
    return images.unsqueeze(1), split.targets.to(device)


def load_mnist(data_dir=DEFAULT_DATA_DIR, device="cpu"):
    """(train_images, train_labels, test_images, test_labels), verified and on device."""
    prepare_mnist(data_dir)
    return (*load_split(data_dir, True, device), *load_split(data_dir, False, device))


def validation_split(train_images, train_labels, size=10_000):
    """The training set less its last `size` images, then those images as a validation set."""
    return train_images[:-size], train_labels[:-size], train_images[-size:], train_labels[-size:]


def random_affine(images, degrees=5.0, translate=0.05, scale=(0.95, 1.05)):
    """Rotate, shift and scale each image by its own random draw. Never flips: a flipped 2 is no digit.

    images: (N, C, H, W) normalized; translate is a fraction of the image size. The ranges are mild on
    purpose: in a 10-epoch budget, 10 degrees and 10% shifts left LeNet5_Regularized and the MLP underfit.
    """
    n, device = images.shape[0], images.device
    angle = torch.empty(n, device=device).uniform_(-degrees, degrees).deg2rad_()
    zoom = torch.empty(n, device=device).uniform_(*scale)
    # affine_grid's coordinates span [-1, 1], so a shift of t image widths is 2t.
    shift = torch.empty(n, 2, device=device).uniform_(-translate, translate).mul_(2)
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # grid_sample pads with 0, which after normalization is mid-grey, not blank: shift blank to 0 first.
    return F.grid_sample(images - BACKGROUND, grid, align_corners=False) + BACKGROUND


class TensorLoader:
    """A DataLoader over tensors already on the device: one randperm per epoch, batches by slicing."""

    def __init__(self, images, labels, batch_size, shuffle=False, augment=False):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self):
        n = len(self.images)
        order = torch.randperm(n, device=self.images.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
            images = self.images[index]
            yield (random_affine(images) if self.augment else images), self.labels[index]
