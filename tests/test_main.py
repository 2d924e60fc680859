"""main.py as users call it: training, its files, resuming, evaluating, and one-line errors."""
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torchvision

import main
from helpers import (PYTHON, QUICK, ROOT, RUN, assert_one_line_error, assert_rejected, assert_whole_files,
                     checkpoint_of, files_under, guards, interrupt_epoch, results_of, start_training, wait_for,
                     without_seconds)
from mnistlab import checkpoints, engine, files, paths


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
    from mnistlab.recipes import NAMED_RECIPES
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
    from mnistlab import measurements, runs
    from mnistlab.recipes import resolve_recipe
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


def test_arguments_are_checked_before_torch_is_imported():
    done = subprocess.run([sys.executable, "-X", "importtime", str(ROOT / "main.py"), "--epochs", "0"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "--epochs: must be from 1" in done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "argparse" in imported and not {"torch", "torchvision", "matplotlib"} & imported


def test_evaluate_reproduces_the_final_epoch_of_the_run(finished, cli):
    before = files_under(finished)
    status, out, _ = cli(["--model", "lenet5", "--evaluate", "--limit", "512", "--device", "cpu",
                          "--checkpoint", finished / "checkpoints" / "lenet5_seed0.pt"])
    assert status == 0 and files_under(finished) == before
    final = results_of(finished, "lenet5_seed0")["history"][-1]
    assert f"loss {final['eval_loss']:.4f}  accuracy {final['eval_acc']:.2f}%" in out
    errors = round(512 * (1 - final["eval_acc"] / 100))
    assert f"errors {errors:,}" in out
    table = [line.split() for line in out.splitlines() if re.match(r"^\s+\d\s+\d+\s+\d+\s+[\d.]+%$", line)]
    assert [int(row[0]) for row in table] == list(range(10))
    assert sum(int(row[1]) for row in table) == 512 and sum(int(row[2]) for row in table) == errors
    assert re.search(r"most frequent confusions: (\d read as \d \(\d+x\)(, )?){1,5}$", out, re.MULTILINE)


def test_evaluate_with_an_out_dir_draws_the_confusion_matrix(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    status, out, _ = cli(["--model", "lenet5", "--evaluate", "--limit", "512", "--device", "cpu",
                          "--out-dir", tmp_path])
    assert status == 0 and (tmp_path / "plots" / "lenet5_seed0_confusion.png").is_file()


def test_evaluate_names_the_figure_after_the_checkpoint_it_scores(finished, tmp_path, cli):
    checkpoint = tmp_path / "mine.pt"
    shutil.copy(finished / "checkpoints" / "lenet5_seed0.pt", checkpoint)
    status, _, _ = cli(["--evaluate", "--recipe", "fast", "--checkpoint", checkpoint, "--limit", "512",
                        "--device", "cpu", "--out-dir", tmp_path / "out"])
    assert status == 0 and files_under(tmp_path / "out") == ["plots", "plots/mine_confusion.png"]


@guards("main.py",
        "--evaluate checks its --out-dir before any work",
        "    if args.out_dir:\n        files.prepare_out_dir(args.out_dir, confusions)",
        "    pass")
@pytest.mark.parametrize("where", ["/proc", "a file", "a folder in the figure's place"])
def test_evaluate_checks_its_out_dir_before_any_work(where, finished, tmp_path, cli):
    out_dir = {"/proc": Path("/proc/nope"), "a file": tmp_path / "a-file"}.get(where, tmp_path / "out")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "out" / "plots" / "lenet5_seed0_confusion.png").mkdir(parents=True)
    status, out, err = cli(["--evaluate", "--checkpoint", finished / "checkpoints" / "lenet5_seed0.pt", "--limit",
                            "512", "--device", "cpu", "--out-dir", out_dir])
    assert status == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err


@guards("main.py",
        "--evaluate without a run says how to train it",
        "        if not args.checkpoint and not path.exists():",
        "        if False:")
def test_evaluate_without_a_run_says_how_to_train_it(tmp_path, cli):
    status, _, err = cli(["--evaluate", "--recipe", "fast", "--tag", "x", "--seed", "3", "--out-dir", tmp_path])
    assert status == 2 and err == (f"main.py: error: --evaluate: no checkpoint at {tmp_path}/checkpoints/"
                                   f"lenet5_fast_x_seed3.pt; train it first: python main.py --model lenet5 --recipe "
                                   f"fast --tag x --seed 3 --out-dir {tmp_path}\n")


@guards("mnistlab/checkpoints.py",
        "load_model refuses another model's checkpoint",
        "    if model_name and saved != model_name:",
        "    if False:")
@guards("main.py",
        "--evaluate --validation refuses a run trained on the validation images",
        '        if args.validation and not checkpoint["recipe"]["validation"]:',
        "        if False:")
@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist; train the model first"),
    ("other model", "holds a lenet5 checkpoint, not custom_mlp; pass --model lenet5"),
    ("not a checkpoint", "is not a checkpoint of main.py"),
    ("validation", "was trained without --validation"),
])
def test_evaluate_rejects_bad_checkpoints(case, message, finished, tmp_path, cli):
    path = {"missing": tmp_path / "nothing.pt", "not a checkpoint": tmp_path / "junk.pt"}.get(
        case, finished / "checkpoints" / "lenet5_seed0.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    model = "custom_mlp" if case == "other model" else "lenet5"
    flags = ["--validation"] if case == "validation" else []
    status, out, err = cli(["--model", model, "--evaluate", "--device", "cpu", "--checkpoint", path, *flags])
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err and message in err, err


@guards("main.py",
        "--checkpoint without --evaluate is refused",
        "    if args.checkpoint and not args.evaluate:",
        "    if False:")
@guards("main.py",
        "--evaluate refuses the flags that only training reads",
        "        if given:\n            flag",
        "        if False:\n            flag")
@guards("main.py",
        "--evaluate refuses the recipe's flags, --no-batch-norm too",
        "TRAINING_FLAGS = (*RECIPE_KEYS, ",
        "TRAINING_FLAGS = (")
@guards("main.py",
        "--tag may not name a run like another model's or recipe's",
        "            check_run_name(name, args.tag, args.recipe)",
        "            pass")
@guards("mnistlab/cli.py",
        "a number flag is held to its bounds",
        "        if not (math.isfinite(value) and accept(value)):",
        "        if not math.isfinite(value):")
@guards("mnistlab/cli.py",
        "--tag must be safe in a file name",
        "        return check_tag(text)",
        "        return text")
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


def test_an_unreadable_data_dir_is_rejected(tmp_path, cli, monkeypatch):
    # CI may run as root, which passes every permission check; so the check itself is made to say no.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    access = engine.dataset.os.access
    monkeypatch.setattr(engine.dataset.os, "access", lambda path, mode: path != data_dir and access(path, mode))
    assert_rejected(["--data-dir", data_dir, "--out-dir", tmp_path / "out"], tmp_path, cli,
                    "cannot be read; fix its permissions or pass another --data-dir")


def test_a_corrupt_data_file_is_rejected(tmp_path, cli):
    raw = engine.dataset.prepare()
    data_dir = tmp_path / "data"
    (data_dir / "MNIST" / "raw").mkdir(parents=True)
    for name in engine.dataset.MNIST.sha256:
        (data_dir / "MNIST" / "raw" / name).write_bytes((raw / name).read_bytes()[:5000])
    assert_rejected(["--data-dir", data_dir, "--out-dir", tmp_path / "out"], tmp_path, cli,
                    "fails its SHA-256 check (truncated or corrupt); delete it")


def test_a_missing_data_file_without_bundle_or_network_is_rejected(tmp_path, cli, monkeypatch):
    def offline(self):
        raise OSError("offline:\nno mirror\nanswered")
    monkeypatch.setitem(engine.dataset.DATASETS, "mnist", replace(engine.dataset.MNIST, archives=tmp_path / "nothing"))
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    assert_rejected(["--data-dir", tmp_path, "--out-dir", tmp_path / "out"], tmp_path, cli,
                    "download failed (offline: no mirror answered); copy the four *-ubyte.gz files into")


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_an_absent_device_is_rejected(device, tmp_path, cli):
    if {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}[device]():
        pytest.skip(f"{device} is available here")
    assert_rejected(["--device", device, "--out-dir", tmp_path / "out"], tmp_path, cli,
                    f"--device {device}: no {device.upper()} device is available here; use --device cpu")


@guards("main.py",
        "main.py trains nothing into the repository",
        "    if out_dir.resolve() == files.ROOT:",
        "    if False:")
def test_training_into_the_repository_is_refused_and_another_out_dir_is_taken(tmp_path, cli):
    before = files_under(ROOT / "plots")
    status, _, err = cli(["--model", "all", "--resume", "--out-dir", ROOT])
    assert status == 2 and err == (f"main.py: error: --out-dir {paths.relative(ROOT)} is the repository, whose results/ and plots/ are "
                                   f"the report's (make report writes them); pass another --out-dir\n")
    assert files_under(ROOT / "plots") == before  # no comparison figure, or any other, drawn there
    status, _, err = cli(["--model", "all", "--resume", *QUICK, "--out-dir", tmp_path])  # as advised
    assert status == 0 and (tmp_path / "plots" / "comparison_seed0.png").exists(), err


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


@guards("main.py",
        "--compile needs a C++ compiler on PATH",
        "        if args.compile and not any(map(shutil.which, COMPILERS)):",
        "        if False:")
def test_compile_without_a_cpp_compiler_is_one_line_before_any_work(tmp_path, cli, monkeypatch):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    status, out, err = cli(["--compile", *QUICK, "--out-dir", tmp_path])
    assert status == 2 and err.count("\n") == 1 and "--compile: torch.compile builds its kernels with a C++" in err
    assert not (tmp_path / "results").exists()


@guards("main.py",
        "OMP_NUM_THREADS advised only up to the cores torch lets it reach",
        "    if count <= (os.cpu_count() or 1):",
        "    if True:")
def test_the_thread_advice_names_omp_num_threads_only_up_to_the_cores_torch_lets_it_reach(monkeypatch):
    import main
    from helpers import check_advice
    cores = os.cpu_count()
    # torch caps the count OMP_NUM_THREADS asks for at the cores, so advice past them would loop.
    reached = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], text=True,
                             capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(cores + 1)}, timeout=60)
    assert int(reached.stdout) <= cores
    assert main.set_threads(cores) == f"set OMP_NUM_THREADS={cores} in the environment to continue it"
    advice = main.set_threads(cores + 1)
    assert "OMP_NUM_THREADS=" not in advice and f"where there are {cores + 1}" in advice
    check_advice("main", advice)


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


