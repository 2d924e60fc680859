"""How well predict.py reads photos of digits: the MNIST test digits rendered as photos, read from files.

    python -m benchmarks.bench_predict [--checkpoint PATH] [--count 10000] [--out PATH] [--preview PATH]

Each test digit becomes a JPEG "photo": dark ink on light paper, a digit 40 to 200 px tall, off centre on a
canvas of random size and aspect ratio, under a brightness gradient, with Gaussian noise. They are written to
files and read back through predict.py's own path (decoding in threads, mnist_like, one batched forward).
Printed beside the model's plain test accuracy: the accuracy on the photos, the naive path's (the whole image
resized to 28x28 and normalized), and images per second end to end, decoding included, for a batch of 1,000
files. Writes results/bench_predict.json and plots/predict_preview.png; a quick run (any other --count or
--checkpoint) writes runs/bench_predict.json and runs/bench_predict_preview.png unless --out says otherwise.
"""
if __name__ == "__main__":  # Ctrl-C while torch imports, below: one line, not a traceback
    from mnistlab.cli import stop_on_ctrl_c
    allow_ctrl_c = stop_on_ctrl_c("bench_predict: interrupted while starting; nothing written")

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import dataset
from benchmarks import output
from mnistlab import checkpoints, engine, figures, files, preprocess
from mnistlab.cli import OneLineErrorParser, count, emit, run
from mnistlab.errors import UsageError
from mnistlab.recipes import run_name

PROG = "bench_predict"
COUNT = 10_000
CHECKPOINT = files.RunPaths.of(files.ROOT, run_name("lenet5_regularized")).checkpoint
COMMITTED_PREVIEW = files.ROOT / "plots" / "predict_preview.png"


def render_photo(digit, rng):
    """One MNIST digit (28x28 uint8) as a photo of dark ink on light paper: a PIL image, mode L."""
    rows, cols = np.nonzero(digit > 0)
    ink = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    height = rng.uniform(40, 200)
    size = (max(1, round(ink.shape[1] * height / ink.shape[0])), round(height))
    ink = np.asarray(Image.fromarray(ink).resize(size, Image.Resampling.BICUBIC), dtype=np.float32) / 255
    canvas_h = round(size[1] * rng.uniform(1.3, 4))
    canvas_w = max(round(size[0] + size[1] * 0.3), round(size[1] * rng.uniform(1.3, 4)))
    top, left = rng.integers(0, canvas_h - size[1] + 1), rng.integers(0, canvas_w - size[0] + 1)
    coverage = np.zeros((canvas_h, canvas_w), dtype=np.float32)
    coverage[top:top + size[1], left:left + size[0]] = np.clip(ink, 0, 1)
    # Paper brightness with a linear gradient in a random direction; ink darkens it by a random contrast.
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.indices(coverage.shape, dtype=np.float32)
    ramp = (xs * np.cos(angle) + ys * np.sin(angle)) / max(canvas_h, canvas_w)
    paper = rng.uniform(0.65, 0.95) + rng.uniform(0.1, 0.3) * (ramp - ramp.mean())
    photo = paper * (1 - rng.uniform(0.6, 0.9) * coverage) + rng.normal(0, rng.uniform(0.01, 0.04), coverage.shape)
    return Image.fromarray(np.clip(photo * 255, 0, 255).astype(np.uint8))


def write_photos(images, folder, seed=0):
    rng = np.random.default_rng(seed)
    paths = []
    for i, digit in enumerate(images):
        path = folder / f"{i:05d}.jpg"
        render_photo(digit, rng).save(path, quality=int(rng.integers(50, 95)))
        paths.append(path)
    return paths


