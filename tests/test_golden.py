"""Golden runs: each model's recipe, 2 epochs on the first 1,024 images with seed 0 on the CPU, must reproduce the
history committed in tests/golden/. They run in float64, so that neither the number of threads nor another CPU's
floating-point kernels move the numbers: in float32, a model trained for 8 steps is that sensitive. A change to a recipe, the optimizer, the schedule or the loop fails here, and
the files must then be rewritten on purpose:

    python -m tests.test_golden    # rewrite tests/golden/*.json from the code as it is
"""
import json
from pathlib import Path

import pytest
import torch

import dataset
import engine
from recipes import MODEL_NAMES, resolve_recipe

GOLDEN = Path(__file__).resolve().parent / "golden"
METRICS = ("train_loss", "train_acc", "eval_loss", "eval_acc")


def golden_run(model):
    """The model's recipe for 2 epochs on 1,024 training and 1,024 test images, in float64: the history, without
    seconds."""
    recipe = resolve_recipe(model, {}, epochs=2, seed=0, limit=1024, train_size=None, validation=False, amp=False)
    train_images, train_labels, test_images, test_labels = dataset.load_splits(limit=1024)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        network, batches, optimizer, scheduler = engine.setup(recipe, train_images.double(), train_labels,
                                                              torch.device("cpu"))
        records = list(engine.fit(network, optimizer, scheduler, batches,
                                  dataset.TensorLoader(test_images.double(), test_labels, 1000), recipe))
    finally:
        torch.set_default_dtype(default)
    return {"recipe": recipe, "history": [{k: record[k] for k in ("epoch", *METRICS)} for record, _ in records]}


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_a_short_run_reproduces_its_golden_history(model):
    golden = json.loads((GOLDEN / f"{model}.json").read_text())
    run = golden_run(model)
    assert run["recipe"] == golden["recipe"], "the recipe changed: rewrite the golden files on purpose"
    for got, expected in zip(run["history"], golden["history"], strict=True):
        for key in METRICS:
            assert got[key] == pytest.approx(expected[key], rel=1e-6), (got["epoch"], key)


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name in MODEL_NAMES:
        (GOLDEN / f"{name}.json").write_text(json.dumps(golden_run(name), indent=2) + "\n")
        print(f"wrote {GOLDEN / name}.json")
