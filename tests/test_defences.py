"""Defences that held with no test to notice them going (issue 26): each test here was seen to fail with its
defence deleted or loosened."""
import errno
import gc
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import ExifTags, Image, ImageDraw

import checkpoints
import demo
import engine
import figures
import files
import images
import paths
import predict
import preprocess
from conftest import ROOT, png_declaring
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


def test_any_other_page_is_a_404(server):
    status, _, body = request(server, "GET", "/demo.html")
    assert status == 404 and json.loads(body) == {"error": "no page here; the demo is at /"}


def test_a_drawing_posted_anywhere_but_predict_is_a_404_and_not_read(server):
    status, _, body = request(server, "POST", "/", PNGS[1], {"Content-Type": "image/png"})
    assert status == 404 and json.loads(body) == {"error": "POST drawings to /predict"}


@pytest.mark.parametrize("refused", ["Host: evil.example", "Origin: http://evil.example"])
def test_a_request_refused_for_its_name_or_origin_closes_its_connection(server, refused):
    host = f"Host: 127.0.0.1:{port_of(server)}\r\n"
    smuggled = f"GET / HTTP/1.1\r\n{host}\r\n".encode()  # the body, unread: it must not pass for a request
    head = (f"POST /predict HTTP/1.1\r\n{refused}\r\n{host if refused.startswith('Origin') else ''}"
            f"Content-Type: image/png\r\nContent-Length: {len(smuggled)}\r\n\r\n")
    answer = raw(server, head.encode() + smuggled)
    assert answer.startswith(b"HTTP/1.1 421 " if refused.startswith("Host") else b"HTTP/1.1 403 ")
    assert answer.count(b"HTTP/1.1 ") == 1


def test_a_get_with_a_chunked_body_closes_its_connection(server):
    host = f"Host: 127.0.0.1:{port_of(server)}\r\n"
    smuggled = f"GET / HTTP/1.1\r\n{host}\r\n".encode()
    head = f"GET / HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n"
    answer = raw(server, f"{head}{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 1


def test_a_chunked_body_with_a_content_length_as_well_gets_411(server):  # the classic smuggling pair
    body = f"{len(PNGS[1]):x}\r\n".encode() + PNGS[1] + b"\r\n0\r\n\r\n"
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(server)}\r\nContent-Type: image/png\r\n"
            f"Transfer-Encoding: chunked\r\nContent-Length: {len(body)}\r\n\r\n")
    answer = raw(server, head.encode() + body)
    assert answer.startswith(b"HTTP/1.1 411 ") and b"not chunked" in answer


def test_a_request_http_server_refuses_closes_its_connection(server):
    host = f"Host: 127.0.0.1:{port_of(server)}\r\n"
    answer = raw(server, f"PUT / HTTP/1.1\r\n{host}\r\nGET / HTTP/1.1\r\n{host}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 501 ") and answer.count(b"HTTP/1.1 ") == 1


def test_a_body_declared_far_over_the_cap_is_refused_at_once_without_reading_it(models):
    with serving(models, timeout=2) as address:  # a server that waited for the body would give up after 2 s
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(address)}\r\nContent-Type: image/png\r\n"
                f"Content-Length: {100 * demo.MAX_BYTES}\r\n\r\n")
        assert raw(address, head.encode()).startswith(b"HTTP/1.1 413 ")


def test_the_demos_limits_are_those_the_readme_promises(models, monkeypatch):
    # README, "The demo": a body of at most 2 MB, an image of at most 4096x4096, 10 s of silence, 30 s for a whole
    # request, at most 64 connections, two drawings read at a time, a listen backlog of 128.
    assert (demo.MAX_BYTES, demo.MAX_PIXELS, demo.TIMEOUT, demo.REQUEST_SECONDS, demo.MAX_CONNECTIONS,
            demo.READING_AT_ONCE) == (2 * 1024 * 1024, 4096 * 4096, 10, 30, 64, 2)
    deadlines, timer = [], threading.Timer
    monkeypatch.setattr(threading, "Timer", lambda seconds, then: deadlines.append(seconds) or timer(seconds, then))
    server = demo.make_server(models, 0)  # as main() makes it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert request(f"http://127.0.0.1:{server.server_port}/", "GET", "/")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
    assert server.RequestHandlerClass.timeout == 10 and server.request_queue_size == 128
    assert deadlines and set(deadlines) == {30}


