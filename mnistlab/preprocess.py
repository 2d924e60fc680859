"""Make any image of a digit MNIST-like: the one preprocessing that predict.py and demo.py share.

MNIST digits are white on black, scaled so that their longest side is 20 px, and placed in a 28x28 field with
their centre of mass at the centre. mnist_like() does the same to any image, in this order: grey scale
(transparency on white, or on black under light ink), polarity from the border, background removed (a plane
fitted to it, for uneven light) and contrast stretched, cropped to the ink, strokes thickened where far thinner
than MNIST's, scaled to 20 px, centred by mass; normalize() then applies the training mean and std. read() opens
an image file through images.open_image and makes it MNIST-like.
"""
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from mnistlab import images

WORK_SIDE = 160      # px: the longest side of the thumbnail on which the ink is found
INK = 0.3            # of the stretched contrast: what counts as ink when cropping
MASS_CENTRE = 14.0   # MNIST's mean centre of mass, in pixels from the top left, both ways (a test measures it)
STROKE = 5.2         # MNIST's ink area (pixels above 0.5) per pixel of digit height, at 20 px (a test measures it)


class Blank(Exception):
    """No ink found: the image is empty, or too faint to read."""


def mnist_like(image):
    """A PIL image of a digit as MNIST would have it: (28, 28) float32, white ink on black in [0, 1].

    Raises Blank where no ink stands out of the background.
    """
    grey = to_grey(image)
    scale = max(1, math.ceil(max(grey.size) / WORK_SIDE))
    small = np.asarray(grey.reduce(scale) if scale > 1 else grey, dtype=np.float32) / 255
    dark_ink = has_dark_ink(small)
    if dark_ink:
        small = 1 - small
    contrast = flatten(small)
    region = crop_to_ink(grey, dark_ink, scale, contrast)
    return centre_by_mass(scale_to_20_px(region))


def to_grey(image):
    """A PIL image of any mode as mode "L". Transparent parts are composited onto white, or onto black where what
    is visible is mostly light: white ink on a transparent background."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        grey, alpha = image.convert("LA").split()
        visible = np.asarray(alpha, dtype=np.float32)
        light = float((np.asarray(grey, dtype=np.float32) * visible).sum()) > 127.5 * float(visible.sum())
        return Image.composite(grey, Image.new("L", image.size, 0 if light else 255), alpha)
    return image.convert("L")


def border_of(shape):
    """The frame of an image of shape, a twentieth of its shorter side wide, at least a pixel: its background."""
    k = max(1, min(shape) // 20)
    border = np.zeros(shape, dtype=bool)
    border[:k], border[-k:], border[:, :k], border[:, -k:] = True, True, True, True
    return border


def has_dark_ink(small):
    """Polarity: the ink is whatever lies furthest from the border's median, the paper."""
    paper = float(np.median(small[border_of(small.shape)]))
    low, high = np.percentile(small, [0.5, 99.5])
    return paper - low > high - paper


@dataclass
class Contrast:
    """How to turn a grey image (light ink) into ink in [0, 1]: subtract the background plane, then stretch from
    floor to level. stretched is the thumbnail so turned."""
    coefficients: np.ndarray
    floor: float
    level: float
    stretched: np.ndarray


def flatten(small):
    """The background removed from a thumbnail with light ink, and its contrast stretched; Blank where no ink is left.

    Background: a plane through the border, for uneven light, then through everything that is not ink. A digit
    cropped without a margin puts ink on the border, up to about half of it, and ink lies above the paper: so the
    plane goes through the border's lower half, and the noise comes from its lower quantiles, which that ink does
    not reach. Paper is then at 0.
    """
    ys, xs = np.nonzero(border_of(small.shape))
    edge = small[ys, xs]

    def above(coefficients):
        return edge - (coefficients[0] + coefficients[1] * xs + coefficients[2] * ys)
    first = above(fit_plane(ys, xs, edge))
    lower = first <= np.median(first)
    coefficients = fit_plane(ys[lower], xs[lower], edge[lower])
    q05, q25 = np.percentile(above(coefficients), [5, 25])
    noise = float(q25 - q05) / 0.97  # the distance between those quantiles, in standard deviations of a normal
    coefficients[0] += q25 + 0.674 * noise
    flat = small - plane(coefficients, small.shape)
    coefficients = fit_background(small, flat < max(3 * noise, 0.04))
    flat = small - plane(coefficients, small.shape)
    ink = flat[flat > max(6 * noise, 0.08)]
    if ink.size < max(4, 2e-4 * small.size):
        raise Blank("no ink found")
    level = float(np.percentile(ink, 90))
    floor = min(3 * noise, level / 2)
    return Contrast(coefficients, floor, level, np.clip((flat - floor) / (level - floor), 0, 1))


def fit_background(image, mask):
    """Least-squares plane a + b x + c y through the pixels under mask: the paper, under uneven light."""
    ys, xs = np.nonzero(mask)
    return fit_plane(ys, xs, image[ys, xs])


