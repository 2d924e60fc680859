"""Read your own handwritten digits: images and photos, made to look like MNIST, read by a trained model.

    python predict.py my_digit.png photo.jpg scans/
    python predict.py --model lenet5_regularized --checkpoint path/to.pt --top 3 --json scans/

Each image is made MNIST-like by preprocess.py, as the demo's drawings are. Files are opened by
images.open_image, and read a few at a time, each printed as soon as it and those before it are read.
"""
import argparse
import collections
import json
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mnistlab import images, paths
from mnistlab.cli import OneLineErrorParser, emit, run, stop_on_ctrl_c
from mnistlab.errors import UsageError
from mnistlab.paths import printable
from mnistlab.preprocess import normalize, read

WORKERS = min(4, os.cpu_count() or 1)  # threads that read images: decoding and resampling release the GIL
AHEAD = 64           # files read ahead of the one printed, and the most the model reads at once


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


def describe(probabilities, top):
    """The prediction in words: the digit, its probability, and the runners-up."""
    order = probabilities.argsort(descending=True)[:top].tolist()
    runners = ", ".join(f"{d} ({probabilities[d]:.1%})" for d in order[1:])
    return f"{order[0]} ({probabilities[order[0]]:.1%})" + (f"  runners-up: {runners}" if runners else "")


def record(path, probabilities, top):
    if probabilities is None:
        return {"file": printable(path, escape_controls=False), "blank": True}
    order = probabilities.argsort(descending=True)[:top].tolist()
    return {"file": printable(path, escape_controls=False), "digit": order[0],
            "probability": round(float(probabilities[order[0]]), 6),
            "top": [{"digit": d, "probability": round(float(probabilities[d]), 6)} for d in order],
            "probabilities": [round(float(p), 6) for p in probabilities]}


def given_path(text):
    """A path as given; an empty one, as an unset "$DIR" gives, is an error rather than the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path; name an image or a folder")
    return text


def get_args_parser():
    parser = OneLineErrorParser(description="Read handwritten digits in images with a trained model.")
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
    preview = Path(os.path.realpath(given_path))
    if preview.suffix.lower() != ".png":
        raise UsageError(f"--preview {printable(given_path)}: the preview is a PNG; give a file name that ends in "
                         f".png, e.g. preview.png")
    try:
        mode = preview.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise UsageError(f"--preview {printable(preview)} is {paths.problem(e, preview)}; give another path") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"--preview {printable(given_path)} is {paths.kind(mode)}; give the path of a .png file")
    if mode is not None and not mode & 0o222:
        raise UsageError(f"--preview {printable(given_path)} is read-only; give another path")
    for given in map(Path, inputs):
        if given.is_dir() and preview.parent.exists() and preview.parent.samefile(given):
            raise UsageError(f"--preview {printable(given_path)} is in {printable(given)}, a folder of images to "
                             f"read; write the preview elsewhere")
        if mode is not None and given.exists() and preview.samefile(given):
            raise UsageError(f"--preview {printable(given_path)} is one of the images to read; write the preview "
                             f"elsewhere")
    return preview


def prepare_preview(preview):
    """Create the preview's folder and prove it writable, before any image is read, as main.py does for --out-dir."""
    from mnistlab import files
    try:
        files.make_writable(preview.parent)
    except OSError as e:
        raise UsageError(f"--preview {printable(preview)} cannot be written ({e.strerror or e}); pass another "
                         f"path") from None


def load(args):
    """The model to read with and its checkpoint, as the arguments choose; says which on standard error."""
    import torch

    from mnistlab import checkpoints, files
    from mnistlab.recipes import evaluated_on

    def skipped(error):
        print(f"predict.py: skipped {printable(error.path)}, which {error.reason}", file=sys.stderr)
    checkpoint = args.checkpoint or checkpoints.best_checkpoint(files.DEFAULT_OUT_DIR, args.model, skipped)
    if checkpoint is None:
        raise UsageError(f"no {args.model or 'model'} trained on MNIST in {files.DEFAULT_OUT_DIR / 'checkpoints'}; "
                         f"train one with `python main.py --model {args.model or 'lenet5_regularized'}`")
    model, saved = checkpoints.load_model(checkpoint, torch.device("cpu"), args.model, reader="predict.py")
    print(f"reading with {saved['recipe']['model']} from {printable(checkpoint)} (epoch {saved['epoch']}, final "
          f"{evaluated_on(saved['recipe'])} accuracy {saved['history'][-1]['eval_acc']:.2f}%)", file=sys.stderr)
    return model


def read_all(args, model):
    """Read and print every image the arguments name, each as it is ready; returns the exit status."""
    import torch

    from mnistlab import engine, figures, files
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
                print(f"predict.py: error: {printable(path)}: {outcome}", file=sys.stderr)
                entry, line = {"file": printable(path, escape_controls=False), "error": outcome}, None
            else:
                read_count += 1
                if args.preview and len(preview_rows) < figures.PREDICTIONS_SHOWN:
                    preview_rows.append((printable(path.name), thumbnail, field, probabilities))
                entry = record(path, probabilities, args.top)
                line = describe(probabilities, args.top) if probabilities is not None else "blank, no ink found"
            if args.json:  # one image a line, each an element of one list
                emit(separator + json.dumps(entry))
                separator = ","
            elif line:
                emit(f"{printable(path)}: {line}")
    if args.json:
        emit("]")
    if preview_rows:
        try:
            files.save_figure(args.preview, figures.predictions(preview_rows, total=read_count))
        except OSError as e:
            print(f"predict.py: error: cannot write {printable(args.preview)} ({e.strerror or e}); free some space or "
                  f"pass another --preview", file=sys.stderr)
            return 1
        print(f"wrote {printable(args.preview)}", file=sys.stderr)
    return 1 if problems else 0


def main(args, started=lambda: None):
    """Read every image the arguments name; returns the exit status: 0 all read, 1 some not, 2 bad arguments or
    checkpoint, 130 Ctrl-C, 141 a reader that went away, as main.py has them. started() is called once the model
    is loaded, before the first image is read."""
    def body():
        if args.preview:
            args.preview = check_preview(args.preview, args.inputs)
        model = load(args)
        if args.preview:
            prepare_preview(args.preview)
        started()
        return read_all(args, model)
    return run("predict.py", body, interrupted="predict.py: interrupted")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    sys.exit(main(args, started=stop_on_ctrl_c("predict.py: interrupted")))
