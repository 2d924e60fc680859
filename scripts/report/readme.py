"""README.md's generated sections: the headline, the results table, the quick start's output, the models and their
recipes, LeNet5 against the MLP, robustness, sample efficiency, the ablation, the verdicts, Fashion-MNIST, the
errors."""
import statistics

import dataset
from . import experiments
from .appendices import GENERALIZATION_HEADER, GENERALIZATION_NOTE, generalization_rows, significance_groups
from .committed import (best_predictions, comparison, final, load, robustness_runs, sample_efficiency_runs,
                        seconds_per_epoch, test_size, test_split)
from .experiments import (ABLATION_LABELS, EXPERIMENTS, LECUN_1998_ERROR, MODEL_LABELS, ROBUSTNESS_LABELS,
                          ROBUSTNESS_NAMES, ROBUSTNESS_PAIRS, ROBUSTNESS_ROTATIONS, ROBUSTNESS_SHIFTS, TRAIN_SIZES,
                          on_fashion)
from .formatting import comparison_verdict, interval_verdict, mean_std, span
from mnistlab import engine, files, runs, significance
from mnistlab.recipes import EPOCHS, RECIPES, completed, format_recipe
from model import MODELS, count_parameters, parameter_table


def section_headline():
    """The report in two sentences: the three models' accuracy, and whether the two differences it is about are real."""
    accuracy = {label: mean_std(final(load(label), "eval_acc")) for label in MODEL_LABELS}
    versus, regularized = comparison("LeNet5", "CustomMLP"), comparison("LeNet5_Regularized", "LeNet5")
    return (f"After {EPOCHS} epochs, over seeds {', '.join(map(str, experiments.SEEDS))}, LeNet5 reaches "
            f"{accuracy['LeNet5']}% test accuracy against the MLP's {accuracy['CustomMLP']}%, a lead of "
            f"{versus.difference:.2f} points ({significance.verdict(versus.real)}, paired over seeds and test "
            f"images), and LeNet5_Regularized {accuracy['LeNet5_Regularized']}%, {regularized.difference:+.2f} points "
            f"over LeNet5 ({significance.verdict(regularized.real)}).")


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
        f"\n\nMean ± sample standard deviation over seeds {', '.join(map(str, experiments.SEEDS))}, each after "
        f"{EPOCHS} epochs, at the final epoch. Hardware: {hardware}; torch {versions}. Seconds per epoch include "
        "the test pass."
        f"\n\nLeNet-5 as LeCun et al. (1998) trained it, without distortions, made {LECUN_1998_ERROR:.2f}% test errors; "
        f"ours makes {lenet_error:.2f}% in {EPOCHS} epochs, and the regularized one {regularized_error:.2f}%; "
        "[docs/statistics.md](docs/statistics.md) tests whether those differences are measurable.")


def section_quickstart():
    run = load("LeNet5")[0]
    written = files.RunPaths.of("runs", "lenet5_seed0")
    lines = [f"device {run['device']} ({run['device_name']}), torch {run['torch']}", "",
             f"lenet5: {run['params']:,} parameters", parameter_table(MODELS["lenet5"]()),
             format_recipe(completed(run["recipe"])), *(runs.format_epoch(h, run["epochs"]) for h in run["history"]),
             f"wrote {written.results}, {written.curves} and {written.checkpoint}"]
    return ("What it prints: the run behind `results/lenet5_seed0.json`, which `make report` trained with the same "
            "recipe:\n\n```text\n" + "\n".join(lines) + "\n```")


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


def section_recipes():
    rows = ["| model | optimizer | peak learning rate | weight decay | batch size | augmentation | dropout | batch norm |",
            "|---|---|---:|---:|---:|:-:|:-:|:-:|"]
    for label in MODEL_LABELS:
        r = RECIPES[EXPERIMENTS[label][0]]
        rows.append(f"| {label} | {r['optimizer']} | {r['lr']} | {r['weight_decay'] or '-'} | {r['batch_size']} | "
                    f"{'yes' if r['augment'] else '-'} | {r.get('dropout') or '-'} | "
                    f"{'yes' if r.get('batch_norm') else '-'} |")
    return "\n".join(rows)


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
        f"\n\nTest accuracy %, mean of seeds {', '.join(map(str, experiments.SEEDS))}, each model after its {EPOCHS} "
        "epochs. A shift of k pixels moves every test digit k pixels right or left and k down or up, the four "
        "diagonal directions averaged, with blank pixels filling in; a rotation turns it both ways, averaged. With "
        "no shift or rotation, each figure is the model's test accuracy in the results table.\n\n"
        "![robustness](plots/robustness.png)\n\n"
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


def section_sample_efficiency():
    (sizes, lenet), (_, mlp) = sample_efficiency_runs().values()
    rows = ["| training images | LeNet5 test accuracy % | CustomMLP without augmentation % | "
            "LeNet5's lead, points | MLP's errors per LeNet5 error |", "|---:|---:|---:|---:|---:|"]
    for size, a, b in zip(sizes, lenet, mlp):
        lead = statistics.mean(a) - statistics.mean(b)
        ratio = (100 - statistics.mean(b)) / (100 - statistics.mean(a))
        rows.append(f"| {size:,} | {mean_std(a)} | {mean_std(b)} | {lead:.2f} | {ratio:.1f} |")
    smallest = f"LeNet5, {TRAIN_SIZES[0]:,} images"
    steps = len(engine.training_batches(experiments.experiment_recipe(smallest, 0),
                                        *dataset.load_splits()[:2])) * EPOCHS
    return "\n".join(rows) + (
        f"\n\nMean ± std over seeds {', '.join(map(str, experiments.SEEDS))}. Every size trains for the same "
        f"{steps:,} optimizer steps, the full set's {EPOCHS} epochs: a smaller subset is repeated, each copy in a new "
        "order, to fill each epoch. The subsets keep each digit's share of the training set and are drawn with a fixed "
        "seed, the same for every run; the test set stays whole.\n\n![sample efficiency](plots/sample_efficiency.png)")


