"""A training run and its files: what to do with the run already on disk, then the engine's fit loop with a
checkpoint after every epoch, then results and curves. Every program that trains, trains through train_run; it
prints nothing itself.
"""
from dataclasses import dataclass

import torch

import dataset
from mnistlab import checkpoints, engine, figures, files
from mnistlab.errors import Interrupted, UsageError
from mnistlab.recipes import RECIPE_KEYS, completed, data_of, evaluated_on, shown_value
from model import count_parameters


@dataclass
class Decision:
    """What to do for a run: "fresh", "resume" from checkpoint, "done" (finished, with its results), or "diverged"
    (stopped where its training diverged, after the epochs of its checkpoint, if any, with its results)."""
    action: str
    checkpoint: dict = None
    results: dict = None


# What a run's folder may hold, as decide tells it apart.
NOTHING = "nothing"  # no checkpoint, and no results of a finished run
DIVERGED_AT_ONCE = "diverged at once"  # no checkpoint, and the results of a run that diverged in its first epoch
UNFINISHED = "unfinished"  # a checkpoint with epochs to train, or whose results are not written whole
DIVERGED = "diverged"  # a checkpoint, and results saying that the run diverged in the epoch after it
FINISHED = "finished"  # a checkpoint of every epoch, and its results written whole
CHECKPOINT_GONE = "checkpoint gone"  # a finished run's results without their checkpoint (the report commits none)
DAMAGED = "damaged"  # a checkpoint that does not load
UNREADABLE = "unreadable"  # a checkpoint this user may not read: a good run, perhaps

# The run there against this one, where what is there says how it trained.
SAME = "same settings"
OTHER_SETTINGS = "other settings"
OTHER_MODEL = "other model"  # a checkpoint of another model

ACTIONS = ("fresh", "resume", "done", "diverged")
# What decide does with what is there, for a new run, for --resume, and for one of many runs with --resume
# (--model all, a sweep): one of ACTIONS, or a refusal of REFUSALS. With --overwrite a new run replaces anything.
# A new run never replaces an unfinished run, since forgetting --resume must not throw progress away, nor a finished
# one: with other settings, a quick experiment must not silently replace a good model; with the same, rerunning it
# only reproduces what is there, and would strip its results of what another program added. Many runs at once
# skip a finished run, its checkpoint there or not, and a diverged one, which would diverge again.
DECISIONS = {
    # what is there, compared           a new run         --resume             many runs with --resume
    (NOTHING, None):                   ("fresh",          "no checkpoint",     "fresh"),
    (DIVERGED_AT_ONCE, None):          ("fresh",          "no checkpoint",     "diverged"),
    (UNFINISHED, SAME):                ("unfinished",     "resume",            "resume"),
    (UNFINISHED, OTHER_SETTINGS):      ("unfinished",     "other settings",    "same name"),
    (UNFINISHED, OTHER_MODEL):         ("unfinished",     "other model",       "other model"),
    (DIVERGED, SAME):                  ("unfinished",     "resume",            "diverged"),
    (DIVERGED, OTHER_SETTINGS):        ("unfinished",     "other settings",    "same name"),
    (DIVERGED, OTHER_MODEL):           ("unfinished",     "other model",       "other model"),
    (FINISHED, SAME):                  ("finished",       "nothing to resume", "done"),
    (FINISHED, OTHER_SETTINGS):        ("finished apart", "other settings",    "same name"),
    (FINISHED, OTHER_MODEL):           ("finished apart", "other model",       "other model"),
    (CHECKPOINT_GONE, SAME):           ("finished",       "checkpoint gone",   "done"),
    (CHECKPOINT_GONE, OTHER_SETTINGS): ("finished apart", "checkpoint gone",   "same name, finished"),
    (DAMAGED, None):                   ("damaged",        "not loaded",        "not loaded"),
    (UNREADABLE, None):                ("unreadable",     "not loaded",        "not loaded"),
}
# Each refusal's message, formatted with paths, recipe (this run's), checkpoint, saved (the recipe there) and error
# (the checkpoint's) as found, there and here (the settings that differ, as the run there and this one have them),
# skip (the advice to skip a finished run) and overwrite (the advice to replace it); "not loaded" raises the
# checkpoint's own error.
REFUSALS = {
    "no checkpoint": "--resume: no checkpoint at {paths.checkpoint}; run without --resume to start from scratch",
    "unfinished": "{paths.checkpoint} holds an unfinished run (epoch {checkpoint[epoch]} of "
                  "{checkpoint[recipe][epochs]}); add --resume to continue it, or --overwrite to start over",
    "finished": "{paths.results.parent.parent} already holds a finished {paths.checkpoint.stem} with the same "
                "settings; {skip}pass --tag NAME or another --out-dir to train it again beside it{overwrite}",
    "finished apart": "{paths.results.parent.parent} already holds a finished {paths.checkpoint.stem} with {there}, "
                      "where this run has {here}; pass --tag NAME to keep both{overwrite}",
    "nothing to resume": "--resume: {paths.checkpoint} has finished all {recipe[epochs]} epochs and its results are "
                         "written; nothing to resume",
    "checkpoint gone": "--resume: {paths.results} holds a finished run, whose checkpoint is gone: nothing to resume; "
                       "drop --resume and pass --tag NAME or another --out-dir to train it again beside it",
    "other settings": "--resume: {paths.checkpoint} was trained with {there}; resume with the same settings",
    "other model": "--resume: {paths.checkpoint} holds a {saved[model]} checkpoint, not {recipe[model]}; pass --model "
                   "{saved[model]} or run without --resume",
    "same name": "{paths.checkpoint} holds a run with {there}, where this one has {here}; pass --tag NAME to keep "
                 "both, or another --out-dir",
    "same name, finished": "{paths.results} holds a finished run with {there}, where this one has {here}; pass --tag "
                           "NAME to keep both, or another --out-dir",
    "damaged": "{paths.checkpoint} is not a readable checkpoint; pass --overwrite to replace it",
    "unreadable": "{paths.checkpoint} {error.reason}, or pass --tag NAME or another --out-dir to train beside it",
}


