"""Choose each model's recipe, and the fast recipe, on the validation split.

The sweeps are those that SEARCH_SPACE and FAST_SEARCH_SPACE below declare.

    python -m scripts.tune                    # run what is missing, then print the choices
    python -m scripts.tune --model lenet5 --jobs 2
    python -m scripts.tune --fast             # the fast recipe's sweep

Every run trains on the first 50,000 training images and is scored on the last 10,000, at its final epoch; the
test set plays no part. The default recipes' runs train for EPOCHS epochs, once per seed in TUNING_SEEDS; the fast
recipe's for the epochs each setting names, once per seed in FAST_TUNING_SEEDS. Each run's figures go to
results/tuning/<run>.json (the fast sweep's to results/tuning/fast/), and a run whose file is there and whole is
not run again, so an interrupted sweep goes on where it stopped; one whose file is damaged is run again. The runs
go through runner.py, as sweep.py's do: each factor's values and seeds at once with --jobs N or on a Ray cluster
with --address, one factor after another.
"""
import statistics
import sys

from mnistlab import files, runner, slots
from mnistlab.cli import OneLineErrorParser, add_runner_flags, emit, run
from mnistlab.errors import RunFailed, UsageError
from mnistlab.recipes import EPOCHS, MODEL_NAMES, resolve_recipe, run_name, setting_tag

# scripts/tune.py's sweep, scored on the validation split. For each model it starts from `start` and tries one
# factor at a time, in the order given, each around the best setting found so far. Each factor's values are in
# order of preference: a setting whose mean is within one standard deviation of the best one's loses to the best
# only if listed after it. So the simpler setting comes first (no regularization before some, one hidden layer
# before two, a weaker augmentation before a stronger one), and where nothing is simpler, the starting value.
SEARCH_SPACE = {
    "lenet5": dict(
        start=dict(optimizer="sgd", lr=0.1, weight_decay=0.0, batch_size=128, augment=0.0),
        factors=dict(lr=[0.1, 0.05, 0.2, 0.02], batch_size=[128, 64, 256])),
    "custom_mlp": dict(
        start=dict(optimizer="sgd", lr=0.1, weight_decay=1e-3, batch_size=128, augment=1.0, hidden=[72, 64]),
        factors=dict(hidden=[[78], [75, 32], [72, 64], [66, 128]], lr=[0.1, 0.05, 0.2],
                     weight_decay=[0.0, 5e-4, 1e-3, 2e-3], augment=[0.0, 1.0, 2.0])),
    "lenet5_regularized": dict(
        start=dict(optimizer="sgd", lr=0.1, weight_decay=5e-4, batch_size=128, augment=1.0, dropout=0.1,
                   batch_norm=True),
        factors=dict(lr=[0.1, 0.05, 0.2], weight_decay=[0.0, 5e-4, 1e-3], dropout=[0.0, 0.1, 0.2],
                     augment=[0.0, 0.5, 1.0, 1.5, 2.0])),
}
TUNING_SEEDS = (0, 1)

# `scripts/tune.py --fast`: the sweep behind NAMED_RECIPES["fast"], on the validation split. It aims at
# TARGET_ACCURACY as soon as possible, not at the best accuracy. The schedules, (epochs, batch size), are listed
# fastest first: fewer epochs first, then larger batches, which take fewer steps of nearly the same cost on a CPU.
# Each is tried with every learning rate and label smoothing, and the first schedule where one of those reaches the
# target, as the mean over FAST_TUNING_SEEDS, wins with the best of them.
TARGET_ACCURACY = 99.0
FAST_SEARCH_SPACE = dict(
    start=dict(optimizer="sgd", weight_decay=0.0, augment=0.0),
    schedules=[(1, 128), (1, 64), (1, 32), (2, 128), (2, 64), (2, 32), (3, 128), (3, 64), (3, 32)],
    lr=[0.03, 0.05, 0.1, 0.2], label_smoothing=[0.0, 0.1])
FAST_TUNING_SEEDS = (0, 1, 2)

TUNING_DIR = files.ROOT / "results" / "tuning"
FAST_DIR = TUNING_DIR / "fast"
# The tuning runs' curves and checkpoints, kept for resuming and looking at, not committed (git ignores it).
STAGING = files.ROOT / "checkpoints" / "tuning"


def tuning_tag(model, setting):
    """The part of a tuning run's name that tells its setting, e.g. lr0.05_bs128."""
    return setting_tag({key: setting[key] for key in SEARCH_SPACE[model]["factors"]})


