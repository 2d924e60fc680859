"""Rebuild the report, the generated sections of README.md and docs/ and the figures, from results/*.json.

    python -m scripts.report           # from the committed results, in seconds
    python -m scripts.report --rerun   # first rerun every experiment and the benchmark (about 35 min on 2 CPU cores)
    python -m scripts.report --rerun "batch norm only"   # first rerun just the named experiments

Generated sections sit in the documents (DOCUMENTS) between <!-- report:NAME --> and <!-- /report:NAME -->. The
runs go through runner.py, as sweep.py's do (--jobs, --address, --cpus-per-run, --gpus-per-run run many at once),
into a staging folder, checkpoints/report/; nothing committed changes until every run asked for is finished, and
then each run's checkpoint, curves and results are moved into checkpoints/, plots/ and results/, the results last,
all or none: a move that fails puts back every one made. An interrupted --rerun leaves the committed files as they
were, and the same command continues it.
"""
if __name__ == "__main__":  # Ctrl-C while torch and matplotlib import, below: one line, not a traceback
    from cli import stop_on_ctrl_c
    allow_ctrl_c = stop_on_ctrl_c("report: interrupted while starting; nothing written")

import contextlib
import functools
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys

import numpy as np
import torch

import dataset
import engine
import figures
import files
import measurements
import paths
import runner
import runs
import significance
import slots
from cli import STOPS, OneLineErrorParser, add_runner_flags, emit, run
from errors import RunFailed, UsageError
from model import MODELS, count_parameters, parameter_table
from recipes import (EPOCHS, LABELS, MODEL_NAMES, NAMED_RECIPES, RECIPES, completed, format_recipe, resolve_recipe,
                     run_name, shown_value)
from scripts import tune
from scripts.tune import FAST_TUNING_SEEDS, SEARCH_SPACE, TARGET_ACCURACY, TUNING_SEEDS

# The report: each experiment is run once per seed, for EPOCHS epochs, on top of its model's recipe.
SEEDS = (0, 1, 2)
TRAIN_SIZES = (1_000, 3_000, 10_000, 30_000)


def _experiments():
    regularized, lenet = RECIPES["lenet5_regularized"], RECIPES["lenet5"]
    # label -> (model, overrides of its recipe, tag). Each single technique is added to LeNet5's recipe, learning
    # rate included, with its setting from LeNet5_Regularized's recipe.
    experiments = {
        "LeNet5": ("lenet5", {}, None),
        "CustomMLP": ("custom_mlp", {}, None),
        "LeNet5_Regularized": ("lenet5_regularized", {}, None),
        "weight decay only": ("lenet5", {"weight_decay": regularized["weight_decay"]}, "wd"),
        "batch norm only": ("lenet5_regularized", {"lr": lenet["lr"], "augment": 0.0, "dropout": 0.0,
                                                   "weight_decay": 0.0}, "bn"),
        "dropout only": ("lenet5_regularized", {"lr": lenet["lr"], "batch_norm": False, "augment": 0.0,
                                                "weight_decay": 0.0}, "dropout"),
        "augmentation only": ("lenet5", {"augment": regularized["augment"]}, "augment"),
        "all four at LeNet5's learning rate": ("lenet5_regularized", {"lr": lenet["lr"]}, "lenet5lr"),
        "CustomMLP without augmentation": ("custom_mlp", {"augment": 0.0}, "noaug"),
    }
    # Sample efficiency: stratified subsets of the training set, each trained for the same number of optimizer
    # steps as the full set; the full set's runs are "LeNet5" and "CustomMLP without augmentation".
    for size in TRAIN_SIZES:
        experiments[f"LeNet5, {size:,} images"] = ("lenet5", {"train_size": size}, f"n{size}")
        experiments[f"CustomMLP without augmentation, {size:,} images"] = (
            "custom_mlp", {"augment": 0.0, "train_size": size}, f"noaug_n{size}")
    return experiments


EXPERIMENTS = _experiments()


def experiment_recipe(label, seed):
    model, overrides, _ = EXPERIMENTS[label]
    return resolve_recipe(model, overrides, epochs=EPOCHS, seed=seed, limit=None, train_size=None,
                          validation=False, amp=False)


def experiment_run_name(label, seed):
    model, _, tag = EXPERIMENTS[label]
    return run_name(model, tag, seed)


ROOT = files.ROOT
# Where --rerun trains, so that nothing committed changes before every run is whole (git ignores checkpoints/).
STAGING = ROOT / "checkpoints" / "report"
RESULTS, PLOTS = ROOT / "results", ROOT / "plots"
PAGES = ROOT  # where README.md and docs/ lie
MODEL_LABELS = ["LeNet5", "CustomMLP", "LeNet5_Regularized"]
ABLATION_LABELS = ["LeNet5", "weight decay only", "batch norm only", "dropout only", "augmentation only",
                   "all four at LeNet5's learning rate", "LeNet5_Regularized"]
# The runs whose robustness the report draws, and the two models of the sample-efficiency experiment.
ROBUSTNESS_LABELS = ["LeNet5", "augmentation only", "CustomMLP without augmentation", "CustomMLP",
                     "LeNet5_Regularized"]
ROBUSTNESS_NAMES = {"augmentation only": "LeNet5 with augmentation", "CustomMLP": "CustomMLP with augmentation"}
SAMPLE_EFFICIENCY = {"LeNet5": "LeNet5", "CustomMLP without augmentation": "CustomMLP without augmentation"}
ROBUSTNESS_SHIFTS, ROBUSTNESS_ROTATIONS = (1, 2, 3, 4, 6), (10, 20, 30)
# The robustness differences that the prose draws on, first minus second.
ROBUSTNESS_PAIRS = [("LeNet5", "CustomMLP without augmentation"), ("CustomMLP", "LeNet5"),
                    ("augmentation only", "CustomMLP"), ("LeNet5_Regularized", "augmentation only")]
LECUN_1998_ERROR = 0.95  # % test error of LeNet-5 without distortions, LeCun et al. (1998)


# How far the command got, for the line that a signal prints.
PROGRESS = {"rerun": False, "moved": False}


@contextlib.contextmanager
def deferred_signals():
    """Ctrl-C, SIGTERM and SIGHUP held back until the block is done, then delivered."""
    held, handlers = [], {}
    for signum in STOPS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            handlers[signum] = signal.signal(signum, lambda number, frame: held.append(number))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in held[:1]:
            signal.raise_signal(signum)


def stopped_line():
    if PROGRESS["moved"]:
        return ("report: interrupted after the rerun's runs were moved into results/, plots/ and checkpoints/; "
                "make readme redraws the figures, the README and docs/ from them")
    if PROGRESS["rerun"]:
        return (f"report: interrupted; the committed results are as they were, and the same command continues from "
                f"{STAGING}")
    return "report: interrupted; each document and figure is as it was, or whole and new"


def rerun(labels, settings):
    """Rerun the experiments' runs into STAGING, then move them into place once all are finished."""
    named = [(experiment_run_name(label, seed), experiment_recipe(label, seed)) for label in labels for seed in SEEDS]
    staged_paths = [files.RunPaths.of(STAGING, name) for name, _ in named]
    # First, so that a staging folder that cannot be written is its own refusal, not one of the staged runs'.
    files.prepare_out_dir(STAGING, [path for staged in staged_paths for path in staged.outputs], flag=None)
    try:
        jobs, finished = runner.plan(named, lambda name: files.RunPaths.of(STAGING, name), STAGING, flag=None,
                                     settings=settings)
    except UsageError as e:
        raise own_advice(e, f"delete {STAGING} to start the rerun over") from None
    files.prepare_out_dir(ROOT, [path for name, _ in named for path in files.RunPaths.of(ROOT, name).outputs],
                          flag=None)
    emit(f"{len(named)} runs: {len(finished)} finished already in {STAGING}, {len(jobs)} to train")
    try:
        failed = runner.train_all(jobs, settings, measure=lambda job: measurements.measurements(job.recipe),
                                  line=runner.describe)
    except UsageError as e:  # another process holds a run's lock
        raise own_advice(e, "wait for it to end, then run this command again") from None
    if failed:
        raise RunFailed(f"{len(failed)} runs failed ({', '.join(failed)}); nothing committed changed")
    moves = [(getattr(staged, kind), getattr(files.RunPaths.of(ROOT, name), kind))  # each run's results last
             for (name, _), staged in zip(named, staged_paths) for kind in runner.KINDS]
    check_moves(moves)
    # The moves take milliseconds; a signal waits for them, so that no run is left half moved.
    with deferred_signals():
        move_into_place(moves)
        PROGRESS["moved"] = True
    emit(f"moved {len(named)} runs into {ROOT / 'results'}, {PLOTS} and {ROOT / 'checkpoints'}")


