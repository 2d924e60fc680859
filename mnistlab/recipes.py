"""What to train: the models' names and recipes, the settings a recipe may hold, and how a run is named.

No torch here, so that main.py can check its arguments before the slow imports.
"""
import math
import re
from dataclasses import dataclass

from mnistlab.errors import UsageError

MODEL_NAMES = ("lenet5", "custom_mlp", "lenet5_regularized")
LABELS = {"lenet5": "LeNet5", "custom_mlp": "CustomMLP", "lenet5_regularized": "LeNet5_Regularized"}
# What a run trains and scores on: dataset.DATASETS holds their titles, files and statistics (not imported here,
# where the programs' flags are checked before torch is imported).
DATASET_NAMES = ("mnist", "fashion-mnist")

# Each model's defaults, chosen on the validation split by scripts/tune.py (see results/tuning/). Flags override
# them. augment is a strength: 0 is off, 1 rotates by up to 5 degrees and shifts and scales by up to 5%, 2 doubles
# those ranges.
RECIPES = {
    "lenet5": dict(optimizer="sgd", lr=0.1, weight_decay=0.0, batch_size=128, augment=0.0, label_smoothing=0.0),
    "custom_mlp": dict(optimizer="sgd", lr=0.1, weight_decay=5e-4, batch_size=128, augment=1.0, hidden=[75, 32],
                       label_smoothing=0.0),
    "lenet5_regularized": dict(optimizer="sgd", lr=0.2, weight_decay=5e-4, batch_size=128, augment=1.0,
                               dropout=0.1, batch_norm=True, label_smoothing=0.0),
}
# Settings added after runs were first saved, and the value every run saved before them trained with.
LATER_SETTINGS = {"label_smoothing": 0.0, "dataset": "mnist"}
# Recipes besides the defaults, by name (`--recipe NAME`), for the models that have them. "fast" trains LeNet5 to
# 99% test accuracy in as little time as it can: chosen on the validation split by `scripts/tune.py --fast`.
NAMED_RECIPES = {
    "fast": {"lenet5": dict(optimizer="sgd", lr=0.1, weight_decay=0.0, batch_size=64, augment=0.0,
                            label_smoothing=0.1, epochs=2)},
}
RECIPE_NAMES = ("default", *NAMED_RECIPES)
# The settings that shape each model's layers, passed to its constructor.
ARCHITECTURE_KEYS = {"lenet5": (), "custom_mlp": ("hidden",), "lenet5_regularized": ("dropout", "batch_norm")}


@dataclass(frozen=True)
class Setting:
    """What one recipe key may hold: a kind (bool, int, float, str, or list for widths), for numbers and each width
    a range from low to high (above low where low_open), for text its choices, for a list its most items; and
    None where optional. main.py's flags are built from these."""
    kind: type
    low: float = None
    high: float = None
    low_open: bool = False
    choices: tuple = ()
    items: int = 0
    optional: bool = False

    def allows(self, value):
        if value is None:
            return self.optional
        if self.kind is list:
            return (type(value) is list and 1 <= len(value) <= self.items and
                    all(type(v) is int and self.low <= v <= self.high for v in value))
        if self.kind is str:
            return value in self.choices
        kinds = {bool: (bool,), int: (int,), float: (int, float)}[self.kind]
        if type(value) not in kinds:
            return False
        return self.kind is bool or (math.isfinite(value) and (self.low < value if self.low_open else self.low <= value)
                                     and value <= self.high)

    @property
    def bounds(self):
        """A number's range in words, e.g. "above 0 and at most 10"."""
        return f"above {self.low} and at most {self.high}" if self.low_open else f"from {self.low} to {self.high}"

    @property
    def requirement(self):
        if self.kind is list:
            return f"widths {self.bounds}, at most {self.items} of them"
        if self.kind is str:
            return f"one of {', '.join(self.choices)}"
        if self.kind is bool:
            return "true or false"
        return f"{'a whole number' if self.kind is int else 'a number'} {self.bounds}"


# Every setting a recipe may hold, and within what: main.py's flags take their kinds and bounds from here, and a
# checkpoint's recipe is checked against it before a model is built from it. A new setting is one more line here. Each defines a run's
# numbers, so a resumed run must match its checkpoint in all of them (RECIPE_KEYS).
RECIPE_SCHEMA = {
    "model": Setting(str, choices=MODEL_NAMES),
    "epochs": Setting(int, 1, 10**6),
    "seed": Setting(int, 0, 2**32 - 1),
    # At least 2 training images: a shuffled loader drops a last batch of one (dataset.TensorLoader).
    "limit": Setting(int, 2, 10**9, optional=True),
    "train_size": Setting(int, 2, 10**9, optional=True),
    "validation": Setting(bool),
    "dataset": Setting(str, choices=DATASET_NAMES),
    "optimizer": Setting(str, choices=("sgd", "adamw")),
    "lr": Setting(float, 0, 10, low_open=True),
    "weight_decay": Setting(float, 0, 1),
    "batch_size": Setting(int, 1, 10**6),
    "augment": Setting(float, 0, 4),
    "amp": Setting(bool),
    "hidden": Setting(list, 1, 4096, items=8),
    "dropout": Setting(float, 0, 0.99),
    "batch_norm": Setting(bool),
    "label_smoothing": Setting(float, 0, 0.5),
}
RECIPE_KEYS = tuple(RECIPE_SCHEMA)

# A recipe trains for EPOCHS epochs unless it says otherwise.
EPOCHS = 10


