"""Issue #26, items 4 and 7: a committed results file is checked against the slot it fills before the report or
the tuning draws anything from it. Each damaged or misplaced file is made in a copy of results/, never in the
committed one, and the report is pointed at the copy."""
import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest

import recipes
import runner
import slots
from conftest import check_advice
from errors import UsageError
from recipes import resolve_recipe
from scripts import tune
from scripts.report import appendices, command, committed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def copy(tmp_path, monkeypatch):
    """A copy of results/, README.md and docs/ that the report and the tuning read instead, and an empty plots/
    folder that they would draw into; returns the copy's results/ folder."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "plots").mkdir()
    for name, value in (("ROOT", tmp_path), ("RESULTS", results), ("PLOTS", tmp_path / "plots"),
                        ("PAGES", tmp_path)):
        monkeypatch.setattr(committed, name, value)
    monkeypatch.setattr(tune, "TUNING_DIR", results / "tuning")
    monkeypatch.setattr(tune, "FAST_DIR", results / "tuning" / "fast")
    caches = (committed.load, committed.correct, committed.comparison)
    for cache in caches:
        cache.cache_clear()  # runs read from the committed results/ by other tests
    yield results
    for cache in caches:
        cache.cache_clear()  # runs read from the copy


def change(path, edit):
    """Rewrite the JSON at path with edit(results) applied."""
    results = json.loads(path.read_text())
    edit(results)
    path.write_text(json.dumps(results))


def refused(copy, monkeypatch, path, *problem):
    """Run `python -m scripts.report` (make readme) on the copy: it must stop with one line naming path, each part
    of the problem, and advice that destroys nothing, having drawn and written nothing."""
    readme = (copy.parent / "README.md").read_bytes()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert command.main(command.get_args_parser().parse_args([])) == 2
    message = err.getvalue()
    assert message.startswith(f"report: error: {path} ") and message.count("\n") == 1, message
    for part in problem:
        assert part in message, message
    assert "git checkout -- " in message and "--overwrite" not in message, message
    check_advice("scripts.report.command", message.strip())
    assert (copy.parent / "README.md").read_bytes() == readme
    assert not list((copy.parent / "plots").iterdir())  # nothing drawn
    return message


def test_the_committed_results_fill_their_slots(copy, monkeypatch, capsys):
    # The copy, untouched, passes, and make readme writes the README it holds: every refusal below is the damage's.
    readme = (copy.parent / "README.md").read_bytes()
    assert command.main(command.get_args_parser().parse_args([])) == 0
    assert (copy.parent / "README.md").read_bytes() == readme
    assert {path.name for path in (copy.parent / "plots").iterdir()} >= {"confusion_matrix.png", "ablation.png"}
    assert capsys.readouterr().out.startswith("wrote ")


# ---------------------------------------------------------------- the reproductions (item 4)

def test_a_one_character_predictions_string_is_not_broadcast_over_the_labels(copy, monkeypatch):
    path = copy / "lenet5_seed1.json"
    change(path, lambda r: r.update(predictions="7"))
    refused(copy, monkeypatch, path, "predictions of 1 characters, not one digit for each of its 10,000 images")


def test_a_3000_image_run_in_the_1000_image_slot_is_refused(copy, monkeypatch):
    path = copy / "lenet5_n1000_seed0.json"
    shutil.copy(copy / "lenet5_n3000_seed0.json", path)
    refused(copy, monkeypatch, path, "another run's recipe (train_size 3000, not 1000)")


def test_an_edit_to_recipes_py_is_named_as_the_cause_and_undoing_it_is_the_way_on(copy, monkeypatch):
    import recipes
    monkeypatch.setitem(recipes.RECIPES["lenet5"], "lr", 0.05)  # an edit to recipes.py
    message = refused(copy, monkeypatch, copy / "lenet5_seed0.json", "another run's recipe (lr 0.1, not 0.05)")
    assert message.endswith("; where recipes.py was edited, undo that (`git checkout -- recipes.py`) or rerun every "
                             f"run with `make report`; else restore the file with `git checkout -- "
                             f"{copy / 'lenet5_seed0.json'}`\n")
    monkeypatch.setitem(recipes.RECIPES["lenet5"], "lr", 0.1)  # undone, as advised
    committed.load.cache_clear()
    committed.check_all()


def test_a_run_the_sweep_walks_to_only_after_an_edit_is_not_advised_restored_from_git(copy, monkeypatch):
    monkeypatch.setattr(tune, "TARGET_ACCURACY", 99.99)  # raised: the fast sweep walks past the committed runs
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert command.main(command.get_args_parser().parse_args([])) == 2
    message = err.getvalue()
    assert re.fullmatch(r"report: error: \S+/tuning/fast/\S+\.json is missing; rerun it with `make tune-fast`\n",
                        message), message
    check_advice("scripts.report.command", message.strip())


def test_a_final_accuracy_of_150_is_not_a_percentage(copy, monkeypatch):
    path = copy / "lenet5_regularized_seed0.json"
    change(path, lambda r: r["history"][-1].update(eval_acc=150))
    refused(copy, monkeypatch, path, "eval_acc of 150 in epoch 10, not a percentage")


def test_a_seed_field_of_7_in_a_seed_1_file_is_refused(copy, monkeypatch):
    path = copy / "lenet5_seed1.json"
    change(path, lambda r: r.update(seed=7))
    refused(copy, monkeypatch, path, "says seed 7, but fills seed 1's slot")


def test_a_validation_recipe_is_not_a_test_set_run(copy, monkeypatch):
    path = copy / "custom_mlp_seed2.json"
    change(path, lambda r: r["recipe"].update(validation=True))
    refused(copy, monkeypatch, path, "another run's recipe (validation True, not False)")


def test_a_tuning_file_scored_on_the_test_set_is_not_a_validation_score(copy, monkeypatch):
    path = copy / "tuning" / "lenet5_lr0.1_bs128_seed0.json"
    change(path, lambda r: r.update(evaluated_on="test"))
    refused(copy, monkeypatch, path, "was scored on 'test', but its slot is scored on the validation set",
            "make tune")
    with pytest.raises(slots.BadResults):
        tune.stored_score("lenet5", tune.SEARCH_SPACE["lenet5"]["start"], 0)


def test_a_fast_sweep_accuracy_of_1e9_chooses_nothing(copy, monkeypatch):
    path = copy / "tuning" / "fast" / "lenet5_fast_ep1_bs128_lr0.1_ls0_seed0.json"
    change(path, lambda r: r["history"][-1].update(eval_acc=1e9))
    refused(copy, monkeypatch, path, "eval_acc of 1000000000.0 in epoch 1, not a percentage", "make tune-fast")


def test_a_5000_image_limit_run_is_refused_in_one_line(copy, monkeypatch):
    path = copy / "lenet5_augment_seed0.json"
    change(path, lambda r: r.update(predictions=r["predictions"][:5000], eval_images=5000))
    refused(copy, monkeypatch, path, "scored on 5000 images, but its slot is scored on 10,000")


# ---------------------------------------------------------------- each other check (item 4)

def test_predictions_of_the_wrong_length_are_refused_whatever_eval_images_says(copy, monkeypatch):
    path = copy / "lenet5_augment_seed0.json"
    change(path, lambda r: r.update(predictions=r["predictions"][:5000]))
    refused(copy, monkeypatch, path, "predictions of 5,000 characters")


@pytest.mark.parametrize("edit, size", [(lambda p: p + p[0], "10,001"), (lambda p: p[:-1], "9,999")],
                         ids=["longer", "shorter"])
def test_predictions_one_longer_or_one_shorter_than_the_images_are_refused(copy, monkeypatch, edit, size):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(predictions=edit(r["predictions"])))
    refused(copy, monkeypatch, path, f"predictions of {size} characters, not one digit for each of its 10,000 images")


def test_eval_images_must_be_the_slots_image_count(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(eval_images=5000))
    refused(copy, monkeypatch, path, "scored on 5000 images")


@pytest.mark.parametrize("digit", ["x", "\u0663", " "])  # a letter, an Arabic-Indic three, a space
def test_predictions_hold_ascii_digits_only(copy, monkeypatch, digit):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(predictions=digit + r["predictions"][1:]))
    refused(copy, monkeypatch, path, "predictions that are not all digits 0 to 9")


def test_the_final_accuracy_must_be_the_predictions_score(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["history"][-1].update(eval_acc=r["history"][-1]["eval_acc"] - 0.01))  # one image
    refused(copy, monkeypatch, path, "but its predictions score")


def test_train_images_must_be_the_slots_training_set(copy, monkeypatch):
    path = copy / "lenet5_n1000_seed0.json"
    change(path, lambda r: r.update(train_images=3000))
    refused(copy, monkeypatch, path, "trained on 3000 images, but its slot trains on 1,000")


@pytest.mark.parametrize("status", ["interrupted", "diverged: loss became nan"])
def test_only_a_complete_run_fills_a_report_slot(copy, monkeypatch, status):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(status=status))
    refused(copy, monkeypatch, path, "is not a complete run")


def test_a_history_short_of_the_recipes_epochs_is_refused(copy, monkeypatch):
    path = copy / "lenet5_wd_seed2.json"
    change(path, lambda r: r.update(history=r["history"][1:]))
    refused(copy, monkeypatch, path, "has 9 epochs of history, but its slot's run trains 10")


def test_a_history_must_count_its_epochs_from_one(copy, monkeypatch):
    path = copy / "lenet5_wd_seed2.json"
    change(path, lambda r: r["history"][0].update(epoch=2))
    refused(copy, monkeypatch, path, "has epoch 2 where epoch 1 belongs")


@pytest.mark.parametrize("key, value", [("seconds", float("nan")), ("eval_loss", "0.1"), ("train_loss", None)])
def test_every_epoch_holds_finite_numbers(copy, monkeypatch, key, value):
    path = copy / "lenet5_regularized_bn_seed0.json"
    change(path, lambda r: r["history"][3].update({key: value}))
    refused(copy, monkeypatch, path, "has an epoch 4 without finite")


def test_losses_and_times_are_not_negative(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["history"][2].update(train_loss=-0.5))
    refused(copy, monkeypatch, path, "a loss or time in epoch 3 that is negative or past belief")


@pytest.mark.parametrize("where, value", [("seconds", 1e300), ("eval_loss", 1e200), ("train_loss", 2e4)])
def test_losses_and_times_past_belief_are_refused(copy, monkeypatch, where, value):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["history"][-1].update({where: value}))
    refused(copy, monkeypatch, path, "a loss or time in epoch 10 that is negative or past belief")


def test_a_clean_pass_loss_past_belief_is_refused(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["final_train_eval"].update(loss=1e200))
    refused(copy, monkeypatch, path, "no clean pass over the training set")


def test_a_training_accuracy_is_a_percentage_too(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["history"][0].update(train_acc=-1))
    refused(copy, monkeypatch, path, "train_acc of -1 in epoch 1, not a percentage")


def test_a_file_without_the_clean_training_pass_is_one_line_not_a_key_error(copy, monkeypatch):
    path = copy / "custom_mlp_noaug_n3000_seed1.json"  # as a same-settings main.py rerun writes it (item 2)
    change(path, lambda r: r.pop("final_train_eval"))
    refused(copy, monkeypatch, path, "no clean pass over the training set")


@pytest.mark.parametrize("edit", [lambda r: r.pop("robustness"), lambda r: r["robustness"]["rotation"].pop("30"),
                                  lambda r: r["robustness"]["shift"].update({"3": 101.0})])
def test_a_full_data_run_holds_its_robustness_sweep_in_percent(copy, monkeypatch, edit):
    path = copy / "custom_mlp_seed1.json"
    change(path, edit)
    refused(copy, monkeypatch, path, "robustness")


def test_a_file_that_is_not_a_runs_results_is_one_line(copy, monkeypatch):
    path = copy / "lenet5_seed2.json"
    path.write_text("[1, 2, 3]")
    refused(copy, monkeypatch, path, "holds a JSON list")


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_text("[" * 100_000 + "]" * 100_000), "nested too deep"),
    (lambda path: path.unlink(), "is missing"),
    (lambda path: path.write_text('{"status": "compl'), "is not JSON"),
    (lambda path: path.write_bytes(b"\xff\xfe{}"), "is not JSON"),
    (lambda path: (path.unlink(), path.mkdir()), "is not readable"),
])
def test_a_missing_or_unreadable_results_file_is_one_line(copy, monkeypatch, damage, problem):
    path = copy / "lenet5_seed0.json"
    damage(path)
    refused(copy, monkeypatch, path, problem, "make report")


def test_an_empty_report_history_is_one_line_not_an_index_error(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(history=[]))
    refused(copy, monkeypatch, path, "its history is empty")


@pytest.mark.parametrize("history", [None, {"1": {}}, "[]"])
def test_a_history_is_a_list(copy, monkeypatch, history):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(history=history))
    refused(copy, monkeypatch, path, "has no history of epochs")


@pytest.mark.parametrize("name", ["custom_mlp_noaug_n30000_seed2.json",
                                  "tuning/custom_mlp_h78_lr0.1_wd0.001_aug1_seed1.json",
                                  "tuning/fast/lenet5_fast_ep2_bs64_lr0.05_ls0.1_seed2.json"])
def test_every_file_the_report_uses_is_checked_before_any_section(copy, name):
    change(copy / name, lambda r: r["history"][-1].update(seconds=-1))
    with pytest.raises(slots.BadResults, match="negative or past belief"):
        committed.check_all()


def test_a_tuning_file_no_sweep_scores_is_named_and_neither_read_nor_counted(copy, capsys):
    # A whole run under a name outside the search space (a copy, another space's run) and a damaged stray file: the
    # README is the committed one, so its count and minutes of tuning runs are those of the sweep's own files.
    readme = (copy.parent / "README.md").read_bytes()
    strays = [copy / "tuning" / "lenet5_lr0.3_bs128_seed0.json", copy / "tuning" / "fast" / "notes.json",
              copy / "tuning" / "two\nlines.json"]
    shutil.copy(copy / "tuning" / LENET5_RUN, strays[0])
    strays[1].write_text("not a run")
    strays[2].write_text("{}")
    assert command.main(command.get_args_parser().parse_args([])) == 0
    assert (copy.parent / "README.md").read_bytes() == readme
    lines = capsys.readouterr().out.splitlines()
    for path in strays:  # each on one line, a newline in its name shown as \n
        shown = str(path).replace("\n", "\\n")
        assert (f"report: leaves out {shown}: no sweep of scripts/tune.py scores it (move it away to quiet this "
                f"line)") in lines


def test_the_readme_counts_the_sweeps_runs(copy):
    scored = len(list((copy / "tuning").glob("*.json")))  # every committed file is a run the sweeps score
    assert f"\n\n{scored} runs of 10 epochs" in appendices.section_tuning()
    assert appendices.section_tuning_fast().split("\n\n")[1].startswith(f"{len(list((copy / 'tuning' / 'fast').glob('*.json')))} runs.")


def test_a_believable_score_that_chooses_another_fast_recipe_than_recipes_py_is_refused(copy, monkeypatch, capsys):
    # Within the percentages every slot allows, three 1-epoch runs at 99.5% make the sweep choose one epoch, while
    # recipes.py's fast recipe, which the README describes, trains two.
    for seed in tune.FAST_TUNING_SEEDS:
        change(copy / "tuning" / "fast" / f"lenet5_fast_ep1_bs128_lr0.1_ls0.1_seed{seed}.json",
               lambda r: r["history"][-1].update(eval_acc=99.5))
    readme = (copy.parent / "README.md").read_bytes()
    assert command.main(command.get_args_parser().parse_args([])) == 2
    fast = copy / "tuning" / "fast"
    assert capsys.readouterr().err == (
        f"report: error: the sweep in {fast} chooses epochs 1, but recipes.py's NAMED_RECIPES[\"fast\"][\"lenet5\"] "
        f"has epochs 2; restore the committed sweep with `git checkout -- {fast}`, or, to adopt its choice, copy it "
        f"into recipes.py and rebuild the report with `make report`\n")
    assert (copy.parent / "README.md").read_bytes() == readme and not list((copy.parent / "plots").iterdir())


def test_a_default_recipe_other_than_the_sweeps_choice_is_refused(copy, monkeypatch):
    # (the report's own runs would be refused too, as runs of another recipe: check_choices alone is tried here)
    monkeypatch.setitem(recipes.RECIPES, "custom_mlp", {**recipes.RECIPES["custom_mlp"], "hidden": [72, 64]})
    with pytest.raises(UsageError, match=r'chooses hidden 75-32, but recipes.py\'s RECIPES\["custom_mlp"\] has '
                                         r"hidden 72-64; restore the committed sweep with `git checkout -- .*tuning/\*\.json`"):
        committed.check_choices()


def test_the_parameter_count_is_counted_not_taken_from_the_file(copy, monkeypatch):
    path = copy / "lenet5_seed1.json"
    params = json.loads(path.read_text())["params"]
    change(path, lambda r: r.update(params=params + 1))
    refused(copy, monkeypatch, path, f"says its model has {params + 1} parameters, but its slot's model has "
                                     f"{params:,}")


@pytest.mark.parametrize("key, value", [("device_name", "CPU | 99.99 | <!-- /report:results -->"),
                                        ("torch", "2.4\n\n# injected"), ("device", None), ("device_name", ""),
                                        ("device_name", "__bold__"), ("device_name", "x" * 201),
                                        ("device_name", "AMD _EPYC_"), ("device_name", "see https://evil.example"),
                                        ("device_name", "www.evil.example"), ("device_name", "   "),
                                        ("torch", "2.4; rm -rf /")])
def test_text_the_readme_quotes_from_a_run_is_plain(copy, monkeypatch, key, value):
    path = copy / "lenet5_regularized_seed2.json"
    change(path, lambda r: r.update({key: value}))
    refused(copy, monkeypatch, path, f"has no {key} in plain text")


# ---------------------------------------------------------------- tuning files (item 7)

LENET5_RUN = "lenet5_lr0.1_bs128_seed0.json"


@pytest.mark.parametrize("edit, problem", [
    (lambda r: r.update(history=[]), "its history is empty"),
    (lambda r: r.update(status="interrupted"), "is not a complete run"),
    (lambda r: r["recipe"].update(lr=0.2), "another run's recipe (lr 0.2, not 0.1)"),
])
def test_a_damaged_tuning_file_is_one_line_in_make_readme(copy, monkeypatch, edit, problem):
    path = copy / "tuning" / LENET5_RUN
    change(path, edit)
    refused(copy, monkeypatch, path, problem, "rerun it with `make tune`")


def test_a_diverged_tuning_run_scores_zero_and_must_have_stopped_short(copy):
    (path,) = [path for path in (copy / "tuning").glob("*.json")
               if json.loads(path.read_text())["status"].startswith("diverged")]
    run = json.loads(path.read_text())
    assert tune.tuning_path(run["model"], run["setting"], run["seed"]) == path
    assert tune.stored_score(run["model"], run["setting"], run["seed"]) == 0.0
    change(path, lambda r: r.update(history=r["history"] * 5))  # 10 epochs: it did not diverge
    with pytest.raises(slots.BadResults, match="10 epochs of history, but its slot's run diverged before epoch 10"):
        tune.stored_score(run["model"], run["setting"], run["seed"])


def tiny_recipe():
    return resolve_recipe("lenet5", {"batch_size": 32}, epochs=1, seed=0, limit=256, train_size=None,
                          validation=True, amp=False)


def train_and_score(path, recipe):
    """The tuning's trainer on one run stored at path; then the run's score as the sweep reads it."""
    tune.trainer(runner.Settings(), lambda setting, seed: recipe, lambda setting, seed: path)([({}, 0)])
    return tune.score_of(path, recipe)


@pytest.mark.parametrize("damage", [
    lambda path: path.write_text("{"),
    lambda path: change(path, lambda r: r.update(history=[])),
    lambda path: change(path, lambda r: r.update(evaluated_on="test")),
])
def test_make_tune_trains_a_damaged_run_again_instead_of_skipping_it(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    path, recipe = tmp_path / "lenet5_tiny_seed0.json", tiny_recipe()
    first = train_and_score(path, recipe)
    damage(path)
    shutil.rmtree(tmp_path / "staging")  # as on a fresh clone: the staged checkpoint is not committed
    capsys.readouterr()
    again = train_and_score(path, recipe)
    out = capsys.readouterr().out
    assert out.startswith(f"tune: {path} ") and "training it again" in out.splitlines()[0]
    assert again == first and tune.score_of(path, recipe) == first  # repaired: the same seeded run


def test_make_tune_skips_a_whole_run(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    path, recipe = tmp_path / "lenet5_tiny_seed0.json", tiny_recipe()
    first = train_and_score(path, recipe)
    stored = path.read_bytes()
    monkeypatch.setattr(runner, "train_all", lambda *a, **k: pytest.fail("trained a run that was whole"))
    assert train_and_score(path, recipe) == first
    assert path.read_bytes() == stored