def own_advice(refusal, advice):
    """runner's refusal for a staged run in the report's words: its advice named sweep.py's and main.py's flags,
    which the report has not, and the settings it names are recipes.py's."""
    problem = re.sub(r"--(?=[a-z])", "", str(refusal).removeprefix("--resume: ").split("; ")[0])
    return UsageError(f"{problem}; {advice}")


def check_moves(moves):
    """UsageError, before anything is moved, unless every staged file is there (a finished run's checkpoint may be
    gone): a run moved without it would leave the committed files a mix of two reruns."""
    missing = [source for source, _ in moves if not source.is_file()]
    if missing:
        runs_ = sorted({path.stem.removesuffix("_curves") for path in missing})
        raise UsageError(f"{missing[0]} is missing, so {len(runs_)} staged runs ({', '.join(runs_)}) cannot be moved "
                         f"into place whole; delete {STAGING} to start the rerun over")


def move_into_place(moves):
    """Move each staged file over its committed one, keeping the committed one in STAGING until every move is made:
    where a move fails, every move made is undone, so that the committed files are as they were."""
    kept, undo = STAGING / "replaced", []
    try:
        for source, target in moves:
            if target.exists():
                backup = kept / target.relative_to(ROOT)
                backup.parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, backup)
                undo.append((target, backup))
            os.replace(source, target)
            undo.append((source, target))
    except OSError as e:
        for source, target in reversed(undo):
            os.replace(target, source)
        raise UsageError(f"could not move {source} to {target} ({e.strerror or e}); the committed files are as they "
                         f"were, the runs still in {STAGING}: fix that and run the same command") from None
    shutil.rmtree(kept, ignore_errors=True)


@functools.cache
def load(label):
    """The runs of one experiment, seed by seed, each checked against its slot (slots.check): BadResults where one
    does not fill it."""
    return [load_run(label, seed, RESULTS / f"{experiment_run_name(label, seed)}.json") for seed in SEEDS]


def load_run(label, seed, path):
    """One run of an experiment, checked against its slot. A recipe other than recipes.py's names recipes.py: after
    an edit there, every committed run differs, and restoring the files would not help."""
    try:
        return slots.load(path, f"restore it with `git checkout -- {path}`, or rebuild it with `make report`",
                          recipe=experiment_recipe(label, seed), labels=test_labels(), train_eval=True,
                          robustness=None if EXPERIMENTS[label][1].get("train_size") else
                          {"shift": measurements.SHIFTS, "rotation": measurements.ROTATIONS},
                          params=params_of(label))
    except slots.BadResults as e:
        if not e.problem.startswith("holds another run's recipe ("):  # not a damaged file's
            raise
        raise slots.BadResults(path, e.problem, f"where recipes.py was edited, undo that (`git checkout -- "
                               f"recipes.py`) or rerun every run with `make report`; else restore the file with "
                               f"`git checkout -- {path}`") from None


@functools.cache
def params_of(label):
    """The parameter count of an experiment's model, counted here rather than taken from its files."""
    return count_parameters(engine.build_model(experiment_recipe(label, 0), "cpu"))


def check_all():
    """Read every file the README draws on through its slot check, so that a bad one stops the report before
    anything is drawn or written."""
    for label in EXPERIMENTS:
        load(label)
    check_choices()
    for path in left_out():
        emit(f"report: leaves out {paths.shown(path)}: no sweep of scripts/tune.py scores it (move it away to quiet "
             f"this line)")


def final(loaded, key):
    """The final-epoch value of key in each run; never the best epoch."""
    return [run["history"][-1][key] for run in loaded]


def mean_std(values, digits=2):
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def span(bounds, digits=3):
    return f"{bounds[0]:+.{digits}f} to {bounds[1]:+.{digits}f}"


def p_value(p):
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def verdict(real, needed):
    """A difference's verdict; where it is not real, the smallest difference (points) that would have been."""
    return "**real**" if real else "not measurable" + (f" ({needed:.2f} needed)" if needed is not None else "")


def interval_verdict(bounds):
    """The verdict of an interval alone: real where it leaves out zero."""
    return verdict(significance.excludes_zero(bounds), (bounds[1] - bounds[0]) / 2)


def seconds_per_epoch(loaded):
    return statistics.mean(h["seconds"] for run in loaded for h in run["history"])


def best_label():
    return max(MODEL_LABELS, key=lambda label: statistics.mean(final(load(label), "eval_acc")))


def gaps(loaded):
    """Per seed: clean train accuracy minus test accuracy, and test loss minus clean train loss."""
    return ([run["final_train_eval"]["acc"] - acc for run, acc in zip(loaded, final(loaded, "eval_acc"))],
            [loss - run["final_train_eval"]["loss"] for run, loss in zip(loaded, final(loaded, "eval_loss"))])


def best_predictions():
    """The best model's label, and the final predictions of its seed-0 run on the test set."""
    label = best_label()
    return label, torch.tensor([int(c) for c in load(label)[0]["predictions"]])


def test_size():
    """How many test images each report run was scored on."""
    return load("LeNet5")[0]["eval_images"]


def test_split():
    """The test images (N, 28, 28) as bytes and their labels."""
    return dataset.read_split(train=False)


@functools.cache
def test_labels():
    """The test labels, as numpy, read once: every run's predictions are checked against them."""
    return test_split()[1].numpy()


@functools.cache
def correct(label):
    """Per seed and test image, whether the experiment's final model got the image right: (seeds, images) booleans."""
    truth = test_labels()
    return np.stack([np.frombuffer(run["predictions"].encode(), np.uint8) - ord("0") == truth for run in load(label)])


def validation_images():
    """How many images the validation split holds; the tuning runs do not record it."""
    return len(dataset.load_splits(validation=True)[3])


# ---------------------------------------------------------------- sections

def section_quickstart():
    run = load("LeNet5")[0]
    written = files.RunPaths.of("runs", "lenet5_seed0")
    lines = [f"device {run['device']} ({run['device_name']}), torch {run['torch']}", "",
             f"lenet5: {run['params']:,} parameters", parameter_table(MODELS["lenet5"]()),
             format_recipe(completed(run["recipe"])), *(runs.format_epoch(h, run["epochs"]) for h in run["history"]),
             f"wrote {written.results}, {written.curves} and {written.checkpoint}"]
    return ("What it prints: the run behind `results/lenet5_seed0.json`, which `make report` trained with the same "
            "recipe:\n\n```text\n" + "\n".join(lines) + "\n```")


def section_recipes():
    rows = ["| model | optimizer | peak learning rate | weight decay | batch size | augmentation | dropout | batch norm |",
            "|---|---|---:|---:|---:|:-:|:-:|:-:|"]
    for label in MODEL_LABELS:
        r = RECIPES[EXPERIMENTS[label][0]]
        rows.append(f"| {label} | {r['optimizer']} | {r['lr']} | {r['weight_decay'] or '-'} | {r['batch_size']} | "
                    f"{'yes' if r['augment'] else '-'} | {r.get('dropout') or '-'} | "
                    f"{'yes' if r.get('batch_norm') else '-'} |")
    return "\n".join(rows)


