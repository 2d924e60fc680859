"""Read your own handwritten digits: images and photos, made to look like MNIST, read by a trained model.

    python predict.py my_digit.png photo.jpg scans/
    python predict.py --model lenet5_regularized --checkpoint path/to.pt --top 3 --json scans/

MNIST digits are white on black, scaled so that their longest side is 20 px, and placed in a 28x28 field with
their centre of mass at the centre. mnist_like() does the same to any image, in this order: grey scale
(transparency on white, or on black under light ink), polarity from the border, background removed (a plane
fitted to it, for uneven light) and contrast stretched, cropped to the ink, strokes thickened where far thinner
than MNIST's, scaled to 20 px, centred by mass; normalize() then applies the training mean and std. Files are
opened by images.open_image, and read a few at a time, each printed as soon as it and those before it are read.
"""
import argparse
import collections
import json
import math
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

import images
import paths
from errors import OutputLost, emit, lose_output, stop_on_ctrl_c
from main import HelpFormatter, OneLineErrorParser
from paths import shown

WORK_SIDE = 160      # px: the longest side of the thumbnail on which the ink is found
INK = 0.3            # of the stretched contrast: what counts as ink when cropping
MASS_CENTRE = 14.0   # MNIST's mean centre of mass, in pixels from the top left, both ways (a test measures it)
STROKE = 5.2         # MNIST's ink area (pixels above 0.5) per pixel of digit height, at 20 px (a test measures it)
WORKERS = min(4, os.cpu_count() or 1)  # threads that read images: decoding and resampling release the GIL
AHEAD = 64           # files read ahead of the one printed, and the most the model reads at once


class Blank(Exception):
    """No ink found: the image is empty, or too faint to read."""


def to_grey(image):
    """A PIL image of any mode as mode "L". Transparent parts are composited onto white, or onto black where what
    is visible is mostly light: white ink on a transparent background."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        grey, alpha = image.convert("LA").split()
        visible = np.asarray(alpha, dtype=np.float32)
        light = float((np.asarray(grey, dtype=np.float32) * visible).sum()) > 127.5 * float(visible.sum())
        return Image.composite(grey, Image.new("L", image.size, 0 if light else 255), alpha)
    return image.convert("L")


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

    # Background: a plane through the border, for uneven light, then through everything that is not ink. A digit
    # cropped without a margin puts ink on the border, up to about half of it, and ink lies above the paper: so the
    # plane goes through the border's lower half, and the noise comes from its lower quantiles, which that ink
    # does not reach. Paper is then at 0.
    ys, xs = np.nonzero(border)
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


def find_images(arguments):
    """(path, None) for each image file that arguments name, folders opened one level deep, and (path, problem)
    for each that cannot be read, in order."""
    for path in map(Path, arguments):
        try:
            mode = path.stat().st_mode
        except OSError as e:
            yield path, str(paths.problem(e, path))
            continue
        if stat.S_ISDIR(mode):
            yield from folder_images(path)
        else:
            yield path, None if stat.S_ISREG(mode) else f"{paths.kind(mode)}, not an image file"


def folder_images(folder):
    """find_images for one folder: its image files by name, sorted; subfolders are not opened."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as e:
        yield folder, f"a folder, {paths.problem(e, folder)}"
        return
    others, found = 0, False
    for path in entries:
        try:
            mode = path.stat().st_mode
        except OSError as e:
            problem = str(paths.problem(e, path))
        else:
            if stat.S_ISDIR(mode):
                continue
            problem = None if stat.S_ISREG(mode) else f"{paths.kind(mode)}, not an image file"
        others += 1
        if path.suffix.lower() in images.EXTENSIONS:
            found = True
            yield path, problem
    if not found:
        yield folder, "an empty folder" if not others else f"a folder with no images ({', '.join(images.EXTENSIONS)})"


