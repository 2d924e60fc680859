"""mnistlab/recipes.py: the recipes and the bounds of every setting."""
import pytest

from helpers import guards
from mnistlab.recipes import MODEL_NAMES, check_recipe, data_of, format_recipe, resolve_recipe, run_name


@guards("mnistlab/recipes.py",
        "a run takes at least 2 training images (a last batch of one is dropped)",
        '    "limit": Setting(int, 2, 10**9, optional=True),\n    "train_size": Setting(int, 2,',
        '    "limit": Setting(int, 1, 10**9, optional=True),\n    "train_size": Setting(int, 1,')
@guards("mnistlab/recipes.py",
        "batch norm is never given a batch of one image",
        '    if recipe.get("batch_norm") and recipe["batch_size"] < 2:',
        "    if False:")
@pytest.mark.parametrize("argv, problem", [
    (["--limit", "1"], "argument --limit: must be from 2 to"),  # one image: no batch (a last batch of one is dropped)
    (["--train-size", "1"], "argument --train-size: must be from 2 to"),
    (["--model", "lenet5_regularized", "--batch-size", "1"], "batch norm cannot normalize a batch of one image"),
])
def test_a_run_that_could_not_take_one_step_is_refused_in_one_line(argv, problem, cli, tmp_path):
    status, out, err = cli([*argv, "--epochs", "1", "--out-dir", tmp_path])
    assert status == 2 and out == "" and err.count("\n") == 1 and problem in err, err
    assert not list(tmp_path.iterdir())


@guards("mnistlab/recipes.py",
        "a run on another dataset than MNIST never takes an MNIST run's name",
        '    return "_".join([*([dataset] if dataset != "mnist" else []), model, ',
        '    return "_".join([model, ')
def test_a_run_on_another_dataset_is_named_after_it_in_front_where_no_tag_reaches():
    assert run_name("lenet5", dataset="fashion-mnist") == "fashion-mnist_lenet5_seed0"
    assert run_name("lenet5", "wd", 2, "fast", "fashion-mnist") == "fashion-mnist_lenet5_fast_wd_seed2"
    for model in MODEL_NAMES:
        assert run_name(model, "fashion-mnist").startswith(f"{model}_")  # an MNIST run's tag comes after its model


def test_an_mnist_recipe_prints_as_before_datasets_were_a_setting():
    mnist = resolve_recipe("lenet5", {}, seed=0)
    assert mnist["dataset"] == "mnist" and "dataset" not in format_recipe(mnist)
    fashion = resolve_recipe("lenet5", {}, seed=0, dataset="fashion-mnist")
    assert "validation=False, dataset=fashion-mnist, optimizer=sgd" in format_recipe({**fashion, "validation": False})
    assert data_of({"model": "lenet5"}) == "mnist"  # saved before datasets were a setting


def test_a_saved_recipe_of_an_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match=r"^its recipe's dataset is 'cifar10', not one of mnist, fashion-mnist$"):
        check_recipe({**resolve_recipe("lenet5", {}, seed=0, validation=False), "dataset": "cifar10"})
