"""The one owner of the checkpoint format: the dict a run saves after every epoch, reading it back, checking it
whole before anything is built from it, building its model, restoring a run from it, and choosing the best one.

A checkpoint is torch.save's zip archive of one dict, CHECKPOINT_KEYS: the model's, optimizer's and scheduler's
state, the epoch, the recipe, the history so far, the random state and the last epoch's predictions; since a later
version, the torch threads it trained with too (LATER_KEYS). Everything
read is hostile until checked: main.py's --evaluate and --resume, predict.py and demo.py all read through here.
"""
import os
import warnings
import zipfile
from pathlib import Path

import torch

from dataset import DATASETS
from mnistlab import engine, files, paths, slots
from mnistlab.errors import UsageError
from mnistlab.recipes import check_recipe, data_of, shown_value

CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "epoch", "recipe", "history", "rng", "predictions"}
# What a checkpoint has held since a later version, and older ones lack: threads, torch's thread count, which
# changes a run's numbers. Missing, it is unknown.
LATER_KEYS = {"threads"}


def state(model, optimizer, scheduler, recipe, history, predictions, device):
    """The dict a run saves after each epoch: history holds every epoch so far, the last one included."""
    rng = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None}
    return dict(model=model.state_dict(), optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                epoch=history[-1]["epoch"], recipe=recipe, history=history, rng=rng, predictions=predictions,
                threads=torch.get_num_threads())


def save(path, checkpoint):
    files.atomic_write(path, lambda f: torch.save(checkpoint, f))


class CheckpointError(UsageError):
    """A checkpoint that cannot be used. The message names flag, the path, what is wrong (reason, e.g. "does not
    exist") and the fix (advice). unreadable: the file may be good, but this user may not read it."""

    def __init__(self, flag, path, reason, advice=..., unreadable=False):
        if advice is ...:  # only a file where main.py keeps its checkpoints is one of main.py's, to delete
            advice = ("delete it or train again" if Path(path).parent.name == "checkpoints" else
                      "pass the .pt file that main.py wrote")
        super().__init__(f"{flag}: {paths.printable(path)} {reason}" + (f"; {advice}" if advice else ""))
        self.path, self.reason, self.unreadable = path, reason, unreadable


# The largest checkpoint read: the largest model main.py's flags allow, CustomMLP with eight hidden layers of 4,096,
# saves about 1.5 GB with its optimizer state; ours save well under 1 MB.
MAX_CHECKPOINT_BYTES = 2 * 1024**3


def check_archive(file):
    """ValueError saying why, unless file is a zip archive as torch.save writes one: every record stored
    uncompressed, so that reading it takes no more memory than the file's size, and that size within
    MAX_CHECKPOINT_BYTES. A small file with compressed records could expand to any size in torch.load."""
    try:
        with zipfile.ZipFile(file) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ValueError(f"is not a checkpoint of main.py ({type(e).__name__})") from None
    finally:
        file.seek(0)
    if any(record.compress_type != zipfile.ZIP_STORED for record in records):
        raise ValueError("is not a checkpoint of main.py: its records are compressed, which torch.save never does")
    size = os.fstat(file.fileno()).st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"holds {size / 1024**3:.1f} GB, more than the {MAX_CHECKPOINT_BYTES // 1024**3} GB of the "
                         f"largest model main.py trains")


def read(path, flag="--checkpoint"):
    """The checkpoint dict saved by main.py at path. A path that is not a regular file, or a file that is not such
    a checkpoint, is a CheckpointError that names flag."""
    path = Path(path)
    try:
        file = paths.open_file(path)
    except paths.NotAFile as e:
        if e.missing:
            reason, advice = "does not exist", "train the model first, e.g. `python main.py --model lenet5`"
        elif e.unreadable:
            reason, advice = f"is {e}", None
        else:
            reason, advice = f"is {e}, not a checkpoint file", "pass the .pt file that main.py wrote"
        raise CheckpointError(flag, path, reason, advice, unreadable=e.unreadable) from None
    with file:
        try:
            check_archive(file)
        except ValueError as e:
            raise CheckpointError(flag, path, str(e)) from None
        try:
            with warnings.catch_warnings():  # torch warns, in several lines, of odd tensors that the checks refuse
                warnings.simplefilter("ignore")
                checkpoint = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:  # torch.load raises many kinds on a file that is not a checkpoint
            raise CheckpointError(flag, path, f"is not a checkpoint of main.py ({type(e).__name__})") from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEYS - set(checkpoint):
        missing = CHECKPOINT_KEYS - set(checkpoint) if isinstance(checkpoint, dict) else CHECKPOINT_KEYS
        raise CheckpointError(flag, path, f"is not a checkpoint of main.py (no {', '.join(sorted(missing))})")
    return checkpoint