def readings(entries, thumbnails):
    """Lists of (path, outcome) for find_images' entries, in their order: the outcome is read()'s, or the problem
    found. Each list holds what is ready, at least one: results print as they come, and the model still reads
    many at once. WORKERS threads read up to AHEAD files ahead, so memory stays bounded however many files."""
    pool = ThreadPoolExecutor(WORKERS)
    pending = collections.deque()
    entries = iter(entries)
    try:
        while True:
            while len(pending) < AHEAD and (entry := next(entries, None)):
                path, problem = entry
                pending.append((path, problem or pool.submit(read, path, thumbnails)))
            if not pending:
                return
            batch = []
            while pending and (not batch or ready(pending[0][1])) and len(batch) < AHEAD:
                path, outcome = pending.popleft()
                batch.append((path, outcome if isinstance(outcome, str) else outcome.result()))
            yield batch
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def ready(outcome):
    return isinstance(outcome, str) or outcome.done()


def best_checkpoint(out_dir, model=None, skipped=lambda error: None):
    """The finished checkpoint in out_dir/checkpoints with the best final accuracy (of model, where given), full
    training runs before quick ones; None where there is none. Each file there that is not a usable checkpoint
    is passed to skipped, as its files.CheckpointError."""
    import files
    import runs
    candidates = []
    for path in sorted((Path(out_dir) / "checkpoints").glob("*.pt")):
        try:
            checkpoint = runs.load_checked(path)
        except files.CheckpointError as e:
            skipped(e)
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
        return {"file": shown(path, escape_controls=False), "blank": True}
    order = probabilities.argsort(descending=True)[:top].tolist()
    return {"file": shown(path, escape_controls=False), "digit": order[0],
            "probability": round(float(probabilities[order[0]]), 6),
            "top": [{"digit": d, "probability": round(float(probabilities[d]), 6)} for d in order],
            "probabilities": [round(float(p), 6) for p in probabilities]}


def given_path(text):
    """A path as given; an empty one, as an unset "$DIR" gives, is an error rather than the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path; name an image or a folder")
    return text


def get_args_parser():
    parser = OneLineErrorParser(description="Read handwritten digits in images with a trained model.",
                                formatter_class=HelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", type=given_path,
                        help=f"image files ({', '.join(images.EXTENSIONS)}) and folders of them")
    parser.add_argument("--model", choices=["lenet5", "custom_mlp", "lenet5_regularized"],
                        help="read with this model's best checkpoint in runs/ (default: the best of any model)")
    parser.add_argument("--checkpoint", type=Path, help="read with this checkpoint (default: the best in runs/)")
    parser.add_argument("--top", type=int, default=3, choices=range(1, 11), metavar="K",
                        help="show the K most likely digits")
    parser.add_argument("--json", action="store_true",
                        help="print JSON instead of a line per image; default: a line per image")
    parser.add_argument("--preview", type=Path, metavar="PATH",
                        help="also draw each image as given, as the model saw it, and its probabilities, into PATH "
                             "(a .png, not one of the inputs, replaced if it exists; default: none)")
    return parser


def check_preview(given_path, inputs):
    """The --preview path to write, resolved as the kernel will resolve it once its folders exist: symbolic links
    followed and "nosuch/.." taken away. UsageError, before any work, for one that would replace what it must not:
    one of the inputs, or a file in a folder being read; a folder or anything else that is not a regular file; a
    read-only file; a name that is not .png."""
    from errors import UsageError
    preview = Path(os.path.realpath(given_path))
    if preview.suffix.lower() != ".png":
        raise UsageError(f"--preview {shown(given_path)}: the preview is a PNG; give a file name that ends in .png, "
                         f"e.g. preview.png")
    try:
        mode = preview.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise UsageError(f"--preview {shown(preview)} is {paths.problem(e, preview)}; give another path") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"--preview {shown(given_path)} is {paths.kind(mode)}; give the path of a .png file")
    if mode is not None and not mode & 0o222:
        raise UsageError(f"--preview {shown(given_path)} is read-only; give another path")
    for given in map(Path, inputs):
        if given.is_dir() and preview.parent.exists() and preview.parent.samefile(given):
            raise UsageError(f"--preview {shown(given_path)} is in {shown(given)}, a folder of images to read; write "
                             f"the preview elsewhere")
        if mode is not None and given.exists() and preview.samefile(given):
            raise UsageError(f"--preview {shown(given_path)} is one of the images to read; write the preview "
                             f"elsewhere")
    return preview


def prepare_preview(preview):
    """Create the preview's folder and prove it writable, before any image is read, as main.py does for --out-dir."""
    import files
    from errors import UsageError
    try:
        files.make_writable(preview.parent)
    except OSError as e:
        raise UsageError(f"--preview {shown(preview)} cannot be written ({e.strerror or e}); pass another "
                         f"path") from None


