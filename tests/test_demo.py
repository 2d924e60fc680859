"""demo.py: the server's API with good, bad and concurrent requests, and the page in a real headless browser."""
import base64
import contextlib
import http.client
import io
import json
import re
import select
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import EpsImagePlugin, Image, ImageDraw

import demo
import files
from conftest import interrupted_while_starting
from errors import RunFailed
from scripts import demo_screenshot


def drawn(digit):
    """A digit as the page sends it: black strokes on a white 280x280 canvas, as PNG bytes."""
    image = Image.new("RGB", (280, 280), "white")
    draw = ImageDraw.Draw(image)
    if digit == 1:
        draw.line([(140, 50), (140, 235)], fill="black", width=18)
    else:
        draw.ellipse([78, 48, 202, 232], outline="black", width=18)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


PNGS = {digit: drawn(digit) for digit in (0, 1)}


@pytest.fixture(scope="module")
def models(trained_runs):
    return demo.load_models([trained_runs / "checkpoints" / f"{model}_seed0.pt" for model in ("lenet5", "custom_mlp")])


@pytest.fixture(scope="module")
def server(models):
    """The demo's server on a free port, serving in a thread: its address."""
    server = demo.make_server(models, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


def post(address, body, query="", content_type=None):
    """(status, JSON answer) of POST /predict: a body of PNG bytes as image/png, a data URL as text/plain."""
    content_type = content_type or ("text/plain" if body.startswith(b"data:") else "image/png")
    request = urllib.request.Request(f"{address}predict{query}", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def field_of(answer):
    header, _, data = answer["image"].partition(",")
    assert header == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))), dtype=np.float32) / 255


@pytest.mark.parametrize("digit", [1, 0])
def test_a_drawn_digit_is_read_by_every_model(server, digit):
    status, answer = post(server, drawn(digit))
    assert status == 200 and answer["blank"] is False and answer["shift"] == [0, 0]
    assert [(m["model"], m["label"]) for m in answer["models"]] == [("lenet5", "LeNet5"), ("custom_mlp", "CustomMLP")]
    for model in answer["models"]:
        assert model["digit"] == digit
        assert len(model["probabilities"]) == 10 and sum(model["probabilities"]) == pytest.approx(1, abs=1e-3)
        assert model["probabilities"][digit] == max(model["probabilities"])
        assert 0 < model["accuracy"]["acc"] <= 100 and model["accuracy"]["on"] == "test"
    field = field_of(answer)
    assert field.shape == (28, 28) and field.max() > 0.9


def test_a_data_url_reads_the_same_as_bytes(server):
    png = drawn(1)
    _, from_bytes = post(server, png)
    _, from_url = post(server, b"data:image/png;base64," + base64.b64encode(png))
    assert from_url == from_bytes


def test_the_shift_moves_what_the_models_see(server):
    _, plain = post(server, drawn(0))
    _, shifted = post(server, drawn(0), "?dx=3&dy=-2")
    assert shifted["shift"] == [3, -2]
    moved = np.zeros((28, 28), dtype=np.float32)
    moved[:26, 3:] = field_of(plain)[2:, :25]
    np.testing.assert_allclose(field_of(shifted), moved, atol=1 / 255)


def test_a_blank_canvas_is_reported_as_blank(server):
    buffer = io.BytesIO()
    Image.new("RGB", (280, 280), "white").save(buffer, format="PNG")
    assert post(server, buffer.getvalue()) == (200, {"blank": True, "image": None, "shift": [0, 0], "models": []})


@pytest.mark.parametrize("body, query, status, message", [
    (b"", "", 400, "empty body"),
    (b"not an image at all", "", 400, "not an image"),
    (b"data:image/png;base64,@@@", "", 400, "not valid base64"),
    (b"\0" * (2 * 1024 * 1024 + 1), "", 413, "send at most 2 MB"),
    (None, "?dx=99", 400, "at most 10 pixels"),
    (None, "?dx=left", 400, "must be whole numbers"),
])
def test_bad_input_gets_a_4xx_and_the_server_stays_up(server, body, query, status, message):
    answered, answer = post(server, drawn(1) if body is None else body, query)
    assert answered == status and message in answer["error"]
    assert post(server, drawn(1))[1]["models"][0]["digit"] == 1


def test_ten_clients_at_once_all_get_correct_answers(server):
    failures = []

    def client(k):
        for i in range(50):
            digit = (k + i) % 2
            status, answer = post(server, PNGS[digit])
            if status != 200 or [m["digit"] for m in answer["models"]] != [digit, digit]:
                failures.append((k, i, status))

    clients = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    assert failures == []