def section_ablation():
    return "\n".join(GENERALIZATION_HEADER + generalization_rows(ABLATION_LABELS)) + "\n\n" + GENERALIZATION_NOTE


def section_verdicts():
    """Every comparison the report makes, in one table: its difference, interval and verdict."""
    rows, seen = ["| comparison | difference, points | 95% interval | verdict |", "|---|---:|---:|---|"], set()
    for title, _, pairs, _ in significance_groups():
        for row, first, second in pairs:
            if (first, second) in seen:  # the same two experiments in another table
                continue
            seen.add((first, second))
            c = comparison(first, second)
            compared = (row if "−" in row else f"{first} − {second}" if title != "Fewer training images" else
                     f"LeNet5 − CustomMLP without augmentation, {row} training images")
            rows.append(f"| {compared} | {c.difference:+.3f} | {span(c.interval)} | {comparison_verdict(c)} |")
    return "\n".join(rows)


# The two conclusions the report draws on MNIST, which its chapter on Fashion-MNIST tests again: first − second.
CLAIMS = [("LeNet5", "CustomMLP", "the convolutional net beats the same-size MLP"),
          ("LeNet5_Regularized", "LeNet5", "regularization beats the plain LeNet5")]


def holds(comparison):
    """Whether a comparison bears out its claim: a real difference, first ahead."""
    return comparison.real and comparison.difference > 0


def outcome(mnist, fashion):
    """What became of an MNIST conclusion (first ahead of second) on Fashion-MNIST, from both comparisons."""
    if not holds(mnist):
        return "was not drawn on MNIST"
    if holds(fashion):
        return "holds"
    return "is reversed" if fashion.real else "is not borne out (too small to measure here)"


def section_fashion():
    """The three models on Fashion-MNIST with their MNIST recipes, beside MNIST: the results, the curves, the two
    comparisons the report is about, and whether each MNIST conclusion holds there."""
    seeds = " / ".join(map(str, experiments.SEEDS))
    rows = [f"| model | Fashion-MNIST test accuracy % | seeds {seeds}, accuracy % | test error % | MNIST test "
            "accuracy % |", "|---|---:|---:|---:|---:|"]
    for label in MODEL_LABELS:
        accs = final(load(on_fashion(label)), "eval_acc")
        rows.append(f"| {label} | {mean_std(accs)} | {' / '.join(f'{a:.2f}' for a in accs)} | "
                    f"{mean_std([100 - a for a in accs])} | {mean_std(final(load(label), 'eval_acc'))} |")
    compared = ["| comparison | MNIST, points | verdict | Fashion-MNIST, points | 95% interval | verdict |",
                "|---|---:|---|---:|---:|---|"]
    sentences = []
    for first, second, claim in CLAIMS:
        mnist, fashion = comparison(first, second), comparison(on_fashion(first), on_fashion(second))
        compared.append(f"| {first} − {second} | {mnist.difference:+.3f} | {comparison_verdict(mnist)} | "
                        f"{fashion.difference:+.3f} | {span(fashion.interval)} | {comparison_verdict(fashion)} |")
        scale = (f", {fashion.difference / mnist.difference:.1f} times the lead on MNIST"
                 if holds(mnist) and holds(fashion) else "")
        sentences.append(f"{first} − {second}: {fashion.difference:+.2f} points ({significance.verdict(fashion.real)}"
                         f"{scale}), so the MNIST conclusion that {claim} {outcome(mnist, fashion)}.")
    def listed(data, sign):  # the single techniques whose difference from LeNet5 is real and of that sign
        name = on_fashion if data == "fashion" else str
        compared = {label: comparison(name(label), name("LeNet5")) for label in ABLATION_LABELS[1:5]}
        found = [label for label, c in compared.items() if c.real and c.difference * sign > 0]
        return ", ".join(found) or "none"
    return "\n".join(rows) + (
        f"\n\nMean ± std over seeds {', '.join(map(str, experiments.SEEDS))}, final epoch of {EPOCHS}, each model "
        "with the recipe it has on MNIST.\n\n![three models on Fashion-MNIST](plots/fashion_comparison_3seeds.png)"
        "\n\n" + "\n".join(compared) + "\n\nPaired over seeds and test images, as in "
        "[Which differences are real](#which-differences-are-real). " + " ".join(sentences) +
        f" Of the four techniques alone, a real gain over LeNet5 on Fashion-MNIST: {listed('fashion', 1)} (on MNIST: "
        f"{listed('mnist', 1)}); a real loss: {listed('fashion', -1)} (on MNIST: {listed('mnist', -1)}). "
        "The ablation: [docs/fashion.md](docs/fashion.md).")


def section_errors():
    label, predicted = best_predictions()
    _, truth = test_split()
    errors = engine.confusion_matrix(truth, predicted).fill_diagonal_(0)
    top = errors.flatten().topk(3)
    pairs = ", ".join(f"{i // 10} read as {i % 10} ({n})" for n, i in zip(top.values.tolist(), top.indices.tolist()))
    return (f"{label}, seed 0, has the best mean accuracy; its final model gets {int(errors.sum())} of "
            f"{len(truth):,} test digits wrong. The most frequent confusions: {pairs}.\n\n"
            "![confusion matrix](plots/confusion_matrix.png)\n\n![misclassified test digits](plots/misclassified.png)")