def generalization_rows(labels, names=None):
    """Table rows of final test and clean-train figures, mean ± std over seeds; names renames labels."""
    rows = []
    for label in labels:
        loaded = load(label)
        recipe = loaded[0]["recipe"]
        acc_gaps, loss_gaps = gaps(loaded)
        rows.append(f"| {(names or {}).get(label, label)} | {'yes' if recipe.get('batch_norm') else '-'} | "
                    f"{recipe.get('dropout') or '-'} | {'yes' if recipe['augment'] else '-'} | "
                    f"{recipe['weight_decay'] or '-'} | {mean_std(final(loaded, 'eval_acc'))} | "
                    f"{mean_std(final(loaded, 'eval_loss'), 4)} | "
                    f"{mean_std([run['final_train_eval']['acc'] for run in loaded])} | {mean_std(acc_gaps)} | "
                    f"{mean_std(loss_gaps, 4)} |")
    return rows


GENERALIZATION_HEADER = ["| run | batch norm | dropout | augmentation | weight decay | test accuracy % | test loss | "
                         "clean train accuracy % | accuracy gap, points | loss gap |",
                         "|---|:-:|:-:|:-:|:-:|---:|---:|---:|---:|---:|"]
GENERALIZATION_NOTE = (
    f"Mean ± std over seeds {', '.join(map(str, SEEDS))}, final epoch of {EPOCHS}. The clean train figures come "
    "from one pass over the training images after the last epoch, in eval mode and without augmentation; the "
    "gaps are clean train accuracy minus test accuracy, and test loss minus clean train loss.")


def section_versus():
    labels = ["LeNet5", "CustomMLP without augmentation", "augmentation only", "CustomMLP"]
    rows = GENERALIZATION_HEADER + generalization_rows(labels, {"augmentation only": "LeNet5 with augmentation",
                                                                 "CustomMLP": "CustomMLP (its recipe)"})
    first_epoch = {label: [run["history"][0]["eval_acc"] for run in load(label)]
                   for label in ("LeNet5", "CustomMLP without augmentation")}
    images = test_size()
    lead, bounds = significance.unpaired_interval(first_epoch["LeNet5"], images,
                                                  first_epoch["CustomMLP without augmentation"], images)
    return "\n".join(rows) + (
        f"\n\n{GENERALIZATION_NOTE} After one epoch LeNet5 is at {statistics.mean(first_epoch['LeNet5']):.2f}% and "
        f"the MLP, without augmentation, at {statistics.mean(first_epoch['CustomMLP without augmentation']):.2f}%: "
        f"LeNet5 leads by {lead:.2f} points, {interval_verdict(bounds)} (unpaired 95% interval {span(bounds, 2)}; the "
        "runs keep predictions of their final epoch only).")


def section_reproduce():
    loaded = [run for label in EXPERIMENTS for run in load(label)]
    minutes = sum(h["seconds"] for run in loaded for h in run["history"]) / 60
    hardware = ", ".join(sorted({run["device_name"] for run in loaded}))
    return (f"The {len(loaded)} runs behind this report trained for {minutes:.0f} minutes in all on {hardware}; "
            "`make report` adds start-up, a clean pass over the training set per run, the robustness pass of each "
            "full-data run, and the pipeline benchmark.")


def section_models():
    reference = count_parameters(MODELS["lenet5"]())
    parts = []
    for label in MODEL_LABELS:
        name = EXPERIMENTS[label][0]
        model = engine.build_model(dict(model=name, **RECIPES[name]), "cpu")
        count = count_parameters(model)
        versus = "" if count == reference else f", {count - reference:+,} ({count / reference - 1:+.2%}) against LeNet5"
        parts.append(f"**{label}**: {count:,} parameters{versus}.\n\n{parameter_table(model)}")
    return "\n\n".join(parts)


def section_results():
    rows = ["| model | params | test accuracy % | test error % | test loss | seeds 0 / 1 / 2, accuracy % | s / epoch |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for label in MODEL_LABELS:
        loaded = load(label)
        accs = final(loaded, "eval_acc")
        rows.append(f"| {label} | {loaded[0]['params']:,} | {mean_std(accs)} | {mean_std([100 - a for a in accs])} | "
                    f"{mean_std(final(loaded, 'eval_loss'), 4)} | {' / '.join(f'{a:.2f}' for a in accs)} | "
                    f"{seconds_per_epoch(loaded):.1f} |")
    loaded = [run for label in MODEL_LABELS for run in load(label)]
    hardware = ", ".join(sorted({run["device_name"] for run in loaded}))
    versions = ", ".join(sorted({run["torch"] for run in loaded}))
    lenet_error = 100 - statistics.mean(final(load("LeNet5"), "eval_acc"))
    regularized_error = 100 - statistics.mean(final(load("LeNet5_Regularized"), "eval_acc"))
    return "\n".join(rows) + (
        f"\n\nMean ± sample standard deviation over seeds {', '.join(map(str, SEEDS))}, each after {EPOCHS} epochs, "
        f"at the final epoch. Hardware: {hardware}; torch {versions}. Seconds per epoch include the test pass."
        f"\n\nLeNet-5 as LeCun et al. (1998) trained it, without distortions, made {LECUN_1998_ERROR:.2f}% test errors; "
        f"ours makes {lenet_error:.2f}% in {EPOCHS} epochs, and the regularized one {regularized_error:.2f}%; "
        "[docs/statistics.md](docs/statistics.md) tests whether those differences are measurable.")


def section_headline():
    """The report in two sentences: the three models' accuracy, and whether the two differences it is about are real."""
    accuracy = {label: mean_std(final(load(label), "eval_acc")) for label in MODEL_LABELS}
    versus, regularized = comparison("LeNet5", "CustomMLP"), comparison("LeNet5_Regularized", "LeNet5")
    said = {True: "real", False: "not measurable"}
    return (f"After {EPOCHS} epochs, over seeds {', '.join(map(str, SEEDS))}, LeNet5 reaches {accuracy['LeNet5']}% "
            f"test accuracy against the MLP's {accuracy['CustomMLP']}%, a lead of {versus.difference:.2f} points "
            f"({said[versus.real]}, paired over seeds and test images), and LeNet5_Regularized "
            f"{accuracy['LeNet5_Regularized']}%, {regularized.difference:+.2f} points over LeNet5 "
            f"({said[regularized.real]}).")


def section_verdicts():
    """Every comparison the report makes, in one table: its difference, interval and verdict."""
    rows, seen = ["| comparison | difference, points | 95% interval | verdict |", "|---|---:|---:|---|"], set()
    for title, _, pairs, _ in significance_groups():
        for row, first, second in pairs:
            if (first, second) in seen:  # the same two experiments in another table
                continue
            seen.add((first, second))
            c = comparison(first, second)
            shown = (row if "−" in row else f"{first} − {second}" if title != "Fewer training images" else
                     f"LeNet5 − CustomMLP without augmentation, {row} training images")
            rows.append(f"| {shown} | {c.difference:+.3f} | {span(c.interval)} | {verdict(c.real, c.detectable)} |")
    return "\n".join(rows)


def section_ablation():
    return "\n".join(GENERALIZATION_HEADER + generalization_rows(ABLATION_LABELS)) + "\n\n" + GENERALIZATION_NOTE


def section_errors():
    label, predicted = best_predictions()
    _, truth = test_split()
    errors = engine.confusion_matrix(truth, predicted).fill_diagonal_(0)
    top = errors.flatten().topk(3)
    pairs = ", ".join(f"{i // 10} read as {i % 10} ({n})" for n, i in zip(top.values.tolist(), top.indices.tolist()))
    return (f"{label}, seed 0, has the best mean accuracy; its final model gets {int(errors.sum())} of "
            f"{len(truth):,} test digits wrong. The most frequent confusions: {pairs}.\n\n"
            "![confusion matrix](plots/confusion_matrix.png)\n\n![misclassified test digits](plots/misclassified.png)")


def from_benchmark(*names):
    """A section drawn from the benchmark files named as {file: the command that rebuilds it}: each is read and
    passed to the section, in order. A missing file, or one whose fields are missing or of the wrong kind (a
    KeyError or TypeError while the section reads it), stops the report with one line naming the file and the way
    to rebuild or restore it, before the README is written."""
    def wrap(section):
        @functools.wraps(section)
        def render():
            benches = {}
            for name, command in names:
                bench = files.read_json(RESULTS / name)
                if not isinstance(bench, dict):
                    raise UsageError(f"{RESULTS / name} is missing or not JSON; rebuild it with `{command}`, or "
                                     f"restore it with `git checkout results/{name}`")
                benches[name] = bench
            try:
                for bench in benches.values():
                    check_plain(bench)
                return section(*benches.values())
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as e:
                # The field that failed does not say which file it came from: each file the section reads is named.
                raise UsageError(f"{' or '.join(str(RESULTS / name) for name in benches)} is damaged "
                                 f"({type(e).__name__}: {e}); rebuild it with "
                                 f"{' and '.join(f'`{command}`' for _, command in names)}, or restore it with "
                                 f"`git checkout {' '.join(f'results/{name}' for name in benches)}`") from None
        return render
    return wrap


def check_plain(value, where="the file"):
    """A benchmark's JSON holds plain text (slots.PLAIN_TEXT), which the README quotes as it is, and figures:
    numbers from 0 to MAX_FIGURE, finite (Python's JSON reads NaN, Infinity and integers of any length), never
    true or false. ValueError naming the field otherwise."""
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, f"a key in {where}")
            check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for item in value:
            check_plain(item, f"an item of {where}")
    elif isinstance(value, str):
        if not slots.is_plain_text(value):
            raise ValueError(f"{where} holds {shown_value(value)}, not plain text")
    elif type(value) not in (int, float) or not 0 <= value <= MAX_FIGURE:  # not math.isfinite: a huge int overflows
        raise ValueError(f"{where} holds {shown_value(value)}, not a figure from 0 to {MAX_FIGURE:g}")


