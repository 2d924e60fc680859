"""mnistlab/slots.py: a committed results file is checked against the slot it fills before the report or the tuning
draws anything from it. Each damaged or misplaced file is made in a copy of results/, never in the committed one,
and the report is pointed at the copy."""
import json
import shutil

import pytest

from helpers import LENET5_RUN, change, guards, quick_recipe, refused, tiny_recipe, train_and_score
from mnistlab import runner, slots
from mnistlab.recipes import evaluated_on
from scripts import tune
from scripts.report import appendices, command


def test_the_committed_results_fill_their_slots(copy, monkeypatch, capsys):
    # The copy, untouched, passes, and make readme writes the README it holds: every refusal below is the damage's.
    readme = (copy.parent / "README.md").read_bytes()
    assert command.main(command.get_args_parser().parse_args([])) == 0
    assert (copy.parent / "README.md").read_bytes() == readme
    assert {path.name for path in (copy.parent / "plots").iterdir()} >= {"confusion_matrix.png", "ablation.png"}
    assert capsys.readouterr().out.startswith("wrote ")


def test_a_one_character_predictions_string_is_not_broadcast_over_the_labels(copy, monkeypatch):
    path = copy / "lenet5_seed1.json"
    change(path, lambda r: r.update(predictions="7"))
    refused(copy, monkeypatch, path, "predictions of 1 characters, not one digit for each of its 10,000 images")


@guards("mnistlab/slots.py",
        "a file holds its slot's recipe",
        "        if not isinstance(held, dict) or completed(held) != completed(recipe):",
        "        if not isinstance(held, dict):")
def test_a_3000_image_run_in_the_1000_image_slot_is_refused(copy, monkeypatch):
    path = copy / "lenet5_n1000_seed0.json"
    shutil.copy(copy / "lenet5_n3000_seed0.json", path)
    refused(copy, monkeypatch, path, "another run's recipe (train_size 3000, not 1000)")


@guards("mnistlab/slots.py",
        "accuracies are percentages",
        "        if not is_percentage(record[key]):",
        "        if False:")
def test_a_final_accuracy_of_150_is_not_a_percentage(copy, monkeypatch):
    path = copy / "lenet5_regularized_seed0.json"
    change(path, lambda r: r["history"][-1].update(eval_acc=150))
    refused(copy, monkeypatch, path, "eval_acc of 150 in epoch 10, not a percentage")


@guards("mnistlab/slots.py",
        "a file says its slot's seed",
        '        if results.get("seed") != recipe["seed"] or type(results.get("seed")) is not int:',
        '        if type(results.get("seed")) is not int:')
def test_a_seed_field_of_7_in_a_seed_1_file_is_refused(copy, monkeypatch):
    path = copy / "lenet5_seed1.json"
    change(path, lambda r: r.update(seed=7))
    refused(copy, monkeypatch, path, "says seed 7, but fills seed 1's slot")


def test_a_validation_recipe_is_not_a_test_set_run(copy, monkeypatch):
    path = copy / "custom_mlp_seed2.json"
    change(path, lambda r: r["recipe"].update(validation=True))
    refused(copy, monkeypatch, path, "another run's recipe (validation True, not False)")


@guards("mnistlab/slots.py",
        "a file was scored on its slot's split",
        '        if results.get("evaluated_on") != evaluated_on(recipe):',
        "        if False:")
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


@guards("mnistlab/slots.py",
        "one prediction per image",
        "    if not isinstance(predictions, str) or len(predictions) != images:",
        "    if not isinstance(predictions, str):")
def test_predictions_of_the_wrong_length_are_refused_whatever_eval_images_says(copy, monkeypatch):
    path = copy / "lenet5_augment_seed0.json"
    change(path, lambda r: r.update(predictions=r["predictions"][:5000]))
    refused(copy, monkeypatch, path, "predictions of 5,000 characters")


@guards("mnistlab/slots.py",
        "predictions longer than the slot's images are refused",
        "len(predictions) != images:",
        "len(predictions) < images:")
