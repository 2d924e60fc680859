"""Choose each model's recipe, and the fast recipe, on the validation split.

The sweeps are those that SEARCH_SPACE and FAST_SEARCH_SPACE below declare.

    python -m scripts.tune                    # run what is missing, then print the choices
    python -m scripts.tune --model lenet5
    python -m scripts.tune --fast             # the fast recipe's sweep

Every run trains on the first 50,000 training images and is scored on the last 10,000, at its final epoch; the
test set plays no part. The default recipes' runs train for EPOCHS epochs, once per seed in TUNING_SEEDS; the fast
recipe's for the epochs each setting names, once per seed in FAST_TUNING_SEEDS. Each run's figures go to
results/tuning/<run>.json (the fast sweep's to results/tuning/fast/), and a run whose file is there and whole is
not run again, so an interrupted sweep goes on where it stopped; one whose file is damaged is run again.
"""
import statistics
import time

import torch

import dataset
import engine
import files
import slots
from cli import OneLineErrorParser
from recipes import EPOCHS, MODEL_NAMES, resolve_recipe, run_name

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
SHORT = {"lr": "lr", "batch_size": "bs", "weight_decay": "wd", "augment": "aug", "dropout": "do", "hidden": "h"}


def setting_tag(model, setting):
    """The part of a tuning run's name that tells its setting, e.g. lr0.05_bs128."""
    return "_".join(f"{SHORT[key]}{'-'.join(map(str, setting[key])) if isinstance(setting[key], list) else f'{setting[key]:g}'}"
                    for key in SEARCH_SPACE[model]["factors"])


def tuning_recipe(model, setting, seed):
    return resolve_recipe(model, setting, epochs=EPOCHS, seed=seed, limit=None, train_size=None, validation=True,
                          amp=False)


def tuning_path(model, setting, seed):
    return TUNING_DIR / f"{run_name(model, setting_tag(model, setting), seed)}.json"


def fast_setting(schedule, lr, label_smoothing):
    """The fast sweep's setting for a schedule, (epochs, batch size), a peak learning rate and a label smoothing."""
    epochs, batch_size = schedule
    return {**FAST_SEARCH_SPACE["start"], "epochs": epochs, "batch_size": batch_size, "lr": lr,
            "label_smoothing": label_smoothing}


def fast_recipe(setting, seed):
    return resolve_recipe("lenet5", setting, "fast", seed=seed, limit=None, train_size=None, validation=True,
                          amp=False)


def fast_path(setting, seed):
    tag = f"ep{setting['epochs']}_bs{setting['batch_size']}_lr{setting['lr']:g}_ls{setting['label_smoothing']:g}"
    return FAST_DIR / f"{run_name('lenet5', tag, seed, 'fast')}.json"


def choose(scored):
    """scored: (value, final validation accuracies) in order of preference. The best mean wins, unless a value
    listed before it has a mean within one standard deviation (of the best value's seeds) of it."""
    means = [statistics.mean(accs) for _, accs in scored]
    best = max(range(len(scored)), key=means.__getitem__)
    bar = means[best] - statistics.stdev(scored[best][1])
    return next(value for (value, _), mean in zip(scored, means) if mean >= bar)


def sweep(model, score):
    """Walk the model's search space one factor at a time; score(setting, seed) gives a final validation accuracy.

    Returns the chosen setting and the steps: (factor, [(value, accuracies)], chosen value) for each factor.
    """
    setting = dict(SEARCH_SPACE[model]["start"])
    steps = []
    for factor, values in SEARCH_SPACE[model]["factors"].items():
        scored = [(value, [score({**setting, factor: value}, seed) for seed in TUNING_SEEDS]) for value in values]
        setting[factor] = choose(scored)
        steps.append((factor, scored, setting[factor]))
    return setting, steps


def fast_sweep(score):
    """The fast recipe's search; score(setting, seed) gives a final validation accuracy.

    The schedules are tried in FAST_SEARCH_SPACE's order, fastest first, each with every learning rate and label
    smoothing; the first schedule where one of those has a mean that reaches TARGET_ACCURACY wins, with the best of
    them. Where none reaches it, the best mean of all wins. Returns the chosen setting and the schedules tried:
    [(schedule, [((lr, label smoothing), accuracies)])].
    """
    tried, best = [], None
    for schedule in FAST_SEARCH_SPACE["schedules"]:
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
    return f"rerun it with `{rerun}`, or restore it with `git checkout -- {path}`"


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
        print(f"tune: {e.path} {e.problem}; training it again", flush=True)
        return None


def train_and_score(path, recipe, setting, data, device):
    """Train the recipe on the validation split and store its run at path, unless it is there already; returns its
    final validation accuracy."""
    stored = stored_or_none(path, recipe)
    if stored is not None:
        return stored
    start = time.perf_counter()
    network, batches, optimizer, scheduler = engine.setup(recipe, data[0], data[1], device)
    history, status = [], "complete"
    try:
        for record, _ in engine.fit(network, optimizer, scheduler, batches,
                                    dataset.TensorLoader(data[2], data[3], 1000), recipe):
            history.append(record)
    except engine.Diverged as e:
        status = f"diverged: {e}"
    files.write_json(path, {"model": recipe["model"], "setting": setting, "seed": recipe["seed"],
                            "evaluated_on": "validation", "device_name": engine.describe_device(device),
                            "torch": torch.__version__, "recipe": recipe, "status": status, "history": history})
    score = score_of(path, recipe)
    print(f"{path.name}: {status}, validation accuracy {score:.2f}% ({time.perf_counter() - start:.0f} s)", flush=True)
    return score


def main():
    parser = OneLineErrorParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODEL_NAMES, nargs="+", help="the models to tune; default: all")
    parser.add_argument("--fast", action="store_true", help="run the fast recipe's sweep (LeNet5's) instead; "
                                                             "default: off")
    args = parser.parse_args()
    if args.fast and args.model:
        parser.error("--fast tunes LeNet5's fast recipe; drop --model")
    device = torch.device("cpu")
    data = dataset.load_splits(device=device, validation=True)
    if args.fast:
        chosen, tried = fast_sweep(lambda setting, seed: train_and_score(fast_path(setting, seed),
                                                                         fast_recipe(setting, seed), setting, data,
                                                                         device))
        for schedule, scored in tried:
            print(f"epochs, batch size {schedule}: " + ", ".join(f"lr {lr} smoothing {ls}: {statistics.mean(a):.2f}"
                                                                  for (lr, ls), a in scored))
        print(f"fast: chosen {chosen}", flush=True)
        return
    for model in args.model or MODEL_NAMES:
        chosen, steps = sweep(model, lambda setting, seed: train_and_score(
            tuning_path(model, setting, seed), tuning_recipe(model, setting, seed), setting, data, device))
        for factor, scored, value in steps:
            tried = ", ".join(f"{v}: {statistics.mean(a):.2f}" for v, a in scored)
            print(f"{model} {factor}: {tried} -> {value}")
        print(f"{model}: chosen {chosen}", flush=True)


if __name__ == "__main__":
    main()