@guards("main.py",
        "--evaluate --checkpoint refuses --model all",
        "    if args.checkpoint and len(names) > 1:",
        "    if False:")
def test_evaluate_checkpoint_with_model_all_is_refused(tmp_path, cli):
    status, out, err = cli(["--model", "all", "--evaluate", "--checkpoint", tmp_path / "lenet5_seed0.pt",
                            "--limit", "64", "--device", "cpu"])
    assert status == 2 and out == "" and err == ("main.py: error: --checkpoint names one model's checkpoint; pass "
                                                 "--model too, not --model all\n")


@guards("main.py",
        "the resume command printed after a signal drops --overwrite",
        '[a for a in sys.argv if a != "--overwrite"]',
        "list(sys.argv)")
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


@guards("main.py",
        "--evaluate refuses --compile, which only training reads",
        '"train_size", "amp", "compile", "resume"',
        '"train_size", "amp", "resume"')
def test_evaluate_refuses_every_flag_that_only_training_reads(tmp_path, cli):
    # Every option of main.py that is not listed here as --evaluate's own is a training flag, and is in the list.
    own = {"--help", "--model", "--recipe", "--seed", "--device", "--dataset", "--validation", "--limit",
           "--eval-batch-size", "--data-dir", "--out-dir", "--tag", "--evaluate", "--checkpoint", "--no-augment"}
    options = {option for action in main.get_args_parser()._actions for option in action.option_strings
               if option.startswith("--")}
    assert options - own == {flag for _, flag in TRAINING_ONLY}
    for argv, flag in TRAINING_ONLY:
        status, out, err = cli(["--evaluate", *argv, "--out-dir", tmp_path])
        assert status == 2 and out == "" and err == (
            f"main.py: error: {flag} sets how to train, and --evaluate trains nothing (it reads the checkpoint's "
            f"recipe); drop {flag}, or drop --evaluate to train\n"), (argv, err)
    assert not list(tmp_path.iterdir())


