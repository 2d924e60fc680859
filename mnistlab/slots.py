"""The one check of a committed results file against the slot it fills, before anything is drawn from it.

The report, its significance tables and the tuning sweeps read runs from results/ by name; the name says which
experiment, recipe and seed the slot wants, and the file says what it holds. A file that was damaged, cut short, or
copied into another run's slot would otherwise become a claim, so each file is read through load() here: it holds
the slot's recipe and seed, was scored on the split and the number of images the recipe gives, keeps one digit per
image, has percentages for accuracies that agree with its predictions, and a whole history. What is wrong is a
BadResults, one line naming the file, what is wrong, and advice that destroys nothing. An epoch's record of a
history is the same in a checkpoint, and is checked there by the same rule (EpochRecord, check_record).

No torch here: the checks run on JSON and, for the predictions, numpy.
"""
import json
import math
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mnistlab.errors import UsageError
from mnistlab.recipes import completed, evaluated_on, shown_value



class EpochRecord(NamedTuple):
    """One epoch of a run's history, as engine.fit makes it; results files and checkpoints keep it as a dict of
    these keys, and check_record is the one check of it for both."""
    epoch: int
    train_loss: float
    train_acc: float
    eval_loss: float
    eval_acc: float
    seconds: float


# What each epoch of a history holds; the report draws curves from all of them.
HISTORY_KEYS = EpochRecord._fields
# Two accuracies computed from the same predictions differ only by float rounding; one image of 10,000 is 1e-4.
AGREEMENT = 1e-6
# Text that a file puts into the README as it is (a device's name, a torch version, a command): one short line,
# not blank, with nothing that markdown or the README's section markers would read as markup or a link (no <, |,
# `, *, [, ~, \, ;, no _ but inside a word, no :emoji:, no :// or www.), e.g. "AMD EPYC 7B13, 2 threads".
PLAIN_TEXT = re.compile(r"(?=.*\S)(?!.*(?:^|[^A-Za-z0-9])_|.*_(?:[^A-Za-z0-9]|$))(?!.*:[\w+-]+:)(?!.*(?:://|www\.))"
                        r"[A-Za-z0-9 _.,:()+/@#%='\"?-]{1,200}")
# The largest loss and the longest epoch a history may hold: a cross-entropy over 10 classes starts near 2.3, a
# run that diverges stops at the first non-finite loss, and no epoch of these models takes days.
MAX_LOSS, MAX_SECONDS = 1e4, 1e7
# The fields of a run that the README quotes as text.
DESCRIBED = ("device", "device_name", "torch")


class BadResults(UsageError):
    """A results file that cannot fill its slot: path, what is wrong with it (problem), and the way on (advice)."""

    def __init__(self, path, problem, advice):
        self.path, self.problem = path, problem
        super().__init__(f"{path} {problem}; {advice}")


class Missing(BadResults):
    """No file in the slot: a run not made yet, which a sweep makes rather than reports."""


