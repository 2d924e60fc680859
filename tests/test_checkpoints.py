"""mnistlab/checkpoints.py, the one owner of the checkpoint format: crafted, damaged and misplaced checkpoints, as
main.py's --evaluate and --resume, predict.py and the demo read them, each refused in one line before a model is
built from it; and the choice of each model's best finished run."""
import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from PIL import Image, ImageDraw

import demo
import predict
from helpers import (QUICK, ROOT, RUN, assert_one_line_error, checkpoint_of, guards, interrupt_epoch, outputs_of,
                     quick_recipe, tiny_recipe)
from mnistlab import checkpoints
from mnistlab import cli as command_line
from mnistlab import engine, files, runner, runs, server
from mnistlab.errors import UsageError

MLP_RUN = "custom_mlp_seed0"


def craft(checkpoint, damage):
    """checkpoint (custom_mlp's, as main.py wrote it) with one thing a hostile or broken file may hold."""
    if damage == "a string recipe":
        checkpoint["recipe"] = "lenet5"
    elif damage == "a list recipe":
        checkpoint["recipe"] = ["custom_mlp"]
    elif damage == "dropout 5":
        checkpoint["recipe"]["dropout"] = 5
    elif damage == "an empty history":
        checkpoint["history"] = []
    elif damage == "an epoch without eval_acc":
        del checkpoint["history"][-1]["eval_acc"]
    elif damage == "a million-wide layer":
        checkpoint["recipe"]["hidden"] = [10**6, 32]
    elif damage == "NaN weights":
        checkpoint["model"]["fc2.weight"][0, 0] = float("nan")
    elif damage == "a model named os.system":
        checkpoint["recipe"]["model"] = "os.system"
    elif damage == "an accuracy of 1e308":  # it would win predict.py's choice of the best checkpoint
        checkpoint["history"][-1]["eval_acc"] = 1e308
    elif damage in ("meta weights", "sparse weights", "complex weights"):
        weight = checkpoint["model"]["fc2.weight"]
        checkpoint["model"]["fc2.weight"] = {"meta weights": lambda: torch.empty_like(weight, device="meta"),
                                             "sparse weights": weight.to_sparse,
                                             "complex weights": lambda: weight.to(torch.complex64)}[damage]()
    return checkpoint


DAMAGES = {"a string recipe": "its recipe is a str, not a dict of settings",
           "a list recipe": "its recipe is a list, not a dict of settings",
           "dropout 5": "its recipe's dropout is 5, not a number from 0 to 0.99",
           "an empty history": "its history holds 0 records, where its epoch is 1",
           "an epoch without eval_acc": "an epoch of its history has no finite eval_acc",
           "a million-wide layer": "its recipe's hidden is [1000000, 32], not widths from 1 to 4096, at most 8 of "
                                   "them",
           "NaN weights": "its weights hold NaN or infinite values",
           "a model named os.system": "its recipe's model is 'os.system', not one of lenet5, custom_mlp, "
                                      "lenet5_regularized",
           "an accuracy of 1e308": "an epoch of its history has a eval_acc of 1e+308, not a percentage",
           "meta weights": "its weight 'fc2.weight' is a torch.float32 torch.strided tensor on meta, not what main.py "
                           "saves",
           "sparse weights": "its weight 'fc2.weight' is a torch.float32 torch.sparse_coo tensor on cpu, not what "
                             "main.py saves",
           "complex weights": "its weight 'fc2.weight' is a torch.complex64 torch.strided tensor on cpu, not what "
                              "main.py saves"}


@pytest.fixture
def crafted(trained_runs, tmp_path):
    """crafted(damage): an output folder whose custom_mlp checkpoint holds that damage; returns its path."""
    def make(damage):
        out_dir = tmp_path / damage.replace(" ", "_")
        (out_dir / "checkpoints").mkdir(parents=True)
        checkpoint = torch.load(trained_runs / "checkpoints" / f"{MLP_RUN}.pt", weights_only=True)
        torch.save(craft(checkpoint, damage), out_dir / "checkpoints" / f"{MLP_RUN}.pt")
        return out_dir / "checkpoints" / f"{MLP_RUN}.pt"
    return make


