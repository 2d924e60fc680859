"""dataset.py: MNIST from the bundle, checked by SHA-256, loaded into tensors; the loader, augmentation, shifts and
rotations, and --data-dir."""
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import torch
from torchvision import datasets

import dataset
from helpers import assert_rejected, check_advice, guards

# MD5s of the decompressed files in the original MNIST distribution: a check independent of our SHA-256s.
MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


@pytest.fixture(scope="module")
def mnist():
    return dataset.load()


def extracted_copy(tmp_path):
    shutil.copytree(dataset.prepare(), tmp_path / "MNIST" / "raw")
    return tmp_path / "MNIST" / "raw"


def test_bundled_files_match_the_original_mnist():
    raw = dataset.prepare()
    for name, md5 in MD5.items():
        assert hashlib.md5((raw / name).read_bytes()).hexdigest() == md5
    sums = dict(reversed(line.split()) for line in (dataset.BUNDLE_DIR / "SHA256SUMS").read_text().splitlines())
    assert sums == dataset.MNIST.sha256


@pytest.mark.parametrize("train", [True, False])
def test_our_idx_reader_matches_torchvisions(train):
    ours = dataset.read_split(train)
    theirs = datasets.MNIST(dataset.DEFAULT_DATA_DIR, train=train)
    assert ours[0].dtype == torch.uint8 and torch.equal(ours[0], theirs.data)
    assert ours[1].dtype == torch.int64 and torch.equal(ours[1], theirs.targets)


def test_loading_the_data_does_not_import_torchvision():
    loaded = subprocess.run([sys.executable, "-c", "import sys, dataset; dataset.load(); "
                             "print('torchvision' in sys.modules)"], capture_output=True, text=True,
                            cwd=dataset.DEFAULT_DATA_DIR.parent, check=True)
    assert loaded.stdout.strip() == "False"


def test_normalization_constants_are_the_training_set_statistics(mnist):
    pixels = dataset.read_split(train=True)[0].double() / 255
    assert round(pixels.mean().item(), 4) == dataset.MNIST.mean
    assert round(pixels.std().item(), 4) == dataset.MNIST.std
    train_images = mnist[0]
    assert abs(train_images.mean().item()) < 1e-3 and abs(train_images.std().item() - 1) < 1e-3


def test_splits_have_mnist_shapes(mnist):
    train_images, train_labels, test_images, test_labels = mnist
    assert train_images.shape == (60_000, 1, 28, 28) and train_images.dtype == torch.float32
    assert test_images.shape == (10_000, 1, 28, 28)
    assert train_labels.shape == (60_000,) and train_labels.dtype == torch.int64
    assert test_labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_loader_batches_have_the_right_shapes(mnist):
    loader = dataset.TensorLoader(mnist[2], mnist[3], batch_size=384)
    shapes = [(tuple(x.shape), tuple(y.shape)) for x, y in loader]
    assert len(loader) == len(shapes) == 27
    assert shapes[0] == ((384, 1, 28, 28), (384,))
    assert shapes[-1] == ((10_000 - 26 * 384, 1, 28, 28), (10_000 - 26 * 384,))


def test_shuffled_epochs_see_every_image_once_in_a_new_order():
    images = torch.arange(100.0).view(100, 1, 1, 1)
    loader = dataset.TensorLoader(images, torch.arange(100), batch_size=32, shuffle=True)
    epochs = [torch.cat([y for _, y in loader]) for _ in range(2)]
    for order in epochs:
        assert sorted(order.tolist()) == list(range(100))
    assert not torch.equal(epochs[0], epochs[1])
    for x, y in loader:
        assert torch.equal(x.flatten(), y.float())


def test_unshuffled_loader_serves_the_images_unchanged(mnist):
    loader = dataset.TensorLoader(mnist[2], mnist[3], batch_size=1000, augment=False)
    assert torch.equal(torch.cat([x for x, _ in loader]), mnist[2])


def test_augmentation_keeps_the_shape_and_draws_per_image(mnist):
    torch.manual_seed(0)
    digit = mnist[0][:1].expand(8, -1, -1, -1)
    out = dataset.random_affine(digit)
    assert out.shape == digit.shape
    for i in range(1, 8):
        assert (out[0] - out[i]).abs().max() > 0.5
    assert (out - digit).abs().amax(dim=(1, 2, 3)).min() > 0.5


def test_augmentation_with_zero_ranges_is_the_identity(mnist):
    images = mnist[0][:16]
    out = dataset.random_affine(images, strength=0)
    torch.testing.assert_close(out, images, atol=1e-5, rtol=0)


def test_augmentation_keeps_blank_pixels_blank():
    blank = torch.full((4, 1, 28, 28), dataset.MNIST.background)
    torch.testing.assert_close(dataset.random_affine(blank), blank)


def test_loader_augments_only_when_asked(mnist):
    torch.manual_seed(0)
    images, labels = mnist[2][:64], mnist[3][:64]
    plain = next(iter(dataset.TensorLoader(images, labels, 64)))[0]
    augmented = next(iter(dataset.TensorLoader(images, labels, 64, augment=1.0)))[0]
    assert torch.equal(plain, images)
    assert not torch.allclose(augmented, images)


@guards("dataset.py",
        "each data file's bytes are checked against their SHA-256 before they are parsed",
        "    if hashlib.sha256(contents).hexdigest() != data.sha256[path.name]:",
        "    if False:")
def test_checksum_check_rejects_a_corrupted_file(tmp_path):
    raw = extracted_copy(tmp_path)
    labels = bytearray((raw / "t10k-labels-idx1-ubyte").read_bytes())
    labels[100] ^= 1
    (raw / "t10k-labels-idx1-ubyte").write_bytes(labels)
    with pytest.raises(dataset.DataError, match=r"t10k-labels-idx1-ubyte fails its SHA-256 check.*delete it"):
        dataset.prepare(tmp_path)


def test_checksum_check_rejects_a_truncated_file(tmp_path):
    raw = extracted_copy(tmp_path)
    (raw / "train-images-idx3-ubyte").write_bytes((raw / "train-images-idx3-ubyte").read_bytes()[:1000])
    with pytest.raises(dataset.DataError, match=r"train-images-idx3-ubyte fails its SHA-256 check"):
        dataset.prepare(tmp_path)


