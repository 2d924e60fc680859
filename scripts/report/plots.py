"""The report's figures in plots/, drawn by figures.py from the committed results."""
import dataset
from . import committed, experiments
from .committed import best_predictions, final, gaps, load, robustness_runs, sample_efficiency_runs, sweeps, test_split
from .experiments import ABLATION_LABELS, MODEL_LABELS, ROBUSTNESS_LABELS, ROBUSTNESS_NAMES, on_fashion
from mnistlab import engine, figures, files
from mnistlab.recipes import EPOCHS, LABELS
from scripts.tune import TUNING_SEEDS


def build_figures():
    files.save_figure(committed.PLOTS / "comparison_3seeds.png", figures.comparison(
        {label: [run["history"] for run in load(label)] for label in MODEL_LABELS},
        f"Test curves: mean of seeds {', '.join(map(str, experiments.SEEDS))}, band min to max"))
    files.save_figure(committed.PLOTS / "ablation.png", figures.ablation(
        [(label, final(load(label), "eval_acc"), *gaps(load(label))) for label in ABLATION_LABELS],
        f"Regularization ablation on LeNet-5: {EPOCHS} epochs, bars are the mean of seeds "
        f"{', '.join(map(str, experiments.SEEDS))} (dots), whiskers one std"))
    files.save_figure(committed.PLOTS / "fashion_comparison_3seeds.png", figures.comparison(
        {label: [run["history"] for run in load(on_fashion(label))] for label in MODEL_LABELS},
        f"Fashion-MNIST test curves, MNIST's recipes: mean of seeds {', '.join(map(str, experiments.SEEDS))}, band "
        "min to max"))
    files.save_figure(committed.PLOTS / "fashion_ablation.png", figures.ablation(
        [(label, final(load(on_fashion(label)), "eval_acc"), *gaps(load(on_fashion(label))))
         for label in ABLATION_LABELS],
        f"Regularization ablation on LeNet-5, Fashion-MNIST: {EPOCHS} epochs, bars are the mean of seeds "
        f"{', '.join(map(str, experiments.SEEDS))} (dots), whiskers one std"))
    files.save_figure(committed.PLOTS / "robustness.png", figures.robustness(
        {ROBUSTNESS_NAMES.get(label, label): robustness_runs(label) for label in ROBUSTNESS_LABELS},
        f"Test accuracy of moved and turned digits: mean of seeds {', '.join(map(str, experiments.SEEDS))}, band min "
        "to max"))
    files.save_figure(committed.PLOTS / "sample_efficiency.png", figures.sample_efficiency(
        sample_efficiency_runs(),
        f"Test accuracy against training-set size, seeds {', '.join(map(str, experiments.SEEDS))}"))
    files.save_figure(committed.PLOTS / "tuning_learning_rate.png", figures.sensitivity(
        {LABELS[model]: learning_rate_sweep(steps) for model, (_, steps) in sweeps().items()},
        f"Validation accuracy against learning rate: mean of seeds {' and '.join(map(str, TUNING_SEEDS))}, dots "
        "each seed"))
    label, predicted = best_predictions()
    images, truth = test_split()
    files.save_figure(committed.PLOTS / "confusion_matrix.png", figures.confusion(
        engine.confusion_matrix(truth, predicted), f"{label}, seed 0: confusion matrix on the test set",
        dataset.MNIST.classes))
    files.save_figure(committed.PLOTS / "misclassified.png", figures.misclassified(
        images, truth, predicted, f"{label}, seed 0: the first 40 misclassified test digits"))


def learning_rate_sweep(steps):
    """(rates, validation accuracies per rate per seed) from a model's sweep."""
    ((_, scored, _),) = [step for step in steps if step[0] == "lr"]
    return [rate for rate, _ in scored], [accs for _, accs in scored]