def run_name(model, tag=None, seed=0, recipe="default", dataset="mnist"):
    """The one name of a run: its files are results/<name>.json, plots/<name>_curves.png, checkpoints/<name>.pt.

    A named recipe is part of the name (lenet5_fast_seed0), so that it never meets the default recipe's run, and
    so is a dataset other than MNIST, in front (fashion-mnist_lenet5_seed0), where no model's name or tag can put it.
    """
    return "_".join([*([dataset] if dataset != "mnist" else []), model, *([recipe] if recipe != "default" else []),
                     *([tag] if tag else []), f"seed{seed}"])


# How a setting is written in a run's tag, where a sweep varies it (lenet5_lr0.05_bs64_seed0).
SHORT = {"epochs": "ep", "batch_size": "bs", "lr": "lr", "optimizer": "opt", "weight_decay": "wd", "augment": "aug",
         "label_smoothing": "ls", "hidden": "h", "dropout": "do", "batch_norm": "bn", "train_size": "n"}


def setting_tag(setting):
    """The part of a run's name that tells the settings a sweep varies, in the order given, e.g. lr0.05_bs64."""
    def in_tag(value):
        if isinstance(value, list):
            return "-".join(map(str, value))
        return value if isinstance(value, str) else f"{value:g}"
    return "_".join(f"{SHORT[key]}{in_tag(value)}" for key, value in setting.items())


TAG = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check_tag(tag):
    """A tag is safe in a file name: letters, digits, '.', '_' and '-', at most 64, and not '.' or '..'."""
    if not TAG.fullmatch(tag) or tag in (".", ".."):
        raise ValueError(f"{tag[:70]!r} is not a tag: use at most 64 letters, digits, '.', '_' or '-'")
    return tag


def check_run_name(model, tag, recipe="default"):
    """UsageError where tag would give the run of model and recipe a name that another model's or recipe's runs
    may have: lenet5 + regularized = lenet5_regularized_..., lenet5 + fast = lenet5_fast_.... Names are compared
    without case, as a case-insensitive file system (macOS, Windows) compares them."""
    name = "_".join([model, *([recipe] if recipe != "default" else []), tag]).lower()
    # Read the name back as run_name builds it, the longest model name first: it must give back model and recipe.
    owner = max((m for m in MODEL_NAMES if name == m or name.startswith(f"{m}_")), key=len)
    rest = name.removeprefix(owner).removeprefix("_")
    named = next((r for r in NAMED_RECIPES if rest == r or rest.startswith(f"{r}_")), None)
    clash = f"{owner}_{named}" if named else owner
    if (owner, named or "default") != (model, recipe):
        raise UsageError(f"--tag {tag} would name {model}'s run like {clash}'s runs; choose another tag")


def check_recipe(recipe):
    """recipe, where RECIPE_SCHEMA allows each of its settings and it holds those that reading its model needs;
    ValueError saying what is wrong otherwise. Settings it does not hold, from before they existed, are not needed."""
    if not isinstance(recipe, dict):
        raise ValueError(f"its recipe is a {type(recipe).__name__}, not a dict of settings")
    model = recipe.get("model")
    needed = ("model", "epochs", "validation", *ARCHITECTURE_KEYS.get(model, ()))
    for key, setting in RECIPE_SCHEMA.items():
        if key in needed and key not in recipe:
            raise ValueError(f"its recipe has no {key}")
        if key in recipe and not setting.allows(recipe[key]):
            raise ValueError(f"its recipe's {key} is {shown_value(recipe[key])}, not {setting.requirement}")
    return recipe


def shown_value(value):
    """A value from outside, quoted and cut short, for a message: never advice, never more than a line."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def resolve_recipe(model, overrides, name="default", **run):
    """The model's recipe of that name, with the run's own settings (seed, dataset, ...; MNIST unless said)
    added and the overrides on top.

    An override of None keeps the recipe's value; one that the model does not take is a UsageError. A recipe
    trains for EPOCHS epochs unless it says otherwise.
    """
    if name == "default":
        base = RECIPES[model]
    elif model in NAMED_RECIPES[name]:
        base = NAMED_RECIPES[name][model]
    else:
        has = ", ".join(NAMED_RECIPES[name])
        raise UsageError(f"--recipe {name} is a recipe for {has} only, not {model}; pass --model {has.split(',')[0]} "
                         f"or drop --recipe")
    recipe = {"model": model, **base, "epochs": base.get("epochs", EPOCHS), "dataset": "mnist", **run}
    for key, value in overrides.items():
        if value is None:
            continue
        if key not in recipe:
            takes = [m for m in MODEL_NAMES if key in RECIPES[m]]
            raise UsageError(f"--{key.replace('_', '-')} applies only to {', '.join(takes)}, not {model}; "
                             f"drop it or pass --model {takes[0]}")
        recipe[key] = value
    if recipe.get("batch_norm") and recipe["batch_size"] < 2:
        raise UsageError("batch norm cannot normalize a batch of one image; pass --batch-size 2 or more, or turn "
                         "batch norm off")
    return recipe


def completed(recipe):
    """A saved recipe with the settings it predates filled in, as the run that saved it trained."""
    return {**recipe, **{key: value for key, value in LATER_SETTINGS.items() if key not in recipe}}


def data_of(recipe):
    """The dataset a run with this recipe trains and scores on, for runs saved before datasets were a setting too."""
    return completed(recipe)["dataset"]


def evaluated_on(recipe):
    """What a run with this recipe scores itself on: the test set, or with validation the held-out training images."""
    return "validation" if recipe["validation"] else "test"


def format_recipe(recipe):
    """The recipe's settings on one line, in RECIPE_KEYS' order whatever the dict's; an MNIST run's as it was before
    datasets were a setting."""
    return "recipe: " + ", ".join(f"{key}={recipe[key]}" for key in RECIPE_KEYS
                                  if key in recipe and (key, recipe[key]) != ("dataset", "mnist"))
