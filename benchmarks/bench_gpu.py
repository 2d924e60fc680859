"""Time each model's CUDA training, and LeNet5 against the plain torchvision DataLoader pipeline on the same GPU.

    python -m benchmarks.bench_gpu [--epochs 10] [--device cuda] [--limit N] [--out PATH]

Every run is a fresh process, so its wall time includes start-up: imports, CUDA initialization and loading
the data. Ours is `python main.py --model M --epochs N` as a user types it, for each model, and for LeNet5
also with --amp, --compile and both, and `--recipe fast` with its own epochs. The reference is
benchmarks/reference.py: the same LeNet5 with the same optimizer and schedule through datasets.MNIST + ToTensor +
Normalize + DataLoader(num_workers=1, pin_memory=True), as pytorch/examples does on CUDA, copying each batch to
the GPU. Reported per run: median seconds per epoch (training and test
pass), training seconds for all epochs, wall seconds of the whole process, final test accuracy, and seconds of
training until the test accuracy first reaches 99.0%. Writes results/bench_gpu.json; a quick run (other
--epochs, a --limit, or the CPU) writes runs/bench_gpu.json unless --out says otherwise.
"""
if __name__ == "__main__":  # Ctrl-C while torch imports, below: one line, not a traceback
    from mnistlab.cli import stop_on_ctrl_c
    allow_ctrl_c = stop_on_ctrl_c("bench_gpu: interrupted while starting; nothing written")

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import output
from mnistlab import engine, files
from mnistlab.cli import OneLineErrorParser, count, emit, run
from mnistlab.errors import UsageError

PROG = "bench_gpu"
ROOT = files.ROOT
EPOCHS = 10

TARGET_ACCURACY = 99.0
OURS = [("lenet5", []), ("lenet5", ["--amp"]), ("lenet5", ["--compile"]), ("lenet5", ["--amp", "--compile"]),
        ("lenet5", ["--recipe", "fast"]), ("custom_mlp", []), ("lenet5_regularized", [])]


def timed_process(argv):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *map(str, argv)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"bench_gpu: {' '.join(map(str, argv))} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def summarize(label, history, wall):
    reached = [h["epoch"] for h in history if h["eval_acc"] >= TARGET_ACCURACY]
    return {"run": label, "seconds_per_epoch": statistics.median(h["seconds"] for h in history),
            "train_seconds": sum(h["seconds"] for h in history), "wall_seconds": wall,
            "final_test_acc": history[-1]["eval_acc"],
            "seconds_to_99": sum(h["seconds"] for h in history[:reached[0]]) if reached else None}


def measure(args):
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for i, (model, flags) in enumerate(OURS):
            label = " ".join([model, *flags])
            emit(f"running {label} ...")
            limit = ["--limit", str(args.limit)] if args.limit else []
            epochs = [] if "--recipe" in flags else ["--epochs", args.epochs]  # a named recipe has its own
            out_dir = Path(folder) / str(i)
            wall, _ = timed_process([ROOT / "main.py", "--model", model, *epochs, "--device", args.device,
                                     "--out-dir", out_dir, *limit, *flags])
            (results,) = (out_dir / "results").glob("*.json")
            rows.append(summarize(label, files.read_json(results)["history"], wall))
    emit("running the torchvision DataLoader reference ...")
    wall, stdout = timed_process(["-m", "benchmarks.reference", "--epochs", args.epochs, "--device", args.device,
                                  *(["--limit", args.limit] if args.limit else [])])
    rows.append(summarize("reference: lenet5, torchvision DataLoader", json.loads(stdout.splitlines()[-1]), wall))
    return rows


def get_args_parser():
    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=count(1000), default=EPOCHS, help="epochs per run, from 1 to 1000")
    parser.add_argument("--device", default="cuda", choices=["cuda", "mps", "xpu", "cpu"],
                        help="the device to time; cpu only checks that this script works")
    parser.add_argument("--limit", type=count(60_000),
                        help="first N training and test images only, from 1 to 60000 (quick checks); default: all")
    parser.add_argument("--out", type=Path, help="where the figures go, as JSON; default: results/bench_gpu.json for "
                                                 "all images, 10 epochs and a GPU, runs/bench_gpu.json otherwise")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)

    def body():
        out = output.results_file(args.out, "bench_gpu.json",
                                 quick=args.epochs != EPOCHS or args.limit is not None or args.device == "cpu")
        try:
            device = engine.resolve_device(args.device)
        except UsageError:
            raise UsageError(f"--device {args.device}: no {args.device.upper()} device here; run this on a machine "
                             f"with one, or pass --device cpu to check the script") from None
        rows = measure(args)
        name = engine.describe_device(device)
        files.save(out, files.write_json, {"device_name": name, "torch": torch.__version__, "epochs": args.epochs,
                                           "limit": args.limit, "rows": rows})
        reference = rows[-1]
        emit(f"\n{name}, torch {torch.__version__}, {args.epochs} epochs, one fresh process per run")
        emit(f"{'run':44s}{'s/epoch':>9s}{'train s':>9s}{'wall s':>9s}{'test acc':>10s}{'s to 99%':>10s}"
             f"{'epoch speed-up':>16s}")
        for row in rows:
            to_99 = f"{row['seconds_to_99']:.2f}" if row["seconds_to_99"] is not None else "never"
            speedup = reference["seconds_per_epoch"] / row["seconds_per_epoch"]
            emit(f"{row['run']:44s}{row['seconds_per_epoch']:9.3f}{row['train_seconds']:9.2f}"
                 f"{row['wall_seconds']:9.2f}{row['final_test_acc']:9.2f}%{to_99:>10s}{speedup:15.1f}x")
        emit(f"wrote {out}")
        return 0
    return run(PROG, body, interrupted=f"{PROG}: interrupted; nothing written")


if __name__ == "__main__":
    allow_ctrl_c()
    sys.exit(main())