def read_naively(path):
    """The baseline: the whole image resized to 28x28, normalized as MNIST is, no other preprocessing."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L").resize((28, 28), Image.Resampling.BILINEAR), dtype=np.float32) / 255


def predict_files(model, paths, reader):
    """Predicted digits for paths, reading each with reader in threads; blanks count as wrong (-1)."""
    with ThreadPoolExecutor() as pool:
        fields = list(pool.map(reader, paths))
    seen = [i for i, field in enumerate(fields) if field is not None]
    predicted = torch.full((len(paths),), -1)
    if seen:
        predicted[seen] = engine.probabilities(model, preprocess.normalize([fields[i] for i in seen])).argmax(1)
    return predicted


def mnist_like_or_none(path):
    outcome = preprocess.read(path)
    return None if isinstance(outcome, str) else outcome[1]


def get_args_parser():
    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path,
                        help="the model to read with; default: checkpoints/lenet5_regularized_seed0.pt, the report's "
                             "seed-0 LeNet5_Regularized")
    parser.add_argument("--count", type=count(COUNT), default=COUNT, help="test digits to render, from 1 to 10000")
    parser.add_argument("--out", type=Path, help="where the figures go, as JSON; default: results/bench_predict.json "
                                                 "for the report's run, runs/bench_predict.json for a quick one")
    parser.add_argument("--preview", type=Path, metavar="PATH",
                        help="where the preview figure goes; default: plots/predict_preview.png beside the "
                             "committed results/bench_predict.json, else beside --out, named after it")
    return parser


def outputs(args):
    """The JSON and the preview to write, checked before any work. The committed preview is drawn only beside the
    committed JSON, so that the README's figure and its numbers always come from the same run."""
    out = output.results_file(args.out, "bench_predict.json",
                             quick=args.count != COUNT or args.checkpoint.resolve() != CHECKPOINT)
    return out, output.figure_beside(out, args.preview, files.ROOT / "results" / "bench_predict.json",
                                    COMMITTED_PREVIEW, out.with_name(f"{out.stem}_preview.png"), "--preview")


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    args.checkpoint = args.checkpoint or CHECKPOINT

    def body():
        out, preview_path = outputs(args)
        measure(args, out, preview_path)
        return 0
    return run(PROG, body, interrupted=f"{PROG}: interrupted; nothing written")


def measure(args, out, preview_path):
    if args.checkpoint == CHECKPOINT and not CHECKPOINT.is_file():  # the report's, which git does not hold
        raise UsageError(f"no checkpoint at {CHECKPOINT.relative_to(files.ROOT)}; `make report ARGS=LeNet5_Regularized` "
                         f"trains it (git holds none), or pass --checkpoint PATH")
    model, checkpoint = checkpoints.load_model(args.checkpoint, torch.device("cpu"))
    _, _, test_images, test_labels = dataset.load_splits()
    plain = engine.evaluate(model, dataset.TensorLoader(test_images[:args.count], test_labels[:args.count], 1000))
    raw = dataset.read_split(train=False)[0][:args.count].numpy()
    truth = test_labels[:args.count]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        paths = write_photos(raw, Path(folder))
        render_seconds = time.perf_counter() - start
        accuracy = {}
        for name, reader in (("predict.py", mnist_like_or_none), ("naive", read_naively)):
            accuracy[name] = 100.0 * (predict_files(model, paths, reader) == truth).double().mean().item()
        # Throughput: a fresh batch of 1,000 files, end to end, best of 3.
        batch = paths[:1000]
        seconds = min(timed(lambda: predict_files(model, batch, mnist_like_or_none)) for _ in range(3))
        preview_rows = preview(model, paths, truth)
    result = {"checkpoint": str(args.checkpoint.relative_to(files.ROOT) if args.checkpoint.is_relative_to(files.ROOT)
                                else args.checkpoint),
              "model": checkpoint["recipe"]["model"], "count": args.count, "device_name": engine.describe_device(
                  torch.device("cpu")), "plain_test_acc": plain.acc, "photo_acc": accuracy["predict.py"],
              "naive_acc": accuracy["naive"], "images_per_second": len(batch) / seconds, "batch": len(batch),
              "render_seconds": render_seconds}
    files.save(out, files.write_json, result)
    files.save(preview_path, files.save_figure, figures.predictions(preview_rows))
    emit(f"{result['model']} on {result['device_name']}: test digits {plain.acc:.2f}%, the same digits as photos "
         f"{result['photo_acc']:.2f}% (naive: {result['naive_acc']:.2f}%), "
         f"{result['images_per_second']:.0f} images/s for {len(batch):,} files; wrote {out} and {preview_path}")


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def preview(model, paths, truth, count=6):
    """Rows for the preview figure: the first photos, with the first misread one among them."""
    predicted = predict_files(model, paths[:2000], mnist_like_or_none)
    wrong = [i for i in range(len(predicted)) if predicted[i] != truth[i]][:1]
    rows = []
    for i in sorted(set(range(count - len(wrong))) | set(wrong)):
        thumbnail, field = preprocess.read(paths[i], thumbnail=True)
        probabilities = engine.probabilities(model, preprocess.normalize([field]))[0] if field is not None else None
        rows.append((f"photo {i}, a {int(truth[i])}", thumbnail, field, probabilities))
    return rows


if __name__ == "__main__":
    allow_ctrl_c()
    sys.exit(main())
