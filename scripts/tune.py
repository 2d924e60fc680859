"""Choose each model's recipe on the validation split: the sweep that recipes.SEARCH_SPACE declares.

    python -m scripts.tune                    # run what is missing, then print the choices
    python -m scripts.tune --model lenet5

Every run trains on the first 50,000 training images for EPOCHS epochs and is scored on the last 10,000, at its
final epoch, once per seed in TUNING_SEEDS; the test set plays no part. Each run's figures go to
results/tuning/<run>.json, and a run whose file is there is not run again, so an interrupted sweep goes on where
it stopped.
"""
import argparse
import statistics
import time

import torch

import dataset
import engine
import files
from recipes import EPOCHS, MODEL_NAMES, SEARCH_SPACE, TUNING_SEEDS, resolve_recipe, run_name

TUNING_DIR = files.ROOT / "results" / "tuning"
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


def stored_score(model, setting, seed):
    """The final validation accuracy of a tuning run from its file, 0 for one that diverged; KeyError where it has
    not been run."""
    results = files.read_json(tuning_path(model, setting, seed))
    if results is None:
        raise KeyError(f"{tuning_path(model, setting, seed)} is missing; run `make tune`")
    return results["history"][-1]["eval_acc"] if results["status"] == "complete" else 0.0


def train_and_score(model, setting, seed, data, device):
    path = tuning_path(model, setting, seed)
    if path.exists():
        return stored_score(model, setting, seed)
    recipe = tuning_recipe(model, setting, seed)
    start = time.perf_counter()
    network, batches, optimizer, scheduler = engine.setup(recipe, data[0], data[1], device)
    history, status = [], "complete"
    try:
        for record, _ in engine.fit(network, optimizer, scheduler, batches,
                                    dataset.TensorLoader(data[2], data[3], 1000), EPOCHS):
            history.append(record)
    except engine.Diverged as e:
        status = f"diverged: {e}"
    files.write_json(path, {"model": model, "setting": setting, "seed": seed, "evaluated_on": "validation",
                            "device_name": engine.describe_device(device), "torch": torch.__version__,
                            "recipe": recipe, "status": status, "history": history})
    score = stored_score(model, setting, seed)
    print(f"{path.name}: {status}, validation accuracy {score:.2f}% ({time.perf_counter() - start:.0f} s)", flush=True)
    return score


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=MODEL_NAMES, nargs="*", default=list(MODEL_NAMES),
                        help="the models to tune; default: all")
    args = parser.parse_args()
    device = torch.device("cpu")
    data = dataset.load_splits(device=device, validation=True)
    for model in args.model:
        chosen, steps = sweep(model, lambda setting, seed: train_and_score(model, setting, seed, data, device))
        for factor, scored, value in steps:
            tried = ", ".join(f"{v}: {statistics.mean(a):.2f}" for v, a in scored)
            print(f"{model} {factor}: {tried} -> {value}")
        print(f"{model}: chosen {chosen}", flush=True)


if __name__ == "__main__":
    main()