def test_the_page_is_served(server):
    with urllib.request.urlopen(server, timeout=10) as response:
        page = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html") and 'id="pad"' in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere: the page works offline


def test_without_any_checkpoint_the_demo_says_how_to_train_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path)
    assert demo.main(demo.get_args_parser().parse_args([])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train one with `python main.py --model lenet5_regularized`" in err


@pytest.mark.skipif(demo_screenshot.browser_missing() is not None, reason=str(demo_screenshot.browser_missing()))
def test_drawing_in_a_real_browser_shows_each_models_reading(server):
    from selenium.webdriver.common.by import By
    driver = demo_screenshot.browser()
    try:
        driver.get(server)
        demo_screenshot.draw(driver, demo_screenshot.ONE)
        assert demo_screenshot.predicted(driver, 0) == {"lenet5": 1, "custom_mlp": 1}
        preview = driver.find_element(By.ID, "preview")
        assert preview.is_displayed() and preview.get_attribute("src").startswith("data:image/png;base64,")
        driver.find_element(By.ID, "clear").click()
        assert not driver.find_elements(By.CLASS_NAME, "model") and not preview.is_displayed()
        sent = demo_screenshot.requests(driver)[0]
        demo_screenshot.draw(driver, demo_screenshot.ZERO)
        assert demo_screenshot.predicted(driver, sent) == {"lenet5": 0, "custom_mlp": 0}
        bars = driver.find_elements(By.CSS_SELECTOR, '.model[data-model="lenet5"] .bar')
        assert len(bars) == 10 and "top" in bars[0].get_attribute("class")
    finally:
        driver.quit()


# ---------------------------------------------------------------- what other web pages and hostile clients send

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke showpage\n"


@contextlib.contextmanager
def serving(models, **kwargs):
    """A server of its own, for a test that changes it or wears it down: its address, "http://127.0.0.1:PORT/"."""
    server = demo.make_server(models, 0, **kwargs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def port_of(address):
    return urlparse(address).port


def request(address, method, path, body=None, headers=None):
    """(status, headers, body) of one request on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port_of(address), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def raw(address, data, timeout=10):
    """Everything the server sends back for data, written as is, until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port_of(address)), timeout=timeout) as connection:
        connection.sendall(data)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost", ""])
def test_a_request_for_another_name_gets_no_answer(server, host):  # case 10: DNS rebinding
    host = host.format(port=port_of(server))
    for method, path in (("GET", "/"), ("POST", "/predict")):
        status, _, body = request(server, method, path, PNGS[1] if method == "POST" else None,
                                  {"Host": host, "Content-Type": "image/png"})
        assert status == 421 and b"probabilities" not in body and b"<html" not in body
    for ours in ("127.0.0.1", "localhost", "[::1]"):
        status, _, body = request(server, "POST", "/predict", PNGS[1],
                                  {"Host": f"{ours}:{port_of(server)}", "Content-Type": "image/png"})
        assert status == 200 and json.loads(body)["models"][0]["digit"] == 1


def test_a_drawing_sent_from_another_sites_page_is_refused(server):  # case 10
    for origin in ("http://evil.example", "null", f"http://evil.example:{port_of(server)}"):
        status, _, body = request(server, "POST", "/predict", PNGS[1], {"Origin": origin, "Content-Type": "image/png"})
        assert status == 403 and b"probabilities" not in body
    status, _, _ = request(server, "POST", "/predict", PNGS[1],
                           {"Origin": f"http://127.0.0.1:{port_of(server)}", "Content-Type": "image/png"})
    assert status == 200


def test_an_eps_body_never_reaches_a_decoder(server, monkeypatch):  # case 10
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: opened.append(1))
    answers = {content_type: request(server, "POST", "/predict", EPS, {"Content-Type": content_type})[0]
               for content_type in ("text/plain", "image/png", "application/postscript", "image/eps")}
    assert answers == {"text/plain": 415, "image/png": 400, "application/postscript": 415, "image/eps": 415}
    assert opened == []


def test_answers_name_checkpoints_without_their_paths(server, trained_runs):  # case 10
    status, answer = post(server, drawn(1))
    assert [model["checkpoint"] for model in answer["models"]] == ["lenet5_seed0.pt", "custom_mlp_seed0.pt"]
    assert str(trained_runs) not in json.dumps(answer)


