"""MNIST: shipped with the package, verified, loaded once into tensors, served in batches.

The four IDX files travel gzip-compressed in data/bundle/. On first use they are decompressed into torchvision's
layout (<data-dir>/MNIST/raw/*-ubyte); each load reads them, checks the bytes it read against the SHA-256 sums
below and parses the IDX format itself. torchvision is not imported: it takes seconds to import, more than the
whole load, and is needed only for the download fallback.
"""
import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path

import torch
import torch.nn.functional as F

from mnistlab.errors import UsageError
from mnistlab.files import atomic_write

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


class DataError(UsageError):
    """The data is missing, unreadable or corrupt. The message names the file and the fix."""


def _extract(archive, target):
    """Decompress archive into target; target appears only once whole and verified."""
    def decompress(out):
        digest = hashlib.sha256()
        with gzip.open(archive, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
        if digest.hexdigest() != SHA256[target.name]:
            raise DataError(f"{archive} decompresses to the wrong SHA-256: the file is corrupt; "
                            f"restore it with `git checkout -- {archive.name}` in {archive.parent}")
    try:
        atomic_write(target, decompress)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{archive} is truncated or not gzip ({e}); "
                        f"restore it with `git checkout -- {archive.name}` in {archive.parent}") from e


def _download(data_dir, bundle_dir):
    """Fallback when the bundle is gone: torchvision's own download, which checks its MD5s."""
    from torchvision import datasets
    try:
        for train in (True, False):
            datasets.MNIST(data_dir, train=train, download=True)
    except Exception as e:
        reason = " ".join(str(e).split())  # torchvision's message spans several lines
        raise DataError(f"MNIST is not bundled in {bundle_dir} and its download failed ({reason}); "
                        f"copy the four *-ubyte.gz files into {bundle_dir}") from e


def prepare_mnist(data_dir=DEFAULT_DATA_DIR, bundle_dir=None):
    """Make <data_dir>/MNIST/raw hold the four MNIST files, each matching its SHA-256; returns that folder."""
    read_mnist(data_dir, bundle_dir)
    return Path(data_dir) / "MNIST" / "raw"


def read_mnist(data_dir=DEFAULT_DATA_DIR, bundle_dir=None):
    """The four MNIST files as uint8 tensors of the shapes their headers give, by file name; each file's bytes
    checked against its SHA-256, extracted from the bundle first where missing."""
    data_dir, bundle_dir = Path(data_dir), Path(bundle_dir or BUNDLE_DIR)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} is a file, not a folder; pass a folder as --data-dir")
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist; create it or pass another --data-dir")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise DataError(f"data directory {data_dir} cannot be read; fix its permissions or pass another --data-dir")
    raw = data_dir / "MNIST" / "raw"
    missing = [name for name in SHA256 if not (raw / name).exists()]
    # Written only where the folder is the package's, or MNIST's already, or empty: never among others' files.
    if missing and data_dir.resolve() != DEFAULT_DATA_DIR and not (data_dir / "MNIST").is_dir() and any(
            data_dir.iterdir()):
        raise DataError(f"data directory {data_dir} holds other files and no MNIST/, where MNIST would be extracted; "
                        f"pass an empty folder or one that holds MNIST/ as --data-dir, or drop --data-dir")
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
    return {name: _read_idx(raw / name, bundle_dir) for name in SHA256}