@guards("mnistlab/slots.py",
        "predictions shorter than the slot's images are refused",
        "or len(predictions) != images",
        "or len(predictions) > images")
@guards("mnistlab/slots.py",
        "predictions one image off are refused",
        "str) or len(predictions) != images",
        "str) or abs(len(predictions) - images) > 1")
@pytest.mark.parametrize("edit, size", [(lambda p: p + p[0], "10,001"), (lambda p: p[:-1], "9,999")],
                         ids=["longer", "shorter"])
def test_predictions_one_longer_or_one_shorter_than_the_images_are_refused(copy, monkeypatch, edit, size):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(predictions=edit(r["predictions"])))
    refused(copy, monkeypatch, path, f"predictions of {size} characters, not one digit for each of its 10,000 images")


@guards("mnistlab/slots.py",
        "a file was scored on its slot's number of images",
        '    if results.get("eval_images") != images:',
        "    if False:")
def test_eval_images_must_be_the_slots_image_count(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(eval_images=5000))
    refused(copy, monkeypatch, path, "scored on 5000 images")


@guards("mnistlab/slots.py",
        "predictions are ASCII digits",
        "    if not (predictions.isascii() and predictions.isdigit()):",
        "    if False:")
@pytest.mark.parametrize("digit", ["x", "\u0663", " "])  # a letter, an Arabic-Indic three, a space
def test_predictions_hold_ascii_digits_only(copy, monkeypatch, digit):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(predictions=digit + r["predictions"][1:]))
    refused(copy, monkeypatch, path, "predictions that are not all digits 0 to 9")


def test_predictions_decode_to_one_class_per_digit_in_order():
    classes = slots.decode_predictions("0918273645")
    assert classes.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5] and classes.dtype.kind == "u"


@guards("mnistlab/slots.py",
        "the final accuracy is the predictions' score",
        "    if not math.isclose(accuracy, said, rel_tol=AGREEMENT):",
        "    if False:")
@guards("mnistlab/slots.py",
        "the agreement tolerance is below one image",
        "AGREEMENT = 1e-6",
        "AGREEMENT = 1e-3")
def test_the_final_accuracy_must_be_the_predictions_score(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["history"][-1].update(eval_acc=r["history"][-1]["eval_acc"] - 0.01))  # one image
    refused(copy, monkeypatch, path, "but its predictions score")


@guards("mnistlab/slots.py",
        "a file trained on its slot's number of images",
        '        if recipe.get("train_size") is not None and results.get("train_images") != recipe["train_size"]:',
        "        if False:")
def test_train_images_must_be_the_slots_training_set(copy, monkeypatch):
    path = copy / "lenet5_n1000_seed0.json"
    change(path, lambda r: r.update(train_images=3000))
    refused(copy, monkeypatch, path, "trained on 3000 images, but its slot trains on 1,000")


@guards("mnistlab/slots.py",
        "only a complete run fills a slot",
        '    if status != "complete" and not (diverged',
        "    if False and not (diverged")
@pytest.mark.parametrize("status", ["interrupted", "diverged: loss became nan"])
def test_only_a_complete_run_fills_a_report_slot(copy, monkeypatch, status):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(status=status))
    refused(copy, monkeypatch, path, "is not a complete run")


@guards("mnistlab/slots.py",
        "a complete run's history has every epoch of its recipe",
        "        if complete and len(history) != epochs or not complete",
        "        if False or not complete")
def test_a_history_short_of_the_recipes_epochs_is_refused(copy, monkeypatch):
    path = copy / "lenet5_wd_seed2.json"
    change(path, lambda r: r.update(history=r["history"][1:]))
    refused(copy, monkeypatch, path, "has 9 epochs of history, but its slot's run trains 10")


@guards("mnistlab/slots.py",
        "epochs count from one",
        '    if record["epoch"] != number:',
        "    if False:")
def test_a_history_must_count_its_epochs_from_one(copy, monkeypatch):
    path = copy / "lenet5_wd_seed2.json"
    change(path, lambda r: r["history"][0].update(epoch=2))
    refused(copy, monkeypatch, path, "has epoch 2 where epoch 1 belongs")


