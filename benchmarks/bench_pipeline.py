"""Time a LeNet5 training epoch with this package's pipeline and with the plain torchvision one, on the CPU.

    python -m benchmarks.bench_pipeline [--repeats 5] [--batch-size 128] [--out PATH]

Both sides train the same LeNet5 from the same initial weights with the same batch size, optimizer, schedule
and thread count. The reference is the pipeline of pytorch/examples' mnist: datasets.MNIST + ToTensor +
Normalize + DataLoader(shuffle=True), with the model in its default memory format. Ours keeps the normalized
dataset as one tensor, slices a randperm per epoch and trains a channels_last model.

Beside the two, it times the levers on our side: the default memory format instead of channels_last, one
thread instead of PyTorch's default, torch.compile, and the evaluation batch size; it times bfloat16 autocast
over a few steps against float32; and it profiles our training step. Epochs alternate between all variants so that drifting machine speed hits each alike; the
figures are medians. Writes results/bench_pipeline.json; a quick run (other --repeats or --batch-size) writes
runs/bench_pipeline.json unless --out says otherwise.
"""
if __name__ == "__main__":  # Ctrl-C while torch imports, below: one line, not a traceback
    from mnistlab.cli import stop_on_ctrl_c
    allow_ctrl_c = stop_on_ctrl_c("bench_pipeline: interrupted while starting; nothing written")

import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import profile

import dataset
from benchmarks import output, reference
from mnistlab import engine, files
from mnistlab.cli import OneLineErrorParser, count, emit, run
from mnistlab.recipes import RECIPES
from model import LeNet5

PROG = "bench_pipeline"
REPEATS = 5


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def one_thread(fn):
    def run(*args):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args)
        finally:
            torch.set_num_threads(threads)
    return run


def bf16_step_ratio(build, loader, steps=30):
    """A bfloat16-autocast training step's time over a float32 one's, on the same batches; a CPU without native
    bfloat16 emulates it, slowly enough that whole epochs would take the benchmark hours."""
    batches = dataset.TensorLoader(loader.images[:steps * loader.batch_size], loader.labels[:steps * loader.batch_size],
                                   loader.batch_size, shuffle=True)
    seconds = {}
    for amp in (False, True):
        model = build()
        optimizer, scheduler = engine.build_optimizer(model, dict(RECIPES["lenet5"], lr=0.01), 2 * steps)
        recipe = dict(RECIPES["lenet5"], amp=amp)
        engine.train_one_epoch(model, batches, optimizer, scheduler, recipe)  # warm-up
        seconds[amp] = timed(engine.train_one_epoch, model, batches, optimizer, scheduler, recipe)
    return seconds[True] / seconds[False]


def profile_step(model, loader, optimizer, scheduler, steps=50):
    """The operators that take the most time in our training step, as (name, percent of CPU time)."""
    batches = dataset.TensorLoader(loader.images[:steps * loader.batch_size], loader.labels[:steps * loader.batch_size],
                                   loader.batch_size, shuffle=True)
    with profile() as prof:
        engine.train_one_epoch(model, batches, optimizer, scheduler, dict(RECIPES["lenet5"], amp=False))
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, 100 * e.self_cpu_time_total / total) for e in events[:8]]


