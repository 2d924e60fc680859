"""Time to 99% test accuracy, as a user waits for it: whole processes, from launch to exit, on this machine.

    python -m benchmarks.bench_time_to_accuracy [--seeds 10] [--reference-seeds 3] [--out PATH]

Three commands, each run in a fresh process per seed, the commands taking turns so that drifting machine speed
hits each alike:

- fast: `python main.py --model lenet5 --recipe fast --seed S`, for seeds 0 to --seeds - 1;
- default: `python main.py --model lenet5 --seed S`, the default recipe's 10 epochs, for the first --reference-seeds;
- reference: `python -m benchmarks.reference --seed S`, the torchvision DataLoader script, 10 epochs, for as many.

For each process: the wall seconds from launch to exit, and how many of them fell outside its epochs (start-up,
loading the data, checkpoints, the results and curves at the end); the epoch at which its test accuracy first
reaches 99.0%, and the seconds from launch to the moment that epoch's line was printed; its final test accuracy.
An epoch's seconds are the program's own count, training and test pass. Beside them, the seconds of processes
that only import torch, torchvision or matplotlib: the floor under any run's start-up. Writes
results/bench_time_to_accuracy.json, from which scripts/report/ builds the table in docs/speed.md; a quick run
(fewer or more seeds) writes runs/bench_time_to_accuracy.json unless --out says otherwise.
"""
if __name__ == "__main__":  # Ctrl-C while torch imports, below: one line, not a traceback
    from mnistlab.cli import stop_on_ctrl_c
    allow_ctrl_c = stop_on_ctrl_c("bench_time_to_accuracy: interrupted while starting; nothing written")

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import dataset
from benchmarks import output
from mnistlab import engine, files
from mnistlab.cli import OneLineErrorParser, count, emit, run

PROG = "bench_time_to_accuracy"
SEEDS, REFERENCE_SEEDS = 10, 3

ROOT = files.ROOT
TARGET = 99.0
COMMANDS = {
    "fast": ["main.py", "--model", "lenet5", "--recipe", "fast"],
    "default": ["main.py", "--model", "lenet5"],
    "reference": ["-m", "benchmarks.reference"],
}


def timed_run(argv, out_dir):
    """Run one process; returns its wall seconds, per epoch line it printed the seconds since launch, and its
    history."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        printed, last = [], ""
        for line in process.stdout:  # both programs flush a line at the end of every epoch
            if line.startswith("epoch "):
                printed.append(time.perf_counter() - start)
            last = line
        error = process.stderr.read()
    except BaseException:
        # Ctrl-C reaches the child from the terminal, SIGTERM only this process: stop the child either way, and
        # wait for it, so that it writes nothing into the temporary folder while that is being removed.
        process.terminate()
        process.wait()
        raise
    if process.wait():
        sys.exit(f"bench_time_to_accuracy: {' '.join(map(str, argv))} failed:\n{error[-2000:]}")
    wall = time.perf_counter() - start
    if argv[0] == "main.py":
        (results,) = (out_dir / "results").glob("*.json")
        return wall, printed, files.read_json(results)["history"]
    return wall, printed, json.loads(last)


IMPORTS = {"python": "pass", "torch": "import torch", "torch and torchvision": "import torch, torchvision",
           "torch and matplotlib": "import torch, matplotlib.figure, matplotlib.backends.backend_agg"}


def import_seconds(repeats=3):
    """Median seconds of a process that imports each set of modules and exits: the floor of any run's start-up."""
    seconds = {}
    for name, code in IMPORTS.items():
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
    return seconds


