"""The report's measurements of a run's final model, taken where the run trains (in a Ray worker, for runs at
once): a clean pass over the training set and the robustness sweep. A library module: runner.py's workers import
it, so it imports no program and nothing from scripts/."""
import contextlib

import dataset
from mnistlab import engine
from mnistlab.recipes import data_of

# The robustness sweep: test accuracy under shifts in the four diagonal directions and under rotations both ways.
SHIFTS = range(0, 7)
ROTATIONS = range(0, 31, 5)


def robustness(model, images, labels, batch_size=1000, ctx=contextlib.nullcontext(),
               background=dataset.MNIST.background):
    """Accuracy % under shifts of SHIFTS pixels, averaged over the 4 diagonal directions, and under rotations of
    ROTATIONS degrees, averaged over both ways, blank pixels filling in; as {"shift": {pixels: acc}, "rotation":
    {degrees: acc}}."""
    def accuracy(transformed):
        return engine.evaluate(model, dataset.TensorLoader(transformed, labels, batch_size), ctx).acc

    def mean(values):
        return sum(values) / len(values)

    clean = accuracy(images)
    directions = ((1, 1), (1, -1), (-1, 1), (-1, -1))
    return {"shift": {k: mean([accuracy(dataset.shift(images, sx * k, sy * k, background)) for sx, sy in directions])
                      if k else clean for k in SHIFTS},
            "rotation": {d: mean([accuracy(dataset.rotate(images, way * d, background)) for way in (1, -1)])
                         if d else clean for d in ROTATIONS}}


def measurements(recipe):
    """The report's measurements of a run's final model, for runs.train_run: a clean pass over the training set,
    and, for runs on the whole training set, the robustness sweep."""
    def measure(model, train_batches, eval_batches, ctx):
        # The train metrics of the epochs are taken on the fly, through dropout and augmentation; these are clean.
        clean = dataset.TensorLoader(train_batches.images, train_batches.labels, eval_batches.batch_size)
        train_eval = engine.evaluate(model, clean, ctx)
        measured = {"final_train_eval": {"loss": train_eval.loss, "acc": train_eval.acc}}
        if not recipe["train_size"]:
            measured["robustness"] = robustness(model, eval_batches.images, eval_batches.labels,
                                                eval_batches.batch_size, ctx,
                                                dataset.DATASETS[data_of(recipe)].background)
        return measured
    return measure