def load(args):
    """The model to read with and its checkpoint, as the arguments choose; says which on standard error."""
    import files
    import runs
    import torch
    from errors import UsageError
    from recipes import evaluated_on

    def skipped(error):
        print(f"predict.py: skipped {shown(error.path)}, which {error.reason}", file=sys.stderr)
    checkpoint = args.checkpoint or best_checkpoint(files.DEFAULT_OUT_DIR, args.model, skipped)
    if checkpoint is None:
        raise UsageError(f"no trained {args.model or 'model'} in {files.DEFAULT_OUT_DIR / 'checkpoints'}; train "
                         f"one with `python main.py --model {args.model or 'lenet5_regularized'}`")
    model, saved = runs.load_model(checkpoint, torch.device("cpu"), args.model)
    print(f"reading with {saved['recipe']['model']} from {shown(checkpoint)} (epoch {saved['epoch']}, final "
          f"{evaluated_on(saved['recipe'])} accuracy {saved['history'][-1]['eval_acc']:.2f}%)", file=sys.stderr)
    return model


def read_all(args, model):
    """Read and print every image the arguments name, each as it is ready; returns the exit status."""
    import engine
    import figures
    import files
    import torch
    preview_rows, read_count, problems, separator = [], 0, 0, ""
    if args.json:
        emit("[")
    for batch in readings(find_images(args.inputs), thumbnails=args.preview is not None):
        fields = [outcome[1] for _, outcome in batch if not isinstance(outcome, str) and outcome[1] is not None]
        answers = iter(engine.probabilities(model, normalize(fields)) if fields else [])
        for path, outcome in batch:
            if not isinstance(outcome, str):
                thumbnail, field = outcome
                probabilities = next(answers) if field is not None else None
                if probabilities is not None and not torch.isfinite(probabilities).all():
                    outcome = "the model's answer is not a number: its checkpoint is broken; train it again"
            if isinstance(outcome, str):
                problems += 1
                print(f"predict.py: error: {shown(path)}: {outcome}", file=sys.stderr)
                entry, line = {"file": shown(path, escape_controls=False), "error": outcome}, None
            else:
                read_count += 1
                if args.preview and len(preview_rows) < figures.PREDICTIONS_SHOWN:
                    preview_rows.append((shown(path.name), thumbnail, field, probabilities))
                entry = record(path, probabilities, args.top)
                line = describe(probabilities, args.top) if probabilities is not None else "blank, no ink found"
            if args.json:  # one image a line, each an element of one list
                emit(separator + json.dumps(entry))
                separator = ","
            elif line:
                emit(f"{shown(path)}: {line}")
    if args.json:
        emit("]")
    if preview_rows:
        try:
            files.save_figure(args.preview, figures.predictions(preview_rows, total=read_count))
        except OSError as e:
            print(f"predict.py: error: cannot write {shown(args.preview)} ({e.strerror or e}); free some space or "
                  f"pass another --preview", file=sys.stderr)
            return 1
        print(f"wrote {shown(args.preview)}", file=sys.stderr)
    return 1 if problems else 0


def main(args, started=lambda: None):
    """Read every image the arguments name; returns the exit status: 0 all read, 1 some not, 2 bad arguments or
    checkpoint, 130 Ctrl-C, 141 a reader that went away, as main.py has them. started() is called once the model
    is loaded, before the first image is read."""
    from errors import UsageError
    try:
        if args.preview:
            args.preview = check_preview(args.preview, args.inputs)
        model = load(args)
        if args.preview:
            prepare_preview(args.preview)
        started()
        return read_all(args, model)
    except UsageError as e:
        print(f"predict.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\npredict.py: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and let nothing more be written to the pipe at exit.
        lose_output()
        return 141
    except OutputLost as e:
        lose_output()
        print(f"predict.py: error: cannot write the output ({e}); free some space or send it elsewhere",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(main(args, started=stop_on_ctrl_c("predict.py: interrupted")))