@guards("mnistlab/slots.py",
        "each epoch holds finite numbers",
        "    if missing:\n        raise BadRecord(BadRecord.NOT_FINITE",
        "    if False:\n        raise BadRecord(BadRecord.NOT_FINITE")
@pytest.mark.parametrize("key, value", [("seconds", float("nan")), ("eval_loss", "0.1"), ("train_loss", None)])
def test_every_epoch_holds_finite_numbers(copy, monkeypatch, key, value):
    path = copy / "lenet5_regularized_bn_seed0.json"
    change(path, lambda r: r["history"][3].update({key: value}))
    refused(copy, monkeypatch, path, "has an epoch 4 without finite")


@guards("mnistlab/slots.py",
        "losses and times are not negative",
        '    if not (is_loss(record["train_loss"]) and is_loss(record["eval_loss"]) and 0 <= seconds <= '
        "MAX_SECONDS):",
        "    if False:")
def test_losses_and_times_are_not_negative(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["history"][2].update(train_loss=-0.5))
    refused(copy, monkeypatch, path, "a loss or time in epoch 3 that is negative or past belief")


@guards("mnistlab/slots.py",
        "losses and times past belief are refused (MAX_LOSS, MAX_SECONDS)",
        "MAX_LOSS, MAX_SECONDS = 1e4, 1e7",
        "MAX_LOSS, MAX_SECONDS = 1e308, 1e308")
@pytest.mark.parametrize("where, value", [("seconds", 1e300), ("eval_loss", 1e200), ("train_loss", 2e4)])
def test_losses_and_times_past_belief_are_refused(copy, monkeypatch, where, value):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["history"][-1].update({where: value}))
    refused(copy, monkeypatch, path, "a loss or time in epoch 10 that is negative or past belief")


@guards("mnistlab/slots.py",
        "a clean pass's loss past belief is refused",
        "    return is_number(value) and 0 <= value <= MAX_LOSS",
        "    return is_number(value) and 0 <= value")
def test_a_clean_pass_loss_past_belief_is_refused(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["final_train_eval"].update(loss=1e200))
    refused(copy, monkeypatch, path, "no clean pass over the training set")


def test_a_training_accuracy_is_a_percentage_too(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r["history"][0].update(train_acc=-1))
    refused(copy, monkeypatch, path, "train_acc of -1 in epoch 1, not a percentage")


@guards("mnistlab/slots.py",
        "a report run holds its clean pass over the training set",
        '        if not isinstance(clean, dict) or not is_loss(clean.get("loss")) or not '
        'is_percentage(clean.get("acc")):',
        "        if False:")
def test_a_file_without_the_clean_training_pass_is_one_line_not_a_key_error(copy, monkeypatch):
    path = copy / "custom_mlp_noaug_n3000_seed1.json"  # as a same-settings main.py rerun writes it (item 2)
    change(path, lambda r: r.pop("final_train_eval"))
    refused(copy, monkeypatch, path, "no clean pass over the training set")


@guards("mnistlab/slots.py",
        "a report run holds its robustness sweep in percent",
        "        if not isinstance(measured, dict) or not all(is_percentage(measured.get(str(m))) for m in "
        "magnitudes):",
        "        if False:")
@pytest.mark.parametrize("edit", [lambda r: r.pop("robustness"), lambda r: r["robustness"]["rotation"].pop("30"),
                                  lambda r: r["robustness"]["shift"].update({"3": 101.0})])
def test_a_full_data_run_holds_its_robustness_sweep_in_percent(copy, monkeypatch, edit):
    path = copy / "custom_mlp_seed1.json"
    change(path, edit)
    refused(copy, monkeypatch, path, "robustness")


@guards("mnistlab/slots.py",
        "results must be a JSON object",
        "    if not isinstance(results, dict):\n        raise bad",
        "    if False:\n        raise bad")
