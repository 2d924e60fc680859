"""The training engine on small synthetic tensors: no files, no CLI. Each figure is checked against a computation
done here, independently of the engine's own loops.

Golden runs: each model's recipe, 2 epochs on the first 1,024 images with seed 0 on the CPU, must reproduce the
history committed in tests/golden/. They run in float64, so that neither the number of threads nor another CPU's
floating-point kernels move the numbers: in float32, a model trained for 8 steps is that sensitive. A change to a
recipe, the optimizer, the schedule or the loop fails there, and the files must then be rewritten on purpose:

    PYTHONPATH=. python tests/test_engine.py    # rewrite tests/golden/*.json from the code as it is
"""
import copy
import json
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import dataset
from helpers import LossPastBeliefFromStep, guards, results_of, synthetic
from mnistlab import engine
from mnistlab.recipes import MODEL_NAMES, RECIPES, completed, resolve_recipe


def recipe_for(model="custom_mlp", **overrides):
    return resolve_recipe(model, overrides, epochs=3, seed=0, limit=None, train_size=None, validation=False,
                          amp=False)


def full_batch_loss_and_accuracy(model, images, labels):
    with torch.no_grad():
        logits = model(images)
    return F.cross_entropy(logits, labels).item(), 100.0 * (logits.argmax(1) == labels).double().mean().item()


def one_cycle(step, total, start, peak, end, pct_start=0.2):
    """A one-cycle curve written out: a cosine from start to peak over the first 20% of the steps, then a cosine
    from peak to end."""
    rise_end = pct_start * total - 1

    def cosine(a, b, fraction):
        return b + (a - b) / 2 * (1 + math.cos(math.pi * fraction))
    if step <= rise_end:
        return cosine(start, peak, step / rise_end)
    return cosine(peak, end, (step - rise_end) / (total - 1 - rise_end))


def expected_lr(step, total, peak):
    # From peak/25 up to the peak, then down to peak/25/1e4.
    return one_cycle(step, total, peak / 25, peak, peak / 25 / 1e4)


def expected_momentum(step, total):
    # Inverse to the learning rate: from 0.95 down to 0.85 at the peak, then back up to 0.95.
    return one_cycle(step, total, 0.95, 0.85, 0.95)


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


def test_training_lowers_the_loss_over_all_samples():
    images, labels = synthetic()
    recipe = recipe_for(augment=0.0, epochs=20)
    model, batches, optimizer, scheduler = engine.setup(recipe, images, labels, "cpu")
    before, _ = full_batch_loss_and_accuracy(model.eval(), images, labels)
    records = [r for r, _ in engine.fit(model, optimizer, scheduler, batches,
                                        dataset.TensorLoader(images, labels, 100), recipe)]
    after, _ = full_batch_loss_and_accuracy(model.eval(), images, labels)
    assert after < 0.5 * before
    assert records[-1]["train_loss"] < records[0]["train_loss"]


@pytest.mark.parametrize("model_name", ["custom_mlp", "lenet5"])
def test_training_metrics_are_weighted_by_sample_count_across_unequal_batches(model_name):
    # 300 samples in batches of 128, 128 and 44. With a vanishing learning rate the model stays as it is, so the
    # epoch's figures must equal one full-batch pass; a mean of batch means, or the last batch's loss, would not.
    images, labels = synthetic()
    recipe = recipe_for(model_name, augment=0.0, lr=1e-12, batch_size=128)
    model, batches, optimizer, scheduler = engine.setup(recipe, images, labels, "cpu")
    assert [len(y) for _, y in dataset.TensorLoader(images, labels, 128)] == [128, 128, 44]
    expected_loss, expected_acc = full_batch_loss_and_accuracy(model.train(), images, labels)
    loss, acc = engine.train_one_epoch(model, batches, optimizer, scheduler, recipe)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert acc == pytest.approx(expected_acc, abs=1e-9)
    assert 0 < acc < 100


def test_label_smoothing_shapes_the_step_but_not_the_reported_loss():
    # One full batch, plain SGD at a constant rate: the step must follow the smoothed loss written out here, the
    # reported loss must be the plain cross-entropy of the same logits.
    images, labels = synthetic(n=64)
    smoothing, lr = 0.1, 0.5
    torch.manual_seed(0)
    model = engine.build_model(recipe_for("custom_mlp"), "cpu")
    expected = copy.deepcopy(model)
    logits = expected(images)
    log_p = logits.log_softmax(1)
    smoothed = -((1 - smoothing) * log_p.gather(1, labels[:, None]).squeeze(1) + smoothing * log_p.mean(1)).mean()
    smoothed.backward()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loss, _ = engine.train_one_epoch(model, dataset.TensorLoader(images, labels, 64), optimizer, scheduler,
                                     recipe_for("custom_mlp", label_smoothing=smoothing))
    assert loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    for trained, reference in zip(model.parameters(), expected.parameters()):
        torch.testing.assert_close(trained, reference - lr * reference.grad)


