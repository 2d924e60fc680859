"""Read your own handwritten digits: images and photos, made to look like MNIST, read by a trained model.

    python predict.py my_digit.png photo.jpg scans/
    python predict.py --model lenet5_regularized --checkpoint path/to.pt --top 3 --json scans/

MNIST digits are white on black, scaled so that their longest side is 20 px, and placed in a 28x28 field with
their centre of mass at the centre. mnist_like() does the same to any image, in this order: grey scale
(transparency on white), polarity from the border, background removed (a plane fitted to it, for uneven
light) and contrast stretched, cropped to the ink, strokes thickened where far thinner than MNIST's, scaled to
20 px, centred by mass; normalize() then applies the training mean and std.
"""
import argparse
import json
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, UnidentifiedImageError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
WORK_SIDE = 160      # px: the longest side of the thumbnail on which the ink is found
INK = 0.3            # of the stretched contrast: what counts as ink when cropping
MASS_CENTRE = 14.0   # MNIST's mean centre of mass, in pixels from the top left, both ways (a test measures it)
STROKE = 5.2         # MNIST's ink area (pixels above 0.5) per pixel of digit height, at 20 px (a test measures it)


class Blank(Exception):
    """No ink found: the image is empty, or too faint to read."""


def to_grey(image):
    """A PIL image of any mode as mode "L", with transparent parts composited onto white."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return image.convert("L")


def fit_background(image, mask):
    """Least-squares plane a + b x + c y through the pixels under mask: the paper, under uneven light."""
    ys, xs = np.nonzero(mask)
    step = max(1, len(ys) // 4000)
    ys, xs = ys[::step], xs[::step]
    design = np.stack([np.ones(len(ys)), xs, ys], 1)
    coefficients, *_ = np.linalg.lstsq(design, image[ys, xs], rcond=None)
    return coefficients


def plane(coefficients, shape, scale=1.0, offset=(0, 0)):
    """The plane over an image of shape, whose pixel (y, x) sits at ((y + offset) / scale) in the fitted image."""
    a, b, c = coefficients
    ys = (np.arange(shape[0]) + offset[0] + 0.5) / scale - 0.5
    xs = (np.arange(shape[1]) + offset[1] + 0.5) / scale - 0.5
    return (a + b * xs[None, :] + c * ys[:, None]).astype(np.float32)


def mnist_like(image):
    """A PIL image of a digit as MNIST would have it: (28, 28) float32, white ink on black in [0, 1].

    Raises Blank where no ink stands out of the background.
    """
    grey = to_grey(image)
    scale = max(1, math.ceil(max(grey.size) / WORK_SIDE))
    small = np.asarray(grey.reduce(scale) if scale > 1 else grey, dtype=np.float32) / 255

    # The border is background. Polarity: the ink is whatever lies furthest from it.
    k = max(1, min(small.shape) // 20)
    border = np.zeros(small.shape, dtype=bool)
    border[:k], border[-k:], border[:, :k], border[:, -k:] = True, True, True, True
    paper = float(np.median(small[border]))
    low, high = np.percentile(small, [0.5, 99.5])
    dark_ink = paper - low > high - paper
    if dark_ink:
        small = 1 - small

    # Background: a plane through the border, for uneven light, then through everything that is not ink. The
    # noise is the border's median absolute deviation from it, which the ink's share of the image does not move.
    coefficients = fit_background(small, border)
    flat = small - plane(coefficients, small.shape)
    noise = 1.4826 * float(np.median(np.abs(flat[border] - np.median(flat[border]))))
    coefficients = fit_background(small, flat < max(3 * noise, 0.04))
    flat = small - plane(coefficients, small.shape)
    ink = flat[flat > max(6 * noise, 0.08)]
    if ink.size < max(4, 2e-4 * small.size):
        raise Blank("no ink found")
    level = float(np.percentile(ink, 90))
    floor = min(3 * noise, level / 2)
    stretched = np.clip((flat - floor) / (level - floor), 0, 1)

    # Crop: find the ink on the thumbnail, then again, exactly, on the full image around it.
    ys, xs = np.nonzero(stretched > INK)
    top, left = max(0, (ys.min() - 1) * scale), max(0, (xs.min() - 1) * scale)
    bottom, right = min(grey.height, (ys.max() + 2) * scale), min(grey.width, (xs.max() + 2) * scale)
    region = np.asarray(grey.crop((left, top, right, bottom)), dtype=np.float32) / 255
    if dark_ink:
        region = 1 - region
    region = np.clip((region - plane(coefficients, region.shape, scale, (top, left)) - floor) / (level - floor), 0, 1)
    ys, xs = np.nonzero(region > INK)
    if not len(ys):  # the thumbnail's ink was an artefact of averaging
        raise Blank("no ink found")
    height, width = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    margin = max(1, max(height, width) // 10)
    region = region[max(0, ys.min() - margin):ys.max() + 1 + margin, max(0, xs.min() - margin):xs.max() + 1 + margin]

    # Scale the longest side of the ink to 20 px. Strokes far thinner than MNIST's (a fine pen on a big digit)
    # are first thickened at 60 px: ink area per pixel of height, at 20 px, measures the stroke width.
    size = max(height, width)
    thickness = (region > 0.5).sum() / height * 20 / size
    if thickness < STROKE / 3:
        digit = resize(region, 60 / size)
        grow = 2 * round(3 * (STROKE - thickness) / 5) + 1  # 3 * (width gained at 20 px), made odd
        digit = resize(np.asarray(Image.fromarray(digit).filter(ImageFilter.MaxFilter(min(grow, 9)))), 1 / 3)
    else:
        digit = resize(region, 20 / size)
    digit = digit / max(float(digit.max()), 1e-6)
    return centre_by_mass(digit)


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
    import dataset
    import torch
    return (torch.from_numpy(np.stack(fields)).unsqueeze(1) - dataset.MNIST_MEAN) / dataset.MNIST_STD


def read(path):
    """(a thumbnail of the image as given, its MNIST-like 28x28 or None where blank), or the problem as a string."""
    try:
        with Image.open(path) as image:
            image.load()
            factor = max(1, max(image.size) // 128)
            thumbnail = (image.reduce(factor) if image.mode in ("L", "RGB", "RGBA") else image).convert("RGBA")
            try:
                return thumbnail, mnist_like(image)
            except Blank:
                return thumbnail, None
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return f"cannot read it ({' '.join(str(e).split()) or type(e).__name__})"


def find_images(paths):
    """The image files that paths name, folders opened one level deep, and (path, problem) for the rest."""
    found, problems = [], []
    for path in map(Path, paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file())
            images = [p for p in inside if p.suffix.lower() in EXTENSIONS]
            found += images
            if not images:
                problems.append((path, "an empty folder" if not inside else
                                 f"a folder with no images ({', '.join(sorted(EXTENSIONS))})"))
        elif path.is_file():
            found.append(path)
        else:
            problems.append((path, "no such file or folder"))
    return found, problems


def best_checkpoint(out_dir, model=None):
    """The finished checkpoint in out_dir/checkpoints with the best final accuracy (of model, where given), full
    training runs before quick ones; None where there is none."""
    import files
    from errors import UsageError
    candidates = []
    for path in sorted((Path(out_dir) / "checkpoints").glob("*.pt")):
        try:
            checkpoint = files.load_checkpoint(path)
        except UsageError:
            continue
        recipe = checkpoint["recipe"]
        if checkpoint["epoch"] < recipe["epochs"] or (model and recipe["model"] != model):
            continue
        full = not (recipe.get("limit") or recipe.get("train_size") or recipe.get("validation"))
        candidates.append(((full, checkpoint["history"][-1]["eval_acc"]), path))
    return max(candidates)[1] if candidates else None


def describe(probabilities, top):
    """The prediction in words: the digit, its probability, and the runners-up."""
    order = probabilities.argsort(descending=True)[:top].tolist()
    runners = ", ".join(f"{d} ({probabilities[d]:.1%})" for d in order[1:])
    return f"{order[0]} ({probabilities[order[0]]:.1%})" + (f"  runners-up: {runners}" if runners else "")


def record(path, probabilities, top):
    if probabilities is None:
        return {"file": str(path), "blank": True}
    order = probabilities.argsort(descending=True)[:top].tolist()
    return {"file": str(path), "digit": order[0], "probability": round(float(probabilities[order[0]]), 6),
            "top": [{"digit": d, "probability": round(float(probabilities[d]), 6)} for d in order],
            "probabilities": [round(float(p), 6) for p in probabilities]}


def get_args_parser():
    parser = argparse.ArgumentParser(description="Read handwritten digits in images with a trained model.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                        help=f"image files ({', '.join(sorted(EXTENSIONS))}) and folders of them")
    parser.add_argument("--model", choices=["lenet5", "custom_mlp", "lenet5_regularized"],
                        help="read with this model's best checkpoint in runs/ (default: the best of any model)")
    parser.add_argument("--checkpoint", type=Path, help="read with this checkpoint (default: the best in runs/)")
    parser.add_argument("--top", type=int, default=3, choices=range(1, 11), metavar="K",
                        help="show the K most likely digits")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a line per image")
    parser.add_argument("--preview", type=Path, metavar="PATH",
                        help="also draw each image as given, as the model saw it, and its probabilities, into PATH "
                             "(a .png; default: none)")
    return parser


def main(args):
    """Read every image the arguments name; returns the exit status."""
    import engine
    import figures
    import files
    import runs
    import torch
    from errors import UsageError
    from recipes import evaluated_on
    try:
        checkpoint = args.checkpoint or best_checkpoint(files.DEFAULT_OUT_DIR, args.model)
        if checkpoint is None:
            raise UsageError(f"no trained {args.model or 'model'} in {files.DEFAULT_OUT_DIR / 'checkpoints'}; train "
                             f"one with `python main.py --model {args.model or 'lenet5_regularized'}`")
        model, saved = runs.load_model(checkpoint, torch.device("cpu"), args.model)
    except UsageError as e:
        print(f"predict.py: error: {e}", file=sys.stderr)
        return 2
    print(f"reading with {saved['recipe']['model']} from {checkpoint} (epoch {saved['epoch']}, final "
          f"{evaluated_on(saved['recipe'])} accuracy "
          f"{saved['history'][-1]['eval_acc']:.2f}%)", file=sys.stderr)
    paths, problems = find_images(args.inputs)
    with ThreadPoolExecutor() as pool:  # decoding and resampling release the GIL
        outcomes = list(pool.map(read, paths))
    readable = [(path, outcome) for path, outcome in zip(paths, outcomes) if not isinstance(outcome, str)]
    problems += [(path, outcome) for path, outcome in zip(paths, outcomes) if isinstance(outcome, str)]
    fields = [field for _, (_, field) in readable if field is not None]
    probabilities = iter(engine.probabilities(model, normalize(fields)) if fields else [])
    results = [(path, image, field, next(probabilities) if field is not None else None)
               for path, (image, field) in readable]
    for path, problem in problems:
        print(f"predict.py: error: {path}: {problem}", file=sys.stderr)
    if args.json:
        records = [record(path, p, args.top) for path, _, _, p in results]
        records += [{"file": str(path), "error": problem} for path, problem in problems]
        print("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]")  # one image a line
    for path, _, _, p in results if not args.json else []:
        print(f"{path}: {'blank, no ink found' if p is None else describe(p, args.top)}")
    if args.preview and results:
        files.save_figure(args.preview, figures.predictions([(path.name, image, field, p)
                                                              for path, image, field, p in results]))
        print(f"wrote {args.preview}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
