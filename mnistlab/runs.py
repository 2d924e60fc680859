"""A training run and its files: what to do with the run already on disk, then the engine's fit loop with a
checkpoint after every epoch, then results and curves. Every program that trains, trains through train_run; it
prints nothing itself.
"""
from dataclasses import dataclass

import torch

import dataset
from mnistlab import checkpoints, engine, figures, files
from mnistlab.errors import Interrupted, UsageError
from mnistlab.recipes import RECIPE_KEYS, completed, evaluated_on, shown_value
from model import count_parameters


@dataclass
class Plan:
    """What to do for a run: "fresh", "resume" from checkpoint, "done" (finished, with its results), or "diverged"
    (stopped where its training diverged, after the epochs of its checkpoint, if any, with its results)."""
    action: str
    checkpoint: dict = None
    results: dict = None


def plan_run(paths, recipe, resume, overwrite=False, skip_finished=False, threads=None, set_threads=None):
    """Check a run's folder against what the command asks for; a conflict is a UsageError naming the way out.

    Results that hold more than a run writes (RESULT_KEYS: the report's measurements) are never stripped: no
    plan trains over them, whatever the flags. Otherwise, with overwrite, any run there is replaced.

    Without resume, a run there is replaced only where overwrite says so: an unfinished run is refused, since
    forgetting --resume must not throw progress away; a finished run with other settings, since a quick experiment
    must not silently replace a good model; and a finished run with the same settings too, since rerunning it only
    reproduces what is there, and would strip its results of what another program added (the report's
    measurements) and leave nothing whole where it is stopped. With resume, skip_finished makes a finished run
    "done" instead of an error, its checkpoint there or not, a run that diverged "diverged", and a run never begun
    "fresh" (for --model all and many runs at once).

    threads: the torch threads this run would train with. A run resumes only at the count it began with, which
    changes its numbers (the order of floating-point sums); set_threads(count) says how to set it.
    """
    held = files.read_json(paths.results)
    extra = sorted(set(held) - set(RESULT_KEYS)) if isinstance(held, dict) else []
    plan = _plan(paths, recipe, held, resume, overwrite, skip_finished, replace="" if extra else
                 ", or --overwrite to replace it")
    began = plan.checkpoint.get("threads") if plan.action == "resume" else None  # None: saved before it was kept
    if threads is not None and began is not None and began != threads:
        raise UsageError(f"{'' if skip_finished else '--resume: '}{paths.checkpoint} was trained with {began} torch "
                         f"threads, and this run would take {threads}, which changes its numbers; "
                         f"{set_threads(began)}")
    if extra and plan.action != "done":
        raise UsageError(f"{paths.results} holds measurements that this run does not make "
                         f"({', '.join(map(shown_value, extra))}), which training it would throw away; pass "
                         f"--tag NAME or another --out-dir to train beside it")
    return plan


