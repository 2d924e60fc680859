"""The committed files the report draws on, read and checked: each experiment's runs in results/ against its slot
(slots.py), the tuning sweeps in results/tuning/ against recipes.py, and the benchmarks' JSON files."""
import functools
import re
import statistics

import numpy as np
import torch

import dataset
from . import experiments
from .experiments import EXPERIMENTS, MODEL_LABELS, experiment_run_name, sample_efficiency_labels
from .formatting import show
from mnistlab import engine, files, measurements, paths, significance, slots
from mnistlab.cli import emit
from mnistlab.errors import UsageError
from mnistlab.recipes import MODEL_NAMES, NAMED_RECIPES, RECIPES, shown_value
from model import count_parameters
from scripts import tune

ROOT = files.ROOT
RESULTS, PLOTS = ROOT / "results", ROOT / "plots"
PAGES = ROOT  # where README.md and docs/ lie


@functools.cache
def load(label):
    """The runs of one experiment, seed by seed, each checked against its slot (slots.check): BadResults where one
    does not fill it."""
    return [load_run(label, seed, RESULTS / f"{experiment_run_name(label, seed)}.json") for seed in experiments.SEEDS]


def load_run(label, seed, path):
    """One run of an experiment, checked against its slot. A recipe other than recipes.py's names recipes.py: after
    an edit there, every committed run differs, and restoring the files would not help."""
    try:
        return slots.load(path, f"restore it with `git checkout -- {path}`, or rebuild it with `make report`",
                          recipe=experiments.experiment_recipe(label, seed),
                          labels=test_labels(experiments.experiment_data(label)), train_eval=True,
                          robustness=None if EXPERIMENTS[label][1].get("train_size") else
                          {"shift": measurements.SHIFTS, "rotation": measurements.ROTATIONS},
                          params=params_of(label))
    except slots.BadResults as e:
        if not e.problem.startswith("holds another run's recipe ("):  # not a damaged file's
            raise
        raise slots.BadResults(path, e.problem, f"where mnistlab/recipes.py was edited, undo that (`git "
                               f"checkout -- mnistlab/recipes.py`) or rerun every run with `make report`; else restore the file with "
                               f"`git checkout -- {path}`") from None


@functools.cache
def params_of(label):
    """The parameter count of an experiment's model, counted here rather than taken from its files."""
    return count_parameters(engine.build_model(experiments.experiment_recipe(label, 0), "cpu"))


def check_all():
    """Read every file the README draws on through its slot check, so that a bad one stops the report before
    anything is drawn or written."""
    for label in EXPERIMENTS:
        load(label)
    check_choices()
    for path in left_out():
        emit(f"report: leaves out {paths.printable(path)}: no sweep of scripts/tune.py scores it (move it away to "
             f"quiet this line)")


def final(loaded, key):
    """The final-epoch value of key in each run; never the best epoch."""
    return [run["history"][-1][key] for run in loaded]


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
    return label, torch.from_numpy(slots.decode_predictions(load(label)[0]["predictions"])).long()


def test_size():
    """How many test images each report run was scored on."""
    return load("LeNet5")[0]["eval_images"]


def test_split(name="mnist"):
    """The test images (N, 28, 28) as bytes and their labels."""
    return dataset.read_split(train=False, name=name)


@functools.cache
def test_labels(name="mnist"):
    """The test labels, as numpy, read once: every run's predictions are checked against them."""
    return test_split(name)[1].numpy()


@functools.cache
def correct(label):
    """Per seed and test image, whether the experiment's final model got the image right: (seeds, images) booleans."""
    truth = test_labels(experiments.experiment_data(label))
    return np.stack([slots.decode_predictions(run["predictions"]) == truth for run in load(label)])


@functools.cache
def comparison(first, second):
    return significance.compare(correct(first), correct(second))


def validation_images():
    """How many images the validation split holds; the tuning runs do not record it."""
    return len(dataset.load_splits(validation=True)[3])


def robustness_runs(label):
    """Each seed's robustness sweep of an experiment."""
    return [run["robustness"] for run in load(label)]


def sample_efficiency_runs():
    """label -> (sizes, accuracies per seed per size), the full training set last."""
    sizes, labels = sample_efficiency_labels()
    return {name: (sizes, [final(load(label), "eval_acc") for label in at_sizes]) for name, at_sizes in labels.items()}


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
        # A file of the repository's (scripts/report/__main__.py) is quoted as code, where _ is no markup.
        if not slots.is_plain_text(value) and not is_source_file(value):
            raise ValueError(f"{where} holds {shown_value(value)}, not plain text")
    elif type(value) not in (int, float) or not 0 <= value <= MAX_FIGURE:  # not math.isfinite: a huge int overflows
        raise ValueError(f"{where} holds {shown_value(value)}, not a figure from 0 to {MAX_FIGURE:g}")


def is_source_file(value):
    """Whether value is the path of a Python file in the repository, as tests/mutants.py names them."""
    return (re.fullmatch(r"(?:[A-Za-z0-9_]+/)*[A-Za-z0-9_]+\.py", value) is not None
            and (files.ROOT / value).is_file())  # the code's folder, wherever ROOT's results are read from


# The largest figure a benchmark may report: counts, seconds and ratios are all far below it.
MAX_FIGURE = 1e12


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
        raise UsageError(f"the sweep in {folder} chooses {key} {show(chosen[key])}, but mnistlab/recipes.py's {name} has "
                         f"{key} {show(recipe.get(key))}; restore the committed sweep with `git checkout -- "
                         f"{folder / files_there if files_there else folder}`, "
                         f"or, to adopt its choice, copy it into mnistlab/recipes.py and rebuild the report with `make report`")
