"""MNIST and Fashion-MNIST: found, verified, loaded once into tensors, served in batches.

Each dataset is four IDX files, read from gzip archives: MNIST's travel with the package in data/bundle/,
Fashion-MNIST's come from Debian's dataset-fashion-mnist package. On first use they are decompressed into
torchvision's layout (<data-dir>/MNIST/raw/*-ubyte, <data-dir>/FashionMNIST/raw/*-ubyte); each load reads them,
checks the bytes it read against the SHA-256 sums below and parses the IDX format itself. torchvision is not
imported: it takes seconds to import, more than the whole load, and is needed only for the download fallback.
"""
import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mnistlab.errors import UsageError
from mnistlab.files import atomic_write

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"
BUNDLE_DIR = DEFAULT_DATA_DIR / "bundle"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_PACKAGE = "dataset-fashion-mnist"


@dataclass(frozen=True)
class Data:
    """One dataset: its title, torchvision's name and folder for it, where its archives are found, how to restore a
    damaged one and how to get them all (templates), the SHA-256 of each decompressed file, the mean and std of its
    training pixels scaled to [0, 1], and its class names."""
    title: str
    folder: str
    archives: Path
    restore: str
    get: str
    sha256: dict
    mean: float
    std: float
    classes: tuple

    @property
    def background(self):
        """What a blank (0) pixel becomes after normalization."""
        return (0.0 - self.mean) / self.std

    def install(self, archive):
        """How to get archive back, in words."""
        return self.restore.format(name=archive.name, folder=archive.parent)

    def advice(self, archives, raw):
        """How to get the archives, in words, where they are missing from archives and raw has not the files."""
        return self.get.format(archives=archives, raw=raw)


DATASETS = {
    # SHA-256 of the decompressed files, identical to the original distributions.
    "mnist": Data("MNIST", "MNIST", BUNDLE_DIR, "restore it with `git checkout -- {name}` in {folder}",
                  "copy the four *-ubyte.gz files into {archives}", {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    }, 0.1307, 0.3081, tuple("0123456789")),
    "fashion-mnist": Data("Fashion-MNIST", "FashionMNIST", DEBIAN_FASHION_DIR,
                          f"reinstall it with `sudo apt-get install --reinstall {FASHION_PACKAGE}`",
                          f"install it with `sudo apt-get install {FASHION_PACKAGE}` (Debian, Ubuntu), or put its "
                          "four *-ubyte files, decompressed, in {raw}", {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    }, 0.2860, 0.3530, ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                        "Ankle boot")),
}
MNIST = DATASETS["mnist"]  # the data of the digits users draw and scan (predict.py, the demo)


class DataError(UsageError):
    """The data is missing, unreadable or corrupt. The message names the file and the fix."""


def _extract(archive, target, data):
    """Decompress archive into target; target appears only once whole and verified."""
    def decompress(out):
        digest = hashlib.sha256()
        with gzip.open(archive, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
        if digest.hexdigest() != data.sha256[target.name]:
            raise DataError(f"{archive} decompresses to the wrong SHA-256: the file is corrupt; {data.install(archive)}")
    try:
        atomic_write(target, decompress)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(f"{archive} is truncated or not gzip ({e}); {data.install(archive)}") from e


def _download(data_dir, archives, data):
    """Fallback when the archives are not there: torchvision's own download, which checks its MD5s."""
    from torchvision import datasets
    try:
        for train in (True, False):
            getattr(datasets, data.folder)(data_dir, train=train, download=True)
    except Exception as e:
        reason = " ".join(str(e).split())  # torchvision's message spans several lines
        raise DataError(f"{data.title} is not in {archives} and its download failed ({reason}); "
                        f"{data.advice(archives, data_dir / data.folder / 'raw')}") from e


def prepare(data_dir=DEFAULT_DATA_DIR, archives=None, name="mnist"):
    """Make <data_dir>/<folder>/raw hold the dataset's four files, each matching its SHA-256; returns that folder."""
    read_files(data_dir, archives, name)
    return Path(data_dir) / DATASETS[name].folder / "raw"


def read_files(data_dir=DEFAULT_DATA_DIR, archives=None, name="mnist"):
    """The dataset's four files as uint8 tensors of the shapes their headers give, by file name; each file's bytes
    checked against its SHA-256, extracted from its archives first where missing."""
    data = DATASETS[name]
    data_dir, archives = Path(data_dir), Path(archives or data.archives)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} is a file, not a folder; pass a folder as --data-dir")
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist; create it or pass another --data-dir")
    if not os.access(data_dir, os.R_OK | os.X_OK):
        raise DataError(f"data directory {data_dir} cannot be read; fix its permissions or pass another --data-dir")
    raw = data_dir / data.folder / "raw"
    missing = [file for file in data.sha256 if not (raw / file).exists()]
    # Written only where the folder is the package's, or a dataset's already, or empty: never among others' files.
    if missing and data_dir.resolve() != DEFAULT_DATA_DIR and not any(
            (data_dir / other.folder).is_dir() for other in DATASETS.values()) and any(data_dir.iterdir()):
        raise DataError(f"data directory {data_dir} holds other files and no {data.folder}/, where {data.title} would "
                        f"be extracted; pass an empty folder or one that holds {data.folder}/ as --data-dir, or drop "
                        f"--data-dir")
    if missing and all((archives / f"{file}.gz").exists() for file in missing):
        try:
            raw.mkdir(parents=True, exist_ok=True)
            for file in missing:
                _extract(archives / f"{file}.gz", raw / file, data)
        except OSError as e:
            raise DataError(f"cannot write the extracted data to {raw} ({e.strerror}); "
                            f"pass a writable --data-dir") from e
    elif missing:
        _download(data_dir, archives, data)
    return {file: _read_idx(raw / file, archives, data) for file in data.sha256}