# The largest figure a benchmark may report: counts, seconds and ratios are all far below it.
MAX_FIGURE = 1e12


@from_benchmark(("bench_time_to_accuracy.json", "make bench-time"))
def section_time_to_accuracy(bench):
    summary, target, imports = bench["summary"], bench["target"], bench["import_seconds"]
    reference = summary["reference"]["wall_seconds"]
    names = {"fast": "fast recipe", "default": "default recipe, 10 epochs", "reference": "torchvision reference, 10 epochs"}
    rows = [f"| run | command | seeds | whole process, s | of which outside the epochs | share of the reference's time | "
            f"final test accuracy % | seeds reaching {target:g}% | first epoch at {target:g}% | seconds to {target:g}% |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        to_target = (f"{s['epoch_to_target']:.1f} | {s['seconds_to_target']:.1f}" if s["reached"] else "- | -")
        rows.append(f"| {names[name]} | `{bench['commands'][name]}` | {s['seeds']} | {s['wall_seconds']:.1f} | "
                    f"{s['outside_epochs_seconds']:.1f} | {s['wall_seconds'] / reference:.1%} | {s['final_acc_mean']:.2f} ± {s['final_acc_std']:.2f} | "
                    f"{s['reached']} of {s['seeds']} | {to_target} |")
    return "\n".join(rows) + (
        f"\n\n`python -m benchmarks.bench_time_to_accuracy` on {bench['device_name']}, torch {bench['torch']}: every "
        f"run a fresh process, timed from launch to exit as a user waits for it, the three commands taking turns; the "
        f"figures are means over the seeds, 0 upwards. Seconds to {target:g}% run from launch to the moment the epoch "
        f"that first reached it printed its line, the first epoch is the mean over the seeds that reached it, and the "
        f"final accuracy is the mean ± std at the last epoch. The default run is "
        f"{bench['default_speedup']:.2f}x faster than the reference, whole process against whole process (the target "
        f"is 3x); the fast recipe takes {bench['fast_share']:.1%} of the reference's time (the target is at most 10%)."
        f"\n\nA process that only starts and exits takes {imports['python']:.2f} s here; one that imports torch "
        f"{imports['torch']:.2f} s, torch and torchvision {imports['torch and torchvision']:.2f} s, torch and "
        f"matplotlib's figure and PNG writer {imports['torch and matplotlib']:.2f} s (medians of 3).")


@from_benchmark(("bench_pipeline.json", "make bench"))
def section_speed(bench):
    median = bench["median"]
    rows = [f"`python -m benchmarks.bench_pipeline` on {bench['device_name']}, torch {bench['torch']}, LeNet5, batch "
            f"size {bench['batch_size']}, median of {bench['repeats']} epochs per variant, the variants taking turns:",
            "", "| training epoch, 60,000 images | seconds | share of the reference's time |", "|---|---:|---:|"]
    rows += [f"| {name} | {median[name]:.2f} | {median[name] / median['reference']:.1%} |"
             for name in median if not name.startswith("eval: ")]
    rows += ["", "| evaluation, 10,000 images | seconds | share of the reference's time |", "|---|---:|---:|"]
    rows += [f"| {name[len('eval: '):]} | {median[name]:.2f} | {median[name] / median['eval: reference']:.1%} |"
             for name in median if name.startswith("eval: ")]
    operators = ", ".join(f"`{name}` {share:.0f}%" for name, share in bench["profile"])
    return "\n".join(rows) + (
        f"\n\nOur training epoch takes {bench['train_ratio']:.1%} of the torchvision pipeline's time, the median; "
        f"the {bench['repeats']} repeats, each ours against the reference epoch just before it, range from "
        f"{min(bench['train_ratios']):.1%} to {max(bench['train_ratios']):.1%} on this shared machine. The target is "
        f"at most 33.3%. Loading the data takes {bench['setup_seconds']['ours']:.2f} s here and "
        f"{bench['setup_seconds']['reference']:.2f} s there. The torch.compile row leaves out its first epoch, "
        f"which also compiles. A bfloat16 autocast step (`--amp`) takes {bench['bf16_step_ratio']:.1f}x the time of a "
        f"float32 one here, over 30 steps: this CPU's capability is {bench['cpu_capability']}, without native "
        f"bfloat16. Where our training step spends its time, by the profiler's self CPU time: {operators}.")


@from_benchmark(("bench_sweep.json", "make bench-sweep"))
def section_sweep(bench):
    ways = bench["ways"]
    serial = ways["main.py, one run after another"]["seconds"]
    rows = [f"`python -m benchmarks.bench_sweep` on {bench['device_name'].rsplit(',', 1)[0]}, {bench['cores']} cores, "
            f"torch {bench['torch']}: the same {bench['runs']} LeNet5 runs of {bench['epochs']} epochs each way, "
            f"whole processes, wall clock, the ways taking turns {bench['repeats']} times:", "",
            "| how | seconds, median | range | runs a minute | speed-up over main.py's loop |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {label} | {way['seconds']:.1f} | {min(way['all_seconds']):.1f} to {max(way['all_seconds']):.1f} | "
             f"{way['runs_per_minute']:.1f} | {serial / way['seconds']:.2f}x |" for label, way in ways.items()]
    best = max(ways, key=lambda label: ways[label]["runs_per_minute"])
    one_process = ways["sweep.py --jobs 1"]
    at_once = ways[f"sweep.py --jobs {bench['cores']}"]
    overlap = max(one_process["all_seconds"]) >= min(at_once["all_seconds"]) and \
        max(at_once["all_seconds"]) >= min(one_process["all_seconds"])
    return "\n".join(rows) + (
        f"\n\nThe most runs a minute here: `{best}`, {serial / ways[best]['seconds']:.2f}x main.py's loop. Part of "
        f"any sweep's gain is start-up: `sweep.py --jobs 1` trains the same runs in one process, "
        f"{serial / one_process['seconds']:.2f}x, without paying a process's imports per run. The rest is runs at "
        f"once: `--jobs {bench['cores']}`, one core each, against `--jobs 1` on every core, "
        f"{one_process['seconds'] / at_once['seconds']:.2f}x, Ray's few seconds of start-up included"
        + (", within the spread of the repeats on this machine: not a gain to count on." if overlap else ".")
        + (" On a machine with C cores, from this measurement: `--jobs C` with one core each (`--cpus-per-run 1`, the "
           "default on Ray)" if ways[best] is at_once else f" From this measurement: `{best}`")
        + (", though this machine has too few cores to try two each against it." if bench["cores"] < 4 else "."))


def section_tuning_space():
    rows = ["| model | factor, in the order tried | values, in order of preference | starting value |",
            "|---|---|---|---|"]
    for model in MODEL_NAMES:
        space = SEARCH_SPACE[model]
        for i, (factor, values) in enumerate(space["factors"].items()):
            rows.append(f"| {LABELS[model] if i == 0 else ''} | {factor} | {', '.join(map(show, values))} | "
                        f"{show(space['start'][factor])} |")
    return "\n".join(rows)


def show(value):
    return "-".join(map(str, value)) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else str(value)


def sweeps(seen=None):
    """For each model, its sweep as scripts/tune.py walked it, from results/tuning/; seen collects the paths of the
    files it scored."""
    def score(model):
        def stored(setting, seed):
            if seen is not None:
                seen.add(tune.tuning_path(model, setting, seed))
            return tune.stored_score(model, setting, seed)
        return stored
    return {model: tune.sweep(model, score(model)) for model in MODEL_NAMES}


def section_tuning():
    rows = ["| model | factor | value | validation accuracy % | seeds " + " / ".join(map(str, TUNING_SEEDS)) +
            " | chosen |", "|---|---|---|---:|---:|:-:|"]
    for model, (_, steps) in sweeps().items():
        for factor, scored, chosen in steps:
            for value, accs in scored:
                seeds = " / ".join("diverged" if a == 0 else f"{a:.2f}" for a in accs)
                rows.append(f"| {LABELS[model]} | {factor} | {show(value)} | {mean_std(accs)} | {seeds} | "
                            f"{'**yes**' if value == chosen else ''} |")
    stored = tuning_runs()
    runs_total, minutes = len(stored), sum(h["seconds"] for run in stored for h in run["history"]) / 60
    return "\n".join(rows) + (f"\n\n{runs_total} runs of {EPOCHS} epochs, {minutes:.0f} minutes of training in all. "
                              "A run that diverged counts as 0%.")


def fast_sweep(seen=None):
    """The fast recipe's sweep as scripts/tune.py --fast walked it, from results/tuning/fast/; seen collects the
    paths of the files it scored."""
    def stored(setting, seed):
        if seen is not None:
            seen.add(tune.fast_path(setting, seed))
        return tune.fast_score(setting, seed)
    return tune.fast_sweep(stored)


def tuning_runs(fast=False):
    """The tuning runs the sweep scored, each checked against its slot: those the README counts and times."""
    seen = set()
    (fast_sweep if fast else sweeps)(seen)
    return [tune.read_run(path) for path in sorted(seen)]


def left_out():
    """Files in results/tuning/ that no sweep of scripts/tune.py scores (another search space's, a copy): not
    read, not counted."""
    seen = set()
    sweeps(seen)
    fast_sweep(seen)
    return sorted(path for folder in (tune.TUNING_DIR, tune.FAST_DIR) for path in folder.glob("*.json")
                  if path not in seen)


def check_choices():
    """The recipes in recipes.py are those the committed sweeps choose: the README marks the sweeps' choices in
    their tables and describes recipes.py's recipes, so the two must be the same."""
    for model, (chosen, _) in sweeps().items():
        check_choice(chosen, RECIPES[model], f'RECIPES["{model}"]', tune.TUNING_DIR, "*.json")
    check_choice(fast_sweep()[0], NAMED_RECIPES["fast"]["lenet5"], 'NAMED_RECIPES["fast"]["lenet5"]', tune.FAST_DIR)


def check_choice(chosen, recipe, name, folder, files_there=""):
    """UsageError where the sweep's chosen setting is not recipe's; files_there is a glob of the sweep's own files
    in folder, where a subfolder holds another sweep's (results/tuning/fast/ in results/tuning/)."""
    key = next((key for key in chosen if recipe.get(key) != chosen[key]), None)
    if key is not None:
        # Rerunning the sweep would change nothing (it trains only what is missing), and copying the choice into
        # recipes.py would leave every committed run trained with another recipe.
        raise UsageError(f"the sweep in {folder} chooses {key} {show(chosen[key])}, but recipes.py's {name} has "
                         f"{key} {show(recipe.get(key))}; restore the committed sweep with `git checkout -- "
                         f"{folder / files_there if files_there else folder}`, "
                         f"or, to adopt its choice, copy it into recipes.py and rebuild the report with `make report`")


def section_tuning_fast():
    chosen, tried = fast_sweep()
    rows = ["| epochs | batch size | peak learning rate | label smoothing | validation accuracy % | seeds " +
            " / ".join(map(str, FAST_TUNING_SEEDS)) + " | chosen |", "|---:|---:|---:|---:|---:|---:|:-:|"]
    for schedule, scored in tried:
        for (lr, smoothing), accs in scored:
            seeds = " / ".join("diverged" if a == 0 else f"{a:.2f}" for a in accs)
            chosen_here = tune.fast_setting(schedule, lr, smoothing) == chosen
            rows.append(f"| {schedule[0]} | {schedule[1]} | {show(lr)} | {show(smoothing)} | {mean_std(accs)} | "
                        f"{seeds} | {'**yes**' if chosen_here else ''} |")
    recipe = NAMED_RECIPES["fast"]["lenet5"]
    runs_total = len(tuning_runs(fast=True))
    one_epoch = max(statistics.mean(accs) for schedule, scored in tried if schedule[0] == 1 for _, accs in scored)
    return "\n".join(rows) + (
        f"\n\n{runs_total} runs. The fast recipe: {recipe['epochs']} epochs in batches of {recipe['batch_size']}, a "
        f"one-cycle schedule peaking at {show(recipe['lr'])}, label smoothing {show(recipe['label_smoothing'])}. "
        f"The best one-epoch setting reached {one_epoch:.2f}% mean validation accuracy"
        + (f", short of {TARGET_ACCURACY:.1f}%." if one_epoch < TARGET_ACCURACY else "."))


def section_selection():
    rows = ["| model | validation accuracy %, the sweep's seeds " + ", ".join(map(str, TUNING_SEEDS)) +
            " | test accuracy %, seeds " + ", ".join(map(str, SEEDS)) + " | test minus validation, points | "
            "95% interval, unpaired | verdict |", "|---|---:|---:|---:|---:|---|"]
    held_out = validation_images()
    for model, (chosen, _) in sweeps().items():
        validation = [tune.stored_score(model, chosen, seed) for seed in TUNING_SEEDS]
        test = final(load(LABELS[model]), "eval_acc")
        difference, bounds = significance.unpaired_interval(test, test_size(), validation, held_out)
        rows.append(f"| {LABELS[model]} | {mean_std(validation)} | {mean_std(test)} | {difference:+.2f} | "
                    f"{span(bounds, 2)} | {interval_verdict(bounds)} |")
    compared = sweep_comparisons(held_out)
    measurable = [name for name, bounds in compared if significance.excludes_zero(bounds)]
    half_widths = [(bounds[1] - bounds[0]) / 2 for _, bounds in compared]
    return "\n".join(rows) + (
        "\n\nThe sweep's runs in `results/tuning/` keep their histories but not their predictions, so nothing scored "
        "on the validation split can be compared in pairs. These intervals are unpaired: each mean accuracy's binomial "
        f"noise on its images ({test_size():,} test, {held_out:,} validation) and its spread over seeds. That fits "
        "the test set against the validation split, which hold different images. Within the sweep, where every "
        "setting was scored on the same validation images, it overstates the noise, yet it is all the stored runs "
        f"allow: of the sweep's {len(compared)} comparisons of a factor's chosen value with another value it tried "
        "(settings where a seed diverged left out), " +
        (f"{len(measurable)} {'is' if len(measurable) == 1 else 'are'} measurable: {', '.join(measurable)}. "
         if measurable else "none is measurable. ") +
        f"Their half-widths, the smallest differences they could have shown, run from {min(half_widths):.2f} to "
        f"{max(half_widths):.2f} points.")


def sweep_comparisons(images):
    """Each factor's chosen value against each other value the sweep tried, as (what, unpaired 95% interval)."""
    compared = []
    for model, (_, steps) in sweeps().items():
        for factor, scored, chosen in steps:
            kept = next(accs for value, accs in scored if value == chosen)
            for value, accs in scored:
                if value != chosen and 0.0 not in accs + kept:
                    _, bounds = significance.unpaired_interval(kept, images, accs, images)
                    compared.append((f"{LABELS[model]}'s {factor} {show(chosen)} against {show(value)}", bounds))
    return compared


def robustness_runs(label):
    """Each seed's robustness sweep of an experiment."""
    return [run["robustness"] for run in load(label)]


def section_robustness():
    shifts, rotations = ROBUSTNESS_SHIFTS, ROBUSTNESS_ROTATIONS
    rows = ["| model | " + " | ".join(f"shift {k} px" for k in shifts) + " | " +
            " | ".join(f"rotation {d}°" for d in rotations) + " |", "|---|" + "---:|" * (len(shifts) + len(rotations))]
    for label in ROBUSTNESS_LABELS:
        sweeps_ = robustness_runs(label)
        cells = [statistics.mean(s["shift"][str(k)] for s in sweeps_) for k in shifts]
        cells += [statistics.mean(s["rotation"][str(d)] for s in sweeps_) for d in rotations]
        rows.append(f"| {ROBUSTNESS_NAMES.get(label, label)} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
    return "\n".join(rows) + (
        f"\n\nTest accuracy %, mean of seeds {', '.join(map(str, SEEDS))}, each model after its {EPOCHS} epochs. A shift "
        "of k pixels moves every test digit k pixels right or left and k down or up, the four diagonal directions "
        "averaged, with blank pixels filling in; a rotation turns it both ways, averaged. With no shift or rotation, "
        "each figure is the model's test accuracy in the results table.\n\n![robustness](plots/robustness.png)\n\n"
        "Which of the differences that the text below draws on are measurable: the runs keep no predictions for "
        "moved digits, so these are unpaired 95% intervals, from each figure's binomial noise on the "
        f"{test_size():,} test digits and its spread over seeds. Moved copies of one digit are not independent "
        "images, and both models saw the same digits, so the intervals are conservative.\n\n" +
        robustness_significance())


def robustness_significance():
    rows = ["| first − second | measurably ahead at | measurably behind at | no measurable difference at |",
            "|---|---|---|---|"]
    for first, second in ROBUSTNESS_PAIRS:
        cells = {"ahead": {}, "behind": {}, "none": {}}
        for kind, magnitudes, unit in (("shift", ROBUSTNESS_SHIFTS, " px"), ("rotation", ROBUSTNESS_ROTATIONS, "°")):
            for magnitude in magnitudes:
                difference, bounds = significance.unpaired_interval(
                    [s[kind][str(magnitude)] for s in robustness_runs(first)], test_size(),
                    [s[kind][str(magnitude)] for s in robustness_runs(second)], test_size())
                cell = "none" if not significance.excludes_zero(bounds) else "ahead" if difference > 0 else "behind"
                cells[cell].setdefault((kind, unit), []).append(str(magnitude))
        found = ["; ".join(f"{kind} {', '.join(at)}{unit}" for (kind, unit), at in cell.items()) or "-"
                 for cell in cells.values()]
        rows.append(f"| {ROBUSTNESS_NAMES.get(first, first)} − {ROBUSTNESS_NAMES.get(second, second)} | "
                    f"{' | '.join(found)} |")
    return "\n".join(rows)


def sample_efficiency_labels():
    """The training-set sizes, the full set last, and each model's experiments at those sizes."""
    return [*TRAIN_SIZES, 60_000], {name: [f"{label}, {size:,} images" for size in TRAIN_SIZES] + [label]
                                    for label, name in SAMPLE_EFFICIENCY.items()}


def sample_efficiency_runs():
    """label -> (sizes, accuracies per seed per size), the full training set last."""
    sizes, labels = sample_efficiency_labels()
    return {name: (sizes, [final(load(label), "eval_acc") for label in at_sizes]) for name, at_sizes in labels.items()}


def section_sample_efficiency():
    (sizes, lenet), (_, mlp) = sample_efficiency_runs().values()
    rows = ["| training images | LeNet5 test accuracy % | CustomMLP without augmentation % | "
            "LeNet5's lead, points | MLP's errors per LeNet5 error |", "|---:|---:|---:|---:|---:|"]
    for size, a, b in zip(sizes, lenet, mlp):
        lead = statistics.mean(a) - statistics.mean(b)
        ratio = (100 - statistics.mean(b)) / (100 - statistics.mean(a))
        rows.append(f"| {size:,} | {mean_std(a)} | {mean_std(b)} | {lead:.2f} | {ratio:.1f} |")
    smallest = f"LeNet5, {TRAIN_SIZES[0]:,} images"
    steps = len(engine.training_batches(experiment_recipe(smallest, 0), *dataset.load_splits()[:2])) * EPOCHS
    return "\n".join(rows) + (
        f"\n\nMean ± std over seeds {', '.join(map(str, SEEDS))}. Every size trains for the same {steps:,} optimizer "
        f"steps, the full set's {EPOCHS} epochs: a smaller subset is repeated, each copy in a new order, to fill each "
        "epoch. The subsets keep each digit's share of the training set and are drawn with a fixed seed, the same for "
        "every run; the test set stays whole.\n\n![sample efficiency](plots/sample_efficiency.png)")


def significance_groups():
    """The comparisons the prose makes, a table each: (title, first column's header, [(row, first, second)], what
    follows the table or None), each row's difference being the first experiment minus the second."""
    all_four, singles = "all four at LeNet5's learning rate", ABLATION_LABELS[1:5]
    sizes, labels = sample_efficiency_labels()
    return [
        ("LeNet5 against CustomMLP", "first − second", [
            ("LeNet5 − CustomMLP (its recipe)", "LeNet5", "CustomMLP"),
            ("LeNet5 − CustomMLP, neither augmented", "LeNet5", "CustomMLP without augmentation"),
            ("LeNet5 − CustomMLP, both augmented", "augmentation only", "CustomMLP")], None),
        ("Augmentation against none", "with − without augmentation", [
            ("LeNet5", "augmentation only", "LeNet5"),
            ("CustomMLP", "CustomMLP", "CustomMLP without augmentation")], augmentation_gain),
        ("Each technique against LeNet5", "first − second",
         [(f"{label} − LeNet5", label, "LeNet5") for label in ABLATION_LABELS[1:]], None),
        ("All four against each one alone", "first − second",
         [(f"{all_four} − {label}", all_four, label) for label in singles], None),
        ("The learning rate", "first − second",
         [(f"LeNet5_Regularized − {all_four}", "LeNet5_Regularized", all_four)], None),
        ("Fewer training images", "LeNet5 − CustomMLP without augmentation, training images",
         [(f"{size:,}", lenet, mlp) for size, lenet, mlp in zip(sizes, *labels.values())],
         sample_efficiency_significance),
    ]


@functools.cache
def comparison(first, second):
    return significance.compare(correct(first), correct(second))


def significance_table(header, rows):
    seeds = " / ".join(map(str, SEEDS))
    lines = [f"| {header} | difference, points | 95% interval | only first right : only second right, seeds {seeds} | "
             f"p, seeds {seeds} | pooled: images first ahead : second ahead | pooled p | verdict |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for row, first, second in rows:
        c = comparison(first, second)
        lines.append(f"| {row} | {c.difference:+.3f} | {span(c.interval)} | "
                     f"{' / '.join(f'{a} : {b}' for a, b in c.discordant)} | {' / '.join(map(p_value, c.seed_p))} | "
                     f"{c.ahead[0]} : {c.ahead[1]} | {p_value(c.p)} | {verdict(c.real, c.detectable)} |")
    return "\n".join(lines)


def section_significance():
    images, seeds = test_size(), len(SEEDS)
    lenet = statistics.mean(final(load("LeNet5"), "eval_acc"))
    error = significance.standard_error(lenet, images)
    groups = significance_groups()
    pairs = [(first, second) for _, _, rows, _ in groups for _, first, second in rows]
    repeated = np.sum([significance.repeated_discordance(correct(a), correct(b)) for a, b in pairs], axis=0)
    parts = [
        f"On {images:,} test images, 0.1 points is {images * 0.001:.0f} images. At LeNet5's {lenet:.2f}%, the binomial "
        f"standard error of one run's test accuracy is {error:.3f} points: the test set is a sample of the digits a "
        "model will meet, and moves a score by about that much whatever the seed. Two models scored on different "
        f"image sets of this size would have to differ by about {significance.Z * np.sqrt(2) * error:.2f} points to "
        "be told apart at 95%. Scored on the same images, they are compared far more sharply in pairs, since only "
        "the images where they disagree carry information.",
        f"Each comparison pairs the runs by seed, seed s of the first experiment against seed s of the second, over "
        f"seeds {', '.join(map(str, SEEDS))}:",
        "\n".join([
            "- **difference**: test accuracy at the final epoch, first minus second, in points, the mean over seeds;",
            f"- **95% interval**: a paired bootstrap of {significance.REPLICATES:,} replicates, each redrawing the "
            f"{images:,} test images with replacement (one draw for both experiments and every seed) and the {seeds} "
            "seed pairs with replacement; the interval holds the middle 95% of the replicates' differences. Redrawing "
            f"images brings in the test set's noise, redrawing seeds the training noise, which {seeds} seeds only "
            f"roughly sample. The ends are multiples of {100 / (seeds * images):.4f} points (one image in one seed) "
            "and move by a step or two with the bootstrap's own seed;",
            "- **per seed**: the images only the first run got right and those only the second got right, and "
            "McNemar's exact test, the two-sided binomial p-value of that split (`scipy.stats.binomtest`) were each of "
            "those images as likely to go either way;",
            "- **pooled**: each image counts once, for the experiment that got it right on more seeds (ties left "
            "out), with McNemar's exact test on those counts. Summing the seeds' counts instead would count an image "
            "that one model finds hard once per seed, as if it were several images: of the images discordant in some "
            f"seed pair in these tables, {repeated[1] / repeated[0]:.0%} are discordant in more than one;",
            f"- **verdict**: real where the pooled p is below {significance.ALPHA} and the interval leaves out zero. "
            "McNemar's test asks whether these trained networks differ on digits like the test set's; the interval "
            "also asks whether other seeds would. Otherwise not measurable, with the smallest difference that would "
            "have passed both here: the larger of the lead McNemar's pooled test needed with this many images in "
            "play (each image worth their mean margin over seeds), and half the interval's width."]),
        f"The tables hold {len(pairs)} comparisons. At p < {significance.ALPHA}, about one in "
        f"{1 / significance.ALPHA:.0f} would pass by chance where there is no difference, so a p-value near "
        f"{significance.ALPHA} is weak evidence on its own."]
    for title, header, rows, after in groups:
        parts += [f"**{title}**", significance_table(header, rows), *([after()] if after else [])]
    parts.append(published_lenet())
    return "\n\n".join(parts)


def augmentation_gain():
    """Whether augmentation raises the MLP's accuracy more than LeNet5's: the bootstrap of the two gains' difference."""
    gain = (significance.paired_difference(correct("CustomMLP"), correct("CustomMLP without augmentation")) -
            significance.paired_difference(correct("augmentation only"), correct("LeNet5")))
    difference, bounds = significance.mean_interval(gain)
    return (f"Augmentation raises CustomMLP's accuracy by {difference:.3f} points more than LeNet5's, 95% interval "
            f"{span(bounds)}, the same bootstrap on the difference of the two differences: "
            f"{interval_verdict(bounds)}.")


def sample_efficiency_significance():
    sizes, labels = sample_efficiency_labels()
    lines = ["| training images | change in LeNet5's lead from the size before, points | 95% interval | verdict | "
             "MLP's errors per LeNet5 error | 95% interval |", "|---:|---:|---:|---|---:|---:|"]
    before = None
    for size, lenet, mlp in zip(sizes, *labels.values()):
        lead = significance.paired_difference(correct(lenet), correct(mlp))
        ratio, ratio_bounds = significance.error_ratio(correct(lenet), correct(mlp))
        change = "| - | - | -"
        if before is not None:
            difference, bounds = significance.mean_interval(lead - before)
            change = f"| {difference:+.3f} | {span(bounds)} | {interval_verdict(bounds)}"
        lines.append(f"| {size:,} {change} | {ratio:.2f} | {ratio_bounds[0]:.2f} to {ratio_bounds[1]:.2f} |")
        before = lead
    return ("How LeNet5's lead changes with the training set, and the ratio of the two models' errors, from the same "
            "bootstrap, the runs of each size paired by seed:\n\n" + "\n".join(lines))


def published_lenet():
    lenet = final(load("LeNet5"), "eval_acc")
    difference, bounds = significance.unpaired_interval(lenet, test_size(), [100 - LECUN_1998_ERROR], test_size())
    return (f"**Against the published LeNet-5.** LeCun et al. (1998) report {LECUN_1998_ERROR:.2f}% test errors "
            f"without distortions, on the same {test_size():,} images; our LeNet5's accuracy is {difference:+.2f} "
            f"points against theirs, {interval_verdict(bounds)}: unpaired 95% interval {span(bounds, 2)}, from both "
            "figures' binomial noise and our seeds' spread. Without the 1998 network's predictions the comparison "
            "cannot be paired, and unpaired on the same images the interval is conservative.")


@from_benchmark(("bench_predict.json", "python -m benchmarks.bench_predict"))
def section_predict(bench):
    return (f"`python -m benchmarks.bench_predict` renders the {bench['count']:,} MNIST test digits as photos, writes "
            f"them as JPEG files and reads them back through `predict.py`'s own path, with {LABELS[bench['model']]} "
            f"(`{bench['checkpoint']}`), on {bench['device_name']}:\n\n"
            "| the test digits as | accuracy % |\n|---|---:|\n"
            f"| MNIST's own 28x28 images, straight to the model | {bench['plain_test_acc']:.2f} |\n"
            f"| photos, read by `predict.py` | {bench['photo_acc']:.2f} |\n"
            f"| photos, naive: the whole image resized to 28x28 | {bench['naive_acc']:.2f} |\n\n"
            f"Reading a batch of {bench['batch']:,} photo files end to end, decoding included, runs at "
            f"{bench['images_per_second']:.0f} images per second.")


@from_benchmark(("demo_screenshot.json", "python -m scripts.demo_screenshot"),
                ("bench_demo.json", "python -m benchmarks.bench_demo"))
def section_demo(shot, bench):
    readings = ", ".join(f"{LABELS[model]} as a {digit}" for model, digit in shot["shifted"].items())
    centred = sorted(set(shot["centred"].values()))
    return (f"The screenshot, taken by `python -m scripts.demo_screenshot` with the report's seed-0 models: a "
            f"{shot['drawn']} drawn on the page, then moved {shot['shift'][0]} pixels right with the slider. Centred, "
            f"the models read it as {' and '.join(map(str, centred))}; moved, {readings}.\n\n"
            "![the demo page: a drawn 1 moved 3 pixels right, and how each model reads it](plots/demo.png)\n\n" +
            f"`python -m benchmarks.bench_demo` times `POST /predict` with the {len(bench['models'])} models loaded, "
            f"on {bench['device_name']}: one client at a time, {bench['single']['median_ms']:.1f} ms per request "
            f"(median; 95th percentile {bench['single']['p95_ms']:.1f} ms); {bench['clients']} clients at once, "
            f"{bench['requests']} requests in all, {bench['concurrent']['median_ms']:.1f} ms (95th percentile "
            f"{bench['concurrent']['p95_ms']:.1f} ms), {bench['concurrent_requests_per_second']:.0f} requests per "
            f"second, and {bench['mismatches']} answers that differed from the single client's.")


@from_benchmark(("defences.json", "make defences"))
def section_defences(table):
    measured = table["defences"]  # the counts are the rows', not the file's say
    red = sum(row["outcome"] == "red" for row in measured)
    unmeasured = (f"; the other {table['listed'] - len(measured)} are not measured on this version"
                  if len(measured) < table["listed"] else "")
    rows = ["| file | defence | its test | without the defence |", "|---|---|---|---|"]
    for row in table["defences"]:
        case = f" ({row['case']})" if "case" in row else ""  # one case of a parametrised test
        rows.append(f"| `{row['file']}` | {row['defence']} | `{row['test'].split('::', 1)[1]}`{case} | "
                    f"{row['outcome']} |")
    return (f"`tests/mutants.py` lists {table['listed']} defences, the refusals, caps, timeouts and checks of the "
            f"package, scripts and benchmarks, each as its code and that code with the defence deleted or loosened; "
            f"`make defences` makes each change in turn, in a scratch copy of the repository, and runs the test that "
            f"guards it (`--update` measures some again). As last measured (`results/defences.json`), {red} of "
            f"{len(measured)} tests failed without their defence{unmeasured}. `make test` fails where a row of that "
            f"table is not red or not an entry of the list.\n\n<details><summary>Each defence and its test</summary>\n\n" + "\n".join(rows)
            + "\n\n</details>")


def section_data():
    rows = ["| file | SHA-256 (decompressed) |", "|---|---|"]
    rows += [f"| `{name}` | `{digest}` |" for name, digest in dataset.SHA256.items()]
    return "\n".join(rows)


SECTIONS = {"headline": section_headline, "verdicts": section_verdicts, "quickstart": section_quickstart, "recipes": section_recipes, "models": section_models,
            "results": section_results, "versus": section_versus, "ablation": section_ablation,
            "errors": section_errors, "speed": section_speed, "time_to_accuracy": section_time_to_accuracy,
            "tuning_fast": section_tuning_fast, "data": section_data, "reproduce": section_reproduce,
            "tuning_space": section_tuning_space, "tuning": section_tuning, "selection": section_selection,
            "robustness": section_robustness, "sample_efficiency": section_sample_efficiency,
            "significance": section_significance,
            "predict": section_predict, "demo": section_demo, "sweep": section_sweep, "defences": section_defences}


# Each document the report writes into, and its generated sections. README.md is the report; docs/ holds the
# manuals and the long appendices.
DOCUMENTS = {
    "README.md": ("headline", "results", "quickstart", "models", "recipes", "versus", "robustness",
                  "sample_efficiency", "ablation", "verdicts", "errors", "data"),
    "docs/predict.md": ("predict",),
    "docs/demo.md": ("demo",),
    "docs/sweeps.md": ("sweep",),
    "docs/statistics.md": ("significance",),
    "docs/tuning.md": ("tuning_space", "tuning", "selection", "tuning_fast"),
    "docs/speed.md": ("time_to_accuracy", "speed"),
    "docs/reproducing.md": ("reproduce",),
    "docs/defences.md": ("defences",),
}


def marker_pattern(name):
    return re.compile(rf"(<!-- report:{name} -->)(.*?)(<!-- /report:{name} -->)", re.DOTALL)


def rendered(document, name):
    """A section's text as it stands in document: its figures' paths from the document's own folder."""
    up = "../" * document.count("/")
    return re.sub(r"\]\((?=plots/)", f"]({up}", SECTIONS[name]())


def document_sections(document, text):
    """The generated sections as they stand in a document's text; None for a missing one."""
    sections = {}
    for name in DOCUMENTS[document]:
        match = marker_pattern(name).search(text)
        sections[name] = match.group(2).strip("\n") if match else None
    return sections


def render_document(document, text):
    for name in DOCUMENTS[document]:
        pattern = marker_pattern(name)
        if not pattern.search(text):
            raise UsageError(f"{document} has no <!-- report:{name} --> section; restore it with git checkout -- "
                             f"{document}")
        content = rendered(document, name)
        text = pattern.sub(lambda m: f"{m.group(1)}\n{content}\n{m.group(3)}", text)
    return text


# ---------------------------------------------------------------- figures

def build_figures():
    files.save_figure(PLOTS / "comparison_3seeds.png", figures.comparison(
        {label: [run["history"] for run in load(label)] for label in MODEL_LABELS},
        f"Test curves: mean of seeds {', '.join(map(str, SEEDS))}, band min to max"))
    files.save_figure(PLOTS / "ablation.png", figures.ablation(
        [(label, final(load(label), "eval_acc"), *gaps(load(label))) for label in ABLATION_LABELS],
        f"Regularization ablation on LeNet-5: {EPOCHS} epochs, bars are the mean of seeds "
        f"{', '.join(map(str, SEEDS))} (dots), whiskers one std"))
    files.save_figure(PLOTS / "robustness.png", figures.robustness(
        {ROBUSTNESS_NAMES.get(label, label): robustness_runs(label) for label in ROBUSTNESS_LABELS},
        f"Test accuracy of moved and turned digits: mean of seeds {', '.join(map(str, SEEDS))}, band min to max"))
    files.save_figure(PLOTS / "sample_efficiency.png", figures.sample_efficiency(
        sample_efficiency_runs(), f"Test accuracy against training-set size, seeds {', '.join(map(str, SEEDS))}"))
    files.save_figure(PLOTS / "tuning_learning_rate.png", figures.sensitivity(
        {LABELS[model]: learning_rate_sweep(steps) for model, (_, steps) in sweeps().items()},
        f"Validation accuracy against learning rate: mean of seeds {' and '.join(map(str, TUNING_SEEDS))}, dots "
        "each seed"))
    label, predicted = best_predictions()
    images, truth = test_split()
    files.save_figure(PLOTS / "confusion_matrix.png", figures.confusion(
        engine.confusion_matrix(truth, predicted), f"{label}, seed 0: confusion matrix on the test set"))
    files.save_figure(PLOTS / "misclassified.png", figures.misclassified(
        images, truth, predicted, f"{label}, seed 0: the first 40 misclassified test digits"))


def learning_rate_sweep(steps):
    """(rates, validation accuracies per rate per seed) from a model's sweep."""
    ((_, scored, _),) = [step for step in steps if step[0] == "lr"]
    return [rate for rate, _ in scored], [accs for _, accs in scored]


def read_document(name):
    try:
        return (PAGES / name).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{name} cannot be read ({getattr(e, 'strerror', None) or e}); restore it with git checkout "
                         f"-- {name}") from None


def get_args_parser():
    parser = OneLineErrorParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rerun", nargs="*", metavar="EXPERIMENT", choices=list(EXPERIMENTS),
                        help="first rerun these experiments, or with no names every experiment and the benchmark; "
                             "default: rerun nothing")
    add_runner_flags(parser)
    return parser


def main(args):
    def body():
        for folder in (*{(PAGES / name).parent for name in DOCUMENTS}, PLOTS):  # checked before any work
            try:
                files.make_writable(folder)
            except OSError as e:
                raise UsageError(f"{folder} cannot be written ({e.strerror or e}), and the report writes there; fix "
                                 f"its permissions") from None
        if args.rerun is not None:
            PROGRESS["rerun"] = True
            rerun(args.rerun or list(EXPERIMENTS), runner.settings_of(args))
        if args.rerun == []:
            if subprocess.run([sys.executable, "-m", "benchmarks.bench_pipeline"], cwd=ROOT).returncode:
                raise RunFailed("benchmarks.bench_pipeline failed (above); rerun it with make bench")
        check_all()  # slots.BadResults is a UsageError: one line, exit 2
        texts = {name: render_document(name, read_document(name)) for name in DOCUMENTS}
        # Only now, with every file checked and all the text rendered, is anything drawn or written.
        build_figures()
        for name, text in texts.items():  # each whole or not at all
            files.atomic_write(PAGES / name, lambda f: f.write(text.encode()))
        emit(f"wrote README.md, docs/ and the figures in {PLOTS}")
        return 0
    return run("report", body, interrupted=stopped_line,
               stopped=lambda e: f"report: {e}; the committed results are as they were, and the same command "
                                 f"continues from {STAGING}")


if __name__ == "__main__":
    allow_ctrl_c()
    sys.exit(main(get_args_parser().parse_args()))