# The dtypes a floating-point weight may have: main.py saves float32, the golden runs float64.
REAL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def load_checked(path, flag="--checkpoint"):
    """The checkpoint at path, checked whole before anything is built from it, as main.py's --evaluate and
    --resume, predict.py and demo.py read it. A checkpoint that fails a check is a CheckpointError."""
    checkpoint = read(path, flag)
    try:
        check_checkpoint(checkpoint)
    except (ValueError, TypeError, RuntimeError, NotImplementedError) as e:  # torch's, for tensors of odd kinds
        raise CheckpointError(flag, path, f"is not a checkpoint of main.py: {e}") from None
    return checkpoint


def check_checkpoint(checkpoint):
    """ValueError saying what is wrong, where a checkpoint does not hold what main.py writes: a recipe within
    recipes.RECIPE_SCHEMA, one record per epoch that passes slots.check_record, as a results file's do, and finite
    weights of the shapes its model has."""
    recipe = check_recipe(checkpoint["recipe"])
    threads = checkpoint.get("threads")
    if threads is not None and (type(threads) is not int or threads < 1):
        raise ValueError(f"its thread count is {shown_value(threads)}, not a whole number from 1")
    epoch, history = checkpoint["epoch"], checkpoint["history"]
    if type(epoch) is not int or not 1 <= epoch <= recipe["epochs"]:
        raise ValueError(f"its epoch is {shown_value(epoch)}, not from 1 to its recipe's {recipe['epochs']}")
    if not isinstance(history, list):
        raise ValueError(f"its history is a {type(history).__name__}, not a list")
    if len(history) != epoch:
        raise ValueError(f"its history holds {len(history)} records, where its epoch is {epoch}")
    for number, record in enumerate(history, 1):
        try:
            slots.check_record(record, number)
        except slots.BadRecord as e:
            raise ValueError(f"an epoch of its history {record_problem(e, number)}") from None
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


def record_problem(refusal, number):
    """slots.check_record's refusal of epoch number's record, in a checkpoint's words."""
    if refusal.rule == slots.BadRecord.NOT_A_DICT:
        return f"is a {type(refusal.value).__name__}, not a dict"
    if refusal.rule == slots.BadRecord.NOT_FINITE:
        return f"has no finite {refusal.key}"
    if refusal.rule == slots.BadRecord.MISNUMBERED:
        return f"has epoch {shown_value(refusal.value)} where epoch {number} belongs"
    if refusal.rule == slots.BadRecord.NOT_A_PERCENTAGE:
        return f"has a {refusal.key} of {shown_value(refusal.value)}, not a percentage"
    return f"has a loss or time that is {slots.past_belief()}"


def load_model(path, device, model_name=None, flag="--checkpoint", dataset=None, reader=None):
    """The trained model in a checkpoint, in eval mode on device, and the checkpoint itself. With dataset, the
    checkpoint must be trained on it; a reader of users' digits (a program's name) takes MNIST's only."""
    checkpoint = load_checked(path, flag)
    saved, trained_on = checkpoint["recipe"]["model"], data_of(checkpoint["recipe"])
    if model_name and saved != model_name:
        raise UsageError(f"{flag}: {path} holds a {saved} checkpoint, not {model_name}; pass --model {saved}")
    if reader and trained_on != "mnist":
        raise UsageError(f"{flag}: {path} was trained on {DATASETS[trained_on].title}, and {reader} reads handwritten "
                         f"digits; pass a checkpoint trained on MNIST")
    if dataset and trained_on != dataset:
        raise UsageError(f"{flag}: {path} was trained on {DATASETS[trained_on].title}, not "
                         f"{DATASETS[dataset].title}; pass --dataset {trained_on}")
    try:
        model = engine.build_model(checkpoint["recipe"], device)
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise UsageError(f"{flag}: {path} does not fit model.py's {saved} ({type(e).__name__}); "
                         f"train it again") from None
    return model.eval(), checkpoint


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


def best_checkpoint(out_dir, model=None, skipped=lambda error: None):
    """The finished checkpoint in out_dir/checkpoints with the best final accuracy (of model, where given), full
    training runs before quick ones; None where there is none. Each file there that is not a usable checkpoint,
    and each unfinished run (of model), is passed to skipped, as a CheckpointError: a run stopped by Ctrl-C must
    not be passed over in silence for another."""
    candidates = []
    for path in sorted((Path(out_dir) / "checkpoints").glob("*.pt")):
        try:
            checkpoint = load_checked(path)
        except CheckpointError as e:
            skipped(e)
            continue
        recipe = checkpoint["recipe"]
        if model and recipe["model"] != model or data_of(recipe) != "mnist":  # its readers read digits
            continue
        if checkpoint["epoch"] < recipe["epochs"]:
            skipped(CheckpointError("--checkpoint", path, f"holds an unfinished run (epoch {checkpoint['epoch']} of "
                                                          f"{recipe['epochs']}), which main.py --resume finishes"))
            continue
        full = not (recipe.get("limit") or recipe.get("train_size") or recipe.get("validation"))
        candidates.append(((full, checkpoint["history"][-1]["eval_acc"]), path))
    return max(candidates)[1] if candidates else None
