"""Rebuild the README's report, its generated sections and figures, from results/*.json.

    python -m scripts.report           # from the committed results, in seconds
    python -m scripts.report --rerun   # first rerun every experiment and the benchmark (about an hour on 2 CPU cores)
    python -m scripts.report --rerun "batch norm only"   # first rerun just the named experiments

Generated sections sit in README.md between <!-- report:NAME --> and <!-- /report:NAME -->. The runs go through
runs.train_run, as main.py's do, into the committed results/ and plots/; their checkpoints go to checkpoints/.
"""
import argparse
import functools
import re
import statistics
import subprocess
import sys

import torch

import dataset
import engine
import figures
import files
import runs
from model import MODELS, count_parameters, parameter_table
from recipes import EPOCHS, EXPERIMENTS, RECIPES, SEEDS, experiment_recipe, experiment_run_name, format_recipe

ROOT = files.ROOT
RESULTS, PLOTS, README = ROOT / "results", ROOT / "plots", ROOT / "README.md"
MODEL_LABELS = ["LeNet5", "CustomMLP", "LeNet5_Regularized"]
ABLATION_LABELS = ["LeNet5", "weight decay only", "batch norm only", "dropout only", "augmentation only",
                   "LeNet5_Regularized"]
LECUN_1998_ERROR = 0.95  # % test error of LeNet-5 without distortions, LeCun et al. (1998)


def rerun(labels):
    data = dataset.load_splits()
    device = torch.device("cpu")
    for label in labels:
        for seed in SEEDS:
            recipe = experiment_recipe(label, seed)
            print(f"\n=== {label}, seed {seed}\n{format_recipe(recipe)}", flush=True)
            paths = files.RunPaths.of(ROOT, experiment_run_name(label, seed))
            with files.RunLock(paths):
                runs.train_run(recipe, data, device, paths, robustness=not recipe["train_size"],
                               on_epoch=lambda record: print(runs.format_epoch(record, EPOCHS), flush=True))


@functools.cache
def load(label):
    """The complete runs of one experiment, seed by seed."""
    loaded = []
    for seed in SEEDS:
        path = files.RunPaths.of(ROOT, experiment_run_name(label, seed)).results
        run = files.read_json(path)
        if run is None:
            sys.exit(f"report: {path} is missing or unreadable; rebuild it with `make report`")
        if run["status"] != "complete" or len(run["history"]) != EPOCHS or run["evaluated_on"] != "test":
            sys.exit(f"report: {path} is not a complete {EPOCHS}-epoch run scored on the test set; "
                     f"rebuild it with `make report`")
        loaded.append(run)
    return loaded


def final(loaded, key):
    """The final-epoch value of key in each run; never the best epoch."""
    return [run["history"][-1][key] for run in loaded]


def mean_std(values, digits=2):
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


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


def test_split():
    """The test images (N, 28, 28) as bytes and their labels."""
    dataset.prepare_mnist()
    split = dataset.datasets.MNIST(dataset.DEFAULT_DATA_DIR, train=False)
    return split.data, split.targets


# ---------------------------------------------------------------- sections

def section_quickstart():
    run = load("LeNet5")[0]
    paths = files.RunPaths.of("runs", "lenet5_seed0")
    lines = [f"device {run['device']} ({run['device_name']}), torch {run['torch']}", "",
             f"lenet5: {run['params']:,} parameters", parameter_table(MODELS["lenet5"]()),
             format_recipe(run["recipe"]), *(runs.format_epoch(h, run["epochs"]) for h in run["history"]),
             f"wrote {paths.results}, {paths.curves} and {paths.checkpoint}"]
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
    first_epoch = {label: statistics.mean(run["history"][0]["eval_acc"] for run in load(label))
                   for label in ("LeNet5", "CustomMLP without augmentation")}
    return "\n".join(rows) + (
        f"\n\n{GENERALIZATION_NOTE} After one epoch LeNet5 is at {first_epoch['LeNet5']:.2f}% and the MLP, without "
        f"augmentation, at {first_epoch['CustomMLP without augmentation']:.2f}%.")


def section_reproduce():
    loaded = [run for label in EXPERIMENTS for run in load(label)]
    minutes = sum(h["seconds"] for run in loaded for h in run["history"]) / 60
    hardware = ", ".join(sorted({run["device_name"] for run in loaded}))
    return (f"The {len(loaded)} runs behind this report trained for {minutes:.0f} minutes in all on {hardware}; "
            "`make report` adds start-up, a clean pass over the training set per run, and the benchmark.")


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
        f"ours makes {lenet_error:.2f}% in {EPOCHS} epochs, and the regularized one {regularized_error:.2f}%.")


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


def section_speed():
    bench = files.read_json(RESULTS / "bench_pipeline.json")
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
        f"which also compiles. Where our training step spends its time, by the profiler's self CPU time: "
        f"{operators}.")


def section_data():
    rows = ["| file | SHA-256 (decompressed) |", "|---|---|"]
    rows += [f"| `{name}` | `{digest}` |" for name, digest in dataset.SHA256.items()]
    return "\n".join(rows)


SECTIONS = {"quickstart": section_quickstart, "recipes": section_recipes, "models": section_models,
            "results": section_results, "versus": section_versus, "ablation": section_ablation,
            "errors": section_errors, "speed": section_speed, "data": section_data, "reproduce": section_reproduce}


def marker_pattern(name):
    return re.compile(rf"(<!-- report:{name} -->)(.*?)(<!-- /report:{name} -->)", re.DOTALL)


def readme_sections(text):
    """The generated sections as they stand in the README text; None for a missing one."""
    sections = {}
    for name in SECTIONS:
        match = marker_pattern(name).search(text)
        sections[name] = match.group(2).strip("\n") if match else None
    return sections


def render_readme(text):
    for name, render in SECTIONS.items():
        pattern = marker_pattern(name)
        if not pattern.search(text):
            sys.exit(f"report: README.md has no <!-- report:{name} --> section")
        content = render()
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
    label, predicted = best_predictions()
    images, truth = test_split()
    files.save_figure(PLOTS / "confusion_matrix.png", figures.confusion(
        engine.confusion_matrix(truth, predicted), f"{label}, seed 0: confusion matrix on the test set"))
    files.save_figure(PLOTS / "misclassified.png", figures.misclassified(
        images, truth, predicted, f"{label}, seed 0: the first 40 misclassified test digits"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rerun", nargs="*", metavar="EXPERIMENT", choices=list(EXPERIMENTS),
                        help="first rerun these experiments, or with no names every experiment and the benchmark")
    args = parser.parse_args()
    if args.rerun is not None:
        rerun(args.rerun or list(EXPERIMENTS))
    if args.rerun == []:
        subprocess.run([sys.executable, "-m", "benchmarks.bench_pipeline"], cwd=ROOT, check=True)
    build_figures()
    text = render_readme(README.read_text())
    files.atomic_write(README, lambda f: f.write(text.encode()))
    print(f"wrote {README} and the figures in {PLOTS}")


if __name__ == "__main__":
    main()