@pytest.mark.parametrize("length, status", [(None, 411), ("-1", 400), ("ten", 400), ("+{n}", 400), ("{n}, {n}", 400)])
def test_a_body_length_that_is_not_a_count_of_bytes_gets_a_4xx(server, length, status):  # case 11
    head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(server)}\r\nContent-Type: image/png\r\n"
    head += f"Content-Length: {length.format(n=len(PNGS[1]))}\r\n" if length else ""
    answer = raw(server, head.encode() + b"\r\n" + PNGS[1])
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()) and answer.count(b"HTTP/1.1") == 1


def test_a_chunked_body_gets_411_and_is_not_read_as_the_next_request(server):  # case 11
    host = f"Host: 127.0.0.1:{port_of(server)}\r\n"
    smuggled = f"GET / HTTP/1.1\r\n{host}\r\n".encode()
    head = f"POST /predict HTTP/1.1\r\n{host}Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = raw(server, f"{head}{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ") and answer.count(b"HTTP/1.1") == 1


def test_a_client_that_stalls_is_cut_off_and_the_others_still_answered(models):  # case 12
    with serving(models, timeout=0.5) as address:
        with socket.create_connection(("127.0.0.1", port_of(address)), timeout=5) as stalled:
            stalled.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(address)}\r\nContent-Type: "
                            f"image/png\r\nContent-Length: 1000\r\n\r\n".encode() + PNGS[1][:10])
            assert post(address, PNGS[1])[0] == 200
            started = time.monotonic()
            assert stalled.recv(1) == b"" and time.monotonic() - started < 3  # hung up on, not waited for


def test_a_client_that_trickles_its_request_is_cut_off_at_the_deadline(models):  # case 12: slowloris
    with serving(models, timeout=1, request_seconds=1.5) as address:
        with socket.create_connection(("127.0.0.1", port_of(address)), timeout=5) as slow:
            started = time.monotonic()
            received = b""
            for byte in f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port_of(address)}\r\nX-Slow: {'a' * 20}".encode():
                try:
                    slow.sendall(bytes([byte]))
                    time.sleep(0.1)  # each byte well within the 1 s timeout
                except OSError:
                    break
                if time.monotonic() - started > 4:
                    break
            try:
                received = slow.recv(1)
            except OSError:
                pass
            assert received == b"" and time.monotonic() - started < 4


@pytest.mark.parametrize("data", [
    b"POST http://[::1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n",
    b"GET http://[::1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
    b"PUT / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /\r\n",  # HTTP/0.9: http.server would send the page with no status line
])
def test_malformed_requests_get_one_json_answer(server, data, capsys):  # every refusal is JSON
    answer = raw(server, data.replace(b"{port}", str(port_of(server)).encode()))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert answer.count(b"HTTP/1.") == 1 and re.match(rb"HTTP/1.[01] (400|414|501|505) ", head), answer[:200]
    assert "error" in json.loads(body) and capsys.readouterr().err == ""


@pytest.mark.parametrize("method, path, headers", [("POST", "/other", "Content-Type: image/png\r\n"),
                                                   ("GET", "/", "")])
def test_a_body_the_server_does_not_read_is_never_the_next_request(server, method, path, headers):
    host = f"Host: 127.0.0.1:{port_of(server)}\r\n"
    smuggled = f"GET / HTTP/1.1\r\n{host}\r\n".encode()
    head = f"{method} {path} HTTP/1.1\r\n{host}{headers}Content-Length: {len(smuggled)}\r\n\r\n"
    answer = raw(server, head.encode() + smuggled)
    assert answer.count(b"HTTP/1.1 ") == 1


def test_two_origins_are_refused_even_when_the_first_is_ours(server):
    ours = f"http://127.0.0.1:{port_of(server)}"
    for origins in ([ours, "http://evil.example"], [ours, ours]):
        data = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(server)}\r\nContent-Type: image/png\r\n"
                + "".join(f"Origin: {origin}\r\n" for origin in origins)
                + f"Content-Length: {len(PNGS[1])}\r\n\r\n").encode() + PNGS[1]
        assert raw(server, data).startswith(b"HTTP/1.1 403 ")


