"""main.py as users call it: training, its files, resuming, evaluating, and one-line errors."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

import checkpoints
import engine
import files
import paths
from conftest import QUICK, ROOT, files_under, without_seconds


def results_of(out_dir, run):
    return json.loads((out_dir / "results" / f"{run}.json").read_text())


def test_a_cli_run_writes_curves_results_and_checkpoint(tmp_path, cli):
    status, out, _ = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert status == 0
    assert files_under(tmp_path) == ["checkpoints", "checkpoints/.lenet5_seed0.lock", "checkpoints/lenet5_seed0.pt",
                                     "plots", "plots/lenet5_seed0_curves.png", "results", "results/lenet5_seed0.json"]
    assert "| conv1 | weight (6, 1, 5, 5), bias (6,)" in out and "recipe: model=lenet5" in out
    assert out.count("epoch ") == 2 and f"wrote {tmp_path}/results/lenet5_seed0.json" in out
    results = results_of(tmp_path, "lenet5_seed0")
    assert results["model"] == "lenet5" and results["params"] == 61_706 and results["seed"] == 0
    assert results["epochs"] == 2 and results["device"] == "cpu" and results["status"] == "complete"
    assert results["torch"] == torch.__version__ and results["recipe"]["limit"] == 512
    assert results["train_images"] == results["eval_images"] == 512 and results["evaluated_on"] == "test"
    assert [h["epoch"] for h in results["history"]] == [1, 2]
    assert set(results["history"][0]) == {"epoch", "train_loss", "train_acc", "eval_loss", "eval_acc", "seconds"}
    assert 10 < results["history"][-1]["eval_acc"] <= 100
    assert len(results["predictions"]) == 512 and "final_train_eval" not in results  # the report's alone
    assert (tmp_path / "plots" / "lenet5_seed0_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = torch.load(tmp_path / "checkpoints" / "lenet5_seed0.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["history"] == results["history"]
    assert set(checkpoint) == checkpoints.CHECKPOINT_KEYS | checkpoints.LATER_KEYS
    assert checkpoint["threads"] == results["threads"] == torch.get_num_threads()


def test_the_fast_recipe_trains_under_its_own_name_with_its_own_settings(tmp_path, cli):
    from recipes import NAMED_RECIPES
    fast = NAMED_RECIPES["fast"]["lenet5"]
    status, out, _ = cli(["--model", "lenet5", "--recipe", "fast", "--limit", "512", "--device", "cpu",
                          "--out-dir", tmp_path])
    assert status == 0 and out.count("epoch ") == fast["epochs"]
    results = results_of(tmp_path, "lenet5_fast_seed0")
    assert {key: results["recipe"][key] for key in fast} == fast and results["params"] == 61_706
    assert cli(["--model", "lenet5", "--recipe", "--limit", "512", "--epochs", "1", "--device", "cpu",
                "--out-dir", tmp_path])[0] == 0  # a bare --recipe is the default recipe, under the plain name
    assert results_of(tmp_path, "lenet5_seed0")["recipe"]["batch_size"] == 128


def test_stored_predictions_give_the_final_accuracy(tmp_path, cli):
    assert cli(["--model", "custom_mlp", *QUICK, "--out-dir", tmp_path])[0] == 0
    results = results_of(tmp_path, "custom_mlp_seed0")
    truth = engine.dataset.load_splits(limit=512)[3]
    predicted = torch.tensor([int(c) for c in results["predictions"]])
    assert 100.0 * (predicted == truth).double().mean().item() == pytest.approx(results["history"][-1]["eval_acc"])


def test_the_reports_clean_pass_scores_the_final_model_on_the_training_set(tmp_path):
    import measurements
    import runs
    from recipes import resolve_recipe
    recipe = resolve_recipe("lenet5_regularized", {}, epochs=1, seed=0, limit=256, train_size=None, validation=False,
                            amp=False)
    data = engine.dataset.load_splits(limit=256)
    paths = files.RunPaths.of(tmp_path, "run")
    results = runs.train_run(recipe, data, torch.device("cpu"), paths,
                             measure=measurements.measurements(recipe))
    model, _ = checkpoints.load_model(paths.checkpoint, torch.device("cpu"))
    with torch.no_grad():
        logits = model(data[0])  # eval mode, no augmentation, one batch: an independent pass
    clean = results["final_train_eval"]
    assert clean["acc"] == pytest.approx(100.0 * (logits.argmax(1) == data[1]).double().mean().item())
    assert clean["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, data[1]).item(), rel=1e-5)
    assert clean["acc"] != results["history"][-1]["train_acc"]  # not the on-the-fly figure, taken through augmentation


def test_all_models_write_a_comparison_figure(tmp_path, cli):
    status, _, _ = cli(["--model", "all", "--limit", "256", "--epochs", "1", "--device", "cpu",
                        "--out-dir", tmp_path, "--tag", "quick"])
    assert status == 0
    assert files_under(tmp_path / "plots") == ["comparison_quick_seed0.png", "custom_mlp_quick_seed0_curves.png",
                                               "lenet5_quick_seed0_curves.png", "lenet5_regularized_quick_seed0_curves.png"]


def test_validation_runs_score_on_held_out_training_images(tmp_path, cli):
    outputs = {}
    for tag, flags in (("val", ["--validation"]), ("test", [])):
        status, outputs[tag], _ = cli(["--model", "custom_mlp", *QUICK, "--tag", tag, "--out-dir", tmp_path, *flags])
        assert status == 0
    validation, test = (results_of(tmp_path, f"custom_mlp_{tag}_seed0") for tag in ("val", "test"))
    assert validation["evaluated_on"] == "validation" and test["evaluated_on"] == "test"
    assert validation["history"][-1]["eval_loss"] != test["history"][-1]["eval_loss"]
    assert "validation loss" in outputs["val"] and "test loss" in outputs["test"]


def test_the_same_seed_gives_the_same_history(tmp_path, cli):
    histories = {}
    for seed, tag in ((0, "a"), (0, "b"), (1, "c")):
        assert cli(["--model", "lenet5_regularized", *QUICK, "--seed", seed, "--tag", tag, "--out-dir", tmp_path])[0] == 0
        histories[tag] = results_of(tmp_path, f"lenet5_regularized_{tag}_seed{seed}")["history"]
    assert without_seconds(histories["a"]) == without_seconds(histories["b"])
    assert without_seconds(histories["a"]) != without_seconds(histories["c"])


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, cli, monkeypatch):
    argv = ["--model", "lenet5_regularized", "--limit", "512", "--epochs", "3", "--device", "cpu"]
    assert cli([*argv, "--out-dir", tmp_path / "straight"])[0] == 0

    real_train_one_epoch = engine.train_one_epoch
    calls = []

    def interrupted_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(engine, "train_one_epoch", interrupted_in_epoch_3)
    status, _, err = cli([*argv, "--out-dir", tmp_path / "resumed"])
    assert status == 130 and "resume with:" in err
    saved = results_of(tmp_path / "resumed", "lenet5_regularized_seed0")
    assert saved["status"] == "interrupted" and len(saved["history"]) == 2
    monkeypatch.setattr(engine, "train_one_epoch", real_train_one_epoch)
    status, out, _ = cli([*argv, "--out-dir", tmp_path / "resumed", "--resume"])
    assert status == 0 and "after epoch 2" in out and out.count("epoch ") == 2

    straight, resumed = (torch.load(tmp_path / run / "checkpoints" / "lenet5_regularized_seed0.pt", weights_only=True)
                         for run in ("straight", "resumed"))
    assert without_seconds(straight["history"]) == without_seconds(resumed["history"])
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


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


def test_a_loss_past_what_results_may_hold_fails_the_run_and_its_results_say_diverged(tmp_path, cli, monkeypatch):
    import slots
    from recipes import resolve_recipe
    from test_engine import LossPastBeliefFromStep
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


def test_arguments_are_checked_before_torch_is_imported():
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "main.py"), "--epochs", "0"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--epochs: must be from 1" in done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "argparse" in imported and not {"torch", "torchvision", "matplotlib"} & imported


# ---------------------------------------------------------------- --evaluate

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch lenet5 run on 512 images, with its results and checkpoint."""
    out_dir = tmp_path_factory.mktemp("trained")
    import main
    assert main.main(main.get_args_parser().parse_args(["--model", "lenet5", *QUICK, "--out-dir", str(out_dir)])) == 0
    return out_dir