def _plan(paths, recipe, held, resume, overwrite, skip_finished, replace):
    """plan_run's plan, before its check of the measurements in held, the results there; replace is the advice to
    pass --overwrite, where it may be given."""
    exists = paths.checkpoint.exists()
    saved = held.get("recipe") if isinstance(held, dict) and held.get("status") == "complete" else None
    if not resume:
        if overwrite:
            return Plan("fresh")
        if exists:
            try:
                checkpoint = checkpoints.load_checked(paths.checkpoint)
            except checkpoints.CheckpointError as e:
                if e.unreadable:  # a good run, perhaps: nothing here may advise replacing it
                    raise UsageError(f"{paths.checkpoint} {e.reason}, or pass --tag NAME or another --out-dir to "
                                     f"train beside it") from None
                raise UsageError(f"{paths.checkpoint} is not a readable checkpoint; pass --overwrite to replace "
                                 f"it") from None
            if not is_finished(paths, checkpoint):
                raise UsageError(f"{paths.checkpoint} holds an unfinished run (epoch {checkpoint['epoch']} of "
                                 f"{checkpoint['recipe']['epochs']}); add --resume to continue it, or --overwrite to "
                                 f"start over")
            saved = checkpoint["recipe"]
        # else the checkpoint may be gone while the results it produced remain
        if not isinstance(saved, dict):
            return Plan("fresh")
        changed = differing(saved, recipe)
        finished = (f"{paths.results.parent.parent} already holds a finished {paths.checkpoint.stem} with "
                    f"{settings(completed(saved), changed) if changed else 'the same settings'}")
        if changed:
            raise UsageError(f"{finished}, where this run has {settings(recipe, changed)}; pass --tag NAME to keep "
                             f"both{replace}")
        raise UsageError(f"{finished}; {'pass --resume to skip it, ' if skip_finished else ''}pass --tag NAME or "
                         f"another --out-dir to train it again beside it{replace}")
    if not exists and skip_finished:
        if stopped_diverged(held, 0):
            return Plan("diverged", results=held)
        if not isinstance(saved, dict):
            return Plan("fresh")
        changed = differing(saved, recipe)  # finished, and its checkpoint gone (the report commits no checkpoints)
        if changed:
            raise UsageError(f"{paths.results} holds a finished run with {settings(completed(saved), changed)}, where "
                             f"this one has {settings(recipe, changed)}; pass --tag NAME to keep both, or another "
                             f"--out-dir")
        return Plan("done", results=held)
    if not exists and isinstance(saved, dict):  # without --resume, a finished run is refused too
        raise UsageError(f"--resume: {paths.results} holds a finished run, whose checkpoint is gone: nothing to "
                         f"resume; drop --resume and pass --tag NAME or another --out-dir to train it again beside it")
    if not exists:
        raise UsageError(f"--resume: no checkpoint at {paths.checkpoint}; run without --resume to start from "
                         f"scratch")
    checkpoint = checkpoints.load_checked(paths.checkpoint, "--resume")
    saved = checkpoint["recipe"]
    if saved["model"] != recipe["model"]:
        raise UsageError(f"--resume: {paths.checkpoint} holds a {saved['model']} checkpoint, not {recipe['model']}; "
                         f"pass --model {saved['model']} or run without --resume")
    changed = differing(saved, recipe)
    if changed and skip_finished:  # many runs at once: this one is another run of the same name
        raise UsageError(f"{paths.checkpoint} holds a run with {settings(completed(saved), changed)}, where this one "
                         f"has {settings(recipe, changed)}; pass --tag NAME to keep both, or another --out-dir")
    if changed:
        raise UsageError(f"--resume: {paths.checkpoint} was trained with {settings(completed(saved), changed)}; resume "
                         f"with the same settings")
    if skip_finished and stopped_diverged(held, checkpoint["epoch"]):
        return Plan("diverged", checkpoint=checkpoint, results=held)
    if is_finished(paths, checkpoint):
        if skip_finished:
            return Plan("done", results=files.read_json(paths.results))
        raise UsageError(f"--resume: {paths.checkpoint} has finished all {recipe['epochs']} epochs and its results "
                         f"are written; nothing to resume")
    return Plan("resume", checkpoint=checkpoint)


def differing(saved, recipe):
    """The settings that define a run's numbers in which a saved recipe and another differ."""
    saved = completed(saved)
    return [key for key in RECIPE_KEYS if saved.get(key) != recipe.get(key)]


def settings(recipe, keys):
    """keys of recipe as the flags that set them, e.g. "--epochs 10 --lr 0.1 no --limit"."""
    def flag(key):
        name, value = f"--{key.replace('_', '-')}", recipe.get(key)
        if value is None or value is False:
            return f"no {name}"
        if value is True:
            return name
        return f"{name} {','.join(map(str, value)) if isinstance(value, list) else value}"
    return " ".join(map(flag, keys))


def is_finished(paths, checkpoint):
    """All epochs trained and the results written whole."""
    results = files.read_json(paths.results)
    return (checkpoint["epoch"] >= checkpoint["recipe"]["epochs"] and isinstance(results, dict)
            and results.get("status") == "complete" and isinstance(results.get("history"), list)
            and len(results["history"]) == checkpoint["epoch"])


def stopped_diverged(results, epochs):
    """Whether results say that their run diverged after epochs full epochs, and stopped there."""
    return (isinstance(results, dict) and results.get("status") == "diverged"
            and isinstance(results.get("history"), list) and len(results["history"]) == epochs)


