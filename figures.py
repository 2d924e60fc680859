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
    axes[0].set_ylim(min(min(accs) for _, accs, *_ in rows) - 0.2, 100)
    fig.suptitle(title)
    return fig


def confusion(matrix, title):
    """matrix[i, j]: images of digit i predicted as j."""
    fig = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(np.asarray(matrix) + 1, cmap="Blues", norm=LogNorm())
    for i in range(10):
        for j in range(10):
            if matrix[i, j]:
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if i == j else "black")
    ax.set(xticks=range(10), yticks=range(10), xlabel="predicted digit", ylabel="true digit", title=title)
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
