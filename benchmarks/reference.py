"""The reference the benchmarks measure us against: LeNet5 trained the plain way, as pytorch/examples' mnist does.

    python -m benchmarks.reference [--epochs 10] [--seed 0] [--device cpu] [--limit N]

datasets.MNIST + ToTensor + Normalize + DataLoader(shuffle=True), a test pass after every epoch, the same
LeNet5 (default memory format), optimizer and one-cycle schedule as our default recipe. Like main.py, it first
checks the data files' SHA-256s (extracting them where missing). It prints a line per epoch as it ends, then the
history as JSON on the last line. It draws no figures and writes no files, which only makes it faster than a
script that does. The benchmarks run it as a whole process, and import its pieces.
"""
if __name__ == "__main__":  # Ctrl-C while torch imports, below: one line, not a traceback
    from mnistlab.cli import stop_on_ctrl_c
    allow_ctrl_c = stop_on_ctrl_c("reference: interrupted while starting; nothing written")

import json
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

import dataset
from mnistlab import engine
from mnistlab.cli import OneLineErrorParser, count, emit, number, run
from mnistlab.recipes import RECIPES
from model import LeNet5

PROG = "reference"


def loaders(batch_size, limit=None, **options):
    """pytorch/examples' pipeline: datasets.MNIST + ToTensor + Normalize + DataLoader, for training and test."""
    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize((dataset.MNIST.mean,),
                                                                                 (dataset.MNIST.std,))])
    train_set, test_set = (datasets.MNIST(dataset.DEFAULT_DATA_DIR, train=train, transform=to_tensor)
                           for train in (True, False))
    if limit:
        # As main.py's --limit: the first N of each split, all 10,000 test images where N is more.
        train_set, test_set = (Subset(split, range(min(limit, len(split)))) for split in (train_set, test_set))
    return (DataLoader(train_set, batch_size=batch_size, shuffle=True, **options),
            DataLoader(test_set, batch_size=1000, **options))


def train_epoch(model, loader, optimizer, scheduler):
    device = next(model.parameters()).device
    model.train()
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        scheduler.step()


@torch.no_grad()
def evaluate(model, loader):
    """Test accuracy, %."""
    device = next(model.parameters()).device
    model.eval()
    correct = sum((model(images.to(device)).argmax(1) == labels.to(device)).sum().item() for images, labels in loader)
    return 100.0 * correct / len(loader.dataset)


def train(epochs, seed=0, device=torch.device("cpu"), limit=None):
    """Train and test, epoch by epoch; returns the history. Prints each epoch's line as it ends."""
    recipe = dict(RECIPES["lenet5"], model="lenet5")
    workers = dict(num_workers=1, pin_memory=True) if device.type == "cuda" else {}
    train_loader, test_loader = loaders(recipe["batch_size"], limit, **workers)
    torch.manual_seed(seed)
    model = LeNet5().to(device)
    optimizer, scheduler = engine.build_optimizer(model, recipe, epochs * len(train_loader))
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        train_epoch(model, train_loader, optimizer, scheduler)
        history.append({"epoch": epoch, "eval_acc": evaluate(model, test_loader),
                        "seconds": time.perf_counter() - start})
        emit(f"epoch {epoch}/{epochs}  test acc {history[-1]['eval_acc']:.2f}%  {history[-1]['seconds']:.1f}s")
    return history


def get_args_parser():
    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=count(1000), default=10, help="epochs to train, from 1 to 1000")
    parser.add_argument("--seed", type=number(int, lambda v: 0 <= v < 2**32, "from 0 to 4294967295"), default=0,
                        help="seeds the weights and the batch order")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps", "xpu"],
                        help="the device to train on")
    parser.add_argument("--limit", type=count(60_000),
                        help="first N training and test images only, from 1 to 60000 (quick checks); default: all")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)

    def body():
        device = engine.resolve_device(args.device)
        dataset.prepare()
        emit(json.dumps(train(args.epochs, args.seed, device, args.limit)))
        return 0
    return run(PROG, body, interrupted=f"{PROG}: interrupted")


if __name__ == "__main__":
    allow_ctrl_c()
    sys.exit(main())