def test_only_a_few_drawings_are_read_at_once(models):  # case 12: memory stays bounded under load
    reading, most, lock = [0], [0], threading.Lock()

    class Slow(demo.Reader):
        def read(self, image, dx=0, dy=0):
            with lock:
                reading[0] += 1
                most[0] = max(most[0], reading[0])
            time.sleep(0.2)
            with lock:
                reading[0] -= 1
            return super().read(image, dx, dy)
    server = demo.Server(("127.0.0.1", 0), demo.handler(Slow(models)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_port}/"
    try:
        clients = [threading.Thread(target=post, args=(address, PNGS[1])) for _ in range(8)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(30)
    finally:
        server.shutdown()
        server.server_close()
    assert most[0] == demo.READING_AT_ONCE


def test_connections_beyond_the_cap_get_503_and_the_server_carries_on(models):  # case 12
    with serving(models, timeout=5) as address:
        idle = [socket.create_connection(("127.0.0.1", port_of(address)), timeout=5)
                for _ in range(demo.MAX_CONNECTIONS)]
        try:
            time.sleep(0.2)  # let the server accept them all
            assert raw(address, b"", timeout=5).startswith(b"HTTP/1.1 503 ")
        finally:
            for connection in idle:
                connection.close()
        deadline = time.monotonic() + 5
        while post(address, PNGS[1])[0] != 200 if time.monotonic() < deadline else False:
            time.sleep(0.1)
        assert post(address, PNGS[1])[0] == 200


def test_a_burst_of_clients_waits_in_the_listen_backlog(models):  # case 13
    server = demo.make_server(models, 0)  # not serving yet: every connection waits in the backlog
    clients = [socket.socket() for _ in range(60)]
    try:
        for client in clients:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", server.server_port))
        _, connected, _ = select.select([], clients, [], 2)
        assert len([c for c in connected if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0]) == 60
    finally:
        for client in clients:
            client.close()
        server.server_close()


def test_a_client_that_hangs_up_early_leaves_no_traceback(server, capsys):  # case 14
    for _ in range(20):
        connection = socket.create_connection(("127.0.0.1", port_of(server)), timeout=5)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        connection.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(server)}\r\nContent-Type: "
                           f"image/png\r\nContent-Length: {len(PNGS[1])}\r\n\r\n".encode() + PNGS[1])
        connection.close()
    assert post(server, PNGS[1])[0] == 200
    assert capsys.readouterr().err == ""


def test_head_gets_the_pages_headers(server):  # case 14
    status, headers, body = request(server, "HEAD", "/")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(demo.PAGE.read_bytes())


@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_a_port_out_of_range_is_refused_in_one_line(port, capsys):  # case 14
    with pytest.raises(SystemExit) as exit:
        demo.get_args_parser().parse_args(["--port", port])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and "--port" in err and "Traceback" not in err


def test_ctrl_c_while_starting_says_so_and_exits_130(trained_runs):  # case 9
    status, out, err = interrupted_while_starting("demo.py", "--port", "0", "--checkpoint",
                                                  trained_runs / "checkpoints" / "lenet5_seed0.pt")
    assert status == 130 and out == "" and err.strip() == "demo.py: interrupted while starting; nothing served", err


def test_ctrl_c_while_serving_says_so_and_exits_130(trained_runs, monkeypatch, capsys):  # case 14
    def interrupted(self, poll_interval=0.5):  # what Ctrl-C raises in serve_forever, once the server is up
        raise KeyboardInterrupt
    monkeypatch.setattr(demo.Server, "serve_forever", interrupted)
    monkeypatch.setattr(torch, "set_num_threads", lambda threads: None)  # demo.py's setting, not this process's
    args = demo.get_args_parser().parse_args(["--port", "0", "--checkpoint",
                                              str(trained_runs / "checkpoints" / "lenet5_seed0.pt")])
    assert demo.main(args) == 130
    out, err = capsys.readouterr()
    assert out.startswith("reading with lenet5") and err == "\ndemo.py: stopped\n"


def test_the_screenshot_script_starts_demo_py_itself_and_names_why_it_did_not_start(trained_runs, tmp_path):
    checkpoints = [trained_runs / "checkpoints" / f"{model}_seed0.pt" for model in ("lenet5", "custom_mlp")]
    process, address = demo_screenshot.serve(checkpoints)
    try:
        with urllib.request.urlopen(address, timeout=30) as answer:
            assert answer.status == 200 and b"<canvas" in answer.read()
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 143  # SIGTERM, as a job scheduler sends it: stopped in one line
    with pytest.raises(RunFailed, match=r"demo.py did not start: demo.py: error: --checkpoint: .*does not exist"):
        demo_screenshot.serve([tmp_path / "nosuch.pt"])
