"""mnistlab/runs.py: what a run does with the run already on disk (refuse, resume, replace), and the files it writes."""
import errno
import json
import re
import shutil

import pytest
import torch

from helpers import (ONE_EPOCH, QUICK, RUN, assert_one_line_error, assert_rejected, checkpoint_of, guards,
                     interrupt_epoch, outputs_of, results_of, without_seconds)
from mnistlab import checkpoints, engine, files, runs


def with_measurements_and_no_checkpoint(finished, tmp_path):
    """A copy of the finished run as the report commits its runs: results with measurements, no checkpoint."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (tmp_path / "results" / f"{RUN}.json").write_text(json.dumps(
        {**results_of(tmp_path), "final_train_eval": {"acc": 99.1}, "robustness": {"rotation": [98.0]}}))
    (tmp_path / "checkpoints" / f"{RUN}.pt").unlink()
    return (tmp_path / "results" / f"{RUN}.json").read_bytes()


@guards("mnistlab/runs.py",
        "a --validation run is compared with a test-set run in every setting, validation too",
        "    return [key for key in RECIPE_KEYS if saved.get(key) != recipe.get(key)]",
        '    return [key for key in RECIPE_KEYS if key != "validation" and saved.get(key) != recipe.get(key)]')
@pytest.mark.parametrize("extra, message", [
    ([], f"already holds a finished {RUN} with no --validation, where this run has --validation"),
    (["--resume"], f"--resume: {{out}}/checkpoints/{RUN}.pt was trained with no --validation; resume with the same "
                   f"settings"),
])
def test_a_validation_run_never_replaces_or_resumes_a_test_set_run(extra, message, finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    status, out, err = cli(["--model", "lenet5", "--limit", "512", "--epochs", "2", "--device", "cpu",
                            "--validation", "--out-dir", tmp_path, *extra])
    assert_one_line_error(err, status, 2, message.format(out=tmp_path))
    assert out == "" and outputs_of(tmp_path) == before


@guards("mnistlab/runs.py",
        "a damaged checkpoint is replaced only with --overwrite",
        '(DAMAGED, None):                   ("damaged",',
        '(DAMAGED, None):                   ("fresh",')
def test_a_damaged_checkpoint_is_replaced_only_with_overwrite(tmp_path, cli):
    path = tmp_path / "checkpoints" / f"{RUN}.pt"
    path.parent.mkdir()
    path.write_bytes(b"half a checkpoint")
    status, out, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"{path} is not a readable checkpoint; pass --overwrite to replace it")
    assert out == "" and path.read_bytes() == b"half a checkpoint"
    assert not (tmp_path / "results").exists()
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--overwrite"])[0] == 0


@guards("mnistlab/runs.py",
        "--model all --resume refuses a run of the same name with other settings",
        '(FINISHED, OTHER_SETTINGS):        ("finished apart", "other settings",    "same name")',
        '(FINISHED, OTHER_SETTINGS):        ("finished apart", "other settings",    "other settings")')
def test_model_all_resume_refuses_a_run_of_the_same_name_with_other_settings(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    status, out, err = cli(["--model", "all", *QUICK, "--epochs", "1", "--resume", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"{tmp_path}/checkpoints/{RUN}.pt holds a run with --epochs 2, where this "
                                          f"one has --epochs 1; pass --tag NAME to keep both, or another --out-dir")
    assert out == "" and outputs_of(tmp_path) == before


@guards("mnistlab/runs.py",
        "--resume of a finished run is refused (nothing to resume)",
        '"nothing to resume", "done")',
        '"resume", "done")')
def test_resume_of_a_finished_run_is_refused_and_leaves_its_files(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "results" / f"{RUN}.json"
    path.write_text(json.dumps({**results_of(tmp_path), "robustness": {"rotation": {"30": 50.0}}}))
    before = outputs_of(tmp_path)
    status, out, err = cli(["--model", "lenet5", *QUICK, "--resume", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"--resume: {tmp_path}/checkpoints/{RUN}.pt has finished all 2 epochs and "
                                          f"its results are written; nothing to resume")
    assert out == "" and outputs_of(tmp_path) == before


@guards("mnistlab/runs.py",
        "a run counts as finished only with a history of every epoch",
        '            and len(results["history"]) == checkpoint["epoch"])',
        ")")
def test_results_with_a_short_history_do_not_finish_a_run(finished, tmp_path, cli):
    # The checkpoint holds 2 epochs; results that hold 1 are not the run's: --resume writes them again.
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    results = results_of(tmp_path)
    (tmp_path / "results" / f"{RUN}.json").write_text(json.dumps({**results, "history": results["history"][:1]}))
    status, out, _ = cli(["--model", "lenet5", *QUICK, "--resume", "--out-dir", tmp_path])
    assert status == 0 and "resuming from" in out
    assert results_of(tmp_path)["history"] == results["history"]


@guards("mnistlab/runs.py",
        "a failed write of the results does not hide the error in flight",
        "            except files.WriteError:\n                pass",
        "            except ZeroDivisionError:\n                pass")
def test_a_failed_results_write_does_not_hide_the_first_error(tmp_path, cli, monkeypatch):
    # The disk fills up: the second epoch's checkpoint fails first, then the results written on the way out.
    real, calls = checkpoints.save, []

    def save_checkpoint(path, checkpoint):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, checkpoint)

    def write_json(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoints, "save", save_checkpoint)
    monkeypatch.setattr(files, "write_json", write_json)
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 1, f"cannot write {tmp_path}/checkpoints/{RUN}.pt (No space left on device); "
                                          f"free some space, then rerun with --resume")


@guards("mnistlab/runs.py",
        "a second Ctrl-C while the results are written keeps the checkpoint and says so",
        "            except KeyboardInterrupt as again:\n                raise Interrupted(len(history), again, "
        "results_written=False) from None\n",
        "")
def test_a_second_ctrl_c_while_the_results_are_written_says_the_checkpoint_is_kept(tmp_path, cli, monkeypatch):
    interrupt_epoch(monkeypatch, 2)

    def write_json(path, obj):
        raise KeyboardInterrupt  # the second Ctrl-C, while the results of the first epoch are written
    monkeypatch.setattr(files, "write_json", write_json)
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert status == 130 and "Traceback" not in err, err
    assert ("interrupted after epoch 1; its results could not be written, but the checkpoint of the last full epoch "
            "is kept.") in err, err
    assert err.splitlines()[-1].startswith("resume with: ") and err.splitlines()[-1].endswith("--resume")
    assert torch.load(tmp_path / "checkpoints" / f"{RUN}.pt", weights_only=True)["epoch"] == 1


@guards("mnistlab/runs.py",
        "Ctrl-C on a full disk does not claim the results saved",
        "raise Interrupted(len(history), e, results_written=written) from None",
        "raise Interrupted(len(history), e) from None")
def test_ctrl_c_with_a_failed_results_write_does_not_claim_the_results_saved(tmp_path, cli, monkeypatch):
    # Ctrl-C in the second epoch, on a full disk: the results of the first cannot be written.
    interrupt_epoch(monkeypatch, 2)

    def write_json(path, obj):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files, "write_json", write_json)
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert status == 130 and "Traceback" not in err, err
    assert "results and curves so far are saved" not in err, err
    assert ("interrupted after epoch 1; its results could not be written, but the checkpoint of the last full epoch "
            "is kept.") in err, err
    assert not (tmp_path / "results" / f"{RUN}.json").exists()
    assert torch.load(tmp_path / "checkpoints" / f"{RUN}.pt", weights_only=True)["epoch"] == 1


@guards("mnistlab/runs.py",
        "a diverged run keeps the epochs before it",
        '    except engine.Diverged as e:\n        write_results("diverged")',
        '    except engine.Diverged as e:\n        pass')
def test_divergence_keeps_the_epochs_before_it(tmp_path, cli, monkeypatch):
    class NanOnSixthTrainingStep(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.steps = model, 0

        def forward(self, x):
            self.steps += self.training
            return self.model(x) * (float("nan") if self.steps >= 6 else 1.0)

    build_model = engine.build_model
    monkeypatch.setattr(engine, "build_model", lambda *args: NanOnSixthTrainingStep(build_model(*args)))
    status, _, err = cli(["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path])
    assert status == 1 and err.count("\n") == 1
    assert err.endswith("error: training diverged: loss became nan at step 2/4 of epoch 2; lower --lr (it was 0.1)\n")
    results = results_of(tmp_path, "lenet5_seed0")
    assert results["status"] == "diverged" and len(results["history"]) == 1


@guards("mnistlab/runs.py",
        "a run that diverges in its first epoch writes results that say so",
        '        write_results("diverged")\n        raise engine.Diverged(',
        '        if history:\n            write_results("diverged")\n        raise engine.Diverged(')
def test_a_loss_past_what_results_may_hold_fails_the_run_and_its_results_say_diverged(tmp_path, cli, monkeypatch):
    from helpers import LossPastBeliefFromStep
    from mnistlab import slots
    from mnistlab.recipes import resolve_recipe
    build_model = engine.build_model
    monkeypatch.setattr(engine, "build_model", lambda *args: LossPastBeliefFromStep(build_model(*args)))
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert status == 1 and err.count("\n") == 1, err
    assert re.search(r"error: training diverged: train loss became \S+ in epoch 1, past the 10000 a run's results "
                     r"may hold; lower --lr \(it was 0.1\)\n$", err), err
    # Results even with no epoch to keep, that the readers take as a diverged run: a sweep does not train it again.
    results = results_of(tmp_path, "lenet5_seed0")
    assert results["status"] == "diverged" and results["history"] == []
    recipe = resolve_recipe("lenet5", {"epochs": 2}, seed=0, limit=512, train_size=None, validation=False, amp=False)
    assert slots.check(results, path="x.json", advice="train it", recipe=recipe, diverged=True) is results
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.pt"))  # no epoch: no curves, no weights


@guards("mnistlab/runs.py",
        "--resume without a checkpoint is refused",
        '(NOTHING, None):                   ("fresh",          "no checkpoint",',
        '(NOTHING, None):                   ("fresh",          "fresh",')
def test_resume_without_a_checkpoint_is_rejected(tmp_path, cli):
    # Small, so that without the refusal the run it would train ends at once, and fails the test, red not hung.
    assert_rejected(["--resume", *ONE_EPOCH, "--out-dir", tmp_path], tmp_path, cli, "--resume: no checkpoint at")


@guards("mnistlab/runs.py",
        "--resume of a finished run whose checkpoint is gone says so, not run without --resume",
        '(CHECKPOINT_GONE, SAME):           ("finished",       "checkpoint gone",',
        '(CHECKPOINT_GONE, SAME):           ("finished",       "no checkpoint",')
def test_resume_of_a_finished_run_whose_checkpoint_is_gone_says_so_and_the_advice_trains_beside_it(tmp_path, cli):
    argv = ["--model", "lenet5", *QUICK, "--epochs", "1", "--out-dir", tmp_path]
    assert cli(argv)[0] == 0
    (tmp_path / "checkpoints" / "lenet5_seed0.pt").unlink()  # as in the repository, which commits no checkpoints
    status, _, err = cli([*argv, "--resume"])
    assert status == 2 and err == (f"main.py: error: --resume: {tmp_path / 'results' / 'lenet5_seed0.json'} holds a "
                                   f"finished run, whose checkpoint is gone: nothing to resume; drop --resume and pass "
                                   f"--tag NAME or another --out-dir to train it again beside it\n")
    assert cli([*argv, "--tag", "again"])[0] == 0  # as advised
    assert (tmp_path / "checkpoints" / "lenet5_again_seed0.pt").exists()


@guards("mnistlab/runs.py",
        "--resume refuses another model's checkpoint",
        '(UNFINISHED, OTHER_MODEL):         ("unfinished",     "other model",',
        '(UNFINISHED, OTHER_MODEL):         ("unfinished",     "other settings",')
def test_resume_from_another_models_checkpoint_is_rejected(tmp_path, cli):
    assert cli(["--model", "lenet5", *QUICK, "--epochs", "1", "--out-dir", tmp_path])[0] == 0
    (tmp_path / "checkpoints" / "lenet5_seed0.pt").rename(tmp_path / "checkpoints" / "custom_mlp_seed0.pt")
    assert_rejected(["--model", "custom_mlp", *QUICK, "--resume", "--out-dir", tmp_path], tmp_path, cli,
                    "holds a lenet5 checkpoint, not custom_mlp; pass --model lenet5")


@guards("mnistlab/runs.py",
        "--resume refuses other settings",
        '("finished apart", "other settings",',
        '("finished apart", "nothing to resume",')
def test_resume_with_other_settings_is_rejected(tmp_path, cli):
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])[0] == 0
    assert_rejected(["--model", "lenet5", *QUICK, "--epochs", "5", "--lr", "0.2", "--resume", "--out-dir", tmp_path],
                    tmp_path, cli, "was trained with --epochs 2 --lr 0.1; resume with the same settings")


@guards("mnistlab/runs.py",
        "an unfinished run is not replaced without --resume or --overwrite",
        '(UNFINISHED, SAME):                ("unfinished",',
        '(UNFINISHED, SAME):                ("fresh",')
def test_a_fresh_run_refuses_to_replace_an_unfinished_one(tmp_path, cli, monkeypatch):
    argv = ["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path]
    restore = interrupt_epoch(monkeypatch, 2)
    assert cli(argv)[0] == 130
    restore()
    saved = (tmp_path / "checkpoints" / f"{RUN}.pt").read_bytes()
    status, _, err = cli(argv)
    assert_one_line_error(err, status, 2, "holds an unfinished run (epoch 1 of 3); add --resume to continue it, "
                                          "or --overwrite to start over")
    assert (tmp_path / "checkpoints" / f"{RUN}.pt").read_bytes() == saved
    status, out, _ = cli([*argv, "--overwrite"])
    assert status == 0 and out.count("epoch ") == 3
    assert cli(argv)[0] == 2  # a finished run is not run again without --overwrite


@guards("mnistlab/runs.py",
        "a finished run with other settings is not replaced",
        '(FINISHED, OTHER_SETTINGS):        ("finished apart",',
        '(FINISHED, OTHER_SETTINGS):        ("fresh",')
@pytest.mark.parametrize("change, differs", [
    (["--lr", "0.05"], "with --lr 0.1, where this run has --lr 0.05"),
    (["--epochs", "1"], "with --epochs 2, where this run has --epochs 1"),
    (["--limit", "256"], "with --limit 512, where this run has --limit 256"),
    (["--train-size", "100"], "with no --train-size, where this run has --train-size 100"),
    (["--augment"], "with --augment 0.0, where this run has --augment 1.0"),
    (["--label-smoothing", "0.1"], "with --label-smoothing 0.0, where this run has --label-smoothing 0.1"),
])
def test_a_finished_run_is_not_replaced_by_one_with_other_settings(change, differs, finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    status, out, err = cli(["--model", "lenet5", *QUICK, *change, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"already holds a finished {RUN} {differs}; pass --tag NAME to keep both, "
                                          "or --overwrite to replace it")
    assert out == "" and outputs_of(tmp_path) == before


def test_the_advice_to_a_run_with_other_settings_keeps_both_or_replaces_the_finished_one(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    status, out, _ = cli(["--model", "lenet5", *QUICK, "--lr", "0.05", "--out-dir", tmp_path, "--tag", "other"])
    assert status == 0 and outputs_of(tmp_path) == before  # the tagged run has files of its own
    status, _, _ = cli(["--model", "lenet5", *QUICK, "--lr", "0.05", "--out-dir", tmp_path, "--overwrite"])
    assert status == 0 and results_of(tmp_path)["recipe"] != json.loads(before[f"{RUN}.json"])["recipe"]


@guards("mnistlab/runs.py",
        "a finished run's results guard it where its checkpoint is gone",
        'saved = held.get("recipe") if isinstance(held, dict) and held.get("status") == "complete" else None',
        "saved = None")
def test_results_without_their_checkpoint_are_not_replaced_either(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (tmp_path / "checkpoints" / f"{RUN}.pt").unlink()
    results = (tmp_path / "results" / f"{RUN}.json").read_bytes()
    status, _, err = cli(["--model", "lenet5", *QUICK, "--lr", "0.05", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "with --lr 0.1, where this run has --lr 0.05")
    assert (tmp_path / "results" / f"{RUN}.json").read_bytes() == results


def test_results_whose_history_is_not_a_list_are_rewritten_by_resume(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "results" / f"{RUN}.json"
    path.write_text(json.dumps({**results_of(tmp_path), "history": 5}))
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "holds an unfinished run (epoch 2 of 2); add --resume to continue it")
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--resume"])[0] == 0
    assert len(results_of(tmp_path)["history"]) == 2


def test_the_same_run_twice_needs_overwrite_and_reproduces_the_first(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    first = results_of(tmp_path)
    status, out, _ = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--overwrite"])
    assert status == 0 and out.count("epoch ") == 2
    again = results_of(tmp_path)
    assert without_seconds(again["history"]) == without_seconds(first["history"])
    assert again["predictions"] == first["predictions"]


@guards("mnistlab/runs.py",
        "no plan trains over the report's measurements, --overwrite or not",
        '    if extra and decision.action != "done":',
        "    if False:")
@guards("mnistlab/runs.py",
        "no --overwrite advice where it would strip measurements",
        'overwrite="" if extra else ", or --overwrite to replace it"',
        'overwrite=", or --overwrite to replace it"')
@guards("mnistlab/runs.py",
        "a finished run with the same settings is not rerun (its results would be stripped)",
        '(FINISHED, SAME):                  ("finished",',
        '(FINISHED, SAME):                  ("fresh",')
@pytest.mark.parametrize("checkpoint", ["kept", "deleted"])
def test_a_rerun_never_strips_a_finished_runs_results(checkpoint, finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (tmp_path / "results" / f"{RUN}.json").write_text(json.dumps(
        {**results_of(tmp_path), "final_train_eval": {"acc": 99.1}, "robustness": {"rotation": [98.0]}}))
    if checkpoint == "deleted":
        (tmp_path / "checkpoints" / f"{RUN}.pt").unlink()
    before = outputs_of(tmp_path) if checkpoint == "kept" else (tmp_path / "results" / f"{RUN}.json").read_bytes()
    status, out, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"already holds a finished {RUN} with the same settings; pass --tag NAME "
                                          f"or another --out-dir to train it again beside it\n")
    assert out == "" and "--overwrite" not in err
    assert (outputs_of(tmp_path) if checkpoint == "kept" else (tmp_path / "results" / f"{RUN}.json").read_bytes()) \
        == before
    # Not even --overwrite strips them (`main.py --overwrite --out-dir .` over the report's runs).
    status, out, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--overwrite"])
    assert_one_line_error(err, status, 2, f"{tmp_path}/results/{RUN}.json holds measurements that this run does not "
                                          f"make ('final_train_eval', 'robustness'), which training it would throw "
                                          f"away; pass --tag NAME or another --out-dir to train beside it\n")
    assert out == ""
    assert (outputs_of(tmp_path) if checkpoint == "kept" else (tmp_path / "results" / f"{RUN}.json").read_bytes()) \
        == before


@guards("mnistlab/runs.py",
        "a finished run whose checkpoint is gone is skipped by --resume and sweeps, not trained afresh",
        '"checkpoint gone",   "done")',
        '"checkpoint gone",   "fresh")')
def test_model_all_resume_skips_a_finished_run_whose_checkpoint_is_gone(finished, tmp_path, cli):
    # `main.py --model all --resume --out-dir .`: the report commits results, not checkpoints.
    kept = with_measurements_and_no_checkpoint(finished, tmp_path)
    status, out, _ = cli(["--model", "all", *QUICK, "--out-dir", tmp_path, "--resume"])
    assert status == 0 and f"lenet5: finished already, in {tmp_path}/results/{RUN}.json" in out
    assert (tmp_path / "results" / f"{RUN}.json").read_bytes() == kept


@guards("mnistlab/runs.py",
        "such a run with other settings is refused, not skipped as if it were this one",
        '"same name, finished")',
        '"done")')
def test_model_all_resume_with_other_settings_never_trains_over_a_finished_run(finished, tmp_path, cli):
    kept = with_measurements_and_no_checkpoint(finished, tmp_path)
    status, out, err = cli(["--model", "all", *QUICK[:-2], "--epochs", "1", "--out-dir", tmp_path, "--resume"])
    assert_one_line_error(err, status, 2, f"{tmp_path}/results/{RUN}.json holds a finished run with --epochs 2, "
                                          f"where this one has --epochs 1; pass --tag NAME to keep both, or another "
                                          f"--out-dir\n")
    assert out == "" and (tmp_path / "results" / f"{RUN}.json").read_bytes() == kept
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # no model of the three trained


def test_a_run_writes_exactly_the_keys_that_overwrite_may_replace(finished):
    # RESULT_KEYS is what --overwrite may throw away; a key train_run writes but RESULT_KEYS misses would make every
    # finished run look as if it held the report's measurements, and a key listed but never written would let
    # --overwrite strip one.
    assert set(results_of(finished)) == set(runs.RESULT_KEYS)


def test_model_all_offers_resume_to_skip_a_finished_run(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    status, _, err = cli(["--model", "all", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"finished {RUN} with the same settings; pass --resume to skip it, ")


def test_ctrl_c_in_a_rerun_keeps_the_finished_model(finished, tmp_path, cli, monkeypatch, capsys):
    import predict
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    interrupt_epoch(monkeypatch, 2)
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert status == 2 and outputs_of(tmp_path) == before, err
    # With --overwrite the finished run is given up, as asked; predict.py then says why it reads another one.
    shutil.copy(tmp_path / "checkpoints" / f"{RUN}.pt", tmp_path / "checkpoints" / "lenet5_kept_seed0.pt")
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--overwrite"])[0] == 130
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path)
    predict.load(predict.get_args_parser().parse_args(["--model", "lenet5", "x.png"]))
    err = capsys.readouterr().err
    assert (f"predict.py: skipped {tmp_path}/checkpoints/{RUN}.pt, which holds an unfinished run (epoch 1 of 2), "
            f"which main.py --resume finishes\n") in err
    assert f"reading with lenet5 from {tmp_path}/checkpoints/lenet5_kept_seed0.pt" in err


def test_model_all_refuses_before_training_any_model(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    status, out, err = cli(["--model", "all", *QUICK, "--epochs", "1", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "with --epochs 2, where this run has --epochs 1")
    assert out == "" and outputs_of(tmp_path) == before
    assert not (tmp_path / "checkpoints" / "custom_mlp_seed0.pt").exists()


@guards("mnistlab/runs.py",
        "a run counts as finished only with complete results",
        '            and results.get("status") == "complete" and isinstance',
        "            and isinstance")
@guards("mnistlab/runs.py",
        "Ctrl-C says what was saved and how to resume",
        "        if isinstance(e, KeyboardInterrupt):\n            raise Interrupted(len(history), e, "
        "results_written=written) from None\n",
        "")
def test_resume_finishes_a_run_stopped_during_its_final_pass(tmp_path, cli, monkeypatch):
    from mnistlab import runs
    argv = ["--model", "lenet5", *QUICK, "--out-dir", tmp_path]
    real, calls = runs.figures.curves, []

    def curves(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the final curves, after the last epoch's checkpoint
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(runs.figures, "curves", curves)
    status, _, err = cli(argv)
    assert status == 130 and "resume with:" in err
    assert results_of(tmp_path)["status"] == "interrupted" and checkpoint_of(tmp_path)["epoch"] == 2
    monkeypatch.setattr(runs.figures, "curves", real)
    status, out, _ = cli([*argv, "--resume"])
    assert status == 0 and "after epoch 2" in out and out.count("epoch ") == 1  # the "resuming" line only
    results = results_of(tmp_path)
    assert results["status"] == "complete" and len(results["predictions"]) == 512
    straight = tmp_path / "straight"
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", straight])[0] == 0
    assert results["predictions"] == results_of(straight)["predictions"]
    assert without_seconds(results["history"]) == without_seconds(results_of(straight)["history"])


def test_model_all_resumes_where_it_stopped(tmp_path, cli, monkeypatch):
    argv = ["--model", "all", "--limit", "256", "--epochs", "2", "--device", "cpu", "--out-dir", tmp_path]
    restore = interrupt_epoch(monkeypatch, 3)  # lenet5's 2 epochs, then custom_mlp's first
    status, _, err = cli(argv)
    restore()
    assert status == 130
    assert "lenet5 finished; interrupted during the first epoch of the next model, which saved nothing." in err
    assert err.splitlines()[-1].endswith("--resume")
    lenet = (tmp_path / "checkpoints" / "lenet5_seed0.pt").read_bytes()
    status, out, _ = cli([*argv, "--resume"])
    assert status == 0 and "lenet5: finished already" in out
    assert (tmp_path / "checkpoints" / "lenet5_seed0.pt").read_bytes() == lenet
    for model in ("lenet5", "custom_mlp", "lenet5_regularized"):
        assert results_of(tmp_path, f"{model}_seed0")["status"] == "complete"
    assert (tmp_path / "plots" / "comparison_seed0.png").is_file()
    straight = tmp_path / "straight"
    assert cli([*argv[:-1], straight])[0] == 0
    assert (without_seconds(results_of(tmp_path, "custom_mlp_seed0")["history"]) ==
            without_seconds(results_of(straight, "custom_mlp_seed0")["history"]))


@guards("mnistlab/runs.py",
        "a failed first checkpoint does not advise resuming",
        "resumable=bool(history))",
        "resumable=True)")
def test_a_failed_first_checkpoint_does_not_advise_resuming(tmp_path, cli, monkeypatch):
    def save_checkpoint(path, checkpoint):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoints, "save", save_checkpoint)
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 1, "(No space left on device); free some space or pass another --out-dir, "
                                          "then rerun\n")