@pytest.fixture(scope="module")
def one_png(tmp_path_factory):
    """A dark "1" on light paper."""
    path = tmp_path_factory.mktemp("image") / "one.png"
    image = Image.new("L", (300, 400), 235)
    ImageDraw.Draw(image).line([(150, 70), (150, 330)], fill=20, width=26)
    image.save(path)
    return path


def one_line_error(err, status, message):
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"is not a checkpoint of main.py: {message}; delete it or train again" in err, err


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_crafted_checkpoint_is_one_line_and_exit_2_everywhere(damage, crafted, one_png, cli, capsys):
    path = crafted(damage)
    status, out, err = cli(["--model", "custom_mlp", "--evaluate", "--checkpoint", path, "--limit", "100"])
    one_line_error(err, status, DAMAGES[damage])
    status, _, err = cli(["--model", "custom_mlp", "--resume", "--epochs", "1", "--out-dir", path.parent.parent])
    one_line_error(err, status, DAMAGES[damage])
    status = predict.main(predict.get_args_parser().parse_args([str(one_png), "--checkpoint", str(path)]))
    out, err = capsys.readouterr()
    one_line_error(err, status, DAMAGES[damage])
    assert out == "" and "pass --model" not in err
    with pytest.raises(UsageError, match="delete it or train again"):
        server.load_models([path])


@guards("mnistlab/checkpoints.py",
        "a checkpoint's thread count is a whole number from 1",
        "    if threads is not None and (type(threads) is not int or threads < 1):",
        "    if False:")
@pytest.mark.parametrize("threads", ["two", 0, 2.5, True])
def test_a_thread_count_that_is_not_a_whole_number_from_1_is_refused(threads, trained_runs):
    checkpoint = torch.load(trained_runs / "checkpoints" / f"{MLP_RUN}.pt", weights_only=True)
    checkpoints.check_checkpoint(checkpoint)  # as main.py saved it, with its count
    with pytest.raises(ValueError, match=r"^its thread count is .+, not a whole number from 1$"):
        checkpoints.check_checkpoint({**checkpoint, "threads": threads})
    del checkpoint["threads"]
    checkpoints.check_checkpoint(checkpoint)  # saved before the count was kept


def test_a_crafted_file_among_the_checkpoints_is_skipped_and_said(crafted, trained_runs, one_png, monkeypatch,
                                                                   capsys):
    path = crafted("a million-wide layer")
    shutil.copy(trained_runs / "checkpoints" / "lenet5_seed0.pt", path.parent)
    (path.parent / "junk.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", path.parent.parent)
    status = predict.main(predict.get_args_parser().parse_args([str(one_png)]))
    out, err = capsys.readouterr()
    assert status == 0 and out.startswith(f"{one_png}: 1 (")
    assert err.splitlines() == [
        f"predict.py: skipped {path}, which is not a checkpoint of main.py: {DAMAGES['a million-wide layer']}",
        f"predict.py: skipped {path.parent}/junk.pt, which is not a checkpoint of main.py (BadZipFile)",
        f"reading with lenet5 from {path.parent}/lenet5_seed0.pt (epoch 1, final test accuracy "
        + err.splitlines()[2].split("accuracy ")[1]]
    assert [name for name, *_ in server.load_models([])] == ["lenet5"]
    assert capsys.readouterr().err.count("demo.py: skipped") == 2  # once each, not once per model


def test_a_checkpoint_whose_records_are_compressed_is_refused_before_it_expands(trained_runs, tmp_path, cli,
                                                                               monkeypatch):
    # Compressed, a record of zeros shrinks a thousandfold; torch.load would expand it in memory.
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(trained_runs / "checkpoints" / f"{MLP_RUN}.pt") as original, \
            zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as compressed:
        for record in original.infolist():
            compressed.writestr(record.filename, original.read(record))
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load reached"))
    status, _, err = cli(["--model", "custom_mlp", "--evaluate", "--checkpoint", bomb])
    assert status == 2 and err == (f"main.py: error: --checkpoint: {bomb} is not a checkpoint of main.py: its records "
                                   f"are compressed, which torch.save never does; pass the .pt file that main.py wrote\n")


def test_a_checkpoint_path_is_shown_on_one_line(tmp_path, cli):
    status, _, err = cli(["--model", "lenet5", "--evaluate", "--checkpoint", tmp_path / "x\nFAKE: line.pt"])
    assert status == 2 and err.count("\n") == 1 and "x\\nFAKE: line.pt does not exist" in err


