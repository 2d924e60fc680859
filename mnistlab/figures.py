"""Every figure the package draws. Each function returns a matplotlib Figure; files.save_figure writes it."""
import statistics

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter


def _loss_and_accuracy_axes(title, prefix=""):
    """A figure with loss (log scale) on the left and accuracy (percent) on the right, against epoch."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.set(title=f"{prefix}loss", xlabel="epoch", ylabel="cross-entropy", yscale="log")
    acc_ax.set(title=f"{prefix}accuracy", xlabel="epoch", ylabel="accuracy")
    acc_ax.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(title)
    return fig, loss_ax, acc_ax


def _mean_and_band(ax, x, series, label, **style):
    """The mean of several series (rows) as a line, with a band from their lowest to their highest."""
    values = np.asarray(series, dtype=float)
    line, = ax.plot(x, values.mean(0), label=label, **style)
    if len(values) > 1:
        ax.fill_between(x, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
    return line


def curves(history, title, evaluated_on="test"):
    """Loss and accuracy against epoch, on the training data and on the evaluation (test or validation) data."""
    fig, loss_ax, acc_ax = _loss_and_accuracy_axes(title)
    epochs = [h["epoch"] for h in history]
    for split, label, style in (("train", "train", "o-"), ("eval", evaluated_on, "s-")):
        loss_ax.plot(epochs, [h[f"{split}_loss"] for h in history], style, label=label)
        acc_ax.plot(epochs, [h[f"{split}_acc"] for h in history], style, label=label)
    loss_ax.legend()
    acc_ax.legend()
    return fig


def comparison(runs, title):
    """Evaluation loss and accuracy against epoch for several models; runs maps a label to a list of histories,
    drawn as their mean with a min-max band."""
    fig, loss_ax, acc_ax = _loss_and_accuracy_axes(title, prefix="test ")
    for label, histories in runs.items():
        epochs = [h["epoch"] for h in histories[0]]
        for ax, key in ((loss_ax, "eval_loss"), (acc_ax, "eval_acc")):
            _mean_and_band(ax, epochs, [[h[key] for h in history] for history in histories], label, marker="o")
    loss_ax.legend()
    acc_ax.legend()
    return fig


def ablation(rows, title):
    """rows: (label, final test accuracies, accuracy gaps, loss gaps), each list one value per seed."""
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    axes = fig.subplots(1, 3)
    for i, (_, *values) in enumerate(rows):
        for ax, v in zip(axes, values):
            ax.bar(i, statistics.mean(v), yerr=statistics.stdev(v), color=f"C{i}", alpha=0.7, capsize=4)
            ax.plot([i] * len(v), v, "k.", markersize=5)
    titles = ["final test accuracy", "train − test accuracy (clean train pass)", "test − train loss (clean train pass)"]
    ylabels = ["test accuracy", "gap, percentage points", "gap, cross-entropy"]
    for ax, axis_title, ylabel in zip(axes, titles, ylabels):
        ax.set_xticks(range(len(rows)), [label.replace(" only", "\nonly") for label, *_ in rows],
                      rotation=45, ha="right", fontsize=8)
        ax.set(title=axis_title, ylabel=ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[0].yaxis.set_major_formatter(PercentFormatter(decimals=1))
    every = [acc for _, accs, *_ in rows for acc in accs]
    axes[0].set_ylim(min(every) - 0.2, min(max(every) + 0.5, 100))
    fig.suptitle(title)
    return fig


def confusion(matrix, title, classes):
    """matrix[i, j]: images of class i predicted as j; classes are their names (MNIST's, the digits)."""
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.asarray(matrix) + 1, cmap="Blues", norm=LogNorm())
    for i in range(10):
        for j in range(10):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if i == j else "black")
    digits = "".join(classes) == "0123456789"
    kind = "digit" if digits else "class"
    ax.set(xticks=range(10), yticks=range(10), xlabel=f"predicted {kind}", ylabel=f"true {kind}", title=title)
    if not digits:
        ax.set_xticklabels(classes, rotation=45, ha="right")
        ax.set_yticklabels(classes)
    fig.colorbar(image, ax=ax, label="images + 1 (log scale)")
    return fig