def test_missing_files_are_extracted_again_from_the_bundle(tmp_path):
    raw = extracted_copy(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    dataset.prepare(tmp_path)
    assert hashlib.md5((raw / "t10k-labels-idx1-ubyte").read_bytes()).hexdigest() == MD5["t10k-labels-idx1-ubyte"]


@guards("dataset.py",
        "a truncated bundle is one line and leaves nothing behind",
        "    except (EOFError, gzip.BadGzipFile, zlib.error) as e:",
        "    except (gzip.BadGzipFile, zlib.error) as e:")
def test_a_truncated_bundle_is_rejected_and_leaves_nothing_behind(tmp_path):
    raw = extracted_copy(tmp_path / "data")
    (raw / "t10k-labels-idx1-ubyte").unlink()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    archive = (dataset.BUNDLE_DIR / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (bundle / "t10k-labels-idx1-ubyte.gz").write_bytes(archive[:len(archive) // 2])
    with pytest.raises(dataset.DataError, match=r"t10k-labels-idx1-ubyte.gz is truncated or not gzip"):
        dataset.prepare(tmp_path / "data", bundle)
    assert sorted(p.name for p in raw.iterdir()) == sorted(set(dataset.MNIST.sha256) - {"t10k-labels-idx1-ubyte"})


@guards("dataset.py",
        "a bundle that decompresses to the wrong bytes is refused",
        "        if digest.hexdigest() != data.sha256[target.name]:",
        "        if False:")
def test_a_bundle_with_the_wrong_content_is_rejected(tmp_path):
    raw = extracted_copy(tmp_path / "data")
    (raw / "t10k-labels-idx1-ubyte").unlink()
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(dataset.DataError, match=r"t10k-labels-idx1-ubyte.gz decompresses to the wrong SHA-256"):
        dataset.prepare(tmp_path / "data", bundle)


@guards("dataset.py",
        "a failed download is one line naming the fix",
        "    except Exception as e:\n        reason",
        "    except ValueError as e:\n        reason")
def test_without_bundle_or_network_the_error_names_the_fix(tmp_path, monkeypatch):
    def offline(self):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(dataset.DataError, match=r"^MNIST is not in .*empty and its download failed.*copy the four"):
        dataset.prepare(tmp_path, tmp_path / "empty")


def test_extracted_files_get_the_usual_permissions(tmp_path):
    raw = extracted_copy(tmp_path)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    dataset.prepare(tmp_path)
    umask = os.umask(0)
    os.umask(umask)
    assert (raw / "t10k-labels-idx1-ubyte").stat().st_mode & 0o777 == 0o666 & ~umask


@guards("dataset.py",
        "MNIST is extracted only into data, an empty folder or one that holds MNIST",
        "    if missing and data_dir.resolve() != DEFAULT_DATA_DIR and not",
        "    if False and data_dir.resolve() != DEFAULT_DATA_DIR and not")
@guards("dataset.py",
        "a folder that holds MNIST already is MNIST's, whatever else it holds",
        '    if missing and data_dir.resolve() != DEFAULT_DATA_DIR and not any(\n'
        '            (data_dir / other.folder).is_dir() for other in DATASETS.values()) and any(data_dir.iterdir()):',
        '    if missing and data_dir.resolve() != DEFAULT_DATA_DIR and any(data_dir.iterdir()):')
def test_mnist_is_extracted_only_into_an_empty_folder_or_its_own(tmp_path):
    others = tmp_path / "etc"
    others.mkdir()
    (others / "passwd").write_text("root:x:0:0")
    with pytest.raises(dataset.DataError) as refused:
        dataset.prepare(others)
    assert str(refused.value) == (f"data directory {others} holds other files and no MNIST/, where MNIST would be "
                                  f"extracted; pass an empty folder or one that holds MNIST/ as --data-dir, or drop "
                                  f"--data-dir")
    check_advice("main", str(refused.value))
    assert sorted(path.name for path in others.iterdir()) == ["passwd"]
    (tmp_path / "empty").mkdir()  # as advised
    raw = dataset.prepare(tmp_path / "empty")
    assert sorted(path.name for path in raw.iterdir()) == sorted(dataset.MNIST.sha256)
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw.parent.parent / "notes.txt").write_text("")  # its own folder: MNIST/ there, whatever else
    dataset.prepare(raw.parent.parent)
    (tmp_path / "fashion" / "FashionMNIST").mkdir(parents=True)  # the package's for the other dataset
    dataset.prepare(tmp_path / "fashion")


@guards("dataset.py",
        "a missing --data-dir is refused",
        "    if not data_dir.is_dir():\n        raise",
        "    if False:\n        raise")
def test_a_missing_data_dir_is_rejected(tmp_path):
    with pytest.raises(dataset.DataError, match=r"does not exist"):
        dataset.prepare(tmp_path / "nowhere")


def test_the_validation_split_holds_out_the_last_training_images(mnist):
    train_images, train_labels, val_images, val_labels = dataset.validation_split(*mnist[:2])
    assert len(train_images) == len(train_labels) == 50_000 and len(val_images) == len(val_labels) == 10_000
    assert torch.equal(torch.cat([train_images, val_images]), mnist[0])
    assert torch.equal(torch.cat([train_labels, val_labels]), mnist[1])


def test_a_shuffled_loader_drops_a_final_batch_of_one_image():
    images, labels = torch.zeros(257, 1, 28, 28), torch.arange(257)
    assert [len(y) for _, y in dataset.TensorLoader(images, labels, 128, shuffle=True)] == [128, 128]
    assert [len(y) for _, y in dataset.TensorLoader(images, labels, 128)] == [128, 128, 1]
    assert [len(y) for _, y in dataset.TensorLoader(torch.zeros(258, 1, 28, 28), torch.arange(258), 128, shuffle=True)] == [128, 128, 2]


def test_a_longer_epoch_repeats_every_image_before_any_repeats_twice():
    loader = dataset.TensorLoader(torch.zeros(10, 1, 1, 1), torch.arange(10), 7, shuffle=True, epoch_size=25)
    served = torch.cat([y for _, y in loader])
    assert len(loader) == 4 and len(served) == 25
    assert sorted(served[:10].tolist()) == sorted(served[10:20].tolist()) == list(range(10))


def test_shift_moves_every_pixel_exactly_and_fills_in_blank():
    images = torch.arange(2 * 28 * 28, dtype=torch.float32).view(2, 1, 28, 28)
    moved = dataset.shift(images, 3, -2)
    torch.testing.assert_close(moved[..., :26, 3:], images[..., 2:, :25], rtol=0, atol=0)
    assert (moved[..., :, :3] == dataset.MNIST.background).all() and (moved[..., 26:, :] == dataset.MNIST.background).all()
    assert torch.equal(dataset.shift(images, 0, 0), images)


def test_rotate_turns_a_bar_counter_clockwise_and_keeps_blank_pixels_blank():
    bar = torch.full((1, 1, 28, 28), dataset.MNIST.background)
    bar[..., 13:15, 4:24] = 2.0  # a horizontal bar through the centre
    turned = dataset.rotate(bar, 45)
    ink = (turned > 0.5).nonzero()[:, 2:].float()  # (row, column) of the inked pixels
    rows, cols = ink[:, 0] - 13.5, ink[:, 1] - 13.5
    # Counter-clockwise on screen: the bar's right end rises (smaller rows) where the columns grow.
    assert torch.corrcoef(torch.stack([rows, cols]))[0, 1] < -0.9
    torch.testing.assert_close(dataset.rotate(bar, 0), bar, atol=1e-5, rtol=0)
    blank = torch.full((2, 1, 28, 28), dataset.MNIST.background)
    torch.testing.assert_close(dataset.rotate(blank, 30), blank)


def test_stratified_subsets_keep_each_classs_share(mnist):
    labels = mnist[1]
    share = labels.bincount().double() / len(labels)
    for size in (1_000, 3_000, 10_000):
        subset = dataset.stratified_subset(labels, size)
        assert len(subset) == len(set(subset.tolist())) == size
        counts = labels[subset].bincount(minlength=10).double()
        assert ((counts - share * size).abs() <= 1).all()
        assert torch.equal(subset, dataset.stratified_subset(labels, size))


@guards("dataset.py",
        "a bundle that is not gzip is one line",
        "gzip.BadGzipFile, zlib.error) as e:",
        "zlib.error) as e:")
def test_a_bundle_that_is_not_gzip_is_one_line(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (tmp_path / "data").mkdir()
    for name in dataset.MNIST.sha256:
        (bundle / f"{name}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(dataset.DataError) as refused:
        dataset.prepare(tmp_path / "data", bundle)
    assert "train-images-idx3-ubyte.gz is truncated or not gzip" in str(refused.value)
    assert str(refused.value).endswith(f"restore it with `git checkout -- train-images-idx3-ubyte.gz` in {bundle}")
    assert not list((tmp_path / "data" / "MNIST" / "raw").iterdir())


@guards("dataset.py",
        "an unreadable --data-dir is refused",
        "    if not os.access(data_dir, os.R_OK | os.X_OK):",
        "    if False:")
def test_an_unreadable_data_dir_is_refused_before_anything_is_read_from_it(tmp_path, monkeypatch):
    # Root passes every permission check, so the check itself is made to say no.
    access = dataset.os.access
    monkeypatch.setattr(dataset.os, "access", lambda path, mode: path != tmp_path and access(path, mode))
    monkeypatch.setattr(dataset, "_download", lambda *args: pytest.fail("looked for MNIST in an unreadable folder"))
    with pytest.raises(dataset.DataError, match=f"^data directory {tmp_path} cannot be read; fix its permissions or "
                                                f"pass another --data-dir$"):
        dataset.read_files(tmp_path, tmp_path / "no-bundle")


@guards("dataset.py",
        "a data folder that cannot take the extracted files is one line",
        '        except OSError as e:\n            raise DataError(f"cannot write the extracted data',
        '        except ZeroDivisionError as e:\n            raise DataError(f"cannot write the extracted data')
def test_a_data_dir_that_cannot_take_the_extracted_files_is_one_line(tmp_path):
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "raw").write_text("a file where the extracted files go")
    with pytest.raises(dataset.DataError, match=f"cannot write the extracted data to {tmp_path}/MNIST/raw \\(File "
                                                f"exists\\); pass a writable --data-dir"):
        dataset.prepare(tmp_path)


@guards("dataset.py",
        "a data file that cannot be read is one line",
        '    except OSError as e:\n        raise DataError(f"cannot read {path}',
        '    except ZeroDivisionError as e:\n        raise DataError(f"cannot read {path}')
def test_a_data_file_that_cannot_be_read_is_one_line(tmp_path):
    for name in dataset.MNIST.sha256:
        (tmp_path / "MNIST" / "raw" / name).mkdir(parents=True)  # a folder where the file belongs
    with pytest.raises(dataset.DataError, match=f"cannot read {tmp_path}/MNIST/raw/train-images-idx3-ubyte \\(Is a "
                                                f"directory\\); delete it and rerun to re-extract it"):
        dataset.prepare(tmp_path)


@guards("dataset.py",
        "a file that is not a folder as --data-dir is refused",
        "    if data_dir.exists() and not data_dir.is_dir():",
        "    if False:")
def test_a_data_dir_that_is_a_file_is_rejected(tmp_path, cli):
    (tmp_path / "a-file").write_text("")
    assert_rejected(["--data-dir", tmp_path / "a-file", "--out-dir", tmp_path / "out"], tmp_path, cli,
                    "is a file, not a folder; pass a folder as --data-dir")


def test_fashion_mnist_reads_as_torchvision_reads_it_with_its_published_class_counts(fashion):
    for train in (True, False):
        images, labels = dataset.read_split(train, name="fashion-mnist")
        theirs = datasets.FashionMNIST(dataset.DEFAULT_DATA_DIR, train=train)
        assert torch.equal(images, theirs.data) and torch.equal(labels, theirs.targets)
        assert labels.bincount().tolist() == [6000 if train else 1000] * 10
    assert len(dataset.DATASETS["fashion-mnist"].classes) == 10


def test_each_dataset_is_normalized_with_its_own_training_set_statistics(fashion):
    pixels = dataset.read_split(train=True, name="fashion-mnist")[0].double() / 255
    data = dataset.DATASETS["fashion-mnist"]
    assert (round(pixels.mean().item(), 4), round(pixels.std().item(), 4)) == (data.mean, data.std)
    train_images = dataset.load(name="fashion-mnist")[0]
    assert abs(train_images.mean().item()) < 1e-3 and abs(train_images.std().item() - 1) < 1e-3


def test_a_damaged_fashion_archive_says_to_reinstall_its_package(tmp_path):
    archives = tmp_path / "archives"
    archives.mkdir()
    for name in dataset.DATASETS["fashion-mnist"].sha256:
        (archives / f"{name}.gz").write_bytes(gzip.compress(b"not clothes"))
    (tmp_path / "data").mkdir()
    with pytest.raises(dataset.DataError) as refused:
        dataset.prepare(tmp_path / "data", archives, name="fashion-mnist")
    assert str(refused.value) == (f"{archives}/train-images-idx3-ubyte.gz decompresses to the wrong SHA-256: the file "
                                  f"is corrupt; reinstall it with `sudo apt-get install --reinstall "
                                  f"dataset-fashion-mnist`")


@guards("dataset.py",
        "missing Fashion-MNIST names the Debian package that holds it",
        'f"install it with `sudo apt-get install {FASHION_PACKAGE}` (Debian, Ubuntu), or put its "\n'
        '                          "four *-ubyte files, decompressed, in {raw}"',
        '"copy the four *-ubyte.gz files into {archives}"')
def test_without_fashion_mnist_or_network_the_error_names_the_package(tmp_path, monkeypatch):
    def offline(self):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(datasets.FashionMNIST, "download", offline)
    with pytest.raises(dataset.DataError) as refused:
        dataset.prepare(tmp_path, tmp_path / "nowhere", name="fashion-mnist")
    assert str(refused.value) == (f"Fashion-MNIST is not in {tmp_path}/nowhere and its download failed (<urlopen "
                                  f"error no network>); install it with `sudo apt-get install dataset-fashion-mnist` "
                                  f"(Debian, Ubuntu), or put its four *-ubyte files, decompressed, in "
                                  f"{tmp_path}/FashionMNIST/raw")
    assert "\n" not in str(refused.value)