def test_evaluation_is_weighted_by_sample_count_and_agrees_with_its_predictions():
    images, labels = synthetic()
    model = engine.build_model(recipe_for(), "cpu").eval()
    expected_loss, expected_acc = full_batch_loss_and_accuracy(model, images, labels)
    result = engine.evaluate(model, dataset.TensorLoader(images, labels, 128))
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)
    assert result.acc == pytest.approx(expected_acc, abs=1e-9)
    with torch.no_grad():
        assert torch.equal(result.predictions, model(images).argmax(1))
    assert result.acc == pytest.approx(100.0 * (result.predictions == labels).double().mean().item())


def test_divergence_names_the_epoch_and_the_first_bad_step():
    class NanFromStep(torch.nn.Module):
        def __init__(self, model, bad_step):
            super().__init__()
            self.model, self.steps, self.bad_step = model, 0, bad_step

        def forward(self, x):
            self.steps += self.training
            return self.model(x) * (float("nan") if self.steps >= self.bad_step else 1.0)

    images, labels = synthetic()
    recipe = recipe_for(augment=0.0)
    model, batches, optimizer, scheduler = engine.setup(recipe, images, labels, "cpu")
    assert len(batches) == 3
    # Step 5 of the run is step 2 of epoch 2.
    epochs = engine.fit(NanFromStep(model, 5), optimizer, scheduler, batches,
                        dataset.TensorLoader(images, labels, 100), recipe)
    next(epochs)
    with pytest.raises(engine.Diverged, match=r"^loss became nan at step 2/3 of epoch 2$"):
        next(epochs)


@pytest.mark.parametrize("model_name", list(RECIPES))
def test_learning_rate_and_momentum_follow_the_recipes_schedule_step_by_step(model_name):
    images, labels = synthetic(n=1280)
    recipe = recipe_for(model_name, epochs=2)
    model, batches, optimizer, scheduler = engine.setup(recipe, images, labels, "cpu")
    group = optimizer.param_groups[0]
    assert recipe["optimizer"] == "sgd" and group["nesterov"] and group["weight_decay"] == recipe["weight_decay"]
    used = []
    optimizer.register_step_pre_hook(lambda *_: used.append((group["lr"], group["momentum"])))
    for _ in range(recipe["epochs"]):
        engine.train_one_epoch(model, batches, optimizer, scheduler, recipe)
    total = recipe["epochs"] * len(batches)
    assert len(used) == total == 20
    for i, (lr, momentum) in enumerate(used):
        assert lr == pytest.approx(expected_lr(i, total, recipe["lr"]), rel=1e-9), f"step {i}"
        assert momentum == pytest.approx(expected_momentum(i, total), rel=1e-9), f"step {i}"
    lrs = [lr for lr, _ in used]
    assert max(lrs) == pytest.approx(recipe["lr"]) and lrs.index(max(lrs)) == round(0.2 * total) - 1


def test_nesterov_momentum_carries_each_step_into_the_next():
    # One parameter with gradient 2 throughout, and the update written out with the schedule's own values at each
    # step: v = m v + g; p -= lr (g + m v).
    recipe = recipe_for(augment=0.0, weight_decay=0.0)
    model = torch.nn.Linear(1, 1, bias=False)
    total = 10
    optimizer, scheduler = engine.build_optimizer(model, recipe, steps=total)
    weight, velocity = model.weight.item(), 0.0
    for step in range(total):
        optimizer.zero_grad()
        (model.weight.sum() * 2.0).backward()
        optimizer.step()
        scheduler.step()
        lr, momentum = expected_lr(step, total, recipe["lr"]), expected_momentum(step, total)
        velocity = momentum * velocity + 2.0
        weight -= lr * (2.0 + momentum * velocity)
        assert model.weight.item() == pytest.approx(weight, rel=1e-5), f"step {step}"


def test_a_train_size_subset_gets_the_full_sets_number_of_steps():
    images, labels = synthetic(n=1000)
    recipe = recipe_for(train_size=100)
    batches = engine.training_batches(recipe, images, labels)
    assert len(batches.images) == 100
    assert len(batches) == len(dataset.TensorLoader(images, labels, recipe["batch_size"], shuffle=True)) == 8
    assert sum(len(y) for _, y in batches) == 1000