def test_by_default_runs_go_to_a_git_ignored_folder(tmp_path, cli, monkeypatch):
    assert files.DEFAULT_OUT_DIR == ROOT / "runs"
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", "runs/results/lenet5_seed0.json"], cwd=ROOT)
        assert ignored.returncode == 0
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path / "runs")
    status, out, _ = cli(["--model", "lenet5", *QUICK])
    assert status == 0 and f"wrote {tmp_path}/runs/results/{RUN}.json" in out
    assert (tmp_path / "runs" / "checkpoints" / f"{RUN}.pt").is_file()


@guards("mnistlab/runs.py",
        "a run resumes only at the torch thread count it began with",
        "    if threads is not None and began is not None and began != threads:",
        "    if False:")
@guards("main.py",
        "main.py resumes a run only at torch's thread count",
        "                             threads=torch.get_num_threads(),",
        "                             threads=None,")
def test_resume_at_another_thread_count_is_refused_naming_what_sets_it(tmp_path, cli, monkeypatch):
    argv = ["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path]
    began = torch.get_num_threads()
    restore = interrupt_epoch(monkeypatch, 2)
    assert cli(argv)[0] == 130
    restore()
    assert checkpoint_of(tmp_path)["threads"] == results_of(tmp_path)["threads"] == began
    saved = (tmp_path / "checkpoints" / f"{RUN}.pt").read_bytes()
    torch.set_num_threads(began + 1)  # as on a machine with another core count
    try:
        status, _, err = cli([*argv, "--resume"])
    finally:
        torch.set_num_threads(began)
    assert_one_line_error(err, status, 2, f"--resume: {tmp_path}/checkpoints/{RUN}.pt was trained with {began} torch "
                                          f"threads, and this run would take {began + 1}, which changes its numbers; "
                                          f"set OMP_NUM_THREADS={began} in the environment to continue it\n")
    assert (tmp_path / "checkpoints" / f"{RUN}.pt").read_bytes() == saved
    # The advice, followed: a fresh process, where torch reads the count from the environment.
    done = subprocess.run([sys.executable, "main.py", *map(str, argv), "--resume"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": str(began)}, timeout=300)
    assert done.returncode == 0 and len(re.findall(r"^epoch ", done.stdout, re.MULTILINE)) == 2, done.stderr
    assert results_of(tmp_path)["threads"] == began and len(results_of(tmp_path)["history"]) == 3


def test_a_second_ctrl_c_exits_at_once_leaving_whole_files(tmp_path):
    process = start_training(tmp_path)
    wait_for(tmp_path / "checkpoints" / f"{RUN}.pt", process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err
    assert "checkpoint" in err
    assert_whole_files(tmp_path)


def test_a_fashion_mnist_run_is_named_after_its_dataset_and_scored_on_its_test_set(fashion_run):
    assert files_under(fashion_run) == [
        "checkpoints", "checkpoints/.fashion-mnist_lenet5_seed0.lock", "checkpoints/fashion-mnist_lenet5_seed0.pt",
        "plots", "plots/fashion-mnist_lenet5_seed0_curves.png", "results", "results/fashion-mnist_lenet5_seed0.json"]
    results = results_of(fashion_run, "fashion-mnist_lenet5_seed0")
    assert results["recipe"]["dataset"] == "fashion-mnist"
    # Its predictions, against Fashion-MNIST's own test labels (read by torchvision), give the accuracy it reports.
    truth = torchvision.datasets.FashionMNIST(engine.dataset.DEFAULT_DATA_DIR, train=False).targets[:512]
    predicted = torch.tensor([int(digit) for digit in results["predictions"]])
    assert round(100 * (predicted == truth).double().mean().item(), 4) == round(results["history"][-1]["eval_acc"], 4)


def test_evaluate_names_fashion_mnists_classes(fashion_run, cli):
    status, out, _ = cli(["--evaluate", "--dataset", "fashion-mnist", "--limit", "512", "--device", "cpu",
                          "--out-dir", fashion_run])
    assert status == 0 and (fashion_run / "plots" / "fashion-mnist_lenet5_seed0_confusion.png").is_file()
    classes = engine.dataset.DATASETS["fashion-mnist"].classes
    truth = engine.dataset.read_split(False, name="fashion-mnist")[1][:512]
    rows = [line.rsplit(None, 3) for line in out.splitlines() if line.endswith("%") and "accuracy" not in line]
    assert [row[0].strip() for row in rows] == list(classes)
    assert [int(row[1]) for row in rows] == truth.bincount(minlength=10).tolist()
    assert re.search(r"most frequent confusions: [A-Z][\w/ -]+ read as [A-Z][\w/ -]+ \(\d+x\)", out)


@guards("mnistlab/checkpoints.py",
        "--evaluate refuses a checkpoint trained on another dataset",
        "    if dataset and trained_on != dataset:",
        "    if False:")
@guards("mnistlab/recipes.py",
        "a run resumes only on the dataset it began on",
        '    "dataset": Setting(str, choices=DATASET_NAMES),\n',
        "")
def test_a_checkpoint_of_the_other_dataset_is_neither_evaluated_nor_resumed_as_mnist(fashion_run, tmp_path, cli):
    fashion = fashion_run / "checkpoints" / "fashion-mnist_lenet5_seed0.pt"
    status, out, err = cli(["--evaluate", "--checkpoint", fashion, "--limit", "512", "--device", "cpu"])
    assert status == 2 and err == (f"main.py: error: --checkpoint: {fashion} was trained on Fashion-MNIST, not MNIST; "
                                   f"pass --dataset fashion-mnist\n")
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(fashion, tmp_path / "checkpoints" / "lenet5_seed0.pt")  # renamed as the MNIST run
    assert_rejected(["--resume", *QUICK, "--out-dir", tmp_path], tmp_path, cli,
                    f"--resume: {tmp_path}/checkpoints/lenet5_seed0.pt was trained with --dataset fashion-mnist; "
                    f"resume with the same settings")
