"""A training run and its files: the engine's fit loop with a checkpoint after every epoch, then results and
curves. main.py and scripts/report.py both train through train_run; it prints nothing itself.
"""
import math
from dataclasses import dataclass

import torch

import dataset
import engine
import figures
import files
from errors import Interrupted, UsageError
from model import count_parameters
from recipes import RECIPE_KEYS, check_recipe, completed, evaluated_on, shown_value


@dataclass
class Plan:
    """What to do for a run: "fresh", "resume" from checkpoint, or "done" (finished, with its results)."""
    action: str
    checkpoint: dict = None
    results: dict = None


def plan_run(paths, recipe, resume, overwrite=False, skip_finished=False):
    """Check a run's folder against what the command asks for; a conflict is a UsageError naming the way out.

    Without resume, a run there is replaced only where that loses nothing: an unfinished run is refused, since
    forgetting --resume must not throw progress away, and so is a finished run with other settings, since a quick
    experiment must not silently replace a good model. Rerunning a finished run with the same settings reproduces
    it, and may replace it. overwrite lifts both refusals. With resume, skip_finished makes a finished run "done"
    instead of an error, and a run never begun "fresh" (for --model all).
    """
    exists = paths.checkpoint.exists()
    if not resume:
        if overwrite:
            return Plan("fresh")
        if exists:
            try:
                checkpoint = load_checked(paths.checkpoint)
            except UsageError:
                raise UsageError(f"{paths.checkpoint} is not a readable checkpoint; pass --overwrite to replace "
                                 f"it") from None
            if not is_finished(paths, checkpoint):
                raise UsageError(f"{paths.checkpoint} holds an unfinished run (epoch {checkpoint['epoch']} of "
                                 f"{checkpoint['recipe']['epochs']}); add --resume to continue it, or --overwrite to "
                                 f"start over")
            saved = checkpoint["recipe"]
        else:  # the checkpoint may be gone while the results it produced remain
            results = files.read_json(paths.results)
            saved = results.get("recipe") if isinstance(results, dict) and results.get("status") == "complete" else None
        changed = differing(saved, recipe) if isinstance(saved, dict) else []
        if changed:
            raise UsageError(f"{paths.results.parent.parent} already holds a finished {paths.checkpoint.stem} with "
                             f"{settings(completed(saved), changed)}, where this run has {settings(recipe, changed)}; pass "
                             f"--tag NAME to keep both, or --overwrite to replace it")
        return Plan("fresh")
    if not exists and skip_finished:
        return Plan("fresh")
    if not exists:
        raise UsageError(f"--resume: no checkpoint at {paths.checkpoint}; run without --resume to start from "
                         f"scratch")
    checkpoint = load_checked(paths.checkpoint, "--resume")
    saved = checkpoint["recipe"]
    if saved["model"] != recipe["model"]:
        raise UsageError(f"--resume: {paths.checkpoint} holds a {saved['model']} checkpoint, not {recipe['model']}; "
                         f"pass --model {saved['model']} or run without --resume")
    changed = differing(saved, recipe)
    if changed:
        raise UsageError(f"--resume: {paths.checkpoint} was trained with {settings(completed(saved), changed)}; resume "
                         f"with the same settings")
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