def measure(args):
    recipe = dict(RECIPES["lenet5"], model="lenet5", batch_size=args.batch_size, amp=False)
    start = time.perf_counter()
    dataset.prepare()
    reference_train, reference_test = reference.loaders(args.batch_size)
    reference_setup = time.perf_counter() - start

    start = time.perf_counter()
    train_images, train_labels, test_images, test_labels = dataset.load()
    ours_train = dataset.TensorLoader(train_images, train_labels, args.batch_size, shuffle=True)
    ours_test = {size: dataset.TensorLoader(test_images, test_labels, size) for size in (1000, 10_000)}
    ours_setup = time.perf_counter() - start

    torch.manual_seed(0)
    initial = LeNet5().state_dict()

    def fresh(build):
        model = build()
        model.load_state_dict(initial)
        return model

    def ours_lenet():
        return engine.build_model(recipe, torch.device("cpu"))

    models = {"reference": fresh(LeNet5), "ours": fresh(ours_lenet), "ours, default memory format": fresh(LeNet5),
              "ours, 1 thread": fresh(ours_lenet), "ours, torch.compile": torch.compile(fresh(ours_lenet))}
    def ours(*args):
        return engine.train_one_epoch(*args, recipe)
    epoch_functions = {"reference": reference.train_epoch, "ours, 1 thread": one_thread(ours)}
    steps = (args.repeats + 2) * len(ours_train)
    optimizers = {name: engine.build_optimizer(model, recipe, steps) for name, model in models.items()}

    def epoch(name):
        train = epoch_functions.get(name, ours)
        return train(models[name], reference_train if name == "reference" else ours_train, *optimizers[name])

    evaluations = {"reference": lambda: reference.evaluate(models["reference"], reference_test),
                   "ours, batch 1,000": lambda: engine.evaluate(models["ours"], ours_test[1000]),
                   "ours, batch 10,000": lambda: engine.evaluate(models["ours"], ours_test[10_000])}

    # One untimed epoch of each first, for oneDNN's and the allocator's warm-up; the compiled variant's
    # first epoch also compiles, and that extra time is reported.
    first = {name: timed(epoch, name) for name in models}
    times = {name: [] for name in [*models, *(f"eval: {name}" for name in evaluations)]}
    for _ in range(args.repeats):
        for name in models:
            times[name].append(timed(epoch, name))
        for name, evaluation in evaluations.items():
            times[f"eval: {name}"].append(timed(evaluation))
    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "device_name": engine.describe_device(torch.device("cpu")), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "repeats": args.repeats,
        "setup_seconds": {"reference": reference_setup, "ours": ours_setup},
        "compile_seconds": first["ours, torch.compile"] - median["ours, torch.compile"],
        "seconds": times, "median": median, "train_ratio": median["ours"] / median["reference"],
        # Each repeat's own ratio, ours over the reference epoch just before it: the spread shows the noise.
        "train_ratios": [ours / theirs for ours, theirs in zip(times["ours"], times["reference"])],
        "profile": profile_step(models["ours"], ours_train, *optimizers["ours"]),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_step_ratio": bf16_step_ratio(lambda: fresh(ours_lenet), ours_train),
    }


def get_args_parser():
    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=count(100), default=REPEATS, help="timed epochs per variant, from 1 to 100")
    parser.add_argument("--batch-size", type=count(60_000), default=RECIPES["lenet5"]["batch_size"],
                        help="training batch size, the same for all variants, from 1 to 60000")
    parser.add_argument("--out", type=Path, help="where the figures go, as JSON; default: results/bench_pipeline.json "
                                                 "for the report's settings, runs/bench_pipeline.json for others")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)

    def body():
        out = output.results_file(args.out, "bench_pipeline.json", quick=(
            args.repeats, args.batch_size) != (REPEATS, RECIPES["lenet5"]["batch_size"]))
        result = measure(args)
        files.save(out, files.write_json, result)
        report(args, result, out)
        return 0
    return run(PROG, body, interrupted=f"{PROG}: interrupted; nothing written")


def report(args, result, out):
    median = result["median"]
    emit(f"{result['device_name']}, torch {result['torch']}, batch size {args.batch_size}, "
         f"median of {args.repeats} epochs")
    for name, seconds in median.items():
        base = median["eval: reference" if name.startswith("eval") else "reference"]
        emit(f"{name:36s}{seconds:8.2f}s  {seconds / base:6.3f} of the reference")
    emit(f"torch.compile's first epoch took {result['compile_seconds']:.1f}s longer")
    emit("our training step, by operator: " + ", ".join(f"{k} {p:.0f}%" for k, p in result["profile"]))
    emit(f"a bfloat16 autocast step takes {result['bf16_step_ratio']:.2f}x a float32 one "
         f"(CPU capability {result['cpu_capability']})")
    verdict = "meets" if result["train_ratio"] <= 1 / 3 else "misses"
    emit(f"ours takes {result['train_ratio']:.1%} of the reference's epoch time (median; single repeats "
         f"{min(result['train_ratios']):.1%} to {max(result['train_ratios']):.1%}): {verdict} the 1/3 target; "
         f"wrote {out}")


if __name__ == "__main__":
    allow_ctrl_c()
    sys.exit(main())