def test_evaluate_reproduces_the_final_epoch_of_the_run(trained, cli):
    before = files_under(trained)
    status, out, _ = cli(["--model", "lenet5", "--evaluate", "--limit", "512", "--device", "cpu",
                          "--checkpoint", trained / "checkpoints" / "lenet5_seed0.pt"])
    assert status == 0 and files_under(trained) == before
    final = results_of(trained, "lenet5_seed0")["history"][-1]
    assert f"loss {final['eval_loss']:.4f}  accuracy {final['eval_acc']:.2f}%" in out
    errors = round(512 * (1 - final["eval_acc"] / 100))
    assert f"errors {errors:,}" in out
    table = [line.split() for line in out.splitlines() if re.match(r"^\s+\d\s+\d+\s+\d+\s+[\d.]+%$", line)]
    assert [int(row[0]) for row in table] == list(range(10))
    assert sum(int(row[1]) for row in table) == 512 and sum(int(row[2]) for row in table) == errors
    assert re.search(r"most frequent confusions: (\d read as \d \(\d+x\)(, )?){1,5}$", out, re.MULTILINE)


def test_evaluate_with_an_out_dir_draws_the_confusion_matrix(trained, cli):
    status, out, _ = cli(["--model", "lenet5", "--evaluate", "--limit", "512", "--device", "cpu",
                          "--out-dir", trained])
    assert status == 0 and (trained / "plots" / "lenet5_seed0_confusion.png").is_file()