@dataclass
class Found:
    """What is at a run's paths: its state, and how the run there compares with this one; the checkpoint there, the
    recipe it trained with and the settings in which that differs from this one's, or the checkpoint's error."""
    state: str
    compared: str = None
    checkpoint: dict = None
    saved: dict = None
    changed: list = ()
    error: Exception = None


def decide(paths, recipe, resume, overwrite=False, skip_finished=False, threads=None, set_threads=None):
    """What to do with the run at paths, by DECISIONS; a conflict is a UsageError naming the way out. skip_finished:
    one of many runs (--model all). Results that hold more than a run writes (RESULT_KEYS: the report's
    measurements) are never stripped: no decision trains over them, whatever the flags.

    threads: the torch threads this run would train with. A run resumes only at the count it began with, which
    changes its numbers (the order of floating-point sums); set_threads(count) says how to set it.
    """
    held = files.read_json(paths.results)
    extra = sorted(set(held) - set(RESULT_KEYS)) if isinstance(held, dict) else []
    if overwrite and not resume:
        decision = Decision("fresh")  # nothing there is read
    else:
        found = found_at(paths, recipe, held)
        outcome = DECISIONS[found.state, found.compared][2 if resume and skip_finished else 1 if resume else 0]
        if outcome not in ACTIONS:
            raise refusal(outcome, paths, recipe, found, skip_finished, extra)
        decision = Decision(outcome, found.checkpoint if outcome in ("resume", "diverged") else None,
                            held if outcome in ("done", "diverged") else None)
    # None: a checkpoint saved before its thread count was kept
    began = decision.checkpoint.get("threads") if decision.action == "resume" else None
    if threads is not None and began is not None and began != threads:
        raise UsageError(f"{'' if skip_finished else '--resume: '}{paths.checkpoint} was trained with {began} torch "
                         f"threads, and this run would take {threads}, which changes its numbers; "
                         f"{set_threads(began)}")
    if extra and decision.action != "done":
        raise UsageError(f"{paths.results} holds measurements that this run does not make "
                         f"({', '.join(map(shown_value, extra))}), which training it would throw away; pass "
                         f"--tag NAME or another --out-dir to train beside it")
    return decision


def found_at(paths, recipe, held):
    """What is at paths, held being the results there, against this run's recipe."""
    if not paths.checkpoint.exists():
        saved = held.get("recipe") if isinstance(held, dict) and held.get("status") == "complete" else None
        if stopped_diverged(held, 0):
            return Found(DIVERGED_AT_ONCE)
        if not isinstance(saved, dict):
            return Found(NOTHING)
        changed = differing(saved, recipe)
        return Found(CHECKPOINT_GONE, OTHER_SETTINGS if changed else SAME, saved=saved, changed=changed)
    try:
        checkpoint = checkpoints.load_checked(paths.checkpoint, "--resume")
    except checkpoints.CheckpointError as e:
        return Found(UNREADABLE if e.unreadable else DAMAGED, error=e)
    saved = checkpoint["recipe"]
    changed = differing(saved, recipe)
    if stopped_diverged(held, checkpoint["epoch"]):
        state = DIVERGED
    else:
        state = FINISHED if is_finished(checkpoint, held) else UNFINISHED
    compared = OTHER_MODEL if saved["model"] != recipe["model"] else OTHER_SETTINGS if changed else SAME
    return Found(state, compared, checkpoint, saved, changed)


def refusal(name, paths, recipe, found, skip_finished, extra):
    """The error of the refusal name, for what was found at paths. extra: the measurements in the results there,
    which --overwrite would strip, so that nothing advises it."""
    if name == "not loaded":
        return found.error
    there = here = None
    if found.saved:
        there, here = settings(completed(found.saved), found.changed), settings(recipe, found.changed)
    return UsageError(REFUSALS[name].format(
        paths=paths, recipe=recipe, checkpoint=found.checkpoint, saved=found.saved, error=found.error, there=there,
        here=here, skip="pass --resume to skip it, " if skip_finished else "",
        overwrite="" if extra else ", or --overwrite to replace it"))


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


def is_finished(checkpoint, results):
    """All the checkpoint's epochs trained, and results, the run's, written whole."""
    return (checkpoint["epoch"] >= checkpoint["recipe"]["epochs"] and isinstance(results, dict)
            and results.get("status") == "complete" and isinstance(results.get("history"), list)
            and len(results["history"]) == checkpoint["epoch"])


def stopped_diverged(results, epochs):
    """Whether results say that their run diverged after epochs full epochs, and stopped there."""
    return (isinstance(results, dict) and results.get("status") == "diverged"
            and isinstance(results.get("history"), list) and len(results["history"]) == epochs)


def curves_title(recipe, history):
    """The title of a run's curves: its model, its dataset where it is not MNIST, its seed and final accuracy."""
    data = data_of(recipe)
    on = "" if data == "mnist" else f" on {dataset.DATASETS[data].title}"
    return (f"{recipe['model']}{on}, seed {recipe['seed']}: final {evaluated_on(recipe)} accuracy "
            f"{history[-1]['eval_acc']:.2f}%")


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
        title = curves_title(recipe, history)
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