def format_epoch(record, epochs, scored_on="test"):
    """The line main.py prints for a finished epoch."""
    return (f"epoch {record['epoch']:2d}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_acc']:6.2f}%"
            f"  {scored_on} loss {record['eval_loss']:.4f} acc {record['eval_acc']:6.2f}%  {record['seconds']:5.1f}s")


# What train_run writes in a run's results; a caller's measure adds its own keys beside them.
RESULT_KEYS = ("model", "params", "seed", "epochs", "device", "device_name", "torch", "evaluated_on", "train_images",
               "eval_images", "recipe", "threads", "status", "history", "predictions")


def train_run(recipe, data, device, paths, checkpoint=None, *, eval_batch_size=1000, compile=False, progress=False,
              measure=None, on_epoch=lambda record: None):
    """Train one run as the recipe says, or resume it from checkpoint, and return its results.

    data: (train images, train labels, eval images, eval labels). Writes the checkpoint after every epoch, and
    the results JSON and curves at the end, or when the run stops early; on_epoch sees each finished epoch's record.
    measure(model, train_batches, eval_batches, ctx), where given, adds its dict of measurements of the final model
    to the results: the report's clean pass over the training set and its robustness sweep.
    Raises Interrupted on a signal, engine.Diverged and files.WriteError as they come.
    """
    train_images, train_labels, eval_images, eval_labels = data
    model, train_batches, optimizer, scheduler = engine.setup(recipe, train_images, train_labels, device)
    eval_batches = dataset.TensorLoader(eval_images, eval_labels, eval_batch_size)
    history, predictions = [], None
    if checkpoint:
        history, predictions = checkpoints.restore(model, optimizer, scheduler, checkpoint, device, paths.checkpoint)
    forward = torch.compile(model) if compile else model
    scored_on = evaluated_on(recipe)
    results = {"model": recipe["model"], "params": count_parameters(model), "seed": recipe["seed"],
               "epochs": recipe["epochs"], "device": str(device), "device_name": engine.describe_device(device),
               "torch": torch.__version__, "evaluated_on": scored_on, "train_images": len(train_batches.images),
               "eval_images": len(eval_labels), "recipe": recipe, "threads": torch.get_num_threads()}

    def write_results(status):
        results.update(status=status, history=history)
        files.save(paths.results, files.write_json, results, resumable=True)
        if not history:  # diverged in its first epoch: results that say so, for a sweep not to train it again
            return
        title = f"{recipe['model']}, seed {recipe['seed']}: final {scored_on} accuracy {history[-1]['eval_acc']:.2f}%"
        files.save(paths.curves, files.save_figure, figures.curves(history, title, scored_on), resumable=True)

    try:
        for record, evaluation in engine.fit(forward, optimizer, scheduler, train_batches, eval_batches, recipe,
                                             len(history) + 1, progress):
            predictions = evaluation.predictions.to("cpu", torch.uint8)
            files.save(paths.checkpoint, checkpoints.save,
                       checkpoints.state(model, optimizer, scheduler, recipe, history + [record], predictions, device),
                       resumable=bool(history))
            history.append(record)
            on_epoch(record)
        if measure:
            results.update(measure(forward, train_batches, eval_batches, engine.autocast(device, recipe["amp"])))
        # One digit per evaluation image: the final epoch's predictions, for the confusion matrix and the errors.
        results["predictions"] = "".join(map(str, predictions.tolist()))
        write_results("complete")
    except engine.Diverged as e:
        write_results("diverged")
        raise engine.Diverged(f"training diverged: {e}; lower --lr (it was {recipe['lr']})") from None
    except BaseException as e:
        written = False
        if history:
            try:
                # A reader that went away (`| head`) stops the run as Ctrl-C does.
                write_results("interrupted" if isinstance(e, (KeyboardInterrupt, BrokenPipeError)) else "failed")
                written = True
            except files.WriteError:
                pass  # the error in flight says what went wrong first
            except KeyboardInterrupt as again:
                raise Interrupted(len(history), again, results_written=False) from None
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(len(history), e, results_written=written) from None
        raise
    return results