def test_evaluate_names_the_figure_after_the_checkpoint_it_scores(trained, tmp_path, cli):
    checkpoint = tmp_path / "mine.pt"
    shutil.copy(trained / "checkpoints" / "lenet5_seed0.pt", checkpoint)
    status, _, _ = cli(["--evaluate", "--recipe", "fast", "--checkpoint", checkpoint, "--limit", "512",
                        "--device", "cpu", "--out-dir", tmp_path / "out"])
    assert status == 0 and files_under(tmp_path / "out") == ["plots", "plots/mine_confusion.png"]


@pytest.mark.parametrize("where", ["/proc", "a file", "a folder in the figure's place"])
def test_evaluate_checks_its_out_dir_before_any_work(where, trained, tmp_path, cli):
    out_dir = {"/proc": Path("/proc/nope"), "a file": tmp_path / "a-file"}.get(where, tmp_path / "out")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "out" / "plots" / "lenet5_seed0_confusion.png").mkdir(parents=True)
    status, out, err = cli(["--evaluate", "--checkpoint", trained / "checkpoints" / "lenet5_seed0.pt", "--limit",
                            "512", "--device", "cpu", "--out-dir", out_dir])
    assert status == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err


def test_evaluate_without_a_run_says_how_to_train_it(tmp_path, cli):
    status, _, err = cli(["--evaluate", "--recipe", "fast", "--tag", "x", "--seed", "3", "--out-dir", tmp_path])
    assert status == 2 and err == (f"main.py: error: --evaluate: no checkpoint at {tmp_path}/checkpoints/"
                                   f"lenet5_fast_x_seed3.pt; train it first: python main.py --model lenet5 --recipe "
                                   f"fast --tag x --seed 3 --out-dir {tmp_path}\n")


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist; train the model first"),
    ("other model", "holds a lenet5 checkpoint, not custom_mlp; pass --model lenet5"),
    ("not a checkpoint", "is not a checkpoint of main.py"),
    ("validation", "was trained without --validation"),
])
def test_evaluate_rejects_bad_checkpoints(case, message, trained, tmp_path, cli):
    path = {"missing": tmp_path / "nothing.pt", "not a checkpoint": tmp_path / "junk.pt"}.get(
        case, trained / "checkpoints" / "lenet5_seed0.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    model = "custom_mlp" if case == "other model" else "lenet5"
    flags = ["--validation"] if case == "validation" else []
    status, out, err = cli(["--model", model, "--evaluate", "--device", "cpu", "--checkpoint", path, *flags])
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err and message in err, err


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written

def assert_rejected(argv, tmp_path, cli, message):
    before = files_under(tmp_path)
    status, out, err = cli(argv)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "error:" in err
    assert message in err, err
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet"], "invalid choice: 'resnet'"),
    (["--epochs", "0"], "--epochs: must be from 1 to 1000000, got 0"),
    (["--epochs", "-3"], "--epochs: must be from 1 to 1000000, got -3"),
    (["--epochs", "2.5"], "--epochs: expected a whole number, got '2.5'"),
    (["--batch-size", "0"], "--batch-size: must be from 1 to 1000000, got 0"),
    (["--lr", "0"], "--lr: must be above 0 and at most 10, got 0"),
    (["--lr", "-0.1"], "--lr: must be above 0 and at most 10, got -0.1"),
    (["--lr", "fast"], "--lr: expected a number, got 'fast'"),
    (["--lr", "inf"], "--lr: must be above 0 and at most 10, got inf"),
    (["--lr", "1e300", "--optimizer", "adamw"], "--lr: must be above 0 and at most 10, got 1e300"),
    (["--seed", "99999999999999999999"], "--seed: must be from 0 to 4294967295"),
    (["--seed", "-1"], "--seed: must be from 0 to 4294967295"),
    (["--weight-decay=-1e-4"], "--weight-decay: must be from 0 to 1, got -1e-4"),
    (["--model", "lenet5_regularized", "--dropout", "1"], "--dropout: must be from 0 to 0.99, got 1"),
    (["--model", "lenet5", "--dropout", "0.2"], "--dropout applies only to lenet5_regularized"),
    (["--model", "lenet5", "--hidden", "10,10"], "--hidden applies only to custom_mlp"),
    (["--model", "custom_mlp", "--hidden", "10,x"], "--hidden: expected widths from 1 to 4096"),
    (["--resume", "--overwrite"], "not allowed with argument"),
    (["--tag", "x/../../../escaped"], "is not a tag"),
    (["--tag", "a" * 300], "is not a tag"),
    (["--tag", ".."], "is not a tag"),
    (["--tag", ""], "is not a tag"),
    (["--model", "custom_mlp", "--recipe", "fast"], "--recipe fast is a recipe for lenet5 only, not custom_mlp"),
    (["--model", "all", "--recipe", "fast"], "--recipe fast is a recipe for lenet5 only"),
    (["--recipe", "slow"], "invalid choice: 'slow'"),
    (["--label-smoothing", "0.7"], "--label-smoothing: must be from 0 to 0.5, got 0.7"),
    (["--tag", "fast"], "--tag fast would name lenet5's run like lenet5_fast's runs; choose another tag"),
    (["--tag", "fast_x"], "--tag fast_x would name lenet5's run like lenet5_fast's runs"),
    (["--tag", "regularized"], "--tag regularized would name lenet5's run like lenet5_regularized's runs"),
    (["--model", "all", "--tag", "regularized"], "would name lenet5's run like lenet5_regularized's runs"),
    # Names are compared without case: on macOS lenet5_Fast_seed0.pt is the file lenet5_fast_seed0.pt.
    (["--tag", "Fast"], "--tag Fast would name lenet5's run like lenet5_fast's runs"),
    (["--tag", "Regularized_x"], "--tag Regularized_x would name lenet5's run like lenet5_regularized's runs"),
    (["--model", "lenet5_regularized", "--tag", "fast"], "would name lenet5_regularized's run like "
                                                          "lenet5_regularized_fast's runs"),
    # A flag that the verb would ignore is refused, not dropped in silence.
    (["--checkpoint", "x.pt"], "--checkpoint names the checkpoint --evaluate reads; add --evaluate, or drop "
                               "--checkpoint to train"),
    (["--evaluate", "--lr", "0.05"], "--lr sets how to train, and --evaluate trains nothing (it reads the "
                                     "checkpoint's recipe); drop --lr, or drop --evaluate to train"),
    (["--evaluate", "--epochs", "3"], "--epochs sets how to train"),
    (["--evaluate", "--model", "lenet5_regularized", "--no-batch-norm"], "drop --no-batch-norm"),
    (["--evaluate", "--no-augment"], "drop --augment"),
    (["--evaluate", "--amp"], "drop --amp"),
    (["--evaluate", "--resume"], "drop --resume"),
    (["--evaluate", "--overwrite"], "drop --overwrite"),
    (["--evaluate", "--train-size", "100"], "drop --train-size"),
    (["--overw"], "unrecognized arguments: --overw"),  # no abbreviations: the resume command printed must parse
])
def test_bad_arguments_are_rejected(argv, message, tmp_path, cli):
    # --limit keeps a check that failed to reject from training for minutes.
    assert_rejected(["--limit", "64", *argv, "--out-dir", tmp_path / "out"], tmp_path, cli, message)


