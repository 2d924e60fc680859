"""Defences of training, checkpoints and result files that held with no test to notice them going (issue 26): each
test here was seen to fail with its defence deleted or loosened (tests/mutants.py, RUNS)."""
import argparse
import errno
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

import checkpoints
import cli as command_line
import dataset
import engine
import files
import main
import runs
import significance
import slots
import test_reliability
from conftest import PYTHON, QUICK, ROOT
from errors import UsageError
from recipes import evaluated_on, resolve_recipe
from test_reliability import RUN, assert_one_line_error, interrupt_epoch, outputs_of, results_of
from conftest import binomial_p
from test_significance import runs_with

finished = test_reliability.finished  # a fixture: a folder holding a finished QUICK lenet5 run


def quick_recipe(model="lenet5", **changes):
    """The recipe of a QUICK run of model, as main.py resolves it, with changes on top."""
    recipe = resolve_recipe(model, {"epochs": 2}, seed=0, limit=512, train_size=None, validation=False, amp=False)
    return {**recipe, **changes}


def made_checkpoint(path, recipe, eval_acc):
    """A finished checkpoint of recipe at path, as main.py saves one, with a final accuracy of eval_acc; untrained."""
    model = engine.build_model(recipe, "cpu")
    optimizer, scheduler = engine.build_optimizer(model, recipe, 10)
    history = [dict(epoch=epoch, train_loss=0.5, train_acc=90.0, eval_loss=0.5, eval_acc=eval_acc, seconds=1.0)
               for epoch in range(1, recipe["epochs"] + 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoints.save(path, checkpoints.state(model, optimizer, scheduler, recipe, history,
                                             torch.zeros(10, dtype=torch.uint8), torch.device("cpu")))
    return path


# ---------------------------------------------------------------- runs.py

def test_a_damaged_checkpoint_is_replaced_only_with_overwrite(tmp_path, cli):
    path = tmp_path / "checkpoints" / f"{RUN}.pt"
    path.parent.mkdir()
    path.write_bytes(b"half a checkpoint")
    status, out, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"{path} is not a readable checkpoint; pass --overwrite to replace it")
    assert out == "" and path.read_bytes() == b"half a checkpoint"
    assert not (tmp_path / "results").exists()
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--overwrite"])[0] == 0


def test_model_all_resume_refuses_a_run_of_the_same_name_with_other_settings(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    status, out, err = cli(["--model", "all", *QUICK, "--epochs", "1", "--resume", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"{tmp_path}/checkpoints/{RUN}.pt holds a run with --epochs 2, where this "
                                          f"one has --epochs 1; pass --tag NAME to keep both, or another --out-dir")
    assert out == "" and outputs_of(tmp_path) == before


def test_resume_of_a_finished_run_is_refused_and_leaves_its_files(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "results" / f"{RUN}.json"
    path.write_text(json.dumps({**results_of(tmp_path), "robustness": {"rotation": {"30": 50.0}}}))
    before = outputs_of(tmp_path)
    status, out, err = cli(["--model", "lenet5", *QUICK, "--resume", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"--resume: {tmp_path}/checkpoints/{RUN}.pt has finished all 2 epochs and "
                                          f"its results are written; nothing to resume")
    assert out == "" and outputs_of(tmp_path) == before


def test_results_with_a_short_history_do_not_finish_a_run(finished, tmp_path, cli):
    # The checkpoint holds 2 epochs; results that hold 1 are not the run's: --resume writes them again.
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    results = results_of(tmp_path)
    (tmp_path / "results" / f"{RUN}.json").write_text(json.dumps({**results, "history": results["history"][:1]}))
    status, out, _ = cli(["--model", "lenet5", *QUICK, "--resume", "--out-dir", tmp_path])
    assert status == 0 and "resuming from" in out
    assert results_of(tmp_path)["history"] == results["history"]


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


# ---------------------------------------------------------------- files.py

def test_check_output_names_a_path_it_cannot_look_at(tmp_path):
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop.name)
    with pytest.raises(UsageError) as refused:
        files.check_output(loop, "--out")
    assert str(refused.value) == f"--out {loop} is a symbolic link loop; pass another --out"


def test_check_output_probes_its_folder(tmp_path, read_only_probe):
    with pytest.raises(UsageError) as refused:
        files.check_output(tmp_path / "x.json", "--out")
    assert str(refused.value) == (f"--out {tmp_path / 'x.json'} cannot be written (Read-only file system); pass "
                                  f"another --out")


def test_a_killed_runs_temporary_files_are_removed_and_only_its_own(tmp_path):
    paths = files.RunPaths.of(tmp_path, RUN)
    ours = [paths.results.with_name(f".{RUN}.json.99999.tmp"), paths.checkpoint.with_name(f".{RUN}.pt.99999.tmp"),
            paths.curves.with_name(f".{RUN}_curves.png.99999.tmp")]
    theirs = [paths.results.with_name(".custom_mlp_seed0.json.99999.tmp"),  # another run's, perhaps alive
              paths.checkpoint.with_name(f".{RUN}_other.pt.99999.tmp")]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left by a killed run")
    with files.RunLock(paths):
        assert [path.exists() for path in ours + theirs] == [False] * len(ours) + [True] * len(theirs)


def test_results_that_are_not_json_do_not_stop_a_run(tmp_path):
    paths = files.RunPaths.of(tmp_path, RUN)
    paths.results.parent.mkdir()
    paths.results.write_text('{"status": "compl')  # cut short, with no checkpoint: no finished run to keep
    assert files.read_json(paths.results) is None
    assert runs.plan_run(paths, quick_recipe(), resume=False).action == "fresh"


# ---------------------------------------------------------------- checkpoints.py

def test_the_size_cap_admits_the_largest_checkpoint_main_py_writes_and_little_more():
    # The largest model the flags allow: custom_mlp with eight hidden layers of 4,096. AdamW keeps two tensors per
    # weight, so its checkpoint holds three float32 copies of the weights.
    hidden = command_line.parse_widths(",".join(["4096"] * 8))
    with pytest.raises(argparse.ArgumentTypeError):
        command_line.parse_widths(",".join(["4096"] * 9))
    with pytest.raises(argparse.ArgumentTypeError):
        command_line.parse_widths("4097")
    sizes = [784, *hidden, 10]
    weights = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    with torch.device("meta"):
        model = engine.build_model(quick_recipe("custom_mlp", hidden=hidden), "meta")
    assert sum(p.numel() for p in model.parameters()) == weights
    largest = 3 * 4 * weights
    assert 1.01 * largest <= checkpoints.MAX_CHECKPOINT_BYTES <= 2 * largest


class Call:
    """Pickles as a call of os.mkdir: what a hostile checkpoint would hold instead of tensors."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_a_checkpoint_holding_a_pickled_call_is_refused_and_never_runs_it(tmp_path):
    ran = tmp_path / "ran"
    torch.save({key: Call(ran) if key == "history" else None for key in checkpoints.CHECKPOINT_KEYS},
               tmp_path / "hostile.pt")
    with pytest.raises(checkpoints.CheckpointError, match="is not a checkpoint of main.py"):
        checkpoints.read(tmp_path / "hostile.pt")
    assert not ran.exists()


@pytest.mark.parametrize("quick", [dict(limit=512), dict(train_size=100), dict(validation=True)])
def test_best_checkpoint_prefers_a_full_run_to_any_quick_one(quick, tmp_path):
    full = made_checkpoint(tmp_path / "checkpoints" / "lenet5_seed0.pt", quick_recipe(limit=None), 98.0)
    made_checkpoint(tmp_path / "checkpoints" / "lenet5_quick_seed0.pt", quick_recipe(**{"limit": None, **quick}), 100.0)
    assert checkpoints.best_checkpoint(tmp_path) == full
    full.unlink()
    assert checkpoints.best_checkpoint(tmp_path).name == "lenet5_quick_seed0.pt"  # better than none


def test_best_checkpoint_reads_only_the_asked_models_runs(tmp_path):
    lenet = made_checkpoint(tmp_path / "checkpoints" / "lenet5_seed0.pt", quick_recipe(), 90.0)
    mlp = made_checkpoint(tmp_path / "checkpoints" / "custom_mlp_seed0.pt", quick_recipe("custom_mlp"), 99.0)
    assert checkpoints.best_checkpoint(tmp_path, "lenet5") == lenet
    assert checkpoints.best_checkpoint(tmp_path) == mlp


# What a damaged or hostile checkpoint may hold, on a checkpoint made without training (fast enough to run once per
# defence in tests/mutants.py), and the line that refuses it.
DAMAGES = {
    "no predictions key": (lambda c: c.pop("predictions"), "is not a checkpoint of main.py (no predictions)"),
    "epoch 0": (lambda c: c.update(epoch=0), "its epoch is 0, not from 1 to its recipe's 1"),
    "an epoch past the recipe": (lambda c: c.update(epoch=2), "its epoch is 2, not from 1 to its recipe's 1"),
    "a history that is a dict": (lambda c: c.update(history={"epoch": 1}), "its history is a dict, not a list"),
    "an empty history": (lambda c: c.update(history=[]), "its history holds 0 records, where its epoch is 1"),
    "a record that is a list": (lambda c: c.update(history=[[1]]), "an epoch of its history is a list, not a dict"),
    "an epoch without eval_acc": (lambda c: c["history"][0].pop("eval_acc"),
                                  "an epoch of its history has no finite eval_acc"),
    "a negative accuracy": (lambda c: c["history"][0].update(train_acc=-1),
                            "an epoch of its history has a train_acc of -1, not a percentage"),
    "an accuracy of 1e308": (lambda c: c["history"][0].update(eval_acc=1e308),
                             "an epoch of its history has a eval_acc of 1e+308, not a percentage"),
    "weights that are a list": (lambda c: c.update(model=list(c["model"].values())),
                                "its weights are not a dict of tensors"),
    "a weight that is a list": (lambda c: c["model"].update({"fc2.bias": c["model"]["fc2.bias"].tolist()}),
                                "its weights are not a dict of tensors"),
    "a missing weight": (lambda c: c["model"].pop("fc2.bias"),
                         "its weights do not have the shapes of model.py's lenet5 with its recipe"),
    "integer weights": (lambda c: c["model"].update({"fc2.weight": c["model"]["fc2.weight"].long()}),
                        "its weight 'fc2.weight' is a torch.int64 torch.strided tensor on cpu, not what main.py saves"),
    "complex weights": (lambda c: c["model"].update({"fc2.weight": c["model"]["fc2.weight"].to(torch.complex64)}),
                        "its weight 'fc2.weight' is a torch.complex64 torch.strided tensor on cpu"),
    "sparse weights": (lambda c: c["model"].update({"fc2.weight": c["model"]["fc2.weight"].to_sparse()}),
                       "its weight 'fc2.weight' is a torch.float32 torch.sparse_coo tensor on cpu"),
    "meta weights": (lambda c: c["model"].update({"fc2.weight": torch.empty_like(c["model"]["fc2.weight"],
                                                                                 device="meta")}),
                     "its weight 'fc2.weight' is a torch.float32 torch.strided tensor on meta"),
    "infinite weights": (lambda c: c["model"]["fc2.bias"].__setitem__(0, float("inf")),
                         "its weights hold NaN or infinite values"),
    "NaN weights": (lambda c: c["model"]["fc2.weight"].__setitem__((0, 0), float("nan")),
                    "its weights hold NaN or infinite values"),
    # A check that meets it raises TypeError (a list is no key of ARCHITECTURE_KEYS), not ValueError.
    "a model name that is a list": (lambda c: c["recipe"].update(model=["lenet5"]),
                                    "is not a checkpoint of main.py: unhashable type: 'list'"),
}


@pytest.fixture
def untrained(tmp_path):
    """A finished one-epoch lenet5 checkpoint, made without training; returns its path."""
    return made_checkpoint(tmp_path / "checkpoints" / f"{RUN}.pt", quick_recipe(epochs=1), 90.0)


@pytest.mark.parametrize("damage", DAMAGES)
def test_each_check_of_an_untrained_checkpoint_refuses_its_damage(damage, untrained):
    edit, message = DAMAGES[damage]
    checkpoint = torch.load(untrained, weights_only=True)
    checkpoints.load_checked(untrained)  # whole, it passes
    edit(checkpoint)
    torch.save(checkpoint, untrained)
    with pytest.raises(checkpoints.CheckpointError) as refused:
        checkpoints.load_checked(untrained)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert str(refused.value).endswith("; delete it or train again")


def test_a_compressed_record_is_refused_before_torch_reads_it(untrained, tmp_path, monkeypatch):
    with zipfile.ZipFile(untrained) as source, zipfile.ZipFile(tmp_path / "packed.pt", "w") as packed:
        for record in source.infolist():
            compress = zipfile.ZIP_DEFLATED if record.filename.endswith("data.pkl") else zipfile.ZIP_STORED
            packed.writestr(record.filename, source.read(record), compress_type=compress)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load read it"))
    with pytest.raises(checkpoints.CheckpointError, match="its records are compressed, which torch.save never does"):
        checkpoints.read(tmp_path / "packed.pt")


def test_a_checkpoint_over_the_cap_is_refused_before_torch_reads_it(untrained, monkeypatch):
    size = untrained.stat().st_size
    checkpoints.read(untrained)  # at the cap, it is read
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", size)
    checkpoints.read(untrained)
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", size - 1)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("read a checkpoint over the cap"))
    with pytest.raises(checkpoints.CheckpointError, match="more than the 0 GB of the largest model main.py trains"):
        checkpoints.read(untrained)


@pytest.mark.parametrize("damage, message", [
    ("a history longer than its epoch", "ValueError: history and epoch disagree"),
    ("no predictions", "ValueError: history and epoch disagree"),
    ("momentum of another shape", "ValueError: optimizer state of the wrong shape"),
])
def test_a_checkpoint_that_does_not_fit_its_run_is_not_resumed(damage, message, tmp_path):
    # A checkpoint after some training, so that its optimizer holds momentum: two steps on random images.
    recipe = quick_recipe(epochs=1, limit=64)
    data = (torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)),
            torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,)))
    runs.train_run(recipe, data, torch.device("cpu"), files.RunPaths.of(tmp_path, RUN))
    checkpoint = torch.load(tmp_path / "checkpoints" / f"{RUN}.pt", weights_only=True)
    model = engine.build_model(recipe, "cpu")
    optimizer, scheduler = engine.build_optimizer(model, recipe, 10)
    if damage == "a history longer than its epoch":
        checkpoint["history"] = checkpoint["history"] * 2
    elif damage == "no predictions":
        checkpoint["predictions"] = torch.zeros(0, dtype=torch.uint8)
    else:
        checkpoint["optimizer"]["state"][0]["momentum_buffer"] = torch.zeros(3)
    with pytest.raises(UsageError, match=rf"does not fit this run \({message}\)"):
        checkpoints.restore(model, optimizer, scheduler, checkpoint, torch.device("cpu"), tmp_path / "x.pt")


def test_best_checkpoint_names_each_file_it_skips(untrained, tmp_path):
    (untrained.parent / "junk.pt").write_bytes(b"not a checkpoint")
    unfinished = made_checkpoint(untrained.parent / "lenet5_long_seed0.pt", quick_recipe(epochs=1), 99.0)
    checkpoint = torch.load(unfinished, weights_only=True)
    checkpoint["recipe"]["epochs"] = 3
    torch.save(checkpoint, unfinished)
    skipped = []
    assert checkpoints.best_checkpoint(tmp_path, skipped=lambda error: skipped.append((error.path, error.reason))) \
        == untrained
    assert skipped == [(untrained.parent / "junk.pt", "is not a checkpoint of main.py (BadZipFile)"),
                       (unfinished, "holds an unfinished run (epoch 1 of 3), which main.py --resume finishes")]


# ---------------------------------------------------------------- main.py

def test_evaluate_checkpoint_with_model_all_is_refused(tmp_path, cli):
    status, out, err = cli(["--model", "all", "--evaluate", "--checkpoint", tmp_path / "lenet5_seed0.pt",
                            "--limit", "64", "--device", "cpu"])
    assert status == 2 and out == "" and err == ("main.py: error: --checkpoint names one model's checkpoint; pass "
                                                 "--model too, not --model all\n")


def test_the_resume_command_after_an_interrupted_overwrite_drops_overwrite(finished, tmp_path, cli, monkeypatch):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    argv = ["--model", "lenet5", *QUICK, "--out-dir", str(tmp_path), "--overwrite"]
    monkeypatch.setattr(sys, "argv", ["main.py", *argv])
    interrupt_epoch(monkeypatch, 2)
    status, _, err = cli(argv)
    assert status == 130 and err.splitlines()[-1].startswith("resume with: "), err
    command = shlex.split(err.splitlines()[-1].removeprefix("resume with: "))
    # The interpreter that ran it: a bare `python` may be one without torch.
    assert command == [PYTHON, "main.py", *argv[:-1], "--resume"]
    main.get_args_parser().parse_args(command[2:])  # --resume and --overwrite together would not parse


# Each flag that sets how to train, as a user types it, and the flag the refusal names.
TRAINING_ONLY = [(["--epochs", "3"], "--epochs"), (["--batch-size", "64"], "--batch-size"), (["--lr", "0.05"], "--lr"),
                 (["--optimizer", "adamw"], "--optimizer"), (["--weight-decay", "0.1"], "--weight-decay"),
                 (["--augment"], "--augment"), (["--label-smoothing", "0.1"], "--label-smoothing"),
                 (["--model", "custom_mlp", "--hidden", "10"], "--hidden"),
                 (["--model", "lenet5_regularized", "--dropout", "0.2"], "--dropout"),
                 (["--model", "lenet5_regularized", "--batch-norm"], "--batch-norm"),
                 (["--model", "lenet5_regularized", "--no-batch-norm"], "--no-batch-norm"),
                 (["--train-size", "100"], "--train-size"), (["--amp"], "--amp"), (["--compile"], "--compile"),
                 (["--resume"], "--resume"), (["--overwrite"], "--overwrite")]


def test_evaluate_refuses_every_flag_that_only_training_reads(tmp_path, cli):
    # Every option of main.py that is not listed here as --evaluate's own is a training flag, and is in the list.
    own = {"--help", "--model", "--recipe", "--seed", "--device", "--validation", "--limit", "--eval-batch-size",
           "--data-dir", "--out-dir", "--tag", "--evaluate", "--checkpoint", "--no-augment"}
    options = {option for action in main.get_args_parser()._actions for option in action.option_strings
               if option.startswith("--")}
    assert options - own == {flag for _, flag in TRAINING_ONLY}
    for argv, flag in TRAINING_ONLY:
        status, out, err = cli(["--evaluate", *argv, "--out-dir", tmp_path])
        assert status == 2 and out == "" and err == (
            f"main.py: error: {flag} sets how to train, and --evaluate trains nothing (it reads the checkpoint's "
            f"recipe); drop {flag}, or drop --evaluate to train\n"), (argv, err)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- cli.py

def test_runner_counts_are_held_to_their_caps():
    parser = command_line.OneLineErrorParser()
    command_line.add_runner_flags(parser)
    taken = parser.parse_args(["--jobs", "4096", "--cpus-per-run", "1024", "--gpus-per-run", "1"])
    assert (taken.jobs, taken.cpus_per_run, taken.gpus_per_run) == (4096, 1024, 1.0)
    for argv in (["--jobs", "4097"], ["--cpus-per-run", "1025"], ["--gpus-per-run", "0"], ["--jobs", "0"]):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args(argv)
        assert stopped.value.code == 2, argv


@pytest.mark.parametrize("widths", ["10,5000", "0", "10,-1", ",".join(["8"] * 9)])
def test_hidden_widths_beyond_the_schema_are_refused(widths, tmp_path, cli):
    status, out, err = cli(["--model", "custom_mlp", "--hidden", widths, "--limit", "64", "--epochs", "1",
                            "--device", "cpu", "--out-dir", tmp_path])
    assert status == 2 and out == "" and err.count("\n") == 1, err
    assert f"--hidden: expected widths from 1 to 4096, at most 8 of them, joined by commas, e.g. 72,64; got " \
           f"'{widths}'" in err
    assert not (tmp_path / "results").exists()


def test_an_optimizer_that_is_not_a_choice_is_refused(tmp_path, cli):
    status, out, err = cli(["--optimizer", "adam", "--limit", "64", "--epochs", "1", "--device", "cpu",
                            "--out-dir", tmp_path])
    assert status == 2 and out == "" and err.count("\n") == 1, err
    assert "--optimizer: invalid choice: 'adam'" in err
    assert not (tmp_path / "results").exists()


def test_ctrl_c_stays_ignored_where_the_program_was_started_with_it_ignored(tmp_path):
    # As `nohup predict.py ... &` starts it: Ctrl-C, sent while it starts, must not stop it.
    process = subprocess.Popen([sys.executable, str(ROOT / "predict.py"), str(tmp_path / "one.png"), "--checkpoint",
                                str(tmp_path / "none.pt")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()  # where it did not stop
        process.wait()
    assert process.returncode == 2 and err == (f"predict.py: error: --checkpoint: {tmp_path}/none.pt does not exist; "
                                               f"train the model first, e.g. `python main.py --model lenet5`\n"), err


# ---------------------------------------------------------------- slots.py

def results_for(recipe, **changes):
    """Results as main.py writes them for recipe, without predictions, with changes on top."""
    history = [dict(epoch=epoch, train_loss=0.5, train_acc=90.0, eval_loss=0.5, eval_acc=90.0, seconds=1.0)
               for epoch in range(1, recipe["epochs"] + 1)]
    return {"status": "complete", "recipe": recipe, "seed": recipe["seed"], "evaluated_on": evaluated_on(recipe),
            "train_images": 512, "history": history, **changes}


def test_an_interrupted_run_does_not_fill_a_slot_that_takes_a_diverged_one():
    recipe = quick_recipe()
    diverged = results_for(recipe, status="diverged: loss became nan")
    diverged["history"] = diverged["history"][:1]
    assert slots.check(diverged, path="x.json", advice="train it", recipe=recipe, diverged=True) is diverged
    with pytest.raises(slots.BadResults, match=r"^x.json is not a complete run \(its status is 'interrupted'\)"):
        slots.check({**diverged, "status": "interrupted"}, path="x.json", advice="train it", recipe=recipe,
                    diverged=True)


def test_a_seed_of_true_does_not_fill_seed_1s_slot():
    recipe = quick_recipe(seed=1)
    assert slots.check(results_for(recipe), path="x.json", advice="train it", recipe=recipe)
    for seed in (True, 1.0):  # equal to 1 in Python, but not what main.py writes
        with pytest.raises(slots.BadResults, match=f"says seed {seed}, but fills seed 1's slot"):
            slots.check(results_for(recipe, seed=seed), path="x.json", advice="train it", recipe=recipe)


# ---------------------------------------------------------------- significance.py

def test_too_few_discordant_images_leave_the_interval_to_say_what_is_detectable():
    # Three discordant images: even all three won would not pass McNemar's test (p = 0.25).
    assert binomial_p(3, 3) > significance.ALPHA and significance.detectable_lead(3) is None
    c = significance.compare(*runs_with([(2, 1)]))
    assert c.ahead == (2, 1)
    assert c.detectable == pytest.approx((c.interval[1] - c.interval[0]) / 2) and c.detectable > 0


def test_a_difference_is_real_only_where_the_interval_excludes_zero_too():
    # 20 images that the first model gets right on one seed more than the second, 6 that the second gets right on
    # every seed and the first on none: pooled, 20 images to 6 is p < 0.05, but the mean difference is 2 images' worth.
    seeds, images = 3, 1_000
    first, second = np.ones((seeds, images), bool), np.ones((seeds, images), bool)
    for image in range(20):
        second[image % seeds, image] = False
    first[:, 20:26] = False
    c = significance.compare(first, second)
    assert c.ahead == (20, 6) and c.p == pytest.approx(binomial_p(20, 26), rel=1e-9) and c.p < significance.ALPHA
    assert c.difference == pytest.approx(100 * (20 - 18) / (seeds * images))
    assert c.interval[0] < 0 < c.interval[1]
    assert not c.real


def test_a_setting_that_shares_no_seed_with_the_best_gets_no_comparison():
    right, wrong = np.ones(100, bool), np.zeros(100, bool)
    wrong[:90] = True
    best, compared = significance.against_best({"a": {0: right, 1: right}, "b": {2: wrong}, "c": {1: wrong}})
    assert best == "a" and compared["b"] is None and compared["c"].difference == pytest.approx(-10.0)


# ---------------------------------------------------------------- dataset.py

def test_a_bundle_that_is_not_gzip_is_one_line(tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (tmp_path / "data").mkdir()
    for name in dataset.SHA256:
        (bundle / f"{name}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(dataset.DataError) as refused:
        dataset.prepare_mnist(tmp_path / "data", bundle)
    assert "train-images-idx3-ubyte.gz is truncated or not gzip" in str(refused.value)
    assert str(refused.value).endswith(f"restore it with `git checkout -- train-images-idx3-ubyte.gz` in {bundle}")
    assert not list((tmp_path / "data" / "MNIST" / "raw").iterdir())


def test_an_unreadable_data_dir_is_refused_before_anything_is_read_from_it(tmp_path, monkeypatch):
    # Root passes every permission check, so the check itself is made to say no.
    access = dataset.os.access
    monkeypatch.setattr(dataset.os, "access", lambda path, mode: path != tmp_path and access(path, mode))
    monkeypatch.setattr(dataset, "_download", lambda *args: pytest.fail("looked for MNIST in an unreadable folder"))
    with pytest.raises(dataset.DataError, match=f"^data directory {tmp_path} cannot be read; fix its permissions or "
                                                f"pass another --data-dir$"):
        dataset.read_mnist(tmp_path, tmp_path / "no-bundle")


def test_a_data_dir_that_cannot_take_the_extracted_files_is_one_line(tmp_path):
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "raw").write_text("a file where the extracted files go")
    with pytest.raises(dataset.DataError, match=f"cannot write the extracted data to {tmp_path}/MNIST/raw \\(File "
                                                f"exists\\); pass a writable --data-dir"):
        dataset.prepare_mnist(tmp_path)


def test_a_data_file_that_cannot_be_read_is_one_line(tmp_path):
    for name in dataset.SHA256:
        (tmp_path / "MNIST" / "raw" / name).mkdir(parents=True)  # a folder where the file belongs
    with pytest.raises(dataset.DataError, match=f"cannot read {tmp_path}/MNIST/raw/train-images-idx3-ubyte \\(Is a "
                                                f"directory\\); delete it and rerun to re-extract it"):
        dataset.prepare_mnist(tmp_path)



# ---------------------------------------------------------------- recipes.py: runs that could not train

@pytest.mark.parametrize("argv, problem", [
    (["--limit", "1"], "argument --limit: must be from 2 to"),  # one image: no batch (a last batch of one is dropped)
    (["--train-size", "1"], "argument --train-size: must be from 2 to"),
    (["--model", "lenet5_regularized", "--batch-size", "1"], "batch norm cannot normalize a batch of one image"),
])
def test_a_run_that_could_not_take_one_step_is_refused_in_one_line(argv, problem, cli, tmp_path):
    status, out, err = cli([*argv, "--epochs", "1", "--out-dir", tmp_path])
    assert status == 2 and out == "" and err.count("\n") == 1 and problem in err, err
    assert not list(tmp_path.iterdir())