def _read_idx(path, archives, data):
    """An IDX file as a uint8 tensor. The bytes are checked before they are parsed, so the header can be trusted."""
    try:
        contents = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path} ({e.strerror}); delete it and rerun to re-extract it") from e
    if hashlib.sha256(contents).hexdigest() != data.sha256[path.name]:
        raise DataError(f"{path} fails its SHA-256 check (truncated or corrupt); "
                        f"delete it and rerun to re-extract it from {archives}")
    dims = contents[3]  # the header: two zero bytes, the type (8: unsigned byte), the number of dimensions, each size
    shape = struct.unpack(f">{dims}I", contents[4:4 + 4 * dims])
    return torch.frombuffer(bytearray(contents[4 + 4 * dims:]), dtype=torch.uint8).view(shape)


def read_split(train, data_dir=DEFAULT_DATA_DIR, name="mnist"):
    """One split as stored: images (N, 28, 28) uint8 and labels (N,) int64."""
    files = read_files(data_dir, name=name)
    prefix = "train" if train else "t10k"
    return files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"].long()


def load(data_dir=DEFAULT_DATA_DIR, device="cpu", name="mnist"):
    """(train_images, train_labels, test_images, test_labels), verified and on device; images (N, 1, 28, 28)
    float32, normalized once with the dataset's own statistics."""
    files, data = read_files(data_dir, name=name), DATASETS[name]
    tensors = []
    for prefix in ("train", "t10k"):
        images = files[f"{prefix}-images-idx3-ubyte"].to(device=device, dtype=torch.float32)
        tensors += [images.div_(255).sub_(data.mean).div_(data.std).unsqueeze(1),
                    files[f"{prefix}-labels-idx1-ubyte"].to(device=device, dtype=torch.long)]
    return tuple(tensors)


def load_splits(data_dir=DEFAULT_DATA_DIR, device="cpu", validation=False, limit=None, name="mnist"):
    """(train images, train labels, eval images, eval labels): the test set, or with validation the last 10,000
    training images held out; limit keeps the first N images of each."""
    data = load(data_dir, device, name)
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


def affine(images, angle, zoom, shift, background=MNIST.background):
    """Rotate each image by angle (radians), scale it by zoom and shift it by shift (fractions of its size).

    images: (N, C, H, W) normalized; angle and zoom (N,), shift (N, 2) as (x, y). Pixels from outside are blank,
    background after normalization.
    """
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    # affine_grid's coordinates span [-1, 1], so a shift of t image widths is 2t; the grid maps output to input.
    theta = torch.stack([torch.stack([cos, -sin, -2 * shift[:, 0]], 1),
                         torch.stack([sin, cos, -2 * shift[:, 1]], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # grid_sample pads with 0, which after normalization is mid-grey, not blank: shift blank to 0 first.
    return F.grid_sample(images - background, grid, align_corners=False) + background


def random_affine(images, strength=1.0, background=MNIST.background):
    """Rotate, shift and scale each image by its own random draw. Never flips: a flipped 2 is no digit.

    Strength 1 rotates by up to 5 degrees and shifts and scales by up to 5% of the image size, both ways.
    """
    n, device = images.shape[0], images.device
    angle = torch.empty(n, device=device).uniform_(-5 * strength, 5 * strength).deg2rad_()
    zoom = torch.empty(n, device=device).uniform_(1 - 0.05 * strength, 1 + 0.05 * strength)
    shift = torch.empty(n, 2, device=device).uniform_(-0.05 * strength, 0.05 * strength)
    return affine(images, angle, zoom, shift, background)


def rotate(images, degrees, background=MNIST.background):
    """Every image rotated by the same angle, counter-clockwise on screen for a positive one."""
    n, device = images.shape[0], images.device
    angle = torch.full((n,), float(degrees), device=device).deg2rad_()
    return affine(images, angle, torch.ones(n, device=device), torch.zeros(n, 2, device=device), background)


def shift(images, dx, dy, background=MNIST.background):
    """Every image moved dx pixels right and dy down, exactly, with blank pixels filling in."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (abs(dx),) * 2 + (abs(dy),) * 2, value=background)
    top, left = abs(dy) - dy, abs(dx) - dx
    return padded[..., top:top + h, left:left + w]


class TensorLoader:
    """A DataLoader over tensors already on the device: one randperm per epoch, batches by slicing.

    augment is random_affine's strength, 0 for none, filling in with background. epoch_size serves more images per
    epoch than there are by repeating them, each copy in a new order. A shuffled (training) loader drops a final batch of one image,
    which batch norm cannot normalize.
    """

    def __init__(self, images, labels, batch_size, shuffle=False, augment=0.0, epoch_size=None,
                 background=MNIST.background):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.augment, self.background = batch_size, shuffle, augment, background
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
            yield (random_affine(images, self.augment, self.background) if self.augment else images), self.labels[index]