@pytest.mark.parametrize("recipe, tag", [("fast", "regularized"), ("fast", "Regularized"), ("default", "fastx"),
                                         ("default", "wd")])
def test_a_tag_that_collides_with_nothing_is_accepted(recipe, tag, tmp_path, cli):
    # --evaluate without a checkpoint stops at the run's name, before any work.
    status, _, err = cli(["--evaluate", "--recipe", recipe, "--tag", tag, "--out-dir", tmp_path])
    name = "_".join(["lenet5", *([recipe] if recipe != "default" else []), tag, "seed0"])
    assert status == 2 and f"no checkpoint at {tmp_path}/checkpoints/{name}.pt" in err, err


def test_a_missing_data_dir_is_rejected(tmp_path, cli):
    assert_rejected(["--data-dir", tmp_path / "nowhere", "--out-dir", tmp_path / "out"], tmp_path, cli,
                    "does not exist; create it or pass another --data-dir")


def test_a_data_dir_that_is_a_file_is_rejected(tmp_path, cli):
    (tmp_path / "a-file").write_text("")
    assert_rejected(["--data-dir", tmp_path / "a-file", "--out-dir", tmp_path / "out"], tmp_path, cli,
                    "is a file, not a folder; pass a folder as --data-dir")


def test_an_unreadable_data_dir_is_rejected(tmp_path, cli, monkeypatch):
    # CI may run as root, which passes every permission check; so the check itself is made to say no.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    access = engine.dataset.os.access
    monkeypatch.setattr(engine.dataset.os, "access", lambda path, mode: path != data_dir and access(path, mode))
    assert_rejected(["--data-dir", data_dir, "--out-dir", tmp_path / "out"], tmp_path, cli,
                    "cannot be read; fix its permissions or pass another --data-dir")


