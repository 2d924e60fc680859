"""Many runs at once against one at a time, as a user waits for them: whole processes, wall clock, on this machine.

    python -m benchmarks.bench_sweep [--runs 8] [--epochs 2] [--repeats 2] [--out PATH]

The same set of runs, LeNet5 on MNIST for --epochs epochs, seeds 0 to --runs - 1, trained in several ways, each
into a fresh folder, the ways taking turns --repeats times so that drifting machine speed hits each alike:

- main.py: `python main.py --model lenet5 --seed S` once per seed, one process after another, as a plain loop
  would run them; each run takes torch's default threads, every core;
- sweep --jobs 1: `python sweep.py --seed 0 1 ...` trains them one after another in one process, every core each;
- sweep --jobs C: C runs at once, one core and one torch thread each, on a private Ray instance (C: the cores);
- sweep --jobs C/2 --cpus-per-run 2: half as many at once, two threads each, where C is at least 4.

For each: the wall seconds from launch to exit (the median of the repeats, and their range), runs per minute, and
the speed-up over main.py's loop. Writes
results/bench_sweep.json, from which scripts/report/ builds the table in docs/sweeps.md; a quick run (other runs
or epochs) writes runs/bench_sweep.json unless --out says otherwise.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import output
from mnistlab import files
from mnistlab.cli import OneLineErrorParser, count, emit, run

PROG = "bench_sweep"
RUNS, EPOCHS, REPEATS = 8, 2, 2
ROOT = files.ROOT


def timed(argv, out_dir):
    """Wall seconds of one whole process, launch to exit; RunFailed with its last line where it fails."""
    from mnistlab.errors import RunFailed
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *argv, "--out-dir", str(out_dir)], cwd=ROOT, capture_output=True,
                          text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RunFailed(f"{' '.join(argv[:3])}... failed ({last}); run it by hand to see why")
    return time.perf_counter() - start


def ways(cores, runs, epochs):
    """{label: [argv, ...]}: the commands of each way to train the same runs."""
    seeds = [str(seed) for seed in range(runs)]
    common = ["--model", "lenet5", "--epochs", str(epochs)]
    found = {"main.py, one run after another": [["main.py", *common, "--seed", seed] for seed in seeds],
             "sweep.py --jobs 1": [["sweep.py", *common, "--seed", *seeds, "--jobs", "1"]],
             f"sweep.py --jobs {cores}": [["sweep.py", *common, "--seed", *seeds, "--jobs", str(cores)]]}
    if cores >= 4:
        found[f"sweep.py --jobs {cores // 2} --cpus-per-run 2"] = [
            ["sweep.py", *common, "--seed", *seeds, "--jobs", str(cores // 2), "--cpus-per-run", "2"]]
    return found


def get_args_parser():
    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=count(256), default=RUNS, help="how many runs each way trains")
    parser.add_argument("--epochs", type=count(100), default=EPOCHS, help="epochs of each run")
    parser.add_argument("--repeats", type=count(20), default=REPEATS, help="times each way runs, taking turns")
    parser.add_argument("--out", type=Path, help="where the figures go, as JSON; default: results/bench_sweep.json, "
                                                 "or runs/bench_sweep.json for a quick run")
    return parser


def main(args):
    def body():
        out = output.results_file(args.out, "bench_sweep.json",
                                 quick=(args.runs, args.epochs, args.repeats) != (RUNS, EPOCHS, REPEATS))
        import torch

        from mnistlab import engine
        cores = len(os.sched_getaffinity(0))
        seconds = {}
        with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
            for repeat in range(args.repeats):
                for i, (label, commands) in enumerate(ways(cores, args.runs, args.epochs).items()):
                    took = sum(timed(argv, Path(scratch) / f"{repeat}-{i}") for argv in commands)
                    seconds.setdefault(label, []).append(took)
                    emit(f"{label}: {took:.1f} s, {60 * args.runs / took:.1f} runs a minute")
        median = {label: statistics.median(times) for label, times in seconds.items()}
        reference = median["main.py, one run after another"]
        result = {"device_name": engine.describe_device(torch.device("cpu")), "cores": cores, "torch": torch.__version__,
                  "runs": args.runs, "epochs": args.epochs, "repeats": args.repeats,
                  "ways": {label: {"seconds": median[label], "all_seconds": seconds[label],
                                   "runs_per_minute": 60 * args.runs / median[label], "speedup": reference / median[label]}
                           for label in seconds}}
        files.save(out, files.write_json, result)
        emit(f"wrote {out}")
        return 0
    return run(PROG, body, interrupted=f"{PROG}: interrupted; nothing written")


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