def test_the_confusion_matrix_counts_each_pair():
    truth, predicted = torch.tensor([0, 0, 1, 2, 2, 2]), torch.tensor([0, 1, 1, 2, 0, 2])
    matrix = engine.confusion_matrix(truth, predicted, classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


@guards("mnistlab/engine.py",
        "an epoch's loss past the readers' bound is a divergence, not a complete run",
        "            if not slots.is_loss(loss):",
        "            if False:")
@guards("mnistlab/engine.py",
        "the evaluation's loss is held to the bound too",
        '        for loss, split in ((record.train_loss, "train"), (record.eval_loss, evaluated_on(recipe))):',
        '        for loss, split in ((record.train_loss, "train"),):')
# From step 4, step 1 of epoch 2, in training; in the first evaluation, after epoch 1.
@pytest.mark.parametrize("when, split, bad_step, epoch", [("train", "train", 4, 2), ("eval", "test", 1, 1)])
def test_a_finite_loss_past_what_results_may_hold_is_a_divergence(when, split, bad_step, epoch):
    images, labels = synthetic()
    recipe = recipe_for(augment=0.0)
    model, batches, optimizer, scheduler = engine.setup(recipe, images, labels, "cpu")
    wrapped = LossPastBeliefFromStep(model, bad_step, when)
    epochs = engine.fit(wrapped, optimizer, scheduler, batches, dataset.TensorLoader(images, labels, 100), recipe)
    if epoch == 2:
        next(epochs)
    with pytest.raises(engine.Diverged) as diverged:
        next(epochs)
    loss = float(re.fullmatch(rf"{split} loss became (\S+) in epoch {epoch}, past the 10000 a run's results may "
                              rf"hold", str(diverged.value)).group(1))
    assert loss > 1e5  # about 1e6 times the share of images not of class 0


@guards("mnistlab/engine.py",
        "training holds a run to the readers' own bound, not a copy of it",
        "            if not slots.is_loss(loss):\n                raise Diverged(",
        "            if not 0 <= loss <= 1e4:\n                raise Diverged(")
def test_training_stops_a_run_by_the_readers_own_bound(monkeypatch):
    # One rule for writer and readers: lower slots' bound, and an ordinary epoch (a loss near 2.3) is past it.
    from mnistlab import slots
    monkeypatch.setattr(slots, "MAX_LOSS", 1.0)
    images, labels = synthetic()
    recipe = recipe_for(augment=0.0)
    model, batches, optimizer, scheduler = engine.setup(recipe, images, labels, "cpu")
    with pytest.raises(engine.Diverged, match=r"^train loss became \S+ in epoch 1, past the 1 a run's results"):
        next(engine.fit(model, optimizer, scheduler, batches, dataset.TensorLoader(images, labels, 100), recipe))


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_a_short_run_reproduces_its_golden_history(model):
    golden = json.loads((GOLDEN / f"{model}.json").read_text())
    run = golden_run(model)
    # completed(): the golden files predate the settings added since, which their runs trained with.
    assert run["recipe"] == completed(golden["recipe"]), "the recipe changed: rewrite the golden files on purpose"
    for got, expected in zip(run["history"], golden["history"], strict=True):
        for key in METRICS:
            assert got[key] == pytest.approx(expected[key], rel=1e-6), (got["epoch"], key)


def test_batch_norm_trains_when_the_last_batch_would_hold_one_image(tmp_path, cli):
    status, _, err = cli(["--model", "lenet5_regularized", "--limit", "513", "--epochs", "1", "--device", "cpu",
                          "--out-dir", tmp_path])
    assert status == 0, err
    assert results_of(tmp_path, "lenet5_regularized_seed0")["train_images"] == 513


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for name in MODEL_NAMES:
        (GOLDEN / f"{name}.json").write_text(json.dumps(golden_run(name), indent=2) + "\n")
        print(f"wrote {GOLDEN / name}.json")


@guards("mnistlab/engine.py",
        "augmentation fills in with the blank of the run's own dataset",
        "epoch_size=epoch_size, background=dataset.DATASETS[data_of(recipe)].background)",
        "epoch_size=epoch_size)")
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_augmentation_fills_in_with_the_blank_of_the_runs_own_dataset(name):
    data = dataset.DATASETS[name]
    blank = torch.full((64, 1, 28, 28), (0 - data.mean) / data.std)  # black pixels, normalized as loading does
    recipe = resolve_recipe("lenet5", {"augment": 2.0}, seed=0, dataset=name)
    images, _ = next(iter(engine.training_batches(recipe, blank, torch.zeros(64, dtype=torch.long))))
    assert torch.allclose(images, blank, atol=1e-5)