def load(path, advice, **slot):
    """The results at path, checked against the slot (see check); BadResults where they are missing, unreadable,
    not JSON, or do not fill it."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise Missing(path, "is missing", advice) from None
    except OSError as e:
        raise BadResults(path, f"is not readable ({e.strerror or e})", advice) from None
    except ValueError:  # bytes that are not UTF-8
        raise BadResults(path, "is not JSON", advice) from None
    try:
        results = json.loads(text)
    except ValueError as e:
        raise BadResults(path, f"is not JSON ({e})", advice) from None
    except RecursionError:
        raise BadResults(path, "is not a run's results (JSON nested too deep to read)", advice) from None
    return check(results, path=path, advice=advice, **slot)


def check(results, *, path, advice, recipe=None, labels=None, diverged=False, train_eval=False, robustness=None,
          params=None):
    """results, where they fill the slot; BadResults naming path, what is wrong, and advice otherwise.

    recipe: the recipe the slot's run trains with, which gives its seed, the split it is scored on (evaluated_on),
    its epochs, and where it sets train_size, its training images; None checks the file's form alone.
    labels: the true labels of the split (a sequence of ints) where the run keeps predictions: then it must hold one
    digit per label, in eval_images too, and its final accuracy must be theirs against the labels.
    diverged: whether a run that diverged fills the slot (the sweeps count it as 0%); its history may be short.
    train_eval: whether it must hold the report's clean pass over the training set, final_train_eval.
    robustness: {"shift": pixels, "rotation": degrees} that its robustness sweep must hold, or None for none.
    params: the parameter count of the slot's model, where the README states the file's; then it must also name,
    as plain text, the device it ran on, the device's name and its torch version (DESCRIBED).
    """
    def bad(problem):
        return BadResults(path, problem, advice)

    if not isinstance(results, dict):
        raise bad(f"holds a JSON {type(results).__name__}, not a run's results")
    status = results.get("status")
    if status != "complete" and not (diverged and isinstance(status, str) and status.startswith("diverged")):
        raise bad(f"is not a complete run (its status is {shown_value(status)})")
    if recipe is not None:
        held = results.get("recipe")
        if not isinstance(held, dict) or completed(held) != completed(recipe):
            # completed(): runs saved before a setting existed trained with its LATER_SETTINGS value.
            raise bad("holds another run's recipe" + recipe_difference(held, recipe))
        if results.get("seed") != recipe["seed"] or type(results.get("seed")) is not int:
            raise bad(f"says seed {shown_value(results.get('seed'))}, but fills seed {recipe['seed']}'s slot")
        if results.get("evaluated_on") != evaluated_on(recipe):
            raise bad(f"was scored on {shown_value(results.get('evaluated_on'))}, but its slot is scored on the "
                      f"{evaluated_on(recipe)} set")
        if recipe.get("train_size") is not None and results.get("train_images") != recipe["train_size"]:
            raise bad(f"says it trained on {shown_value(results.get('train_images'))} images, but its slot trains "
                      f"on {recipe['train_size']:,}")
    check_history(results.get("history"), recipe, status == "complete", bad)
    if labels is not None:
        check_predictions(results, labels, bad)
    if train_eval:
        clean = results.get("final_train_eval")
        if not isinstance(clean, dict) or not is_loss(clean.get("loss")) or not is_percentage(clean.get("acc")):
            raise bad("has no clean pass over the training set (final_train_eval) with a loss and a percentage")
    if robustness is not None:
        check_robustness(results.get("robustness"), robustness, bad)
    if params is not None:
        if results.get("params") != params or type(results.get("params")) is not int:
            raise bad(f"says its model has {shown_value(results.get('params'))} parameters, but its slot's model has "
                      f"{params:,}")
        for key in DESCRIBED:
            if not is_plain_text(results.get(key)):
                raise bad(f"has no {key} in plain text (1 to 200 letters, digits, spaces and .,:()+/@#%='\"?_-), "
                          f"which the README quotes")
    return results


def recipe_difference(held, recipe):
    """Where a file's recipe differs from the slot's, for the message: the first setting that does, or nothing."""
    if not isinstance(held, dict):
        return ""
    held, recipe = completed(held), completed(recipe)
    key = next((key for key in sorted(held.keys() | recipe.keys()) if held.get(key) != recipe.get(key)), None)
    return f" ({key} {shown_value(held.get(key))}, not {shown_value(recipe.get(key))})" if key else ""


def check_history(history, recipe, complete, bad):
    """A history is a list of epoch records of finite numbers, accuracies in percent; a complete run's has every
    epoch of its recipe, a diverged one's fewer."""
    if not isinstance(history, list):
        raise bad("has no history of epochs")
    if complete and not history:
        raise bad("is complete but its history is empty")
    if recipe is not None:
        epochs = recipe["epochs"]
        if complete and len(history) != epochs or not complete and len(history) >= epochs:
            wanted = f"trains {epochs}" if complete else f"diverged before epoch {epochs}"
            raise bad(f"has {len(history)} epochs of history, but its slot's run {wanted}")
    for number, record in enumerate(history, 1):
        try:
            check_record(record, number)
        except BadRecord as e:
            raise bad(record_problem(e, number)) from None


class BadRecord(ValueError):
    """An epoch's record that check_record refuses: the rule it breaks, and the key at fault with its value, for each
    reader (results files here, checkpoints in checkpoints.py) to say in its own words."""
    NOT_A_DICT, NOT_FINITE, MISNUMBERED, NOT_A_PERCENTAGE, PAST_BELIEF = (
        "not a dict", "not finite", "misnumbered", "not a percentage", "past belief")

    def __init__(self, rule, key=None, value=None):
        super().__init__(rule)
        self.rule, self.key, self.value = rule, key, value


