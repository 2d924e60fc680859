"""Crafted and misplaced checkpoints, as main.py's --evaluate and --resume, predict.py and demo.py read them: each is
refused in one line, exit status 2, before a model is built from it."""
import os
import shutil
import zipfile

import pytest
import torch
from PIL import Image, ImageDraw

import checkpoints
import demo
import files
import predict
from errors import UsageError

RUN = "custom_mlp_seed0"


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
        checkpoint = torch.load(trained_runs / "checkpoints" / f"{RUN}.pt", weights_only=True)
        torch.save(craft(checkpoint, damage), out_dir / "checkpoints" / f"{RUN}.pt")
        return out_dir / "checkpoints" / f"{RUN}.pt"
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
def test_a_crafted_checkpoint_is_one_line_and_exit_2_everywhere(damage, crafted, one_png, cli, capsys):  # case 15
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
        demo.load_models([path])


@pytest.mark.parametrize("threads", ["two", 0, 2.5, True])
def test_a_thread_count_that_is_not_a_whole_number_from_1_is_refused(threads, trained_runs):
    checkpoint = torch.load(trained_runs / "checkpoints" / f"{RUN}.pt", weights_only=True)
    checkpoints.check_checkpoint(checkpoint)  # as main.py saved it, with its count
    with pytest.raises(ValueError, match=r"^its thread count is .+, not a whole number from 1$"):
        checkpoints.check_checkpoint({**checkpoint, "threads": threads})
    del checkpoint["threads"]
    checkpoints.check_checkpoint(checkpoint)  # saved before the count was kept


def test_a_crafted_file_among_the_checkpoints_is_skipped_and_said(crafted, trained_runs, one_png, monkeypatch,
                                                                   capsys):  # case 15
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
    assert [name for name, *_ in demo.load_models([])] == ["lenet5"]
    assert capsys.readouterr().err.count("demo.py: skipped") == 2  # once each, not once per model


def test_a_checkpoint_whose_records_are_compressed_is_refused_before_it_expands(trained_runs, tmp_path, cli,
                                                                               monkeypatch):
    # Compressed, a record of zeros shrinks a thousandfold; torch.load would expand it in memory.
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(trained_runs / "checkpoints" / f"{RUN}.pt") as original, \
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
def test_a_checkpoint_that_is_not_a_file_is_named_for_what_it_is(where, tmp_path, cli):  # case 16
    path = tmp_path / "model.pt"
    {"a named pipe": lambda: os.mkfifo(path), "a folder": path.mkdir,
     "a symbolic link loop": lambda: path.symlink_to(path.name)}[where]()
    status, _, err = cli(["--model", "lenet5", "--evaluate", "--checkpoint", path])
    what = {"a named pipe": "a named pipe (FIFO)"}.get(where, where)
    assert status == 2 and err == (f"main.py: error: --checkpoint: {path} is {what}, not a checkpoint file; pass the "
                                   f".pt file that main.py wrote\n")