def restore(model, optimizer, scheduler, checkpoint, device, path):
    """Load a checkpoint's state into a freshly built run; one that does not fit is a UsageError."""
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        for parameter in model.parameters():
            for value in optimizer.state[parameter].values():
                if value.dim() and value.shape != parameter.shape:
                    raise ValueError("optimizer state of the wrong shape")
        if len(checkpoint["history"]) != checkpoint["epoch"] or len(checkpoint["predictions"]) == 0:
            raise ValueError("history and epoch disagree")
        torch.set_rng_state(checkpoint["rng"]["cpu"])
        if device.type == "cuda" and checkpoint["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:
        raise UsageError(f"--resume: {path} does not fit this run ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                         f"delete it, or pass --overwrite instead of --resume") from None
    return list(checkpoint["history"]), checkpoint["predictions"]


# The dtypes a floating-point weight may have: main.py saves float32, the golden runs float64.
REAL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
# What each epoch's record in a checkpoint's history holds; all are finite numbers.
HISTORY_KEYS = ("epoch", "train_loss", "train_acc", "eval_loss", "eval_acc", "seconds")


def load_checked(path, flag="--checkpoint"):
    """The checkpoint at path, checked whole before anything is built from it, as main.py's --evaluate and
    --resume, predict.py and demo.py read it. A checkpoint that fails a check is a files.CheckpointError."""
    checkpoint = files.load_checkpoint(path, flag)
    try:
        check_checkpoint(checkpoint)
    except (ValueError, TypeError, RuntimeError, NotImplementedError) as e:  # torch's, for tensors of odd kinds
        raise files.CheckpointError(flag, path, f"is not a checkpoint of main.py: {e}") from None
    return checkpoint


def check_checkpoint(checkpoint):
    """ValueError saying what is wrong, where a checkpoint does not hold what main.py writes: a recipe within
    recipes.RECIPE_SCHEMA, one finite record per epoch, and finite weights of the shapes its model has."""
    recipe = check_recipe(checkpoint["recipe"])
    epoch, history = checkpoint["epoch"], checkpoint["history"]
    if type(epoch) is not int or not 1 <= epoch <= recipe["epochs"]:
        raise ValueError(f"its epoch is {shown_value(epoch)}, not from 1 to its recipe's {recipe['epochs']}")
    if not isinstance(history, list):
        raise ValueError(f"its history is a {type(history).__name__}, not a list")
    if len(history) != epoch:
        raise ValueError(f"its history holds {len(history)} records, where its epoch is {epoch}")
    for record in history:
        if not isinstance(record, dict):
            raise ValueError(f"an epoch of its history is a {type(record).__name__}, not a dict")
        missing = [key for key in HISTORY_KEYS if not is_finite_number(record.get(key))]
        if missing:
            raise ValueError(f"an epoch of its history has no finite {missing[0]}")
        wrong = [key for key in ("train_acc", "eval_acc") if not 0 <= record[key] <= 100]
        if wrong:
            raise ValueError(f"an epoch of its history has a {wrong[0]} of {shown_value(record[wrong[0]])}, not a "
                             f"percentage")
    weights = checkpoint["model"]
    if not isinstance(weights, dict) or not all(isinstance(w, torch.Tensor) for w in weights.values()):
        raise ValueError("its weights are not a dict of tensors")
    with torch.device("meta"):  # the shapes the recipe's model has, without allocating them
        expected = engine.build_model(recipe, "meta").state_dict()
    if {key: value.shape for key, value in expected.items()} != {key: value.shape for key, value in weights.items()}:
        raise ValueError(f"its weights do not have the shapes of model.py's {recipe['model']} with its recipe")
    for key, value in weights.items():  # dense tensors in memory, real floats where floats belong: as torch.save wrote
        kind_ok = value.dtype in REAL_FLOATS if expected[key].is_floating_point() else value.dtype == expected[key].dtype
        if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized or not kind_ok:
            raise ValueError(f"its weight {shown_value(key)} is a {value.dtype} {value.layout} tensor on "
                             f"{value.device.type}, not what main.py saves")
    if not all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()):
        raise ValueError("its weights hold NaN or infinite values")


def is_finite_number(value):
    return type(value) in (int, float) and math.isfinite(value)


def load_model(path, device, model_name=None, flag="--checkpoint"):
    """The trained model in a checkpoint, in eval mode on device, and the checkpoint itself."""
    checkpoint = load_checked(path, flag)
    saved = checkpoint["recipe"]["model"]
    if model_name and saved != model_name:
        raise UsageError(f"{flag}: {path} holds a {saved} checkpoint, not {model_name}; pass --model {saved}")
    try:
        model = engine.build_model(checkpoint["recipe"], device)
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise UsageError(f"{flag}: {path} does not fit model.py's {saved} ({type(e).__name__}); "
                         f"train it again") from None
    return model.eval(), checkpoint


def format_epoch(record, epochs, scored_on="test"):
    """The line main.py prints for a finished epoch."""
    return (f"epoch {record['epoch']:2d}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_acc']:6.2f}%"
            f"  {scored_on} loss {record['eval_loss']:.4f} acc {record['eval_acc']:6.2f}%  {record['seconds']:5.1f}s")


def train_run(recipe, data, device, paths, checkpoint=None, *, eval_batch_size=1000, compile=False, progress=False,
              clean_pass=False, robustness=False, on_epoch=lambda record: None):
    """Train one run as the recipe says, or resume it from checkpoint, and return its results.

    data: (train images, train labels, eval images, eval labels). Writes the checkpoint after every epoch, and
    the results JSON and curves at the end, or when the run stops early; on_epoch sees each finished epoch's record.
    clean_pass and robustness add the report's measurements after the last epoch: a clean pass over the training
    set (final_train_eval), and the evaluation set shifted and rotated.
    Raises Interrupted on a signal, engine.Diverged and files.WriteError as they come.
    """
    train_images, train_labels, eval_images, eval_labels = data
    model, train_batches, optimizer, scheduler = engine.setup(recipe, train_images, train_labels, device)
    eval_batches = dataset.TensorLoader(eval_images, eval_labels, eval_batch_size)
    history, predictions = [], None
    if checkpoint:
        history, predictions = restore(model, optimizer, scheduler, checkpoint, device, paths.checkpoint)
    forward = torch.compile(model) if compile else model
    scored_on = evaluated_on(recipe)
    results = {"model": recipe["model"], "params": count_parameters(model), "seed": recipe["seed"],
               "epochs": recipe["epochs"], "device": str(device), "device_name": engine.describe_device(device),
               "torch": torch.__version__, "evaluated_on": scored_on, "train_images": len(train_batches.images),
               "eval_images": len(eval_labels), "recipe": recipe}

    def write_results(status):
        results.update(status=status, history=history)
        files.save(paths.results, files.write_json, results, resumable=True)
        title = f"{recipe['model']}, seed {recipe['seed']}: final {scored_on} accuracy {history[-1]['eval_acc']:.2f}%"
        files.save(paths.curves, files.save_figure, figures.curves(history, title, scored_on), resumable=True)

    try:
        for record, evaluation in engine.fit(forward, optimizer, scheduler, train_batches, eval_batches,
                                             recipe["epochs"], len(history) + 1, recipe["amp"], progress,
                                             recipe["label_smoothing"]):
            predictions = evaluation.predictions.to("cpu", torch.uint8)
            rng = {"cpu": torch.get_rng_state(),
                   "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None}
            files.save(paths.checkpoint, files.save_checkpoint,
                  dict(model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                       epoch=record["epoch"], recipe=recipe, history=history + [record], rng=rng,
                       predictions=predictions), resumable=bool(history))
            history.append(record)
            on_epoch(record)
        if clean_pass:
            # The train metrics above are taken on the fly, through dropout and augmentation; these are clean.
            clean = dataset.TensorLoader(train_batches.images, train_batches.labels, eval_batch_size)
            train_eval = engine.evaluate(forward, clean, recipe["amp"])
            results["final_train_eval"] = {"loss": train_eval.loss, "acc": train_eval.acc}
        # One digit per evaluation image: the final epoch's predictions, for the confusion matrix and the errors.
        results["predictions"] = "".join(map(str, predictions.tolist()))
        if robustness:
            results["robustness"] = engine.robustness(forward, eval_images, eval_labels, eval_batch_size,
                                                      recipe["amp"])
        write_results("complete")
    except engine.Diverged as e:
        if history:
            write_results("diverged")
        raise engine.Diverged(f"training diverged: {e}; lower --lr (it was {recipe['lr']})") from None
    except BaseException as e:
        if history:
            try:
                # A reader that went away (`| head`) stops the run as Ctrl-C does.
                write_results("interrupted" if isinstance(e, (KeyboardInterrupt, BrokenPipeError)) else "failed")
            except files.WriteError:
                pass  # the error in flight says what went wrong first
            except KeyboardInterrupt as again:
                raise Interrupted(len(history), again, results_written=False) from None
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(len(history), e) from None
        raise
    return results