def _read_idx(path, bundle_dir):
    """An IDX file as a uint8 tensor. The bytes are checked before they are parsed, so the header can be trusted."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror}); delete it and rerun to re-extract it") from e
    if hashlib.sha256(data).hexdigest() != SHA256[path.name]:
        raise DataError(f"{path} fails its SHA-256 check (truncated or corrupt); "
                        f"delete it and rerun to re-extract it from {bundle_dir}")
    dims = data[3]  # the header: two zero bytes, the type (8: unsigned byte), the number of dimensions, each size
    shape = struct.unpack(f">{dims}I", data[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).view(shape)


def read_split(train, data_dir=DEFAULT_DATA_DIR):
    """One split as stored: images (N, 28, 28) uint8 and labels (N,) int64."""
    files = read_mnist(data_dir)
    prefix = "train" if train else "t10k"
    return files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"].long()


def load_mnist(data_dir=DEFAULT_DATA_DIR, device="cpu"):
    """(train_images, train_labels, test_images, test_labels), verified and on device; images (N, 1, 28, 28)
    float32, normalized once."""
    files = read_mnist(data_dir)
    data = []
    for prefix in ("train", "t10k"):
        images = files[f"{prefix}-images-idx3-ubyte"].to(device=device, dtype=torch.float32)
        data += [images.div_(255).sub_(MNIST_MEAN).div_(MNIST_STD).unsqueeze(1),
                 files[f"{prefix}-labels-idx1-ubyte"].to(device=device, dtype=torch.long)]
    return tuple(data)


def load_splits(data_dir=DEFAULT_DATA_DIR, device="cpu", validation=False, limit=None):
    """(train images, train labels, eval images, eval labels): the test set, or with validation the last 10,000
    training images held out; limit keeps the first N images of each."""
    data = load_mnist(data_dir, device)
    if validation:
        data = validation_split(*data[:2])
    return tuple(tensor[:limit] for tensor in data) if limit else data


def validation_split(train_images, train_labels, size=10_000):
    """The training set less its last `size` images, then those images as a validation set."""
    return train_images[:-size], train_labels[:-size], train_images[-size:], train_labels[-size:]


def stratified_subset(labels, size, seed=0):
    """Indices of `size` images, each class in its share of labels, drawn with a fixed seed whatever the run's."""
    counts = labels.bincount()
    quota = counts * size // len(labels)
    # Hand the images that flooring left over to the classes with the largest remainders.
    remainders = counts * size % len(labels)
    quota[remainders.argsort(descending=True)[:size - int(quota.sum())]] += 1
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for digit, take in enumerate(quota.tolist()):
        members = (labels == digit).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def affine(images, angle, zoom, shift):
    """Rotate each image by angle (radians), scale it by zoom and shift it by shift (fractions of its size).

    images: (N, C, H, W) normalized; angle and zoom (N,), shift (N, 2) as (x, y). Pixels from outside are blank.
    """
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    # affine_grid's coordinates span [-1, 1], so a shift of t image widths is 2t; the grid maps output to input.
    theta = torch.stack([torch.stack([cos, -sin, -2 * shift[:, 0]], 1),
                         torch.stack([sin, cos, -2 * shift[:, 1]], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # grid_sample pads with 0, which after normalization is mid-grey, not blank: shift blank to 0 first.
    return F.grid_sample(images - BACKGROUND, grid, align_corners=False) + BACKGROUND


def random_affine(images, strength=1.0):
    """Rotate, shift and scale each image by its own random draw. Never flips: a flipped 2 is no digit.

    Strength 1 rotates by up to 5 degrees and shifts and scales by up to 5% of the image size, both ways.
    """
    n, device = images.shape[0], images.device
    angle = torch.empty(n, device=device).uniform_(-5 * strength, 5 * strength).deg2rad_()
    zoom = torch.empty(n, device=device).uniform_(1 - 0.05 * strength, 1 + 0.05 * strength)
    shift = torch.empty(n, 2, device=device).uniform_(-0.05 * strength, 0.05 * strength)
    return affine(images, angle, zoom, shift)


def rotate(images, degrees):
    """Every image rotated by the same angle, counter-clockwise on screen for a positive one."""
    n, device = images.shape[0], images.device
    angle = torch.full((n,), float(degrees), device=device).deg2rad_()
    return affine(images, angle, torch.ones(n, device=device), torch.zeros(n, 2, device=device))


def shift(images, dx, dy):
    """Every image moved dx pixels right and dy down, exactly, with blank pixels filling in."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (abs(dx),) * 2 + (abs(dy),) * 2, value=BACKGROUND)
    top, left = abs(dy) - dy, abs(dx) - dx
    return padded[..., top:top + h, left:left + w]


class TensorLoader:
    """A DataLoader over tensors already on the device: one randperm per epoch, batches by slicing.

    augment is random_affine's strength, 0 for none. epoch_size serves more images per epoch than there are by
    repeating them, each copy in a new order. A shuffled (training) loader drops a final batch of one image,
    which batch norm cannot normalize.
    """

    def __init__(self, images, labels, batch_size, shuffle=False, augment=0.0, epoch_size=None):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment
        self.epoch_size = epoch_size or len(images)

    def __len__(self):
        full, rest = divmod(self.epoch_size, self.batch_size)
        return full + (rest > (1 if self.shuffle else 0))

    def __iter__(self):
        n, device = len(self.images), self.images.device
        order = None
        if self.shuffle:
            copies = -(-self.epoch_size // n)
            order = torch.cat([torch.randperm(n, device=device) for _ in range(copies)])[:self.epoch_size]
        for step in range(len(self)):
            start = step * self.batch_size
            index = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
            images = self.images[index]
            yield (random_affine(images, self.augment) if self.augment else images), self.labels[index]
