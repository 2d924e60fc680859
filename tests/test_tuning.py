"""The sweep behind the recipes: its selection rule, and the recipes in the code being its choices."""
import pytest

from model import CustomMLP, count_parameters
from recipes import EPOCHS, MODEL_NAMES, NAMED_RECIPES, RECIPES
from scripts import tune
from scripts.tune import FAST_SEARCH_SPACE, FAST_TUNING_SEEDS, SEARCH_SPACE, TARGET_ACCURACY, TUNING_SEEDS


def test_the_best_mean_wins_unless_an_earlier_value_is_within_one_std_of_it():
    assert tune.choose([("a", [99.0, 99.1]), ("b", [99.4, 99.6]), ("c", [99.0, 99.0])]) == "b"
    # b's mean 99.5 less its std 0.14 is 99.36: a, listed first, is within it and wins.
    assert tune.choose([("a", [99.4, 99.35]), ("b", [99.4, 99.6])]) == "a"
    assert tune.choose([("b", [99.4, 99.6]), ("a", [99.4, 99.35])]) == "b"
    assert tune.choose([("diverges", [99.7, 0.0]), ("steady", [99.2, 99.3])]) == "steady"


def test_every_mlp_shape_in_the_search_is_within_one_percent_of_lenet5():
    for hidden in SEARCH_SPACE["custom_mlp"]["factors"]["hidden"]:
        assert abs(count_parameters(CustomMLP(hidden)) - 61_706) <= 0.01 * 61_706, hidden
        assert 1 <= len(hidden) <= 2


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_the_recipes_in_the_code_are_the_sweeps_choices(model):
    chosen, steps = tune.sweep(model, lambda setting, seed: tune.stored_score(model, setting, seed))
    assert {key: RECIPES[model][key] for key in chosen} == chosen
    assert [factor for factor, _, _ in steps] == list(SEARCH_SPACE[model]["factors"])


def test_every_tuning_run_was_scored_on_the_validation_split_at_its_final_epoch():
    runs = [tune.files.read_json(path) for path in tune.TUNING_DIR.glob("*.json")]
    assert runs
    for run in runs:
        assert run["evaluated_on"] == "validation" and run["recipe"]["validation"] is True
        assert run["recipe"]["epochs"] == EPOCHS and run["seed"] in TUNING_SEEDS
        assert run["status"] == "complete" and len(run["history"]) == EPOCHS or run["status"].startswith("diverged")


def test_the_fast_sweep_takes_the_first_schedule_whose_best_rate_reaches_the_target():
    reaching = {((2, 64), 0.05, 0.1), ((3, 128), 0.03, 0.0)}

    def score(setting, seed):
        key = ((setting["epochs"], setting["batch_size"]), setting["lr"], setting["label_smoothing"])
        return TARGET_ACCURACY + (0.1 if key in reaching else -0.2 - 0.01 * seed)
    chosen, tried = tune.fast_sweep(score)
    assert (chosen["epochs"], chosen["batch_size"], chosen["lr"], chosen["label_smoothing"]) == (2, 64, 0.05, 0.1)
    assert [schedule for schedule, _ in tried] == FAST_SEARCH_SPACE["schedules"][:5]  # nothing slower was run
    # Where no schedule reaches the target, every one is tried and the best mean of all wins.
    chosen, tried = tune.fast_sweep(lambda setting, seed: 97.0 + setting["lr"] - setting["batch_size"] / 1000)
    assert len(tried) == len(FAST_SEARCH_SPACE["schedules"])
    assert (chosen["epochs"], chosen["batch_size"], chosen["lr"]) == (1, 32, max(FAST_SEARCH_SPACE["lr"]))
    assert len(tried[0][1]) == len(FAST_SEARCH_SPACE["lr"]) * len(FAST_SEARCH_SPACE["label_smoothing"])


def test_the_fast_recipe_in_the_code_is_the_fast_sweeps_choice():
    chosen, _ = tune.fast_sweep(tune.fast_score)
    assert {key: NAMED_RECIPES["fast"]["lenet5"][key] for key in chosen} == chosen
    for path in tune.FAST_DIR.glob("*.json"):
        run = tune.files.read_json(path)
        assert run["evaluated_on"] == "validation" and run["recipe"]["validation"] is True
        assert run["seed"] in FAST_TUNING_SEEDS


def test_the_sweep_trains_each_factors_runs_through_the_runner_and_stores_them(tmp_path, monkeypatch, capsys):
    from recipes import resolve_recipe
    monkeypatch.setattr(tune, "TUNING_DIR", tmp_path / "tuning")
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    monkeypatch.setitem(tune.SEARCH_SPACE, "lenet5", dict(start=dict(tune.SEARCH_SPACE["lenet5"]["start"]),
                                                          factors=dict(lr=[0.1, 0.05])))
    monkeypatch.setattr(tune, "tuning_recipe", lambda model, setting, seed: resolve_recipe(
        model, setting, epochs=1, seed=seed, limit=256, train_size=None, validation=True, amp=False))
    assert tune.main(tune.get_args_parser().parse_args(["--model", "lenet5"])) == 0
    out = capsys.readouterr().out
    stored = sorted(path.name for path in (tmp_path / "tuning").glob("*.json"))
    assert stored == [f"lenet5_lr{lr}_seed{seed}.json" for lr in ("0.05", "0.1") for seed in TUNING_SEEDS]
    for name in stored:
        run = tune.files.read_json(tmp_path / "tuning" / name)
        assert run["status"] == "complete" and run["evaluated_on"] == "validation" and run["recipe"]["validation"]
        assert f"{name[:-5]}: validation accuracy" in out
    assert "lenet5: chosen" in out
    # Run again, it trains nothing: every run is stored.
    assert tune.main(tune.get_args_parser().parse_args(["--model", "lenet5"])) == 0
    assert "validation accuracy" not in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["-m", "scripts.tune", "--model", "lenet5"], ["-m", "scripts.report"]])
def test_output_that_cannot_be_written_is_one_line(argv):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, *argv], cwd=root, stdout=full, stderr=subprocess.PIPE, text=True,
                              timeout=300)
    assert done.returncode == 1 and "cannot write the output" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
