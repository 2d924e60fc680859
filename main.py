"""Train and compare MNIST classifiers.

    python main.py --model lenet5 --epochs 10

Each run writes results/<run>.json, plots/<run>_curves.png and checkpoints/<run>.pt under --out-dir,
where <run> is the model's name, followed by _<tag> when --tag is given.
"""
import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from tqdm import tqdm

import dataset
from model import MODELS, count_parameters, parameter_table

ROOT = Path(__file__).resolve().parent

# Each model's defaults, chosen so that 10 epochs reach the targets in the README. Flags override them.
RECIPES = {
    "lenet5": dict(optimizer="sgd", lr=0.1, weight_decay=0.0, batch_size=128, augment=False),
    "custom_mlp": dict(optimizer="sgd", lr=0.1, weight_decay=1e-3, batch_size=128, augment=True),
    "lenet5_regularized": dict(optimizer="sgd", lr=0.1, weight_decay=5e-4, batch_size=128, augment=True,
                               dropout=0.1, batch_norm=True),
}
# Settings that only LeNet5_Regularized takes.
ARCHITECTURE_KEYS = ("dropout", "batch_norm")
# Settings that define a run's numbers: a resumed run must match its checkpoint in all of them.
RECIPE_KEYS = ("model", "epochs", "seed", "limit", "validation", "optimizer", "lr", "weight_decay", "batch_size",
               "augment", "amp") + ARCHITECTURE_KEYS


class UsageError(Exception):
    """Bad input. The message names the problem and the fix."""


class Diverged(Exception):
    """The loss became nan or inf."""


class Interrupted(Exception):
    """Ctrl-C during training; the checkpoint holds epochs_saved full epochs."""

    def __init__(self, epochs_saved):
        super().__init__(f"interrupted after epoch {epochs_saved}" if epochs_saved else
                         "interrupted during the first epoch")
        self.epochs_saved = epochs_saved


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends each option's default, except where the help text itself says what happens without it."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, with its errors on one line instead of the usage text and an error line."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number(kind, accept, requirement):
    """An argparse type: text parsed by kind, then held to accept(value)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    return parse


positive_int = number(int, lambda v: v > 0, "positive")
positive_float = number(float, lambda v: v > 0, "positive")
non_negative_float = number(float, lambda v: v >= 0, "zero or more")
fraction = number(float, lambda v: 0 <= v < 1, "in [0, 1)")


def get_args_parser():
    p = OneLineErrorParser(description="Train LeNet-5, a same-size MLP and a regularized LeNet-5 on MNIST.",
                           formatter_class=HelpFormatter)
    recipe = "the model's recipe (printed at start-up)"
    p.add_argument("--model", default="lenet5", choices=[*MODELS, "all"], help="model to train; all trains each in turn")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs to train")
    p.add_argument("--batch-size", type=positive_int, help=f"training batch size; default: {recipe}")
    p.add_argument("--lr", type=positive_float, help=f"peak learning rate of the one-cycle schedule; default: {recipe}")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], help=f"sgd is Nesterov with momentum 0.9; default: {recipe}")
    p.add_argument("--weight-decay", type=non_negative_float, help=f"weight decay; default: {recipe}")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction,
                   help=f"random rotation, shift and scale of training images; default: {recipe}")
    p.add_argument("--dropout", type=fraction, help=f"dropout probability, lenet5_regularized only; default: {recipe}")
    p.add_argument("--batch-norm", action=argparse.BooleanOptionalAction,
                   help=f"batch norm layers, lenet5_regularized only; default: {recipe}")
    p.add_argument("--seed", type=int, default=0, help="random seed for weights, batch order, dropout and augmentation")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto picks cuda, then mps, then cpu")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast, meant for GPUs")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--eval-batch-size", type=positive_int, default=1000, help="batch size for evaluation")
    p.add_argument("--validation", action="store_true",
                   help="train on the first 50,000 training images and evaluate on the last 10,000 instead of the "
                        "test set, to compare recipes without looking at the test set")
    p.add_argument("--limit", type=positive_int,
                   help="use only the first N training and N test images, for quick checks; default: all")
    p.add_argument("--data-dir", type=Path, default=dataset.DEFAULT_DATA_DIR, help="where MNIST lives")
    p.add_argument("--out-dir", type=Path, default=ROOT, help="where results/, plots/ and checkpoints/ go")
    p.add_argument("--tag", help="suffix for the output file names, e.g. seed1; default: none")
    p.add_argument("--resume", action="store_true", help="continue from checkpoints/<run>.pt up to --epochs")
    return p


# ---------------------------------------------------------------- training

def train_one_epoch(model, loader, optimizer, scheduler, amp=False, progress=False):
    """One pass over loader; returns (loss, accuracy %) over all its samples, weighted by batch size.

    Losses and correct counts stay on the device; the host looks at them every 50 steps and at the end, not
    after every step, so a GPU does not wait on it. Raises Diverged naming the first non-finite loss.
    """
    model.train()
    device = next(model.parameters()).device
    loss_sums = torch.zeros(len(loader), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    bar = tqdm(loader, leave=False, disable=not progress, unit="batch")
    for step, (images, labels) in enumerate(bar):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        loss_sums[step] = loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
        if step % 50 == 49 or step == len(loader) - 1:
            finite = torch.isfinite(loss_sums[:step + 1])
            if not finite.all():
                first = int((~finite).nonzero()[0])
                raise Diverged(f"loss became {loss_sums[first].item()} at step {first + 1}/{len(loader)}")
            bar.set_postfix(loss=f"{loss_sums[step].item() / len(labels):.4f}")
    return loss_sums.sum().item() / seen, 100.0 * correct.item() / seen


@torch.no_grad()
def eval_logits(model, loader, amp=False):
    """Yields (logits, labels) for each batch of loader, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    for images, labels in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            yield model(images).float(), labels


