"""The training engine: picks the device, builds a model and its optimizer, trains, evaluates. It writes no files
and draws nothing."""
import contextlib
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import dataset
from mnistlab import slots
from mnistlab.errors import RunFailed, UsageError
from mnistlab.recipes import ARCHITECTURE_KEYS, data_of, evaluated_on
from model import MODELS


class Diverged(RunFailed):
    """The loss became nan or inf, or an epoch's loss went past what the results' readers believe (slots.is_loss)."""


@dataclass
class Evaluation:
    loss: float         # mean cross-entropy over every sample
    acc: float          # percent of samples classified correctly
    predictions: torch.Tensor  # (N,) the predicted class of each sample, in the loader's order


def resolve_device(name):
    """The device that --device names: auto is the accelerator torch.accelerator finds (CUDA, MPS, XPU, ...), else
    the CPU. UsageError for one that is not here."""
    accelerator = torch.accelerator.current_accelerator(check_available=True)  # None where there is none
    if name == "auto":
        return accelerator or torch.device("cpu")
    if name != "cpu" and (accelerator is None or accelerator.type != name):
        raise UsageError(f"--device {name}: no {name.upper()} device is available here; use --device cpu or --device auto")
    return torch.device(name)


def autocast(device, amp):
    """The context every forward pass of a run enters, built once per run: bfloat16 autocast with amp, else none."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()


def as_float32(logits):
    """bfloat16 logits, from autocast, as float32 for the loss; any others as they are."""
    return logits.float() if logits.dtype == torch.bfloat16 else logits


def build_model(recipe, device):
    architecture = {key: recipe[key] for key in ARCHITECTURE_KEYS[recipe["model"]]}
    model = MODELS[recipe["model"]](**architecture).to(device)
    # On the CPU, NHWC (channels_last) convolutions train LeNet-5 faster (benchmarks/bench_pipeline.py), but
    # batch norm runs several times slower in NHWC, which more than cancels the gain in LeNet5_Regularized.
    if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model = model.to(memory_format=torch.channels_last)
    return model


def build_optimizer(model, recipe, steps):
    """The recipe's optimizer, and a one-cycle schedule over steps that peaks at its lr 20% of the way in."""
    if recipe["optimizer"] == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=0.9, nesterov=True,
                                    weight_decay=recipe["weight_decay"])
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe["lr"], total_steps=steps,
                                                    pct_start=0.2)
    return optimizer, scheduler


def training_batches(recipe, images, labels):
    """The recipe's training batches. With a train_size, a stratified subset is repeated to fill each epoch
    of the full set's length, so that every size gets the same number of optimizer steps."""
    epoch_size = None
    if recipe.get("train_size") and recipe["train_size"] < len(labels):
        epoch_size = len(labels)
        subset = dataset.stratified_subset(labels.cpu(), recipe["train_size"]).to(labels.device)
        images, labels = images[subset], labels[subset]
    return dataset.TensorLoader(images, labels, recipe["batch_size"], shuffle=True, augment=recipe["augment"],
                                epoch_size=epoch_size, background=dataset.DATASETS[data_of(recipe)].background)


def setup(recipe, train_images, train_labels, device):
    """Everything a recipe needs to start training, seeded: (model, training batches, optimizer, scheduler)."""
    torch.manual_seed(recipe["seed"])
    model = build_model(recipe, device)
    batches = training_batches(recipe, train_images, train_labels)
    optimizer, scheduler = build_optimizer(model, recipe, recipe["epochs"] * len(batches))
    return model, batches, optimizer, scheduler


def train_one_epoch(model, loader, optimizer, scheduler, recipe, progress=False, ctx=None):
    """One pass over loader; returns (loss, accuracy %) over all its samples, weighted by batch size.

    The model learns from the cross-entropy with the recipe's label smoothing; the loss returned is the plain
    cross-entropy, comparable with evaluate's. ctx is the run's autocast context (built from the recipe where not
    given). Losses and correct counts stay on the device; the host looks at them every 50 steps and at the end, not
    after every step, so a GPU does not wait on it. Raises Diverged naming the first non-finite loss.
    """
    model.train()
    device = next(model.parameters()).device
    ctx = ctx or autocast(device, recipe["amp"])
    label_smoothing = recipe["label_smoothing"]
    loss_sums = torch.zeros(len(loader), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    bar = tqdm(loader, leave=False, disable=not progress, unit="batch")
    for step, (images, labels) in enumerate(bar):
        with ctx:
            logits = as_float32(model(images))
        loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        plain = F.cross_entropy(logits.detach(), labels) if label_smoothing else loss.detach()
        loss_sums[step] = plain * len(labels)
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
def evaluate(model, loader, ctx=contextlib.nullcontext()):
    """Loss and accuracy over all of loader's samples, and every sample's predicted class, in one pass; ctx is the
    run's autocast context."""
    model.eval()
    device = next(model.parameters()).device
    loss = torch.zeros((), device=device)
    predictions, labels = [], []
    for images, batch_labels in loader:
        with ctx:
            logits = as_float32(model(images))
        loss += F.cross_entropy(logits, batch_labels, reduction="sum")
        predictions.append(logits.argmax(1))
        labels.append(batch_labels)
    predictions, labels = torch.cat(predictions), torch.cat(labels)
    return Evaluation(loss=loss.item() / len(labels), acc=100.0 * (predictions == labels).sum().item() / len(labels),
                      predictions=predictions)


@torch.no_grad()
def probabilities(model, images, batch_size=1000):
    """Each image's probability of each class, (N, 10), from model in eval mode."""
    model.eval()
    return torch.cat([model(images[i:i + batch_size]).softmax(1) for i in range(0, len(images), batch_size)])


def fit(model, optimizer, scheduler, train_batches, eval_batches, recipe, first_epoch=1, progress=False):
    """Train as the recipe says from first_epoch to its last epoch; after each epoch, yield its record and the
    Evaluation behind it.

    The record, a dict of slots.EpochRecord's fields, holds the epoch, the training loss and accuracy measured on the
    fly, the evaluation loss and accuracy, and the seconds the epoch took. Raises Diverged naming the epoch and step,
    or the epoch whose loss no results file may hold: the readers' own rule, so that a run is never written complete
    and then refused.
    """
    ctx = autocast(next(model.parameters()).device, recipe["amp"])
    for epoch in range(first_epoch, recipe["epochs"] + 1):
        start = time.perf_counter()
        try:
            train_loss, train_acc = train_one_epoch(model, train_batches, optimizer, scheduler, recipe, progress, ctx)
        except Diverged as e:
            raise Diverged(f"{e} of epoch {epoch}") from None
        evaluation = evaluate(model, eval_batches, ctx)
        record = slots.EpochRecord(epoch, train_loss, train_acc, evaluation.loss, evaluation.acc,
                                   time.perf_counter() - start)
        for loss, split in ((record.train_loss, "train"), (record.eval_loss, evaluated_on(recipe))):
            if not slots.is_loss(loss):
                raise Diverged(f"{split} loss became {loss:.6g} in epoch {epoch}, past the {slots.MAX_LOSS:g} "
                               f"a run's results may hold")
        yield record._asdict(), evaluation


def confusion_matrix(truth, predicted, classes=10):
    """matrix[i, j]: the images of class i predicted as j."""
    return torch.zeros(classes, classes, dtype=torch.long).index_put_((truth, predicted), torch.ones_like(truth),
                                                                      accumulate=True)


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