def test_a_corrupt_data_file_is_rejected(tmp_path, cli):
    raw = engine.dataset.prepare_mnist()
    data_dir = tmp_path / "data"
    (data_dir / "MNIST" / "raw").mkdir(parents=True)
    for name in engine.dataset.SHA256:
        (data_dir / "MNIST" / "raw" / name).write_bytes((raw / name).read_bytes()[:5000])
    assert_rejected(["--data-dir", data_dir, "--out-dir", tmp_path / "out"], tmp_path, cli,
                    "fails its SHA-256 check (truncated or corrupt); delete it")


def test_a_missing_data_file_without_bundle_or_network_is_rejected(tmp_path, cli, monkeypatch):
    def offline(self):
        raise OSError("offline:\nno mirror\nanswered")
    monkeypatch.setattr(engine.dataset, "BUNDLE_DIR", tmp_path / "no-bundle")
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    assert_rejected(["--data-dir", tmp_path, "--out-dir", tmp_path / "out"], tmp_path, cli,
                    "download failed (offline: no mirror answered); copy the four *-ubyte.gz files into")


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_an_absent_device_is_rejected(device, tmp_path, cli):
    if {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}[device]():
        pytest.skip(f"{device} is available here")
    assert_rejected(["--device", device, "--out-dir", tmp_path / "out"], tmp_path, cli,
                    f"--device {device}: no {device.upper()} device is available here; use --device cpu")


