import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--limit", "512", "--epochs", "2", "--device", "cpu"]


def cli(argv, capsys):
    """Run main.py in-process; returns (exit status, stdout, stderr)."""
    try:
        status = main.main(main.get_args_parser().parse_args([str(a) for a in argv]))
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_a_cli_run_writes_curves_results_and_checkpoint(tmp_path, capsys):
    status, out, _ = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path], capsys)
    assert status == 0
    assert files_under(tmp_path) == ["checkpoints", "checkpoints/lenet5.pt", "plots", "plots/lenet5_curves.png",
                                     "results", "results/lenet5.json"]
    assert "| conv1 | weight (6, 1, 5, 5), bias (6,)" in out and "recipe: model=lenet5" in out
    assert out.count("epoch ") == 2
    results = json.loads((tmp_path / "results" / "lenet5.json").read_text())
    assert results["model"] == "lenet5" and results["params"] == 61_706 and results["seed"] == 0
    assert results["epochs"] == 2 and results["device"] == "cpu" and results["status"] == "complete"
    assert results["torch"] == torch.__version__ and results["args"]["limit"] == 512
    assert [h["epoch"] for h in results["history"]] == [1, 2]
    assert set(results["history"][0]) == {"epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"}
    assert 10 < results["history"][-1]["test_acc"] <= 100
    assert (tmp_path / "plots" / "lenet5_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    checkpoint = torch.load(tmp_path / "checkpoints" / "lenet5.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and checkpoint["history"] == results["history"]
    assert set(checkpoint) >= {"model", "optimizer", "scheduler", "rng", "recipe"}


def test_all_models_write_a_comparison_figure(tmp_path, capsys):
    status, _, _ = cli(["--model", "all", "--limit", "256", "--epochs", "1", "--device", "cpu",
                        "--out-dir", tmp_path, "--tag", "quick"], capsys)
    assert status == 0
    assert files_under(tmp_path / "plots") == ["comparison_quick.png", "custom_mlp_quick_curves.png",
                                               "lenet5_quick_curves.png", "lenet5_regularized_quick_curves.png"]


def test_metrics_are_weighted_over_every_sample(tmp_path, capsys):
    status, _, _ = cli(["--model", "custom_mlp", "--limit", "300", "--batch-size", "128", "--epochs", "1",
                        "--device", "cpu", "--out-dir", tmp_path], capsys)
    assert status == 0
    history = json.loads((tmp_path / "results" / "custom_mlp.json").read_text())["history"]
    # 300 test images: every accuracy is a whole number of them, which batch-averaging would not give.
    assert round(history[0]["test_acc"] * 3, 6) == round(history[0]["test_acc"] * 3)


def test_validation_runs_score_on_held_out_training_images(tmp_path, capsys):
    outputs = {}
    for tag, flags in (("val", ["--validation"]), ("test", [])):
        status, outputs[tag], _ = cli(["--model", "custom_mlp", *QUICK, "--tag", tag, "--out-dir", tmp_path, *flags],
                                      capsys)
        assert status == 0
    validation, test = (json.loads((tmp_path / "results" / f"custom_mlp_{tag}.json").read_text())
                        for tag in ("val", "test"))
    assert validation["evaluated_on"] == "validation" and test["evaluated_on"] == "test"
    assert validation["history"][-1]["test_loss"] != test["history"][-1]["test_loss"]
    assert "validation loss" in outputs["val"] and "test loss" in outputs["test"]


def test_the_same_seed_gives_the_same_history(tmp_path, capsys):
    histories = {}
    for seed, tag in ((0, "a"), (0, "b"), (1, "c")):
        status, _, _ = cli(["--model", "lenet5_regularized", *QUICK, "--seed", seed, "--tag", tag,
                            "--out-dir", tmp_path], capsys)
        assert status == 0
        histories[tag] = json.loads((tmp_path / "results" / f"lenet5_regularized_{tag}.json").read_text())["history"]
    assert without_seconds(histories["a"]) == without_seconds(histories["b"])
    assert without_seconds(histories["a"]) != without_seconds(histories["c"])


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, capsys, monkeypatch):
    argv = ["--model", "lenet5_regularized", "--limit", "512", "--epochs", "3", "--device", "cpu"]
    assert cli([*argv, "--out-dir", tmp_path / "straight"], capsys)[0] == 0

    real_train_one_epoch = main.train_one_epoch
    calls = []

    def interrupted_in_epoch_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(main, "train_one_epoch", interrupted_in_epoch_3)
    status, _, err = cli([*argv, "--out-dir", tmp_path / "resumed"], capsys)
    assert status == 130 and "resume with:" in err
    saved = json.loads((tmp_path / "resumed" / "results" / "lenet5_regularized.json").read_text())
    assert saved["status"] == "interrupted" and len(saved["history"]) == 2
    monkeypatch.setattr(main, "train_one_epoch", real_train_one_epoch)
    status, out, _ = cli([*argv, "--out-dir", tmp_path / "resumed", "--resume"], capsys)
    assert status == 0 and "after epoch 2" in out and out.count("epoch ") == 2

    straight, resumed = (torch.load(tmp_path / run / "checkpoints" / "lenet5_regularized.pt", weights_only=True)
                         for run in ("straight", "resumed"))
    assert without_seconds(straight["history"]) == without_seconds(resumed["history"])
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