def fit_plane(ys, xs, values):
    """fit_background for the pixels at (ys, xs), whose values are given; 4,000 of them at most are used."""
    step = max(1, len(ys) // 4000)
    ys, xs, values = ys[::step], xs[::step], values[::step]
    design = np.stack([np.ones(len(ys)), xs, ys], 1)
    coefficients, *_ = np.linalg.lstsq(design, values, rcond=None)
    return coefficients


def plane(coefficients, shape, scale=1.0, offset=(0, 0)):
    """The plane over an image of shape, whose pixel (y, x) sits at ((y + offset) / scale) in the fitted image."""
    a, b, c = coefficients
    ys = (np.arange(shape[0]) + offset[0] + 0.5) / scale - 0.5
    xs = (np.arange(shape[1]) + offset[1] + 0.5) / scale - 0.5
    return (a + b * xs[None, :] + c * ys[:, None]).astype(np.float32)


def crop_to_ink(grey, dark_ink, scale, contrast):
    """The ink of the full-size grey image, light on black in [0, 1], with a margin of a tenth of its size: found
    on the thumbnail, then again, exactly, on the full image around it."""
    ys, xs = np.nonzero(contrast.stretched > INK)
    top, left = max(0, (ys.min() - 1) * scale), max(0, (xs.min() - 1) * scale)
    bottom, right = min(grey.height, (ys.max() + 2) * scale), min(grey.width, (xs.max() + 2) * scale)
    region = np.asarray(grey.crop((left, top, right, bottom)), dtype=np.float32) / 255
    if dark_ink:
        region = 1 - region
    background = plane(contrast.coefficients, region.shape, scale, (top, left))
    region = np.clip((region - background - contrast.floor) / (contrast.level - contrast.floor), 0, 1)
    ys, xs = np.nonzero(region > INK)
    if not len(ys):  # the thumbnail's ink was an artefact of averaging
        raise Blank("no ink found")
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    margin = max(1, max(height, width) // 10)
    return region[max(0, ys.min() - margin):ys.max() + 1 + margin, max(0, xs.min() - margin):xs.max() + 1 + margin]


def scale_to_20_px(region):
    """The cropped ink scaled so that the longest side of the ink is 20 px, peak at 1. Strokes far thinner than
    MNIST's (a fine pen on a big digit) are first thickened at 60 px: ink area per pixel of height, at 20 px,
    measures the stroke width."""
    ys, xs = np.nonzero(region > INK)
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    size = max(height, width)
    thickness = (region > 0.5).sum() / height * 20 / size
    if thickness < STROKE / 3:
        digit = resize(region, 60 / size)
        grow = 2 * round(3 * (STROKE - thickness) / 5) + 1  # 3 * (width gained at 20 px), made odd
        digit = resize(np.asarray(Image.fromarray(digit).filter(ImageFilter.MaxFilter(min(grow, 9)))), 1 / 3)
    else:
        digit = resize(region, 20 / size)
    return digit / max(float(digit.max()), 1e-6)


def resize(array, factor):
    """array (float32) scaled by factor, anti-aliased; factor 1 leaves it as it is."""
    if abs(factor - 1) < 1e-6:
        return array
    size = (max(1, round(array.shape[1] * factor)), max(1, round(array.shape[0] * factor)))
    return np.asarray(Image.fromarray(array).resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def centre_by_mass(digit):
    """digit pasted into a blank 28x28 field with its centre of mass where MNIST's is, to the nearest pixel."""
    ys, xs = np.indices(digit.shape)
    mass = digit.sum()
    top = round(MASS_CENTRE - (ys * digit).sum() / mass)
    left = round(MASS_CENTRE - (xs * digit).sum() / mass)
    field = np.zeros((28, 28), dtype=np.float32)
    y0, x0 = max(0, top), max(0, left)
    y1, x1 = min(28, top + digit.shape[0]), min(28, left + digit.shape[1])
    field[y0:y1, x0:x1] = digit[y0 - top:y1 - top, x0 - left:x1 - left]
    return field


def normalize(fields):
    """(N, 28, 28) MNIST-like arrays in [0, 1] as the normalized (N, 1, 28, 28) tensor the models take."""
    import torch

    import dataset
    return (torch.from_numpy(np.stack(fields)).unsqueeze(1) - dataset.MNIST.mean) / dataset.MNIST.std


def read(path, thumbnail=False):
    """(a thumbnail of the image as given where asked, else None; its MNIST-like 28x28, or None where blank), or
    the problem as a string."""
    try:
        image = images.open_image(path)
    except images.Unreadable as e:
        return str(e)
    small = image.reduce(max(1, max(image.size) // 128)).convert("RGBA") if thumbnail else None
    try:
        return small, mnist_like(image)
    except Blank:
        return small, None