def check_record(record, number):
    """BadRecord unless record is the record of epoch number (from 1) of a history, as engine.fit makes one: a dict
    of HISTORY_KEYS, each a finite number, its epoch that number, its accuracies percentages, and its losses and
    seconds neither negative nor past belief."""
    if not isinstance(record, dict):
        raise BadRecord(BadRecord.NOT_A_DICT, value=record)
    missing = [key for key in HISTORY_KEYS if not is_number(record.get(key))]
    if missing:
        raise BadRecord(BadRecord.NOT_FINITE, missing[0])
    if record["epoch"] != number:
        raise BadRecord(BadRecord.MISNUMBERED, "epoch", record["epoch"])
    for key in ("train_acc", "eval_acc"):
        if not is_percentage(record[key]):
            raise BadRecord(BadRecord.NOT_A_PERCENTAGE, key, record[key])
    seconds = record["seconds"]
    if not (is_loss(record["train_loss"]) and is_loss(record["eval_loss"]) and 0 <= seconds <= MAX_SECONDS):
        raise BadRecord(BadRecord.PAST_BELIEF)


def record_problem(refusal, number):
    """check_record's refusal of epoch number's record, in a results file's words."""
    if refusal.rule == BadRecord.MISNUMBERED:
        return f"has epoch {shown_value(refusal.value)} where epoch {number} belongs"
    if refusal.rule == BadRecord.NOT_A_PERCENTAGE:
        return f"has a {refusal.key} of {shown_value(refusal.value)} in epoch {number}, not a percentage"
    if refusal.rule == BadRecord.PAST_BELIEF:
        return f"has a loss or time in epoch {number} that is {past_belief()}"
    return f"has an epoch {number} without finite {', '.join(HISTORY_KEYS)}"


def check_predictions(results, labels, bad):
    """One ASCII digit per label, as many as eval_images says; the final accuracy theirs against the labels."""
    images = len(labels)
    if results.get("eval_images") != images:
        raise bad(f"was scored on {shown_value(results.get('eval_images'))} images, but its slot is scored on "
                  f"{images:,}")
    predictions = results.get("predictions")
    if not isinstance(predictions, str) or len(predictions) != images:
        size = f"{len(predictions):,} characters" if isinstance(predictions, str) else shown_value(predictions)
        raise bad(f"has predictions of {size}, not one digit for each of its {images:,} images")
    if not (predictions.isascii() and predictions.isdigit()):
        raise bad("has predictions that are not all digits 0 to 9")
    right = decode_predictions(predictions) == np.asarray(labels)
    accuracy, said = 100 * float(right.mean()), results["history"][-1]["eval_acc"]
    if not math.isclose(accuracy, said, rel_tol=AGREEMENT):
        raise bad(f"says a final eval_acc of {said}, but its predictions score {accuracy:.2f}")


def decode_predictions(predictions):
    """The classes that a results file's predictions hold, one ASCII digit per image (as check_predictions makes
    sure), as a numpy array of uint8."""
    return np.frombuffer(predictions.encode(), np.uint8) - ord("0")


def check_robustness(sweep, wanted, bad):
    """The report's robustness sweep: the wanted shifts and rotations, each a percentage."""
    for kind, magnitudes in wanted.items():
        measured = sweep.get(kind) if isinstance(sweep, dict) else None
        if not isinstance(measured, dict) or not all(is_percentage(measured.get(str(m))) for m in magnitudes):
            raise bad(f"has no robustness {kind} sweep of percentages at {', '.join(map(str, magnitudes))}")


def is_plain_text(value):
    return isinstance(value, str) and PLAIN_TEXT.fullmatch(value) is not None


def is_number(value):
    return type(value) in (int, float) and math.isfinite(value)


def is_percentage(value):
    return is_number(value) and 0 <= value <= 100


def past_belief():
    """What check_record refuses in a loss or an epoch's time, in words, as MAX_LOSS and MAX_SECONDS stand now."""
    return f"negative or past belief (losses up to {MAX_LOSS:g}, times up to {MAX_SECONDS:g} s)"


def is_loss(value):
    return is_number(value) and 0 <= value <= MAX_LOSS