def misclassified(images, truth, predicted, title, count=40):
    """The first count images whose prediction is wrong, each titled with its true and predicted digit."""
    wrong = (truth != predicted).nonzero().flatten()[:count]
    fig = Figure(figsize=(10, 6.2), layout="constrained")
    axes = fig.subplots(4, count // 4)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, index in zip(axes.flat, wrong.tolist()):
        ax.imshow(images[index], cmap="gray_r")
        ax.set_title(f"true {int(truth[index])}\npredicted {int(predicted[index])}", fontsize=8)
    fig.suptitle(title)
    return fig


PREDICTIONS_SHOWN = 12


def predictions(rows, limit=PREDICTIONS_SHOWN, total=None):
    """For each (name, image as given, the 28x28 the model saw or None, its 10 probabilities or None): the three
    side by side, so that a misread digit shows why. total: how many images rows are the first of (default: all)."""
    drawn = rows[:limit]
    total = total or len(rows)
    fig = Figure(figsize=(9, 2.1 * len(drawn)), layout="constrained")
    axes = fig.subplots(len(drawn), 3, squeeze=False, width_ratios=[1, 1, 2.2])
    for (name, image, field, probabilities), (given, seen, bars) in zip(drawn, axes):
        given.imshow(image)
        given.set_title(name, fontsize=9, parse_math=False)  # a file name, never mathtext
        seen.set_title("what the model saw" if field is not None else "no ink found", fontsize=9)
        for ax in (given, seen):
            ax.set_xticks([])
            ax.set_yticks([])
        if field is None:
            bars.set_axis_off()
            continue
        seen.imshow(field, cmap="gray", vmin=0, vmax=1)
        probabilities = np.asarray(probabilities)
        digit = int(probabilities.argmax())
        bars.bar(range(10), probabilities, color=["C3" if d == digit else "C0" for d in range(10)])
        bars.set(xticks=range(10), ylim=(0, 1), title=f"read as {digit} ({probabilities[digit]:.1%})")
        bars.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        bars.title.set_fontsize(9)
    if total > limit:
        fig.suptitle(f"the first {limit} of {total} images")
    return fig


def robustness(runs, title):
    """Test accuracy against shift and against rotation. runs maps a label to one {"shift": {pixels: acc},
    "rotation": {degrees: acc}} per seed, drawn as the mean with a min-max band."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    shift_ax, rotation_ax = fig.subplots(1, 2)
    for label, sweeps in runs.items():
        for ax, key in ((shift_ax, "shift"), (rotation_ax, "rotation")):
            x = [int(k) for k in sweeps[0][key]]
            _mean_and_band(ax, x, [list(sweep[key].values()) for sweep in sweeps], label, marker="o")
    shift_ax.set(title="shifted diagonally, the 4 directions averaged", xlabel="shift, pixels right and down (or up)",
                 ylabel="test accuracy")
    rotation_ax.set(title="rotated, both ways averaged", xlabel="rotation, degrees", ylabel="test accuracy")
    for ax in (shift_ax, rotation_ax):
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.grid(alpha=0.3)
        ax.set_ylim(top=100)
    shift_ax.legend(fontsize=8)
    fig.suptitle(title)
    return fig


def sample_efficiency(runs, title):
    """Test accuracy against training-set size; runs maps a label to (sizes, accuracies per seed per size)."""
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    for label, (sizes, accuracies) in runs.items():
        _mean_and_band(ax, sizes, np.asarray(accuracies).T, label, marker="o")
    ax.set(xscale="log", xlabel="training images (same number of optimizer steps for every size)",
           ylabel="final test accuracy", title=title)
    ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def sensitivity(runs, title):
    """Validation accuracy against learning rate; runs maps a model to (rates, accuracies per rate per seed).
    A seed that diverged (accuracy 0) is drawn as a cross at the bottom of the axis."""
    fig = Figure(figsize=(7.5, 4.5), layout="constrained")
    ax = fig.subplots()
    bottom = min(a for _, accuracies in runs.values() for seeds in accuracies for a in seeds if a > 0) - 0.15
    for i, (label, (rates, accuracies)) in enumerate(runs.items()):
        order = np.argsort(rates)
        rates, accuracies = np.asarray(rates)[order], [accuracies[j] for j in order]
        means = [np.mean(seeds) if min(seeds) > 0 else np.nan for seeds in accuracies]
        ax.plot(rates, means, "o-", color=f"C{i}", label=label)
        for rate, seeds in zip(rates, accuracies):
            for a in seeds:
                ax.plot(rate, a if a > 0 else bottom, "x" if a == 0 else ".", color=f"C{i}", markersize=7)
                if a == 0:
                    ax.annotate("diverged", (rate, bottom), textcoords="offset points", xytext=(-8, 6), ha="right",
                                fontsize=8, color=f"C{i}")
    rates = sorted({r for rates, _ in runs.values() for r in rates})
    ax.set(xscale="log", xlabel="peak learning rate", ylabel="final validation accuracy", title=title,
           ylim=(bottom - 0.05, None))
    ax.minorticks_off()
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=1))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig
