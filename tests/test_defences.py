"""Defences that held with no test to notice them going (issue 26): each test here was seen to fail with its
defence deleted or loosened."""
import io
import json
import os
import shutil
import socket
import threading
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image

import checkpoints
import demo
import engine
import images
import paths
import predict
from conftest import png_declaring
from errors import UsageError
from test_demo import PNGS, field_of, models, port_of, post, raw, request, server, serving  # noqa: F401 (fixtures)
from test_images import encoded, one, similar
from test_reliability import RUN, assert_one_line_error, finished, outputs_of  # noqa: F401 (a fixture)

pytestmark = pytest.mark.filterwarnings("ignore:::PIL")


# ---------------------------------------------------------------- demo.py

@pytest.mark.parametrize("origin", ["http://127.0.0.1:1", "http://127.0.0.1", "https://127.0.0.1:{port}",
                                    "http://localhost:{other}", "http://127.0.0.1:{port}.evil.example"])
def test_an_origin_is_ours_only_by_scheme_host_and_port(server, origin):
    origin = origin.format(port=port_of(server), other=port_of(server) + 1)
    status, _, body = request(server, "POST", "/predict", PNGS[1], {"Origin": origin, "Content-Type": "image/png"})
    assert status == 403 and b"probabilities" not in body


def test_two_content_length_headers_are_refused(server):
    n = len(PNGS[1])
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(server)}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n")
    assert raw(server, head.encode() + PNGS[1]).startswith(b"HTTP/1.1 400 ")


def test_the_deadline_covers_the_body_not_only_the_headers(models):  # slowloris, in the body
    with serving(models, timeout=1, request_seconds=1.5) as address:
        with socket.create_connection(("127.0.0.1", port_of(address)), timeout=5) as slow:
            slow.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(address)}\r\nContent-Type: image/png\r\n"
                         f"Content-Length: {len(PNGS[1])}\r\n\r\n".encode())
            started = time.monotonic()
            for byte in PNGS[1]:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.1)  # each byte well within the 1 s timeout
                if time.monotonic() - started > 4:
                    break
            try:
                while slow.recv(65536):
                    pass
            except OSError:
                pass
            assert time.monotonic() - started < 4


@pytest.mark.parametrize("query", ["dx=11", "dx=-11", "dy=11", "dy=-11", "dx=0&dy=-1000000"])
def test_a_shift_beyond_the_bound_either_way_is_refused(query):
    with pytest.raises(demo.BadRequest, match="at most 10 pixels each way"):
        demo.shift(query)


def test_a_shift_up_to_the_bound_either_way_is_taken():
    assert demo.shift("dx=-10&dy=10") == (-10, 10) and demo.shift("dx=10&dy=-10") == (10, -10)


def test_the_models_read_the_shifted_image_that_the_answer_shows(models, monkeypatch):
    seen, real = [], engine.probabilities

    def probabilities(model, tensor):
        seen.append(tensor.clone())
        return real(model, tensor)
    monkeypatch.setattr(engine, "probabilities", probabilities)
    answer = demo.Reader(models).read(Image.open(io.BytesIO(PNGS[0])), 3, -2)
    import dataset
    shown = field_of(answer)
    assert len(seen) == len(models)
    for tensor in seen:
        np.testing.assert_allclose((tensor[0, 0] * dataset.MNIST_STD + dataset.MNIST_MEAN).numpy(), shown,
                                   atol=1 / 255)


@pytest.mark.parametrize("format", ["JPEG", "BMP", "GIF", "WEBP"])
def test_a_body_in_another_format_is_not_decoded_even_as_image_png(format, server):
    body = encoded(Image.open(io.BytesIO(PNGS[1])).convert("RGB"), format)
    status, answer = post(server, body, content_type="image/png")
    assert status == 400 and "not an image in a format it reads (PNG)" in answer["error"]


def test_the_demo_holds_images_to_its_own_lower_pixel_cap():
    with pytest.raises(demo.BadRequest, match="5000x5000 pixels, over 16,777,216"):
        demo.decode(png_declaring(5000, 5000), "image/png")


# ---------------------------------------------------------------- images.py

def test_a_callers_lower_pixel_cap_is_honoured(monkeypatch):
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded an image over the cap"))
    with pytest.raises(images.Unreadable, match="^5000x5000 pixels, over 16,777,216; scale it down$"):
        images.open_image(io.BytesIO(png_declaring(5000, 5000)), max_pixels=4096 * 4096)


def test_exif_orientation_survives_the_16_bit_conversion():
    upright = one()
    sideways = Image.fromarray(np.asarray(upright.transpose(Image.Transpose.ROTATE_90)).astype(np.uint16) * 257)
    assert sideways.mode == "I;16"
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    image = images.open_image(io.BytesIO(encoded(sideways, "PNG", exif=exif)))
    assert image.size == upright.size
    assert similar(np.asarray(image, dtype=np.float32), np.asarray(upright, dtype=np.float32)) > 0.95


# ---------------------------------------------------------------- predict.py --preview

@pytest.mark.parametrize("link", ["symbolic", "hard", "symbolic to its folder"])
def test_a_preview_that_reaches_an_input_through_a_link_is_refused(link, tmp_path):
    (tmp_path / "scans").mkdir()
    image = tmp_path / "scans" / "a.png"
    image.write_bytes(PNGS[1])
    if link == "symbolic to its folder":
        (tmp_path / "elsewhere").symlink_to(tmp_path / "scans")
        preview = tmp_path / "elsewhere" / "a.png"
    else:
        preview = tmp_path / "preview.png"
        (preview.symlink_to if link == "symbolic" else preview.hardlink_to)(image)
    with pytest.raises(UsageError, match="is one of the images to read; write the preview elsewhere"):
        predict.check_preview(preview, [str(image)])
    assert image.read_bytes() == PNGS[1]


