"""Time a LeNet5 training epoch with this package's pipeline and with the plain torchvision one.

    python benchmarks/bench_pipeline.py [--repeats 2] [--batch-size 128]

Both sides train the same LeNet5 class with the same batch size, optimizer, schedule and thread count.
The reference is the pipeline of pytorch/examples' mnist: datasets.MNIST + ToTensor + Normalize +
DataLoader(shuffle=True), with the model in its default memory format. Ours keeps the normalized dataset
as one tensor, slices a randperm per epoch and trains a channels_last model. Epochs alternate between the
two sides so that drifting machine speed hits both; the figures are medians. Writes results/bench_pipeline.json.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import dataset  # noqa: E402
import main  # noqa: E402
from model import LeNet5  # noqa: E402


def reference_epoch(model, loader, optimizer, scheduler):
    model.train()
    for images, labels in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        scheduler.step()


@torch.no_grad()
def reference_evaluate(model, loader):
    model.eval()
    return sum((model(images).argmax(1) == labels).sum().item() for images, labels in loader)


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run(args):
    recipe = dict(main.RECIPES["lenet5"], model="lenet5", batch_size=args.batch_size, amp=False)
    to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize((dataset.MNIST_MEAN,),
                                                                                 (dataset.MNIST_STD,))])
    start = time.perf_counter()
    dataset.prepare_mnist()
    train_set = datasets.MNIST(dataset.DEFAULT_DATA_DIR, train=True, transform=to_tensor)
    test_set = datasets.MNIST(dataset.DEFAULT_DATA_DIR, train=False, transform=to_tensor)
    reference_train = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    reference_test = DataLoader(test_set, batch_size=1000)
    reference_setup = time.perf_counter() - start

    start = time.perf_counter()
    train_images, train_labels, test_images, test_labels = dataset.load_mnist()
    ours_train = dataset.TensorLoader(train_images, train_labels, args.batch_size, shuffle=True)
    ours_test = dataset.TensorLoader(test_images, test_labels, 1000)
    ours_setup = time.perf_counter() - start

    torch.manual_seed(0)
    reference_model = LeNet5()
    ours_model = main.build_model(recipe, torch.device("cpu"))
    ours_model.load_state_dict(reference_model.state_dict())
    steps = (args.repeats + 1) * len(ours_train)
    reference_opt = main.build_optimizer(reference_model, recipe, steps)
    ours_opt = main.build_optimizer(ours_model, recipe, steps)

    # One untimed epoch each first: allocator and oneDNN warm-up.
    reference_epoch(reference_model, reference_train, *reference_opt)
    main.train_one_epoch(ours_model, ours_train, *ours_opt)
    times = {"reference": [], "ours": [], "reference_eval": [], "ours_eval": []}
    for _ in range(args.repeats):
        times["reference"].append(timed(reference_epoch, reference_model, reference_train, *reference_opt))
        times["ours"].append(timed(main.train_one_epoch, ours_model, ours_train, *ours_opt))
        times["reference_eval"].append(timed(reference_evaluate, reference_model, reference_test))
        times["ours_eval"].append(timed(main.evaluate, ours_model, ours_test))
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        "device_name": main.describe_device(torch.device("cpu")), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "batch_size": args.batch_size, "repeats": args.repeats,
        "setup_seconds": {"reference": reference_setup, "ours": ours_setup},
        "epoch_seconds": times, "median": median,
        "train_ratio": median["ours"] / median["reference"],
        "eval_ratio": median["ours_eval"] / median["reference_eval"],
    }


def main_cli():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per side")
    parser.add_argument("--batch-size", type=int, default=main.RECIPES["lenet5"]["batch_size"],
                        help="training batch size, the same on both sides")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_pipeline.json",
                        help="where the figures go")
    args = parser.parse_args()
    result = run(args)
    m = result["median"]
    print(f"{result['device_name']}, torch {result['torch']}, batch size {args.batch_size}, "
          f"median of {args.repeats} epochs")
    print(f"{'':28s}{'reference':>12s}{'ours':>10s}{'ours/ref':>10s}")
    print(f"{'train epoch (60,000 images)':28s}{m['reference']:11.2f}s{m['ours']:9.2f}s{result['train_ratio']:10.3f}")
    print(f"{'evaluation (10,000 images)':28s}{m['reference_eval']:11.2f}s{m['ours_eval']:9.2f}s"
          f"{result['eval_ratio']:10.3f}")
    print(f"{'setup (load the data)':28s}{result['setup_seconds']['reference']:11.2f}s"
          f"{result['setup_seconds']['ours']:9.2f}s")
    verdict = "meets" if result["train_ratio"] <= 1 / 3 else "misses"
    print(f"ours takes {result['train_ratio']:.1%} of the reference's epoch time: {verdict} the 1/3 target")
    main.write_json(args.out, result)


if __name__ == "__main__":
    main_cli()