def test_the_server_listens_on_loopback_only(models, monkeypatch):
    bound = []

    def bind(self):  # where it would listen; nothing listens in this test
        bound.append(self.server_address)
        raise OSError("not bound in a test")
    monkeypatch.setattr(demo.Server, "server_bind", bind)
    with pytest.raises(OSError, match="not bound in a test"):
        demo.make_server(models, 0)
    assert bound == [("127.0.0.1", 0)]


def test_a_port_in_use_is_one_line_and_exit_2(trained_runs, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = demo.get_args_parser().parse_args(["--port", str(port), "--checkpoint",
                                                  str(trained_runs / "checkpoints" / "lenet5_seed0.pt")])
        assert demo.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == f"demo.py: error: cannot serve on 127.0.0.1:{port} (Address already in use); pass " \
                                f"another --port\n"


def test_with_no_model_nothing_is_served(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path)
    monkeypatch.setattr(demo.Server, "serve_forever", lambda self, poll_interval=0.5: pytest.fail("served no model"))
    assert demo.main(demo.get_args_parser().parse_args(["--port", "0"])) == 2
    assert capsys.readouterr().out == ""


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


def test_tiff_never_reaches_libtiff_unless_asked_for():
    with pytest.raises(images.Unreadable, match=r"^not an image in a format it reads \(PNG, JPEG, BMP, GIF, WebP\)$"):
        images.open_image(io.BytesIO(encoded(one(), "TIFF")))


def test_a_path_that_is_not_a_regular_file_is_unreadable_in_one_line(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(images.Unreadable, match=r"^a named pipe \(FIFO\), not an image file$"):
        images.open_image(tmp_path / "pipe.png")
    with pytest.raises(images.Unreadable, match="^no such file or folder$"):
        images.open_image(tmp_path / "nosuch.png")


def test_a_file_refused_for_its_size_is_closed(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    (tmp_path / "a.png").write_bytes(PNGS[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            images.open_image(tmp_path / "a.png")
        except images.Unreadable as e:
            assert str(e).startswith("a file of 0 MB, over 0 MB")
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_pillows_warnings_never_reach_the_terminal(tmp_path):
    # 10000x10000: over Pillow's own limit for a warning (about 89 million pixels), under its limit for an error.
    (tmp_path / "huge.png").write_bytes(png_declaring(10000, 10000))
    code = "import sys, images\ntry:\n    images.open_image(sys.argv[1])\nexcept images.Unreadable as e:\n    print(e)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "huge.png")], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, env=env)
    assert (result.stdout, result.stderr) == ("10000x10000 pixels, over 50,000,000; scale it down\n", "")


def test_the_decoding_budget_makes_an_image_wait_for_room_and_lets_a_huge_one_through():
    budget, beside, huge = images.Budget(3_000), threading.Event(), threading.Event()

    def hold(pixels, then):
        with budget.held(pixels):
            then.set()
    with budget.held(2_000):
        threading.Thread(target=hold, args=(2_000, beside), daemon=True).start()
        assert not beside.wait(1)  # no room beside the first
    assert beside.wait(10)
    threading.Thread(target=hold, args=(5_000, huge), daemon=True).start()
    assert huge.wait(10)  # over the whole budget: it waits to have it all, not forever
    assert budget.free == 3_000


def test_a_decoders_message_becomes_one_short_printable_line():
    line = images.one_line(ValueError("bad\x1b[2J\tchunk\r\n" + "x" * 500))
    assert line == ("bad?[2J chunk " + "x" * 500)[:120]


# ---------------------------------------------------------------- preprocess.py

@pytest.mark.parametrize("marks", ["three specks", "a faint smudge", "noisy paper"])
def test_specks_smudges_and_noise_are_blank(marks):
    if marks == "noisy paper":  # grain of 12 grey levels: ink must stand 6 of them above the paper, not 3
        image = Image.fromarray(np.random.default_rng(0).normal(128, 12, (90, 120)).round().astype(np.uint8))
    else:
        image = Image.new("L", (120, 90), 50)
    if marks == "three specks":  # chalk dust on a blackboard: fewer than 4 pixels of ink
        for at in ((10, 10), (60, 40), (100, 70)):
            image.putpixel(at, 255)
    elif marks == "a faint smudge":
        ImageDraw.Draw(image).ellipse([40, 20, 80, 70], fill=53)  # 3 grey levels off the paper
    with pytest.raises(preprocess.Blank):
        preprocess.mnist_like(image)


def big_one(size=(1600, 1200)):
    image = Image.new("L", size, 235)
    ImageDraw.Draw(image).line([(size[0] / 2, size[1] * 0.15), (size[0] / 2, size[1] * 0.85)], fill=20,
                               width=size[0] // 20)
    return image


def test_the_ink_is_looked_for_on_a_small_thumbnail(monkeypatch):
    seen, flatten = [], preprocess.flatten
    monkeypatch.setattr(preprocess, "flatten", lambda small: seen.append(small.shape) or flatten(small))
    preprocess.mnist_like(big_one())
    assert len(seen) == 1 and max(seen[0]) <= 160


def test_the_background_plane_is_fitted_to_a_few_thousand_pixels_at_most(monkeypatch):
    rows, lstsq = [], np.linalg.lstsq
    monkeypatch.setattr(np.linalg, "lstsq", lambda a, b, rcond=None: rows.append(len(a)) or lstsq(a, b, rcond=rcond))
    preprocess.mnist_like(big_one((320, 320)))  # a 160x160 thumbnail: 25,600 pixels, most of them paper
    assert rows and max(rows) <= 2 * 4000


def test_a_thin_line_along_the_images_edge_is_read_not_a_crash():
    # 2 px high and 1,800 long, on the top edge: its margin is cut by the edge, and at 20 px long it is under half
    # a pixel high, which rounds to no row at all.
    image = Image.new("L", (2000, 300), 235)
    ImageDraw.Draw(image).rectangle([100, 0, 1900, 1], fill=20)
    field = preprocess.mnist_like(image)
    rows, columns = np.nonzero(field > 0.3)
    assert len(set(rows)) == 1 and 19 <= columns.max() - columns.min() + 1 <= 21

@pytest.mark.parametrize("heavy", ["top", "bottom"])
def test_a_digit_heavy_at_one_end_is_centred_by_mass_within_the_field(heavy):
    image = Image.new("L", (200, 300), 235)
    draw = ImageDraw.Draw(image)
    draw.line([(100, 30), (100, 270)], fill=20, width=3)
    draw.ellipse([40, 30, 160, 130] if heavy == "top" else [40, 170, 160, 270], fill=20)
    field = preprocess.mnist_like(image)
    mass = field.sum()
    centre = ((np.arange(28)[:, None] * field).sum() / mass, (np.arange(28)[None, :] * field).sum() / mass)
    assert field.shape == (28, 28) and centre == pytest.approx((14, 14), abs=1.5)


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


def test_find_images_names_an_argument_that_is_not_a_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    assert list(predict.find_images([str(tmp_path / "pipe.png"), "/dev/null"])) == [
        (tmp_path / "pipe.png", "a named pipe (FIFO), not an image file"), (Path("/dev/null"), "a device, not an image file")]


def test_find_images_in_a_folder_names_what_it_cannot_read_and_skips_subfolders(tmp_path):
    (tmp_path / "a.png").write_bytes(PNGS[1])
    os.mkfifo(tmp_path / "b.png")
    (tmp_path / "c.png").symlink_to("nowhere.png")
    (tmp_path / "d.png").mkdir()
    (tmp_path / "d.png" / "e.png").write_bytes(PNGS[1])
    (tmp_path / "notes.txt").write_text("")
    assert list(predict.find_images([str(tmp_path)])) == [
        (tmp_path / "a.png", None), (tmp_path / "b.png", "a named pipe (FIFO), not an image file"),
        (tmp_path / "c.png", "a broken symbolic link")]


def test_a_folder_that_cannot_be_listed_is_one_problem(tmp_path, monkeypatch):
    def refused(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))
    monkeypatch.setattr(Path, "iterdir", refused)
    assert list(predict.find_images([str(tmp_path)])) == [
        (tmp_path, "a folder, not readable (Permission denied); check its permissions")]


def test_no_more_than_AHEAD_files_are_read_ahead(monkeypatch):
    monkeypatch.setattr(predict, "read", lambda path, thumbnails: (None, None))
    taken = []

    def entries():
        for i in range(3 * predict.AHEAD):
            taken.append(i)
            yield Path(f"{i}.png"), None
    readings = predict.readings(entries(), False)
    batches = [next(readings)]
    assert len(taken) <= predict.AHEAD
    batches += list(readings)
    assert sum(map(len, batches)) == 3 * predict.AHEAD and max(map(len, batches)) <= predict.AHEAD


def test_reads_not_started_are_dropped_when_the_reader_stops(monkeypatch):
    pools, started, release, pool = [], [], threading.Event(), predict.ThreadPoolExecutor
    monkeypatch.setattr(predict, "ThreadPoolExecutor", lambda workers: pools.append(pool(workers)) or pools[-1])

    def read(path, thumbnails):
        started.append(path.name)
        if path.name != "0.png":
            release.wait(10)
        return None, None
    monkeypatch.setattr(predict, "read", read)
    readings = predict.readings(((Path(f"{i}.png"), None) for i in range(40)), False)
    assert [path.name for path, _ in next(readings)] == ["0.png"]
    readings.close()  # as Ctrl-C, or a reader that went away, stops predict.py
    release.set()
    pools[0].shutdown(wait=True)
    assert len(started) <= 1 + predict.WORKERS


@pytest.mark.parametrize("top", ["0", "11"])
def test_top_outside_1_to_10_is_refused(top, capsys):
    with pytest.raises(SystemExit) as exit:
        predict.get_args_parser().parse_args(["a.png", "--top", top])
    assert exit.value.code == 2 and "--top" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["under a file", "a symbolic link loop"])
def test_a_preview_path_that_cannot_be_looked_at_is_refused(where, tmp_path):
    (tmp_path / "a.png").write_bytes(PNGS[1])
    (tmp_path / "loop.png").symlink_to("loop.png")
    preview = tmp_path / ("a.png/preview.png" if where == "under a file" else "loop.png")
    problem = "no such file or folder" if where == "under a file" else "a symbolic link loop"
    with pytest.raises(UsageError, match=f"is {problem}; give another path$"):
        predict.check_preview(preview, [str(tmp_path / "a.png")])


def test_the_preview_keeps_only_the_rows_it_draws(trained_runs, tmp_path, monkeypatch, capsys):
    (tmp_path / "scans").mkdir()
    count = figures.PREDICTIONS_SHOWN + 3
    for i in range(count):
        (tmp_path / "scans" / f"{i:02d}.png").write_bytes(PNGS[i % 2])
    drawn, predictions = [], figures.predictions
    monkeypatch.setattr(figures, "predictions",
                        lambda rows, total=None: drawn.append((len(rows), total)) or predictions(rows, total=total))
    args = predict.get_args_parser().parse_args([str(tmp_path / "scans"), "--preview", str(tmp_path / "preview.png"),
                                                 "--checkpoint", str(trained_runs / "checkpoints" / "lenet5_seed0.pt")])
    assert predict.main(args) == 0
    assert drawn == [(figures.PREDICTIONS_SHOWN, count)] and capsys.readouterr().out.count("\n") == count


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


def test_a_file_refused_once_open_leaves_no_descriptor_open(tmp_path, monkeypatch):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    regular = os.stat(__file__)
    gc.collect()
    before = set(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "stat", lambda path, *args, **kwargs: regular)  # the look saw a regular file
    with pytest.raises(paths.NotAFile, match=r"^a named pipe \(FIFO\)$"):
        paths.open_file(pipe)
    monkeypatch.undo()
    assert set(os.listdir("/proc/self/fd")) - before == set()


TERMINAL = """
import os, paths
master, slave = os.openpty()
name = os.ttyname(slave)
os.close(slave)
regular = os.stat(paths.__file__)
os.stat = lambda path, *args, **kwargs: regular  # the look saw a regular file: the terminal came after it
try:
    paths.open_file(name)
except paths.NotAFile as e:
    print(e)
try:
    os.close(os.open("/dev/tty", os.O_RDWR))
    print("a controlling terminal")
except OSError:
    print("no controlling terminal")
"""


def test_a_terminal_put_in_a_files_place_never_becomes_the_controlling_terminal():
    # A session with no terminal that opens one, without O_NOCTTY, takes it for its own, and with it that
    # terminal's Ctrl-C and hang-ups: here a new session, as a program started by a service or in the background.
    result = subprocess.run([sys.executable, "-c", TERMINAL], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            start_new_session=True)
    assert (result.stdout, result.stderr) == ("a device\nno controlling terminal\n", "")

def test_shown_escapes_every_control_character_delete_included():
    assert paths.shown("a\x1b[31mb\x7fc\x00d") == "a\\x1b[31mb\\x7fc\\x00d"


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