def evaluate(model, loader, amp=False):
    """(loss, accuracy %) over all of loader's samples."""
    loss, correct, seen = 0.0, 0, 0
    for logits, labels in eval_logits(model, loader, amp):
        loss += F.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
        seen += len(labels)
    return float(loss) / seen, 100.0 * int(correct) / seen


def predict(model, loader, amp=False):
    """Predicted class of every image in loader, in order."""
    return torch.cat([logits.argmax(1) for logits, _ in eval_logits(model, loader, amp)])


def build_model(recipe, device):
    architecture = {k: recipe[k] for k in ARCHITECTURE_KEYS if k in recipe}
    model = MODELS[recipe["model"]](**architecture).to(device)
    # On the CPU, NHWC (channels_last) convolutions train LeNet-5 faster (benchmarks/bench_pipeline.py), but
    # batch norm runs several times slower in NHWC, which more than cancels the gain in LeNet5_Regularized.
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(model, recipe, steps):
    if recipe["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=0.9, nesterov=True,
                                    weight_decay=recipe["weight_decay"])
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe["lr"], total_steps=steps,
                                                    pct_start=0.2)
    return optimizer, scheduler


# ---------------------------------------------------------------- files

def atomic_write(path, write):
    """Write path whole or not at all: write(f) fills a temporary file beside it, which then replaces it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path, obj):
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def save_figure(fig, path):
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))


def loss_and_accuracy_axes(title, prefix=""):
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


def plot_curves(history, title, evaluated_on="test"):
    """Loss and accuracy against epoch, train and test (or validation)."""
    fig, loss_ax, acc_ax = loss_and_accuracy_axes(title)
    epochs = [h["epoch"] for h in history]
    for split, label, style in (("train", "train", "o-"), ("test", evaluated_on, "s-")):
        loss_ax.plot(epochs, [h[f"{split}_loss"] for h in history], style, label=label)
        acc_ax.plot(epochs, [h[f"{split}_acc"] for h in history], style, label=label)
    loss_ax.legend()
    acc_ax.legend()
    return fig


def plot_comparison(runs, title):
    """Test loss and accuracy against epoch for several models; runs maps a label to a list of histories.

    Several histories (seeds) per label are drawn as their mean with a min-max band.
    """
    fig, loss_ax, acc_ax = loss_and_accuracy_axes(title, prefix="test ")
    for label, histories in runs.items():
        epochs = [h["epoch"] for h in histories[0]]
        for ax, key in ((loss_ax, "test_loss"), (acc_ax, "test_acc")):
            values = torch.tensor([[h[key] for h in history] for history in histories])
            line, = ax.plot(epochs, values.mean(0), "o-", label=label)
            if len(histories) > 1:
                ax.fill_between(epochs, values.min(0).values, values.max(0).values, color=line.get_color(), alpha=0.2)
    loss_ax.legend()
    acc_ax.legend()
    return fig


def output_paths(out_dir, run):
    return {"results": out_dir / "results" / f"{run}.json",
            "curves": out_dir / "plots" / f"{run}_curves.png",
            "checkpoint": out_dir / "checkpoints" / f"{run}.pt"}


def check_writable(out_dir):
    """Fail before any work if out_dir or its subfolders cannot be created and written."""
    for path in (out_dir, *(out_dir / sub for sub in ("results", "plots", "checkpoints"))):
        existing = path
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"--out-dir {out_dir} cannot be written ({existing} is not a writable folder); "
                             f"pass a writable --out-dir")


def load_checkpoint(path, recipe):
    """The checkpoint at path, checked to belong to a run with this recipe."""
    if not path.exists():
        raise UsageError(f"--resume: no checkpoint at {path}; run without --resume to start from scratch")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        saved = checkpoint["recipe"]
        checkpoint["model"], checkpoint["optimizer"], checkpoint["scheduler"], checkpoint["epoch"]
    except Exception as e:
        raise UsageError(f"--resume: {path} is not a checkpoint of main.py ({type(e).__name__}); "
                         f"delete it or run without --resume") from None
    if saved["model"] != recipe["model"]:
        raise UsageError(f"--resume: {path} holds a {saved['model']} checkpoint, not {recipe['model']}; "
                         f"pass --model {saved['model']} or run without --resume")
    differing = [k for k in RECIPE_KEYS if saved.get(k) != recipe.get(k)]
    if differing:
        was = " ".join(f"--{k.replace('_', '-')} {saved.get(k)}" for k in differing)
        raise UsageError(f"--resume: {path} was trained with {was}; resume with the same settings")
    if checkpoint["epoch"] >= recipe["epochs"]:
        raise UsageError(f"--resume: {path} has finished all {recipe['epochs']} epochs; nothing to resume")
    return checkpoint


# ---------------------------------------------------------------- runs

def resolve_device(name):
    available = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available[name]:
        raise UsageError(f"--device {name}: no {name.upper()} device is available here; "
                         f"use --device cpu or --device auto")
    return torch.device(name)


def describe_device(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
            name = next(line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name"))
        except (OSError, StopIteration):
            name = platform.processor() or platform.machine()
        return f"{name}, {torch.get_num_threads()} threads"
    return device.type


def format_recipe(recipe):
    return "recipe: " + ", ".join(f"{k}={v}" for k, v in recipe.items())


def format_epoch(record, epochs, evaluated_on="test"):
    return (f"epoch {record['epoch']:2d}/{epochs}  train loss {record['train_loss']:.4f} acc {record['train_acc']:6.2f}%"
            f"  {evaluated_on} loss {record['test_loss']:.4f} acc {record['test_acc']:6.2f}%  {record['seconds']:5.1f}s")


def resolve_recipe(args, name):
    """The model's recipe with the command line's explicit settings on top."""
    recipe = dict(model=name, **RECIPES[name], epochs=args.epochs, seed=args.seed, limit=args.limit,
                  validation=args.validation, amp=args.amp)
    for key in ("optimizer", "lr", "weight_decay", "batch_size", "augment", *ARCHITECTURE_KEYS):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in recipe:
            raise UsageError(f"--{key.replace('_', '-')} applies only to lenet5_regularized, not {name}; "
                             f"drop it or pass --model lenet5_regularized")
        recipe[key] = value
    return recipe


def fit(recipe, data, device, args, paths, checkpoint=None):
    """Train one model as the recipe says and return its results; writes checkpoint, results and curves."""
    train_images, train_labels, test_images, test_labels = data
    torch.manual_seed(recipe["seed"])
    model = build_model(recipe, device)
    print(f"\n{recipe['model']}: {count_parameters(model):,} parameters\n{parameter_table(model)}")
    print(format_recipe(recipe))
    train_loader = dataset.TensorLoader(train_images, train_labels, recipe["batch_size"], shuffle=True,
                                        augment=recipe["augment"])
    test_loader = dataset.TensorLoader(test_images, test_labels, args.eval_batch_size)
    optimizer, scheduler = build_optimizer(model, recipe, recipe["epochs"] * len(train_loader))
    history = []
    if checkpoint:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        history = checkpoint["history"]
        torch.set_rng_state(checkpoint["rng"]["cpu"])
        if device.type == "cuda" and checkpoint["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        print(f"resuming from {paths['checkpoint']} after epoch {checkpoint['epoch']}")
    forward = torch.compile(model) if args.compile else model
    # With --validation, the "test" metrics are measured on the held-out training images.
    evaluated_on = "validation" if recipe["validation"] else "test"
    results = {"model": recipe["model"], "params": count_parameters(model), "seed": recipe["seed"],
               "epochs": recipe["epochs"], "device": str(device), "device_name": describe_device(device),
               "torch": torch.__version__, "evaluated_on": evaluated_on, "recipe": recipe,
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    status = "interrupted"
    try:
        for epoch in range(len(history) + 1, recipe["epochs"] + 1):
            start = time.perf_counter()
            try:
                train_loss, train_acc = train_one_epoch(forward, train_loader, optimizer, scheduler, recipe["amp"],
                                                        progress=sys.stderr.isatty())
            except Diverged as e:
                status = "diverged"
                raise Diverged(f"training diverged: {e} of epoch {epoch}; "
                               f"lower --lr (it was {recipe['lr']})") from None
            test_loss, test_acc = evaluate(forward, test_loader, recipe["amp"])
            record = dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss,
                          test_acc=test_acc, seconds=time.perf_counter() - start)
            rng = {"cpu": torch.get_rng_state(),
                   "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None}
            checkpoint = dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                              scheduler=scheduler.state_dict(), epoch=epoch, recipe=recipe,
                              history=history + [record], rng=rng)
            atomic_write(paths["checkpoint"], lambda f: torch.save(checkpoint, f))
            history.append(record)
            print(format_epoch(record, recipe["epochs"], evaluated_on), flush=True)
        # The train metrics above are taken on the fly, through dropout and augmentation; these are clean.
        clean_train = dataset.TensorLoader(train_images, train_labels, args.eval_batch_size)
        train_loss, train_acc = evaluate(forward, clean_train, recipe["amp"])
        results["final_train_eval"] = {"loss": train_loss, "acc": train_acc}
        # One digit per test image, for the confusion matrix and the gallery of errors in the report.
        results["test_predictions"] = "".join(map(str, predict(forward, test_loader, recipe["amp"]).tolist()))
        status = "complete"
    except KeyboardInterrupt:
        raise Interrupted(len(history)) from None
    finally:
        results.update(status=status, history=history)
        if history:
            write_json(paths["results"], results)
            title = (f"{recipe['model']}, seed {recipe['seed']}: final {evaluated_on} accuracy "
                     f"{history[-1]['test_acc']:.2f}%")
            save_figure(plot_curves(history, title, evaluated_on), paths["curves"])
    return results


def main(args):
    """Run what the command line asks for; returns the exit status."""
    try:
        names = list(MODELS) if args.model == "all" else [args.model]
        recipes = [resolve_recipe(args, name) for name in names]
        device = resolve_device(args.device)
        # Fixed input shapes, so cuDNN's one-off search for the fastest convolution algorithm pays back.
        torch.backends.cudnn.benchmark = device.type == "cuda"
        check_writable(args.out_dir)
        suffix = f"_{args.tag}" if args.tag else ""
        paths = [output_paths(args.out_dir, name + suffix) for name in names]
        checkpoints = [load_checkpoint(p["checkpoint"], r) if args.resume else None for p, r in zip(paths, recipes)]
        data = dataset.load_mnist(args.data_dir, device)
        if args.validation:
            data = dataset.validation_split(*data[:2])
        if args.limit:
            data = [tensor[:args.limit] for tensor in data]
        print(f"device {device} ({describe_device(device)}), torch {torch.__version__}")
        histories = {recipe["model"]: [fit(recipe, data, device, args, path, checkpoint)["history"]]
                     for recipe, path, checkpoint in zip(recipes, paths, checkpoints)}
        if len(names) > 1:
            save_figure(plot_comparison(histories, f"MNIST test curves, seed {args.seed}"),
                        args.out_dir / "plots" / f"comparison{suffix}.png")
    except (UsageError, dataset.DataError) as e:
        print(f"main.py: error: {e}", file=sys.stderr)
        return 2
    except Diverged as e:
        print(f"main.py: error: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        if e.epochs_saved:
            command = shlex.join(["python", *sys.argv] + ([] if args.resume else ["--resume"]))
            print(f"\n{e}; checkpoint, results and curves so far are saved.\nresume with: {command}",
                  file=sys.stderr)
        else:
            print(f"\n{e}; nothing saved", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