def test_a_file_that_is_not_a_runs_results_is_one_line(copy, monkeypatch):
    path = copy / "lenet5_seed2.json"
    path.write_text("[1, 2, 3]")
    refused(copy, monkeypatch, path, "holds a JSON list")


@guards("mnistlab/slots.py",
        "a results file nested too deep is one line, not a RecursionError",
        "    except RecursionError:\n        raise BadResults(path, \"is not a run's results (JSON nested too deep "
        "to read)\", advice) from None\n",
        "")
@guards("mnistlab/slots.py",
        "an unreadable results file is one line",
        '    except OSError as e:\n        raise BadResults(path, f"is not readable',
        '    except ZeroDivisionError as e:\n        raise BadResults(path, f"is not readable')
@guards("mnistlab/slots.py",
        "a results file that is not UTF-8 is one line",
        "    except ValueError:  # bytes that are not UTF-8",
        "    except ZeroDivisionError:  # bytes that are not UTF-8")
@guards("mnistlab/slots.py",
        "a results file that is not JSON is one line",
        '    except ValueError as e:\n        raise BadResults(path, f"is not JSON',
        '    except ZeroDivisionError as e:\n        raise BadResults(path, f"is not JSON')
@guards("mnistlab/slots.py",
        "a missing results file is Missing, which a sweep makes rather than reports",
        "    except FileNotFoundError:\n        raise Missing",
        "    except ZeroDivisionError:\n        raise Missing")
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


@guards("mnistlab/slots.py",
        "a complete run's history is not empty",
        "    if complete and not history:",
        "    if False:")
def test_an_empty_report_history_is_one_line_not_an_index_error(copy, monkeypatch):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(history=[]))
    refused(copy, monkeypatch, path, "its history is empty")


@guards("mnistlab/slots.py",
        "a history is a list",
        "    if not isinstance(history, list):\n        raise bad",
        "    if False:\n        raise bad")
@pytest.mark.parametrize("history", [None, {"1": {}}, "[]"])
def test_a_history_is_a_list(copy, monkeypatch, history):
    path = copy / "lenet5_seed0.json"
    change(path, lambda r: r.update(history=history))
    refused(copy, monkeypatch, path, "has no history of epochs")


def test_the_readme_counts_the_sweeps_runs(copy):
    scored = len(list((copy / "tuning").glob("*.json")))  # every committed file is a run the sweeps score
    assert f"\n\n{scored} runs of 10 epochs" in appendices.section_tuning()
    assert appendices.section_tuning_fast().split("\n\n")[1].startswith(f"{len(list((copy / 'tuning' / 'fast').glob('*.json')))} runs.")


@guards("mnistlab/slots.py",
        "a report run's parameter count is the model's, counted afresh",
        'if results.get("params") != params or type(results.get("params")) is not int:',
        'if type(results.get("params")) is not int:')
def test_the_parameter_count_is_counted_not_taken_from_the_file(copy, monkeypatch):
    path = copy / "lenet5_seed1.json"
    params = json.loads(path.read_text())["params"]
    change(path, lambda r: r.update(params=params + 1))
    refused(copy, monkeypatch, path, f"says its model has {params + 1} parameters, but its slot's model has "
                                     f"{params:,}")


@guards("mnistlab/slots.py",
        "a report run's device, device name and torch version are plain text",
        "            if not is_plain_text(results.get(key)):",
        "            if not isinstance(results.get(key), str):")
@guards("mnistlab/slots.py",
        "plain text has an underscore only inside a word (no italics, no bold)",
        r"(?!.*(?:^|[^A-Za-z0-9])_|.*_(?:[^A-Za-z0-9]|$))",
        "")
@guards("mnistlab/slots.py",
        "plain text holds no link",
        r"(?!.*(?:://|www\.))",
        "")
@guards("mnistlab/slots.py",
        "plain text is not blank",
        r"(?=.*\S)",
        "")
@guards("mnistlab/slots.py",
        "plain text has no semicolon (a second command)",
        r"""[A-Za-z0-9 _.,:()+/@#%='\"?-]{1,200}""",
        r"""[A-Za-z0-9 _.,:;()+/@#%='\"?-]{1,200}""")