def measure(name, seed, folder):
    out_dir = Path(folder) / f"{name}_{seed}"
    argv = COMMANDS[name] + ["--seed", str(seed)] + (["--out-dir", str(out_dir)] if name != "reference" else [])
    wall, printed, history = timed_run(argv, out_dir)
    accuracies = [h["eval_acc"] for h in history]
    reached = next((i for i, acc in enumerate(accuracies) if acc >= TARGET), None)
    run = {"seed": seed, "wall_seconds": wall, "epoch_seconds": sum(h["seconds"] for h in history),
           "final_acc": accuracies[-1], "epochs": len(accuracies),
           "epoch_to_target": None if reached is None else reached + 1,
           "seconds_to_target": None if reached is None else printed[reached]}
    reached_when = "never" if reached is None else f"epoch {reached + 1} at {printed[reached]:.1f}s"
    emit(f"{name:9s} seed {seed}: {wall:6.1f}s launch to exit, final {accuracies[-1]:.2f}%, {TARGET}%: {reached_when}")
    return run


def summary(runs):
    finals = [r["final_acc"] for r in runs]
    reached = [r["seconds_to_target"] for r in runs if r["seconds_to_target"] is not None]
    return {"seeds": len(runs), "wall_seconds": statistics.mean(r["wall_seconds"] for r in runs),
            "outside_epochs_seconds": statistics.mean(r["wall_seconds"] - r["epoch_seconds"] for r in runs),
            "final_acc_mean": statistics.mean(finals),
            "final_acc_std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "reached": len(reached), "seconds_to_target": statistics.mean(reached) if reached else None,
            "epoch_to_target": statistics.mean(r["epoch_to_target"] for r in runs if r["epoch_to_target"])
            if reached else None}


def get_args_parser():
    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=count(100), default=SEEDS, help="seeds of the fast recipe, from 0")
    parser.add_argument("--reference-seeds", type=count(100), default=REFERENCE_SEEDS,
                        help="seeds of the default recipe and of the reference, from 0")
    parser.add_argument("--out", type=Path, help="where the figures go, as JSON; default: "
                                                 "results/bench_time_to_accuracy.json for the report's seeds, "
                                                 "runs/bench_time_to_accuracy.json for others")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)

    def body():
        out = output.results_file(args.out, "bench_time_to_accuracy.json",
                                 quick=(args.seeds, args.reference_seeds) != (SEEDS, REFERENCE_SEEDS))
        measure_all(args, out)
        return 0
    return run(PROG, body, interrupted=f"{PROG}: interrupted; nothing written")


def measure_all(args, out):
    dataset.prepare()  # extract the data once, before any clock starts
    runs = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(max(args.seeds, args.reference_seeds)):
            for name in COMMANDS:
                if seed < (args.seeds if name == "fast" else args.reference_seeds):
                    runs[name].append(measure(name, seed, folder))
    summaries = {name: summary(r) for name, r in runs.items()}
    imports = import_seconds()
    reference = summaries["reference"]["wall_seconds"]
    result = {"device_name": engine.describe_device(torch.device("cpu")), "torch": torch.__version__,
              "target": TARGET, "commands": {name: " ".join(["python", *argv]) for name, argv in COMMANDS.items()},
              "runs": runs, "summary": summaries, "import_seconds": imports,
              "default_speedup": reference / summaries["default"]["wall_seconds"],
              "fast_share": summaries["fast"]["wall_seconds"] / reference}
    files.save(out, files.write_json, result)
    emit(f"\n{result['device_name']}, torch {result['torch']}; mean over seeds, whole processes")
    for name, s in summaries.items():
        to_target = f"{s['seconds_to_target']:.1f}s" if s["seconds_to_target"] is not None else "never"
        emit(f"{name:9s} {s['wall_seconds']:7.1f}s launch to exit, final {s['final_acc_mean']:.2f} ± "
             f"{s['final_acc_std']:.2f}%, {s['reached']}/{s['seeds']} seeds reach {TARGET}%, at {to_target}")
    emit("a process that only imports: " + ", ".join(f"{name} {s:.2f}s" for name, s in imports.items()))
    emit(f"the default run is {result['default_speedup']:.2f}x faster than the reference (target: 3x); the fast "
         f"recipe takes {result['fast_share']:.1%} of the reference's time (target: at most 10%); wrote {out}")


if __name__ == "__main__":
    allow_ctrl_c()
    sys.exit(main())