def test_a_diverging_run_stops_with_the_epoch_and_step(tmp_path, capsys):
    status, out, err = cli(["--model", "lenet5", *QUICK, "--lr", "1e6", "--out-dir", tmp_path], capsys)
    assert status == 1
    assert err.count("\n") == 1 and "training diverged: loss became" in err
    assert re.search(r"at step [1-4]/4 of epoch 1; lower --lr \(it was 1000000.0\)$", err)
    assert "nan" not in out


def test_divergence_names_the_first_bad_step(tmp_path, capsys, monkeypatch):
    class NanOnSixthTrainingStep(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.steps = model, 0

        def forward(self, x):
            self.steps += self.training
            return self.model(x) * (float("nan") if self.steps >= 6 else 1.0)

    build_model = main.build_model
    monkeypatch.setattr(main, "build_model", lambda *args: NanOnSixthTrainingStep(build_model(*args)))
    status, _, err = cli(["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path], capsys)
    assert status == 1 and "loss became nan at step 2/4 of epoch 2; lower --lr" in err
    results = json.loads((tmp_path / "results" / "lenet5.json").read_text())
    assert results["status"] == "diverged" and len(results["history"]) == 1


def start_training(tmp_path):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--model", "lenet5", "--limit", "2000", "--epochs", "500",
         "--device", "cpu", "--out-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, "training ended before its first epoch"
        time.sleep(0.05)


def assert_whole_files(out_dir):
    """No temporary leftovers, and every output file there is complete."""
    assert not [p for p in out_dir.rglob("*") if p.name.endswith(".tmp")]
    results, curves = out_dir / "results" / "lenet5.json", out_dir / "plots" / "lenet5_curves.png"
    if results.exists():
        json.loads(results.read_text())
    if curves.exists():
        assert curves.read_bytes()[-8:] == b"IEND\xaeB`\x82"
    torch.load(out_dir / "checkpoints" / "lenet5.pt", weights_only=True)


def test_ctrl_c_keeps_the_last_epoch_and_says_how_to_resume(tmp_path):
    process = start_training(tmp_path)
    wait_for(tmp_path / "checkpoints" / "lenet5.pt", process)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err
    assert "--resume" in err.splitlines()[-1]
    assert_whole_files(tmp_path)
    assert (tmp_path / "plots" / "lenet5_curves.png").exists()
    results = json.loads((tmp_path / "results" / "lenet5.json").read_text())
    checkpoint = torch.load(tmp_path / "checkpoints" / "lenet5.pt", weights_only=True)
    assert results["status"] == "interrupted"
    assert 1 <= len(results["history"]) == checkpoint["epoch"] < 500
    assert results["history"] == checkpoint["history"]


def test_a_second_ctrl_c_exits_at_once_leaving_whole_files(tmp_path):
    process = start_training(tmp_path)
    wait_for(tmp_path / "checkpoints" / "lenet5.pt", process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 130
    assert_whole_files(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_trains_and_reports(tmp_path, capsys):
    status, _, _ = cli(["--model", "lenet5_regularized", "--limit", "4096", "--epochs", "2", "--device", "cuda",
                        "--out-dir", tmp_path], capsys)
    assert status == 0
    results = json.loads((tmp_path / "results" / "lenet5_regularized.json").read_text())
    assert results["device"].startswith("cuda") and results["history"][-1]["test_acc"] > 80


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written

def assert_rejected(argv, tmp_path, capsys, message):
    before = files_under(tmp_path)
    status, out, err = cli(argv, capsys)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "error:" in err
    assert message in err
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("argv, message", [
    (["--model", "resnet"], "invalid choice: 'resnet'"),
    (["--epochs", "0"], "--epochs: must be positive, got 0"),
    (["--epochs", "-3"], "--epochs: must be positive, got -3"),
    (["--batch-size", "0"], "--batch-size: must be positive, got 0"),
    (["--lr", "0"], "--lr: must be positive, got 0"),
    (["--lr", "-0.1"], "--lr: must be positive, got -0.1"),
    (["--lr", "fast"], "--lr: expected a number, got 'fast'"),
    (["--lr", "inf"], "--lr: must be positive, got inf"),
    (["--weight-decay=-1e-4"], "--weight-decay: must be zero or more, got -1e-4"),
    (["--model", "lenet5_regularized", "--dropout", "1"], "--dropout: must be in [0, 1), got 1"),
    (["--model", "lenet5", "--dropout", "0.2"], "--dropout applies only to lenet5_regularized"),
])
def test_bad_arguments_are_rejected(argv, message, tmp_path, capsys):
    assert_rejected([*argv, "--out-dir", tmp_path / "out"], tmp_path, capsys, message)


def test_a_missing_data_dir_is_rejected(tmp_path, capsys):
    assert_rejected(["--data-dir", tmp_path / "nowhere", "--out-dir", tmp_path / "out"], tmp_path, capsys,
                    "does not exist; create it or pass another --data-dir")


def test_an_unreadable_data_dir_is_rejected(tmp_path, capsys, monkeypatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != data_dir and access(path, mode))
    assert_rejected(["--data-dir", data_dir, "--out-dir", tmp_path / "out"], tmp_path, capsys,
                    "cannot be read; fix its permissions or pass another --data-dir")


def test_a_corrupt_data_file_is_rejected(tmp_path, capsys):
    raw = main.dataset.prepare_mnist()
    data_dir = tmp_path / "data"
    (data_dir / "MNIST" / "raw").mkdir(parents=True)
    for name in main.dataset.SHA256:
        (data_dir / "MNIST" / "raw" / name).write_bytes((raw / name).read_bytes()[:5000])
    assert_rejected(["--data-dir", data_dir, "--out-dir", tmp_path / "out"], tmp_path, capsys,
                    "fails its SHA-256 check (truncated or corrupt); delete it")


def test_a_missing_data_file_without_bundle_or_network_is_rejected(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(main.dataset, "BUNDLE_DIR", tmp_path / "no-bundle")
    monkeypatch.setattr(main.dataset.datasets.MNIST, "download", lambda self: (_ for _ in ()).throw(OSError("offline")))
    assert_rejected(["--data-dir", tmp_path, "--out-dir", tmp_path / "out"], tmp_path, capsys,
                    "download failed (offline); copy the four *-ubyte.gz files into")


def test_an_unwritable_out_dir_is_rejected(tmp_path, capsys):
    (tmp_path / "a-file").write_text("")
    assert_rejected(["--out-dir", tmp_path / "a-file" / "out"], tmp_path, capsys, "pass a writable --out-dir")


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_an_absent_device_is_rejected(device, tmp_path, capsys):
    if {"cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}[device]():
        pytest.skip(f"{device} is available here")
    assert_rejected(["--device", device, "--out-dir", tmp_path / "out"], tmp_path, capsys,
                    f"--device {device}: no {device.upper()} device is available here; use --device cpu")


def test_resume_without_a_checkpoint_is_rejected(tmp_path, capsys):
    assert_rejected(["--resume", "--out-dir", tmp_path], tmp_path, capsys, "--resume: no checkpoint at")


def test_resume_from_another_models_checkpoint_is_rejected(tmp_path, capsys):
    assert cli(["--model", "lenet5", *QUICK, "--epochs", "1", "--out-dir", tmp_path], capsys)[0] == 0
    (tmp_path / "checkpoints" / "lenet5.pt").rename(tmp_path / "checkpoints" / "custom_mlp.pt")
    assert_rejected(["--model", "custom_mlp", *QUICK, "--resume", "--out-dir", tmp_path], tmp_path, capsys,
                    "holds a lenet5 checkpoint, not custom_mlp; pass --model lenet5")


def test_resume_with_other_settings_is_rejected(tmp_path, capsys):
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path], capsys)[0] == 0
    assert_rejected(["--model", "lenet5", *QUICK, "--epochs", "5", "--lr", "0.2", "--resume", "--out-dir", tmp_path],
                    tmp_path, capsys, "was trained with --epochs 2 --lr 0.1; resume with the same settings")


def test_resume_from_a_file_that_is_no_checkpoint_is_rejected(tmp_path, capsys):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "lenet5.pt").write_bytes(b"not a checkpoint")
    assert_rejected(["--resume", "--out-dir", tmp_path], tmp_path, capsys, "is not a checkpoint of main.py")