def test_resume_without_a_checkpoint_is_rejected(tmp_path, cli):
    assert_rejected(["--resume", "--out-dir", tmp_path], tmp_path, cli, "--resume: no checkpoint at")


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


def test_training_into_the_repository_is_refused_and_another_out_dir_is_taken(tmp_path, cli):
    before = files_under(ROOT / "plots")
    status, _, err = cli(["--model", "all", "--resume", "--out-dir", ROOT])
    assert status == 2 and err == (f"main.py: error: --out-dir {paths.relative(ROOT)} is the repository, whose results/ and plots/ are "
                                   f"the report's (make report writes them); pass another --out-dir\n")
    assert files_under(ROOT / "plots") == before  # no comparison figure, or any other, drawn there
    status, _, err = cli(["--model", "all", "--resume", *QUICK, "--out-dir", tmp_path])  # as advised
    assert status == 0 and (tmp_path / "plots" / "comparison_seed0.png").exists(), err


def test_resume_from_another_models_checkpoint_is_rejected(tmp_path, cli):
    assert cli(["--model", "lenet5", *QUICK, "--epochs", "1", "--out-dir", tmp_path])[0] == 0
    (tmp_path / "checkpoints" / "lenet5_seed0.pt").rename(tmp_path / "checkpoints" / "custom_mlp_seed0.pt")
    assert_rejected(["--model", "custom_mlp", *QUICK, "--resume", "--out-dir", tmp_path], tmp_path, cli,
                    "holds a lenet5 checkpoint, not custom_mlp; pass --model lenet5")


def test_resume_with_other_settings_is_rejected(tmp_path, cli):
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])[0] == 0
    assert_rejected(["--model", "lenet5", *QUICK, "--epochs", "5", "--lr", "0.2", "--resume", "--out-dir", tmp_path],
                    tmp_path, cli, "was trained with --epochs 2 --lr 0.1; resume with the same settings")


def test_resume_from_a_file_that_is_no_checkpoint_is_rejected(tmp_path, cli):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "lenet5_seed0.pt").write_bytes(b"not a checkpoint")
    assert_rejected(["--resume", "--out-dir", tmp_path], tmp_path, cli, "is not a checkpoint of main.py")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_trains_and_reports(tmp_path, cli):
    status, _, _ = cli(["--model", "lenet5_regularized", "--limit", "4096", "--epochs", "2", "--device", "cuda",
                        "--out-dir", tmp_path])
    assert status == 0
    results = results_of(tmp_path, "lenet5_regularized_seed0")
    assert results["device"].startswith("cuda") and results["history"][-1]["eval_acc"] > 80


@pytest.mark.parametrize("program", ["main.py", "predict.py", "demo.py"])
def test_every_option_in_the_help_gives_its_default(program):
    module = __import__(program[:-3])
    text = module.get_args_parser().format_help()
    options = re.split(r"\n  (?=-)", text.split("options:")[1])[1:]
    silent = [o.split()[0] for o in options if "default" not in o and not o.startswith("-h") and "same as" not in o]
    assert options and silent == []
    assert "(default: None)" not in text and "(default: False)" not in text


def test_compile_without_a_cpp_compiler_is_one_line_before_any_work(tmp_path, cli, monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    status, out, err = cli(["--compile", *QUICK, "--out-dir", tmp_path])
    assert status == 2 and err.count("\n") == 1 and "--compile: torch.compile builds its kernels with a C++" in err
    assert not (tmp_path / "results").exists()


def test_the_thread_advice_names_omp_num_threads_only_up_to_the_cores_torch_lets_it_reach(monkeypatch):
    import main
    from conftest import check_advice
    cores = os.cpu_count()
    # torch caps the count OMP_NUM_THREADS asks for at the cores, so advice past them would loop.
    reached = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], text=True,
                             capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(cores + 1)}, timeout=60)
    assert int(reached.stdout) <= cores
    assert main.set_threads(cores) == f"set OMP_NUM_THREADS={cores} in the environment to continue it"
    advice = main.set_threads(cores + 1)
    assert "OMP_NUM_THREADS=" not in advice and f"where there are {cores + 1}" in advice
    check_advice("main", advice)
