"""mnistlab/recipes.py: the recipes and the bounds of every setting."""
import pytest

from helpers import guards


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
