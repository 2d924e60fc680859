"""mnistlab/preprocess.py: making any image of a digit MNIST-like."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

import predict
from helpers import drawing, guards
from mnistlab import preprocess


def big_one(size=(1600, 1200)):
    image = Image.new("L", size, 235)
    ImageDraw.Draw(image).line([(size[0] / 2, size[1] * 0.15), (size[0] / 2, size[1] * 0.85)], fill=20,
                               width=size[0] // 20)
    return image


@guards("mnistlab/preprocess.py",
        "Blank: a few specks of ink are no digit",
        "    if ink.size < max(4, 2e-4 * small.size):\n",
        "    if ink.size == 0:\n")
@guards("mnistlab/preprocess.py",
        "Blank: ink must stand 6 noise deviations above the paper",
        "ink = flat[flat > max(6 * noise",
        "ink = flat[flat > max(3 * noise")
@guards("mnistlab/preprocess.py",
        "Blank: ink must stand at least 0.08 above the paper",
        "max(6 * noise, 0.08)]",
        "6 * noise]")
@pytest.mark.parametrize("marks", ["three specks", "a faint smudge", "noisy paper"])
def test_specks_smudges_and_noise_are_blank(marks):
    if marks == "noisy paper":  # grain of 12 grey levels: ink must stand 6 of them above the paper, not 3
        image = Image.fromarray(np.random.default_rng(0).normal(128, 12, (90, 120)).round().astype(np.uint8))
    else:
        image = Image.new("L", (120, 90), 50)
    if marks == "three specks":  # chalk dust on a blackboard: fewer than 4 pixels of ink
        for at in ((10, 10), (60, 40), (100, 70)):
            image.putpixel(at, 255)
    elif marks == "a faint smudge":
        ImageDraw.Draw(image).ellipse([40, 20, 80, 70], fill=53)  # 3 grey levels off the paper
    with pytest.raises(preprocess.Blank):
        preprocess.mnist_like(image)


@guards("mnistlab/preprocess.py",
        "the ink is looked for on a thumbnail of WORK_SIDE",
        "    scale = max(1, math.ceil(max(grey.size) / WORK_SIDE))",
        "    scale = 1")
def test_the_ink_is_looked_for_on_a_small_thumbnail(monkeypatch):
    seen, flatten = [], preprocess.flatten
    monkeypatch.setattr(preprocess, "flatten", lambda small: seen.append(small.shape) or flatten(small))
    preprocess.mnist_like(big_one())
    assert len(seen) == 1 and max(seen[0]) <= 160


@guards("mnistlab/preprocess.py",
        "the background plane fitted to 4,000 pixels at most",
        "    step = max(1, len(ys) // 4000)",
        "    step = 1")
def test_the_background_plane_is_fitted_to_a_few_thousand_pixels_at_most(monkeypatch):
    rows, lstsq = [], np.linalg.lstsq
    monkeypatch.setattr(np.linalg, "lstsq", lambda a, b, rcond=None: rows.append(len(a)) or lstsq(a, b, rcond=rcond))
    preprocess.mnist_like(big_one((320, 320)))  # a 160x160 thumbnail: 25,600 pixels, most of them paper
    assert rows and max(rows) <= 2 * 4000


@guards("mnistlab/preprocess.py",
        "a resized image keeps at least a pixel each way",
        "    size = (max(1, round(array.shape[1] * factor)), max(1, round(array.shape[0] * factor)))",
        "    size = (round(array.shape[1] * factor), round(array.shape[0] * factor))")
def test_a_thin_line_along_the_images_edge_is_read_not_a_crash():
    # 2 px high and 1,800 long, on the top edge: its margin is cut by the edge, and at 20 px long it is under half
    # a pixel high, which rounds to no row at all.
    image = Image.new("L", (2000, 300), 235)
    ImageDraw.Draw(image).rectangle([100, 0, 1900, 1], fill=20)
    field = preprocess.mnist_like(image)
    rows, columns = np.nonzero(field > 0.3)
    assert len(set(rows)) == 1 and 19 <= columns.max() - columns.min() + 1 <= 21


@guards("mnistlab/preprocess.py",
        "a digit heavy at its bottom or right pasted within the field",
        "    y0, x0 = max(0, top), max(0, left)",
        "    y0, x0 = top, left")
@guards("mnistlab/preprocess.py",
        "a digit heavy at its top or left pasted within the field",
        "    y1, x1 = min(28, top + digit.shape[0]), min(28, left + digit.shape[1])",
        "    y1, x1 = top + digit.shape[0], left + digit.shape[1]")
@pytest.mark.parametrize("heavy", ["top", "bottom"])
def test_a_digit_heavy_at_one_end_is_centred_by_mass_within_the_field(heavy):
    image = Image.new("L", (200, 300), 235)
    draw = ImageDraw.Draw(image)
    draw.line([(100, 30), (100, 270)], fill=20, width=3)
    draw.ellipse([40, 30, 160, 130] if heavy == "top" else [40, 170, 160, 270], fill=20)
    field = preprocess.mnist_like(image)
    mass = field.sum()
    centre = ((np.arange(28)[:, None] * field).sum() / mass, (np.arange(28)[None, :] * field).sum() / mass)
    assert field.shape == (28, 28) and centre == pytest.approx((14, 14), abs=1.5)


@guards("mnistlab/preprocess.py",
        "the preview's thumbnail is small, never a full-size copy",
        'image.reduce(max(1, max(image.size) // 128)).convert("RGBA")',
        'image.convert("RGBA")')
def test_no_full_size_copy_is_kept(tmp_path):
    scan = drawing(1, size=(4000, 3000), scale=8).convert("1", dither=Image.Dither.NONE)
    scan.save(tmp_path / "scan.png")
    thumbnail, field = predict.read(tmp_path / "scan.png")
    assert thumbnail is None and field is not None
    thumbnail, _ = predict.read(tmp_path / "scan.png", thumbnail=True)
    assert max(thumbnail.size) <= 256