@pytest.mark.parametrize("where", ["a named pipe", "a folder", "a symbolic link loop"])
def test_a_checkpoint_that_is_not_a_file_is_named_for_what_it_is(where, tmp_path, cli):
    path = tmp_path / "model.pt"
    {"a named pipe": lambda: os.mkfifo(path), "a folder": path.mkdir,
     "a symbolic link loop": lambda: path.symlink_to(path.name)}[where]()
    status, _, err = cli(["--model", "lenet5", "--evaluate", "--checkpoint", path])
    what = {"a named pipe": "a named pipe (FIFO)"}.get(where, where)
    assert status == 2 and err == (f"main.py: error: --checkpoint: {path} is {what}, not a checkpoint file; pass the "
                                   f".pt file that main.py wrote\n")


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


class Call:
    """Pickles as a call of os.mkdir: what a hostile checkpoint would hold instead of tensors."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


# What a damaged or hostile checkpoint may hold, on a checkpoint made without training (fast enough to run once per
# defence in tests/mutants.py), and the line that refuses it.
EDITED = {
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
    "an epoch numbered 2 first": (lambda c: c["history"][0].update(epoch=2),
                                  "an epoch of its history has epoch 2 where epoch 1 belongs"),
    "a negative loss": (lambda c: c["history"][0].update(train_loss=-0.5),
                        "an epoch of its history has a loss or time that is negative or past belief (losses up to "
                        "10000, times up to 1e+07 s)"),
    "a time past belief": (lambda c: c["history"][0].update(seconds=1e300),
                           "an epoch of its history has a loss or time that is negative or past belief"),
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


def test_a_checkpoint_over_the_size_cap_is_refused_before_torch_reads_it(trained_runs, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", 1000)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("read a checkpoint over the cap"))
    with pytest.raises(checkpoints.CheckpointError, match="more than the 0 GB of the largest model"):
        checkpoints.read(trained_runs / "checkpoints" / "lenet5_seed0.pt")


@guards("mnistlab/checkpoints.py",
        "a file that is not a zip archive never reaches torch.load",
        '        raise ValueError(f"is not a checkpoint of main.py ({type(e).__name__})") from None\n    finally:',
        "        records = []\n    finally:")
def test_a_checkpoint_that_is_not_a_zip_never_reaches_torch_load(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load read it"))
    (tmp_path / "old.pt").write_bytes(b"\x80\x02legacy pickle")
    with pytest.raises(checkpoints.CheckpointError, match=r"is not a checkpoint of main.py \(BadZipFile\)"):
        checkpoints.read(tmp_path / "old.pt")


@pytest.mark.parametrize("damage, message", [
    ("epoch 0", "its epoch is 0, not from 1 to its recipe's 1"),
    ("epoch past the recipe", "its epoch is 2, not from 1 to its recipe's 1"),
    ("a history that is a dict", "its history is a dict, not a list"),
    ("a record that is a list", "an epoch of its history is a list, not a dict"),
    ("a negative accuracy", "an epoch of its history has a train_acc of -1, not a percentage"),
    ("weights that are a list", "its weights are not a dict of tensors"),
    ("a missing weight", "its weights do not have the shapes of model.py's lenet5 with its recipe"),
    ("integer weights", "its weight 'fc2.weight' is a torch.int64"),
    ("infinite weights", "its weights hold NaN or infinite values"),
    ("no predictions key", "is not a checkpoint of main.py (no predictions)"),
])
def test_each_check_of_a_checkpoint_refuses_its_damage(damage, message, trained_runs, tmp_path):
    checkpoint = torch.load(trained_runs / "checkpoints" / "lenet5_seed0.pt", weights_only=True)
    weights = checkpoint["model"]
    if damage == "epoch 0":
        checkpoint["epoch"] = 0
    elif damage == "epoch past the recipe":
        checkpoint["epoch"] = 2
    elif damage == "a history that is a dict":
        checkpoint["history"] = {"epoch": 1}
    elif damage == "a record that is a list":
        checkpoint["history"] = [[1]]
    elif damage == "a negative accuracy":
        checkpoint["history"][0]["train_acc"] = -1
    elif damage == "weights that are a list":
        checkpoint["model"] = list(weights.values())
    elif damage == "a missing weight":
        del weights["fc2.bias"]
    elif damage == "integer weights":
        weights["fc2.weight"] = weights["fc2.weight"].long()
    elif damage == "infinite weights":
        weights["fc2.bias"][0] = float("inf")
    elif damage == "no predictions key":
        del checkpoint["predictions"]
    torch.save(checkpoint, tmp_path / "damaged.pt")
    with pytest.raises(checkpoints.CheckpointError) as caught:
        checkpoints.load_checked(tmp_path / "damaged.pt")
    assert message in str(caught.value) and str(caught.value).count("\n") == 0


def test_a_checkpoint_with_a_compressed_record_is_refused(trained_runs, tmp_path):
    with zipfile.ZipFile(trained_runs / "checkpoints" / "lenet5_seed0.pt") as source, \
            zipfile.ZipFile(tmp_path / "packed.pt", "w") as packed:
        for record in source.infolist():
            compress = zipfile.ZIP_DEFLATED if record.filename.endswith("data.pkl") else zipfile.ZIP_STORED
            packed.writestr(record.filename, source.read(record), compress_type=compress)
    with pytest.raises(checkpoints.CheckpointError, match="its records are compressed"):
        checkpoints.read(tmp_path / "packed.pt")


@guards("mnistlab/checkpoints.py",
        "the size cap is near the largest checkpoint main.py can write",
        "MAX_CHECKPOINT_BYTES = 2 * 1024**3",
        "MAX_CHECKPOINT_BYTES = 64 * 1024**3")
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


@guards("mnistlab/checkpoints.py",
        "torch.load reads tensors only, never arbitrary pickled objects",
        'checkpoint = torch.load(file, map_location="cpu", weights_only=True)',
        'checkpoint = torch.load(file, map_location="cpu", weights_only=False)')
def test_a_checkpoint_holding_a_pickled_call_is_refused_and_never_runs_it(tmp_path):
    ran = tmp_path / "ran"
    torch.save({key: Call(ran) if key == "history" else None for key in checkpoints.CHECKPOINT_KEYS},
               tmp_path / "hostile.pt")
    with pytest.raises(checkpoints.CheckpointError, match="is not a checkpoint of main.py"):
        checkpoints.read(tmp_path / "hostile.pt")
    assert not ran.exists()


@guards("mnistlab/checkpoints.py",
        "best_checkpoint prefers a full run to a --limit one",
        'full = not (recipe.get("limit") or ',
        "full = not (")
@guards("mnistlab/checkpoints.py",
        "best_checkpoint prefers a full run to a --train-size one",
        'recipe.get("limit") or recipe.get("train_size") or ',
        'recipe.get("limit") or ')
@guards("mnistlab/checkpoints.py",
        "best_checkpoint prefers a full run to a --validation one",
        ' or recipe.get("validation"))',
        ")")
@pytest.mark.parametrize("quick", [dict(limit=512), dict(train_size=100), dict(validation=True)])
def test_best_checkpoint_prefers_a_full_run_to_any_quick_one(quick, tmp_path):
    full = made_checkpoint(tmp_path / "checkpoints" / "lenet5_seed0.pt", quick_recipe(limit=None), 98.0)
    made_checkpoint(tmp_path / "checkpoints" / "lenet5_quick_seed0.pt", quick_recipe(**{"limit": None, **quick}), 100.0)
    assert checkpoints.best_checkpoint(tmp_path) == full
    full.unlink()
    assert checkpoints.best_checkpoint(tmp_path).name == "lenet5_quick_seed0.pt"  # better than none


@guards("mnistlab/checkpoints.py",
        "best_checkpoint reads only the asked model's runs",
        '        if model and recipe["model"] != model or ',
        "        if False or ")
def test_best_checkpoint_reads_only_the_asked_models_runs(tmp_path):
    lenet = made_checkpoint(tmp_path / "checkpoints" / "lenet5_seed0.pt", quick_recipe(), 90.0)
    mlp = made_checkpoint(tmp_path / "checkpoints" / "custom_mlp_seed0.pt", quick_recipe("custom_mlp"), 99.0)
    assert checkpoints.best_checkpoint(tmp_path, "lenet5") == lenet
    assert checkpoints.best_checkpoint(tmp_path) == mlp


@guards("mnistlab/checkpoints.py",
        "a checkpoint must hold every key main.py saves",
        "    if not isinstance(checkpoint, dict) or CHECKPOINT_KEYS - set(checkpoint):",
        "    if not isinstance(checkpoint, dict):")
@guards("mnistlab/checkpoints.py",
        "a checkpoint's epoch is from 1 to its recipe's epochs",
        '    if type(epoch) is not int or not 1 <= epoch <= recipe["epochs"]:',
        "    if type(epoch) is not int:")
@guards("mnistlab/checkpoints.py",
        "a checkpoint's history is a list",
        "    if not isinstance(history, list):\n        raise",
        "    if False:\n        raise")
@guards("mnistlab/checkpoints.py",
        "a checkpoint's history holds one record per epoch",
        "    if len(history) != epoch:",
        "    if False:")
@guards("mnistlab/slots.py",
        "each history record is a dict",
        "    if not isinstance(record, dict):\n        raise BadRecord",
        "    if False:\n        raise BadRecord")
@guards("mnistlab/checkpoints.py",
        "a checkpoint's weights are a dict of tensors",
        "    if not isinstance(weights, dict) or not all(isinstance(w, torch.Tensor) for w in weights.values()):",
        "    if not isinstance(weights, dict):")
@guards("mnistlab/checkpoints.py",
        "a checkpoint's weights have its recipe's model's shapes",
        "    if {key: value.shape for key, value in expected.items()} != {key: value.shape for key, value in "
        "weights.items()}:",
        "    if False:")
@guards("mnistlab/checkpoints.py",
        "a checkpoint's weights are dense real tensors on the CPU",
        '        if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized or not '
        "kind_ok:",
        "        if False:")
@guards("mnistlab/checkpoints.py",
        "a checkpoint's weights are finite",
        "    if not all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()):",
        "    if False:")
@guards("mnistlab/checkpoints.py",
        "a check that raises TypeError, RuntimeError or NotImplementedError is one line too",
        "    except (ValueError, TypeError, RuntimeError, NotImplementedError) as e:",
        "    except ValueError as e:")
@guards("mnistlab/checkpoints.py",
        "only real floating-point weights where floats belong",
        "REAL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)",
        "REAL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64)")
@pytest.mark.parametrize("damage", EDITED)
def test_each_check_of_an_untrained_checkpoint_refuses_its_damage(damage, untrained):
    edit, message = EDITED[damage]
    checkpoint = torch.load(untrained, weights_only=True)
    checkpoints.load_checked(untrained)  # whole, it passes
    edit(checkpoint)
    torch.save(checkpoint, untrained)
    with pytest.raises(checkpoints.CheckpointError) as refused:
        checkpoints.load_checked(untrained)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert str(refused.value).endswith("; delete it or train again")


@guards("mnistlab/checkpoints.py",
        "a checkpoint with compressed records is refused before it expands",
        "    if any(record.compress_type != zipfile.ZIP_STORED for record in records):",
        "    if False:")
def test_a_compressed_record_is_refused_before_torch_reads_it(untrained, tmp_path, monkeypatch):
    with zipfile.ZipFile(untrained) as source, zipfile.ZipFile(tmp_path / "packed.pt", "w") as packed:
        for record in source.infolist():
            compress = zipfile.ZIP_DEFLATED if record.filename.endswith("data.pkl") else zipfile.ZIP_STORED
            packed.writestr(record.filename, source.read(record), compress_type=compress)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load read it"))
    with pytest.raises(checkpoints.CheckpointError, match="its records are compressed, which torch.save never does"):
        checkpoints.read(tmp_path / "packed.pt")


@guards("mnistlab/checkpoints.py",
        "a checkpoint over the size cap is refused",
        "    if size > MAX_CHECKPOINT_BYTES:",
        "    if False:")
def test_a_checkpoint_over_the_cap_is_refused_before_torch_reads_it(untrained, monkeypatch):
    size = untrained.stat().st_size
    checkpoints.read(untrained)  # at the cap, it is read
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", size)
    checkpoints.read(untrained)
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", size - 1)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("read a checkpoint over the cap"))
    with pytest.raises(checkpoints.CheckpointError, match="more than the 0 GB of the largest model main.py trains"):
        checkpoints.read(untrained)


@guards("mnistlab/checkpoints.py",
        "restore refuses optimizer state of the wrong shape",
        "                if value.dim() and value.shape != parameter.shape:",
        "                if False:")
@guards("mnistlab/checkpoints.py",
        "restore refuses a history that disagrees with the epoch",
        '        if len(checkpoint["history"]) != checkpoint["epoch"] or len(',
        "        if len(")
@guards("mnistlab/checkpoints.py",
        "restore refuses a checkpoint without predictions",
        ' or len(checkpoint["predictions"]) == 0:',
        ":")
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


@guards("mnistlab/checkpoints.py",
        "best_checkpoint says which files it skipped",
        "            skipped(e)\n            continue",
        "            continue")
@guards("mnistlab/checkpoints.py",
        "best_checkpoint passes over an unfinished run, and says so",
        '        if checkpoint["epoch"] < recipe["epochs"]:',
        "        if False:")
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


@guards("mnistlab/runner.py",
        "each run's torch thread count is set to --cpus-per-run",
        "    if threads:\n        torch.set_num_threads(threads)\n",
        "")
@guards("mnistlab/checkpoints.py",
        "a checkpoint records the torch thread count it trained with",
        "                threads=torch.get_num_threads())",
        "                threads=None)")
@guards("mnistlab/runs.py",
        "a run's results record the torch thread count it trained with",
        '"threads": torch.get_num_threads()}',
        '"threads": None}')
def test_a_run_records_the_thread_count_it_was_given(tmp_path, monkeypatch, thread_count):
    import torch
    threads = torch.get_num_threads() + 1  # never the count the run would take by default
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))
    made, error, _ = runner.train_task(tiny_recipe(), "lenet5_seed0", threads, "cpu")
    assert error is None and json.loads(made["results"])["threads"] == threads
    assert torch.load(io.BytesIO(made["checkpoint"]), weights_only=True)["threads"] == threads


@guards("mnistlab/checkpoints.py",
        "a file outside a checkpoints folder is never advised deleted",
        '"delete it or train again" if Path(path).parent.name == "checkpoints" else',
        '"delete it or train again" if True else')
def test_a_checkpoint_flag_naming_another_file_is_never_advised_deleted(trained_runs, images, tmp_path, run_predict):
    results = tmp_path / "lenet5_seed0.json"  # a committed results file, as results/ holds them
    shutil.copy(trained_runs / "results" / "lenet5_seed0.json", results)
    status, out, err = run_predict(images / "one.png", "--checkpoint", results)
    assert status == 2 and out == "" and err == (f"predict.py: error: --checkpoint: {results} is not a checkpoint of "
                                                 f"main.py (BadZipFile); pass the .pt file that main.py wrote\n")
    assert results.read_bytes() == (trained_runs / "results" / "lenet5_seed0.json").read_bytes()
    status, out, _ = run_predict(images / "one.png", "--checkpoint", trained_runs / "checkpoints" / "lenet5_seed0.pt")
    assert status == 0 and f"{images / 'one.png'}: 1 (" in out  # as advised


def test_a_run_saved_before_label_smoothing_existed_reads_as_trained_without_it(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    checkpoint = checkpoint_of(tmp_path)
    del checkpoint["recipe"]["label_smoothing"]
    torch.save(checkpoint, tmp_path / "checkpoints" / f"{RUN}.pt")
    status, _, err = cli(["--model", "lenet5", *QUICK, "--label-smoothing", "0.1", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "with --label-smoothing 0.0, where this run has --label-smoothing 0.1")
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "with the same settings")


@guards("mnistlab/runs.py",
        "a checkpoint this user may not read is refused without advice to overwrite it",
        '(UNREADABLE, None):                ("unreadable",',
        '(UNREADABLE, None):                ("damaged",')
@guards("mnistlab/checkpoints.py",
        "a checkpoint this user may not read is not called damaged",
        "raise CheckpointError(flag, path, reason, advice, unreadable=e.unreadable) from None",
        "raise CheckpointError(flag, path, reason, advice) from None")
def test_an_unreadable_checkpoint_is_not_called_damaged(finished, tmp_path):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (tmp_path / "checkpoints" / f"{RUN}.pt").chmod(0)
    before = outputs_of(tmp_path)
    # Root reads anything; without these capabilities it meets file permissions as any user does.
    prefix = [] if os.geteuid() else ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                                      "--inh-caps=-dac_override,-dac_read_search"]
    if prefix and not shutil.which("setpriv"):
        pytest.skip("needs setpriv to drop root's permission to read anything")
    done = subprocess.run([*prefix, sys.executable, ROOT / "main.py", "--model", "lenet5", *QUICK, "--out-dir",
                           tmp_path], capture_output=True, text=True, timeout=120)
    assert_one_line_error(done.stderr, done.returncode, 2,
                          f"{tmp_path}/checkpoints/{RUN}.pt is not readable (Permission denied); check its "
                          f"permissions, or pass --tag NAME or another --out-dir to train beside it")
    assert "--overwrite" not in done.stderr
    (tmp_path / "checkpoints" / f"{RUN}.pt").chmod(0o644)
    assert outputs_of(tmp_path) == before


def test_predict_prefers_a_full_run_to_a_quick_one_with_a_better_score(trained_runs, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    full = trained_runs / "checkpoints" / "lenet5_seed0.pt"
    shutil.copy(full, tmp_path / "checkpoints" / "lenet5_seed0.pt")
    quick = torch.load(full, weights_only=True)
    quick["recipe"]["limit"] = 512
    quick["history"][-1]["eval_acc"] = 100.0
    torch.save(quick, tmp_path / "checkpoints" / "lenet5_quick_seed0.pt")
    assert checkpoints.best_checkpoint(tmp_path).name == "lenet5_seed0.pt"
    (tmp_path / "checkpoints" / "lenet5_seed0.pt").unlink()
    assert checkpoints.best_checkpoint(tmp_path).name == "lenet5_quick_seed0.pt"  # a quick run is better than none


@guards("mnistlab/checkpoints.py",
        "restore turns a state that does not load into one line",
        "    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:",
        "    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:")
@pytest.mark.parametrize("damage, message", [
    ("wrong shapes", "its weights do not have the shapes of model.py's lenet5"),
    ("missing keys", "is not a checkpoint of main.py (no model)"),
    ("corrupt rng", "does not fit this run"),
    ("truncated", "is not a checkpoint of main.py"),
])
def test_a_damaged_checkpoint_is_refused_on_resume(damage, message, tmp_path, cli, monkeypatch):
    argv = ["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path]
    restore = interrupt_epoch(monkeypatch, 2)
    assert cli(argv)[0] == 130
    restore()
    path = tmp_path / "checkpoints" / f"{RUN}.pt"
    checkpoint = checkpoint_of(tmp_path)
    if damage == "wrong shapes":
        checkpoint["model"]["fc1.weight"] = torch.zeros(3, 3)
    elif damage == "missing keys":
        del checkpoint["model"]
    elif damage == "corrupt rng":
        checkpoint["rng"]["cpu"] = torch.zeros(7, dtype=torch.uint8)
    torch.save(checkpoint, path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    status, out, err = cli([*argv, "--resume"])
    assert_one_line_error(err, status, 2, message)
    assert not re.search(r"^epoch ", out, re.MULTILINE)  # no training


@guards("mnistlab/checkpoints.py",
        "predict.py and the demo refuse a checkpoint trained on another dataset than MNIST",
        '    if reader and trained_on != "mnist":',
        "    if False:")
@guards("mnistlab/checkpoints.py",
        "the best checkpoint for reading digits is never one trained on other data",
        '        if model and recipe["model"] != model or data_of(recipe) != "mnist":',
        '        if model and recipe["model"] != model:')
def test_a_fashion_mnist_checkpoint_is_refused_in_one_line_and_never_chosen(fashion_run, images, monkeypatch,
                                                                           run_predict, capsys):
    fashion = fashion_run / "checkpoints" / "fashion-mnist_lenet5_seed0.pt"
    status, out, err = run_predict(images / "one.png", "--checkpoint", fashion)
    assert status == 2 and out == "" and err == (f"predict.py: error: --checkpoint: {fashion} was trained on "
                                                 f"Fashion-MNIST, and predict.py reads handwritten digits; pass a "
                                                 f"checkpoint trained on MNIST\n")
    assert checkpoints.best_checkpoint(fashion_run) is None  # the only checkpoint there
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", fashion_run)
    assert demo.main(demo.get_args_parser().parse_args(["--checkpoint", str(fashion), "--port", "0"])) == 2
    assert capsys.readouterr().err == (f"demo.py: error: --checkpoint: {fashion} was trained on Fashion-MNIST, and "
                                       f"demo.py reads handwritten digits; pass a checkpoint trained on MNIST\n")