def tuning_recipe(model, setting, seed):
    return resolve_recipe(model, setting, epochs=EPOCHS, seed=seed, limit=None, train_size=None, validation=True,
                          amp=False)


def tuning_path(model, setting, seed):
    return TUNING_DIR / f"{run_name(model, tuning_tag(model, setting), seed)}.json"


def fast_setting(schedule, lr, label_smoothing):
    """The fast sweep's setting for a schedule, (epochs, batch size), a peak learning rate and a label smoothing."""
    epochs, batch_size = schedule
    return {**FAST_SEARCH_SPACE["start"], "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "label_smoothing": label_smoothing}


def fast_recipe(setting, seed):
    return resolve_recipe("lenet5", setting, "fast", seed=seed, limit=None, train_size=None, validation=True,
                          amp=False)


def fast_path(setting, seed):
    tag = setting_tag({key: setting[key] for key in ("epochs", "batch_size", "lr", "label_smoothing")})
    return FAST_DIR / f"{run_name('lenet5', tag, seed, 'fast')}.json"


def choose(scored):
    """scored: (value, final validation accuracies) in order of preference. The best mean wins, unless a value
    listed before it has a mean within one standard deviation (of the best value's seeds) of it."""
    means = [statistics.mean(accs) for _, accs in scored]
    best = max(range(len(scored)), key=means.__getitem__)
    bar = means[best] - statistics.stdev(scored[best][1])
    return next(value for (value, _), mean in zip(scored, means) if mean >= bar)


def sweep(model, score, train=lambda pairs: None):
    """Walk the model's search space one factor at a time; score(setting, seed) gives a final validation accuracy.
    train(pairs) is given each factor's (setting, seed) pairs, all its values and seeds, before any is scored.

    Returns the chosen setting and the steps: (factor, [(value, accuracies)], chosen value) for each factor.
    """
    setting = dict(SEARCH_SPACE[model]["start"])
    steps = []
    for factor, values in SEARCH_SPACE[model]["factors"].items():
        train([({**setting, factor: value}, seed) for value in values for seed in TUNING_SEEDS])
        scored = [(value, [score({**setting, factor: value}, seed) for seed in TUNING_SEEDS]) for value in values]
        setting[factor] = choose(scored)
        steps.append((factor, scored, setting[factor]))
    return setting, steps


def fast_sweep(score, train=lambda pairs: None):
    """The fast recipe's search; score(setting, seed) gives a final validation accuracy, once train(pairs) has been
    given every (setting, seed) pair of its schedule.

    The schedules are tried in FAST_SEARCH_SPACE's order, fastest first, each with every learning rate and label
    smoothing; the first schedule where one of those has a mean that reaches TARGET_ACCURACY wins, with the best of
    them. Where none reaches it, the best mean of all wins. Returns the chosen setting and the schedules tried:
    [(schedule, [((lr, label smoothing), accuracies)])].
    """
    tried, best = [], None
    for schedule in FAST_SEARCH_SPACE["schedules"]:
        train([(fast_setting(schedule, lr, smoothing), seed) for lr in FAST_SEARCH_SPACE["lr"]
               for smoothing in FAST_SEARCH_SPACE["label_smoothing"] for seed in FAST_TUNING_SEEDS])
        scored = [((lr, smoothing), [score(fast_setting(schedule, lr, smoothing), seed) for seed in FAST_TUNING_SEEDS])
                  for lr in FAST_SEARCH_SPACE["lr"] for smoothing in FAST_SEARCH_SPACE["label_smoothing"]]
        tried.append((schedule, scored))
        mean, value = max(((statistics.mean(accuracies), value) for value, accuracies in scored),
                          key=lambda pair: pair[0])  # the first of equals, in the order listed
        if best is None or mean > best[0]:
            best = mean, fast_setting(schedule, *value)
        if mean >= TARGET_ACCURACY:
            return fast_setting(schedule, *value), tried
    return best[1], tried


def stored_score(model, setting, seed):
    """The final validation accuracy of a tuning run from its file, 0 for one that diverged; slots.BadResults where
    its file is missing or does not fill its slot."""
    return score_of(tuning_path(model, setting, seed), tuning_recipe(model, setting, seed))


def fast_score(setting, seed):
    """stored_score for the fast sweep's runs."""
    return score_of(fast_path(setting, seed), fast_recipe(setting, seed))


def advice(path):
    rerun = "make tune-fast" if path.parent == FAST_DIR else "make tune"
    # A run the sweep walks to only now (after an edit to TARGET_ACCURACY, say) was never committed: no git advice.
    return f"rerun it with `{rerun}`" + (f", or restore it with `git checkout -- {path}`"
                                         if path.exists() or files.tracked(path) else "")


def score_of(path, recipe):
    """The final validation accuracy of the run stored at path, checked against the recipe of its slot; 0 where it
    diverged."""
    results = slots.load(path, advice(path), recipe=recipe, diverged=True)
    return results["history"][-1]["eval_acc"] if results["status"] == "complete" else 0.0


def read_run(path):
    """A stored tuning run, checked in form alone, for the report to count and time: any that the sweeps do not
    score too."""
    return slots.load(path, advice(path), diverged=True)


def stored_or_none(path, recipe):
    """The score of the run stored at path, or None where it must be trained: missing, or unreadable or damaged,
    which is said in one line, so that `make tune` repairs such a file rather than skip it forever."""
    try:
        return score_of(path, recipe)
    except slots.Missing:
        return None
    except slots.BadResults as e:
        emit(f"tune: {e.path} {e.problem}; training it again")
        return None


def run_paths(path):
    """A tuning run's files: its results at path, where the sweep reads them; its curves and checkpoint in STAGING."""
    staged = files.RunPaths.of(STAGING, path.stem)
    return files.RunPaths(results=path, curves=staged.curves, checkpoint=staged.checkpoint, lock=staged.lock)


def trainer(settings, recipe_of, path_of):
    """train(pairs): every (setting, seed) pair whose tuning file is missing or unreadable, trained at once through
    runner.py. A run that diverges is a score of 0, kept as such; any other failure stops the sweep."""
    def train(pairs):
        todo = {path_of(setting, seed).stem: (path_of(setting, seed), recipe_of(setting, seed))
                for setting, seed in pairs if stored_or_none(path_of(setting, seed), recipe_of(setting, seed)) is None}
        if not todo:
            return
        jobs, _ = runner.jobs_to_train([(name, recipe) for name, (_, recipe) in todo.items()],
                                       lambda name: run_paths(todo[name][0]), STAGING, flag=None, settings=settings)
        failed = runner.train_and_report(jobs, settings, line=runner.describe)
        for name, error in failed.items():
            path, recipe = todo[name]
            if not error.startswith("training diverged"):
                raise RunFailed(f"{name}: {error}")
            if files.read_json(path) is None:  # it diverged in its first epoch, before it had results to write
                files.write_json(path, {"model": recipe["model"], "seed": recipe["seed"], "evaluated_on": "validation",
                                        "recipe": recipe, "status": "diverged", "history": []})
    return train


def get_args_parser():
    parser = OneLineErrorParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODEL_NAMES, nargs="+", help="the models to tune; default: all")
    parser.add_argument("--fast", action="store_true", help="run the fast recipe's sweep (LeNet5's) instead; "
                                                             "default: off")
    add_runner_flags(parser)
    return parser


def main(args):
    def body():
        if args.fast and args.model:
            raise UsageError("--fast tunes LeNet5's fast recipe; drop --model")
        settings = runner.settings_of(args)
        if args.fast:
            chosen, tried = fast_sweep(fast_score, trainer(settings, fast_recipe, fast_path))
            for schedule, scored in tried:
                emit(f"epochs, batch size {schedule}: " + ", ".join(f"lr {lr} smoothing {ls}: {statistics.mean(a):.2f}"
                                                                     for (lr, ls), a in scored))
            emit(f"fast: chosen {chosen}")
            return 0
        for model in args.model or MODEL_NAMES:
            chosen, steps = sweep(model, lambda setting, seed: stored_score(model, setting, seed),
                                  trainer(settings, lambda setting, seed: tuning_recipe(model, setting, seed),
                                          lambda setting, seed: tuning_path(model, setting, seed)))
            for factor, scored, value in steps:
                tried = ", ".join(f"{v}: {statistics.mean(a):.2f}" for v, a in scored)
                emit(f"{model} {factor}: {tried} -> {value}")
            emit(f"{model}: chosen {chosen}")
        return 0
    return run("tune", body, interrupted="tune: interrupted; every finished run is stored, and the same command "
                                         "continues the sweep")


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
