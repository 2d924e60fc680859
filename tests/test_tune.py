"""scripts/tune.py: the validation sweeps that chose the recipes."""
import contextlib
import io
import re
import shutil

import pytest

from helpers import change, check_advice, guards, one_line, tiny_recipe, train_and_score
from mnistlab import runner
from mnistlab.errors import RunFailed, UsageError
from mnistlab.recipes import EPOCHS, MODEL_NAMES, NAMED_RECIPES, RECIPES
from model import CustomMLP, count_parameters
from scripts import tune
from scripts.report import command
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
    from mnistlab.recipes import resolve_recipe
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


@guards("scripts/tune.py",
        "an error, a signal or a lost output is one line (cli.run)",
        "    return run(\"tune\", body,",
        "    return body()\n    return run(\"tune\", body,")
def test_output_that_cannot_be_written_is_one_line():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "scripts.tune", "--model", "lenet5"], cwd=root, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 1 and "cannot write the output" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@guards("scripts/tune.py",
        "--fast with --model refused",
        "        if args.fast and args.model:\n",
        "        if False:\n")
def test_fast_and_model_together_are_refused(monkeypatch, capsys):
    monkeypatch.setattr(tune, "fast_sweep", lambda *a: pytest.fail("tuned despite the refusal"))
    assert tune.main(tune.get_args_parser().parse_args(["--fast", "--model", "lenet5"])) == 2
    assert one_line(capsys.readouterr().err) == "tune: error: --fast tunes LeNet5's fast recipe; drop --model"


@guards("scripts/tune.py",
        "--model takes only the models with a search space",
        "\"--model\", choices=MODEL_NAMES, nargs=\"+\"",
        "\"--model\", nargs=\"+\"")
def test_tune_refuses_a_model_it_has_no_search_for(capsys):
    with pytest.raises(SystemExit) as stopped:
        tune.get_args_parser().parse_args(["--model", "lenet6"])
    assert stopped.value.code == 2 and "--model: invalid choice: 'lenet6'" in one_line(capsys.readouterr().err)


@guards("scripts/tune.py",
        "a tuning run that fails other than by diverging stops the sweep",
        "            if not error.startswith(\"training diverged\"):\n",
        "            if False:\n")
def test_a_tuning_run_that_fails_stops_the_sweep_and_is_not_stored_as_diverged(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    path, recipe = tmp_path / "lenet5_tiny_seed0.json", tiny_recipe(validation=True)
    monkeypatch.setattr(runner, "train_and_report", lambda jobs, *a, **k: {job.name: "out of memory" for job in jobs})
    with pytest.raises(RunFailed, match="lenet5_tiny_seed0: out of memory"):
        tune.trainer(runner.Settings(), lambda setting, seed: recipe, lambda setting, seed: path)([({}, 0)])
    assert not path.exists()


def test_an_unwritable_tuning_staging_folder_names_no_flag_the_tuning_does_not_have(tmp_path, monkeypatch,
                                                                                    read_only_probe):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    monkeypatch.setattr(runner, "train_and_report", lambda *a, **k: pytest.fail("trained before checking the folders"))
    train = tune.trainer(runner.Settings(), lambda setting, seed: tiny_recipe(validation=True),
                         lambda setting, seed: tmp_path / "tuning" / "lenet5_x_seed0.json")
    with pytest.raises(UsageError) as refused:
        train([({}, 0)])
    assert str(refused.value).endswith("; fix its permissions") and "--out-dir" not in str(refused.value)


@guards("scripts/tune.py",
        "a tuning file never committed is not advised restored from git",
        'if path.exists() or files.tracked(path) else "")',
        'if True else "")')
def test_a_run_the_sweep_walks_to_only_after_an_edit_is_not_advised_restored_from_git(copy, monkeypatch):
    monkeypatch.setattr(tune, "TARGET_ACCURACY", 99.99)  # raised: the fast sweep walks past the committed runs
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert command.main(command.get_args_parser().parse_args([])) == 2
    message = err.getvalue()
    assert re.fullmatch(r"report: error: \S+/tuning/fast/\S+\.json is missing; rerun it with `make tune-fast`\n",
                        message), message
    check_advice("scripts.report.command", message.strip())


@guards("scripts/tune.py",
        "a damaged tuning file is trained again, not refused or skipped",
        "    except slots.BadResults as e:\n        emit(f\"tune: {e.path} {e.problem}; training it again\")\n"
        "        return None\n",
        "")
@pytest.mark.parametrize("damage", [
    lambda path: path.write_text("{"),
    lambda path: change(path, lambda r: r.update(history=[])),
    lambda path: change(path, lambda r: r.update(evaluated_on="test")),
])
def test_make_tune_trains_a_damaged_run_again_instead_of_skipping_it(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    path, recipe = tmp_path / "lenet5_tiny_seed0.json", tiny_recipe(validation=True)
    first = train_and_score(path, recipe)
    damage(path)
    shutil.rmtree(tmp_path / "staging")  # as on a fresh clone: the staged checkpoint is not committed
    capsys.readouterr()
    again = train_and_score(path, recipe)
    out = capsys.readouterr().out
    assert out.startswith(f"tune: {path} ") and "training it again" in out.splitlines()[0]
    assert again == first and tune.score_of(path, recipe) == first  # repaired: the same seeded run