@guards("mnistlab/slots.py",
        "plain text is 1 to 200 characters",
        "]{1,200}\")",
        "]{0,2000}\")")
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


@pytest.mark.parametrize("edit, problem", [
    (lambda r: r.update(history=[]), "its history is empty"),
    (lambda r: r.update(status="interrupted"), "is not a complete run"),
    (lambda r: r["recipe"].update(lr=0.2), "another run's recipe (lr 0.2, not 0.1)"),
])
def test_a_damaged_tuning_file_is_one_line_in_make_readme(copy, monkeypatch, edit, problem):
    path = copy / "tuning" / LENET5_RUN
    change(path, edit)
    refused(copy, monkeypatch, path, problem, "rerun it with `make tune`")


@guards("mnistlab/slots.py",
        "a diverged run's history stops short of its recipe's epochs",
        " or not complete and len(history) >= epochs:",
        ":")
def test_a_diverged_tuning_run_scores_zero_and_must_have_stopped_short(copy):
    (path,) = [path for path in (copy / "tuning").glob("*.json")
               if json.loads(path.read_text())["status"].startswith("diverged")]
    run = json.loads(path.read_text())
    assert tune.tuning_path(run["model"], run["setting"], run["seed"]) == path
    assert tune.stored_score(run["model"], run["setting"], run["seed"]) == 0.0
    change(path, lambda r: r.update(history=r["history"] * 5))  # 10 epochs: it did not diverge
    with pytest.raises(slots.BadResults, match="10 epochs of history, but its slot's run diverged before epoch 10"):
        tune.stored_score(run["model"], run["setting"], run["seed"])


def test_make_tune_skips_a_whole_run(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    path, recipe = tmp_path / "lenet5_tiny_seed0.json", tiny_recipe(validation=True)
    first = train_and_score(path, recipe)
    stored = path.read_bytes()
    monkeypatch.setattr(runner, "train_and_report", lambda *a, **k: pytest.fail("trained a run that was whole"))
    assert train_and_score(path, recipe) == first
    assert path.read_bytes() == stored


def results_for(recipe, **changes):
    """Results as main.py writes them for recipe, without predictions, with changes on top."""
    history = [dict(epoch=epoch, train_loss=0.5, train_acc=90.0, eval_loss=0.5, eval_acc=90.0, seconds=1.0)
               for epoch in range(1, recipe["epochs"] + 1)]
    return {"status": "complete", "recipe": recipe, "seed": recipe["seed"], "evaluated_on": evaluated_on(recipe),
            "train_images": 512, "history": history, **changes}


@guards("mnistlab/slots.py",
        "a diverged slot takes only a run that diverged",
        'not (diverged and isinstance(status, str) and status.startswith("diverged"))',
        "not diverged")
def test_an_interrupted_run_does_not_fill_a_slot_that_takes_a_diverged_one():
    recipe = quick_recipe()
    diverged = results_for(recipe, status="diverged: loss became nan")
    diverged["history"] = diverged["history"][:1]
    assert slots.check(diverged, path="x.json", advice="train it", recipe=recipe, diverged=True) is diverged
    with pytest.raises(slots.BadResults, match=r"^x.json is not a complete run \(its status is 'interrupted'\)"):
        slots.check({**diverged, "status": "interrupted"}, path="x.json", advice="train it", recipe=recipe,
                    diverged=True)


@guards("mnistlab/slots.py",
        "a seed is an int, not a bool or float equal to it",
        ' or type(results.get("seed")) is not int:',
        ":")
def test_a_seed_of_true_does_not_fill_seed_1s_slot():
    recipe = quick_recipe(seed=1)
    assert slots.check(results_for(recipe), path="x.json", advice="train it", recipe=recipe)
    for seed in (True, 1.0):  # equal to 1 in Python, but not what main.py writes
        with pytest.raises(slots.BadResults, match=f"says seed {seed}, but fills seed 1's slot"):
            slots.check(results_for(recipe, seed=seed), path="x.json", advice="train it", recipe=recipe)
