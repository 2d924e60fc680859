"""The reference the benchmarks measure us against: LeNet5 trained the plain way, as pytorch/examples' mnist does.

    python -m benchmarks.reference [--epochs 10] [--seed 0] [--device cpu] [--limit N]

datasets.MNIST + ToTensor + Normalize + DataLoader(shuffle=True), a test pass after every epoch, the same
LeNet5 (default memory format), optimizer and one-cycle schedule as our default recipe. Like main.py, it first
checks the data files' SHA-256s (extracting them where missing). It prints a line per epoch as it ends, then the
history as JSON on the last line. It draws no figures and writes no files, which only makes it faster than a
script that does. The benchmarks run it as a whole process, and import its pieces.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

import dataset
import engine
from model import LeNet5
from recipes import RECIPES


def loaders(batch_size, limit=None, **options):
    """pytorch/examples' pipeline: datasets.MNIST + ToTensor + Normalize + DataLoader, for training and test."""
    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize((dataset.MNIST_MEAN,),
                                                                                 (dataset.MNIST_STD,))])
    train_set, test_set = (datasets.MNIST(dataset.DEFAULT_DATA_DIR, train=train, transform=to_tensor)
                           for train in (True, False))
    if limit:
        train_set, test_set = Subset(train_set, range(limit)), Subset(test_set, range(limit))
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
        print(f"epoch {epoch}/{epochs}  test acc {history[-1]['eval_acc']:.2f}%  {history[-1]['seconds']:.1f}s",
              flush=True)
    return history


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10, help="epochs to train")
    parser.add_argument("--seed", type=int, default=0, help="seeds the weights and the batch order")
    parser.add_argument("--device", default="cpu", help="the device to train on")
    parser.add_argument("--limit", type=int, help="first N training and test images only (quick checks)")
    args = parser.parse_args()
    dataset.prepare_mnist()
    print(json.dumps(train(args.epochs, args.seed, torch.device(args.device), args.limit)))


if __name__ == "__main__":
    main()