# ---------------------------------------------------------------- paths.py

@pytest.fixture
def no_open(monkeypatch):
    opened, real = [], os.open
    monkeypatch.setattr(os, "open", lambda path, *args: opened.append(path) or real(path, *args))
    return opened


@pytest.mark.parametrize("kind", ["a named pipe (FIFO)", "a device", "a folder"])
def test_pipes_devices_and_folders_are_refused_before_they_are_opened(kind, tmp_path, no_open):
    path = {"a device": "/dev/null", "a folder": tmp_path}.get(kind, tmp_path / "pipe")
    if kind == "a named pipe (FIFO)":
        os.mkfifo(path)
    with pytest.raises(paths.NotAFile, match=rf"^{kind}$".replace("(", r"\(").replace(")", r"\)")):
        paths.open_file(path)
    assert no_open == []


def test_a_pipe_put_in_a_files_place_after_the_look_is_refused_without_blocking(tmp_path, monkeypatch):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    regular = os.stat(__file__)
    monkeypatch.setattr(os, "stat", lambda path, *args, **kwargs: regular)  # the look saw a regular file
    outcome = []

    def look():
        try:
            paths.open_file(pipe)
        except paths.NotAFile as e:
            outcome.append(str(e))
    thread = threading.Thread(target=look, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # blocked in open(): a writer lets it go
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail("opening a named pipe blocked")
    assert outcome == ["a named pipe (FIFO)"]


# ---------------------------------------------------------------- runs.py

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


# ---------------------------------------------------------------- checkpoints.py

def test_a_checkpoint_over_the_size_cap_is_refused_before_torch_reads_it(trained_runs, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", 1000)
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("read a checkpoint over the cap"))
    with pytest.raises(checkpoints.CheckpointError, match="more than the 0 GB of the largest model"):
        checkpoints.read(trained_runs / "checkpoints" / "lenet5_seed0.pt")


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


@pytest.mark.parametrize("damage, message", [
    ("history longer than its epoch", "ValueError: history and epoch disagree"),
    ("no predictions", "ValueError: history and epoch disagree"),
    ("momentum of another shape", "ValueError: optimizer state of the wrong shape"),
])
def test_a_checkpoint_that_does_not_fit_is_not_resumed(damage, message, trained_runs, tmp_path):
    checkpoint = torch.load(trained_runs / "checkpoints" / "lenet5_seed0.pt", weights_only=True)
    model = engine.build_model(checkpoint["recipe"], "cpu")
    optimizer, scheduler = engine.build_optimizer(model, checkpoint["recipe"], 10)
    if damage == "history longer than its epoch":
        checkpoint["history"] = checkpoint["history"] * 2
    elif damage == "no predictions":
        checkpoint["predictions"] = torch.zeros(0, dtype=torch.uint8)
    else:
        checkpoint["optimizer"]["state"][0]["momentum_buffer"] = torch.zeros(3)
    with pytest.raises(UsageError, match=rf"does not fit this run \({message}\)"):
        checkpoints.restore(model, optimizer, scheduler, checkpoint, torch.device("cpu"), tmp_path / "x.pt")


def test_json_is_written_whole_or_not_at_all(tmp_path):
    import files
    (tmp_path / "kept.json").write_text('{"kept": true}')
    with pytest.raises(TypeError):
        files.write_json(tmp_path / "kept.json", {"bad": object()})
    assert json.loads((tmp_path / "kept.json").read_text()) == {"kept": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]


def test_two_host_headers_are_refused_even_when_both_are_ours(server):
    host = f"Host: 127.0.0.1:{port_of(server)}\r\n"
    assert raw(server, f"GET / HTTP/1.1\r\n{host}{host}\r\n".encode()).startswith(b"HTTP/1.1 421 ")


@pytest.mark.parametrize("length", ["\xb9\xb2", "1\xb2"])  # superscripts: digits to str.isdigit, in Latin-1 headers
def test_a_content_length_in_digits_other_than_ascii_is_refused(length, server):
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(server)}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {length}\r\n\r\n")
    assert raw(server, head.encode("latin-1") + PNGS[1][:12]).startswith(b"HTTP/1.1 400 ")


def nan_answers(monkeypatch):
    monkeypatch.setattr(engine, "probabilities", lambda model, tensor: torch.full((len(tensor), 10), float("nan")))


def test_a_model_that_answers_nan_is_a_500_in_the_demo(models, monkeypatch):
    nan_answers(monkeypatch)
    with serving(models) as address:
        status, answer = post(address, PNGS[1])
    assert status == 500 and "gave no finite answer: its checkpoint is broken; train it again" in answer["error"]


def test_a_model_that_answers_nan_is_an_error_line_in_predict(trained_runs, tmp_path, monkeypatch, capsys):
    (tmp_path / "a.png").write_bytes(PNGS[1])
    nan_answers(monkeypatch)
    args = predict.get_args_parser().parse_args([str(tmp_path / "a.png"), "--checkpoint",
                                                 str(trained_runs / "checkpoints" / "lenet5_seed0.pt")])
    assert predict.main(args) == 1
    out, err = capsys.readouterr()
    assert out == "" and "a.png: the model's answer is not a number: its checkpoint is broken" in err


def test_float_greys_beyond_their_range_are_clipped_not_wrapped():
    bright = Image.fromarray(np.full((40, 40), 3.0, dtype=np.float32), mode="F")  # 3x white
    assert np.asarray(images.open_image(io.BytesIO(encoded(bright, "TIFF")), formats=("TIFF",))).min() == 255
