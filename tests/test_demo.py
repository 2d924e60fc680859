"""demo.py, the program: its flags, its start and its stop, the page in a real headless browser, and the
screenshot script that drives it. The server itself is test_server.py's."""
import base64
import io
import json
import os
import signal
import socket
import struct
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from PIL import Image

import demo
from helpers import (PNGS, ROOT, drawn, fake_demo, field_of, gone, guards, interrupted_while_starting, one_line, pid_in,
                     port_of, post, raw, request, wait_gone)
from mnistlab import files, server
from mnistlab.errors import RunFailed
from scripts import demo_screenshot


@pytest.mark.parametrize("digit", [1, 0])
def test_a_drawn_digit_is_read_by_every_model(url, digit):
    status, answer = post(url, drawn(digit))
    assert status == 200 and answer["blank"] is False and answer["shift"] == [0, 0]
    assert [(m["model"], m["label"]) for m in answer["models"]] == [("lenet5", "LeNet5"), ("custom_mlp", "CustomMLP")]
    for model in answer["models"]:
        assert model["digit"] == digit
        assert len(model["probabilities"]) == 10 and sum(model["probabilities"]) == pytest.approx(1, abs=1e-3)
        assert model["probabilities"][digit] == max(model["probabilities"])
        assert 0 < model["accuracy"]["acc"] <= 100 and model["accuracy"]["on"] == "test"
    field = field_of(answer)
    assert field.shape == (28, 28) and field.max() > 0.9


def test_a_data_url_reads_the_same_as_bytes(url):
    png = drawn(1)
    _, from_bytes = post(url, png)
    _, from_url = post(url, b"data:image/png;base64," + base64.b64encode(png))
    assert from_url == from_bytes


def test_the_shift_moves_what_the_models_see(url):
    _, plain = post(url, drawn(0))
    _, shifted = post(url, drawn(0), "?dx=3&dy=-2")
    assert shifted["shift"] == [3, -2]
    moved = np.zeros((28, 28), dtype=np.float32)
    moved[:26, 3:] = field_of(plain)[2:, :25]
    np.testing.assert_allclose(field_of(shifted), moved, atol=1 / 255)


def test_a_blank_canvas_is_reported_as_blank(url):
    buffer = io.BytesIO()
    Image.new("RGB", (280, 280), "white").save(buffer, format="PNG")
    assert post(url, buffer.getvalue()) == (200, {"blank": True, "image": None, "shift": [0, 0], "models": []})


def test_ten_clients_at_once_all_get_correct_answers(url):
    failures = []

    def client(k):
        for i in range(50):
            digit = (k + i) % 2
            status, answer = post(url, PNGS[digit])
            if status != 200 or [m["digit"] for m in answer["models"]] != [digit, digit]:
                failures.append((k, i, status))

    clients = [threading.Thread(target=client, args=(k,)) for k in range(10)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    assert failures == []


def test_the_page_is_served(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        page = response.read().decode()
    assert response.headers["Content-Type"].startswith("text/html") and 'id="pad"' in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from elsewhere: the page works offline


def test_without_any_checkpoint_the_demo_says_how_to_train_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path)
    assert demo.main(demo.get_args_parser().parse_args([])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "train one with `python main.py --model lenet5_regularized`" in err


@pytest.mark.skipif(demo_screenshot.browser_missing() is not None, reason=str(demo_screenshot.browser_missing()))
@pytest.mark.slow
def test_drawing_in_a_real_browser_shows_each_models_reading(url):
    from selenium.webdriver.common.by import By
    driver = demo_screenshot.browser()
    try:
        driver.get(url)
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


def test_answers_name_checkpoints_without_their_paths(url, trained_runs):
    status, answer = post(url, drawn(1))
    assert [model["checkpoint"] for model in answer["models"]] == ["lenet5_seed0.pt", "custom_mlp_seed0.pt"]
    assert str(trained_runs) not in json.dumps(answer)


def test_a_chunked_body_gets_411_and_is_not_read_as_the_next_request(url):
    host = f"Host: 127.0.0.1:{port_of(url)}\r\n"
    smuggled = f"GET / HTTP/1.1\r\n{host}\r\n".encode()
    head = f"POST /predict HTTP/1.1\r\n{host}Content-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer = raw(url, f"{head}{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ") and answer.count(b"HTTP/1.1") == 1


def test_a_client_that_hangs_up_early_leaves_no_traceback(url, capsys):
    for _ in range(20):
        connection = socket.create_connection(("127.0.0.1", port_of(url)), timeout=5)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
        connection.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(url)}\r\nContent-Type: "
                           f"image/png\r\nContent-Length: {len(PNGS[1])}\r\n\r\n".encode() + PNGS[1])
        connection.close()
    assert post(url, PNGS[1])[0] == 200
    assert capsys.readouterr().err == ""


def test_head_gets_the_pages_headers(url):
    status, headers, body = request(url, "HEAD", "/")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(server.PAGE.read_bytes())


@guards("demo.py",
        "--port from 0 to 65535",
        "lambda v: 0 <= v <= 65535",
        "lambda v: True")
@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_a_port_out_of_range_is_refused_in_one_line(port, capsys):
    with pytest.raises(SystemExit) as exit:
        demo.get_args_parser().parse_args(["--port", port])
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1 and "--port" in err and "Traceback" not in err


def test_ctrl_c_while_starting_says_so_and_exits_130(trained_runs):
    status, out, err = interrupted_while_starting("demo.py", "--port", "0", "--checkpoint",
                                                  trained_runs / "checkpoints" / "lenet5_seed0.pt")
    assert status == 130 and out == "" and err.strip() == "demo.py: interrupted while starting; nothing served", err


def test_ctrl_c_while_serving_says_so_and_exits_130(trained_runs, monkeypatch, capsys):
    def interrupted(self, poll_interval=0.5):  # what Ctrl-C raises in serve_forever, once the server is up
        raise KeyboardInterrupt
    monkeypatch.setattr(server.Server, "serve_forever", interrupted)
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


@guards("demo.py",
        "a port that cannot be served on is one line, exit 2",
        "        try:\n            server = make_server(models, args.port)\n        except OSError as e:\n"
        "            raise UsageError(f\"cannot serve on 127.0.0.1:{args.port} ({e.strerror}); pass another --port\")"
        " from None\n",
        "        server = make_server(models, args.port)\n")
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


@guards("demo.py",
        "no model: exit 2, nothing served",
        "        if not models:\n            raise UsageError",
        "        if False:\n            raise UsageError")
def test_with_no_model_nothing_is_served(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path)
    monkeypatch.setattr(server.Server, "serve_forever", lambda self, poll_interval=0.5: pytest.fail("served no model"))
    assert demo.main(demo.get_args_parser().parse_args(["--port", "0"])) == 2
    assert capsys.readouterr().out == ""


@guards("scripts/demo_screenshot.py",
        "no browser: one line before any work",
        "        if missing:\n            raise UsageError(f\"{missing}; the screenshot",
        "        if False:\n            raise UsageError(f\"{missing}; the screenshot")
def test_demo_screenshot_without_a_browser_is_one_line_before_any_work(monkeypatch, tmp_path, capsys):
    from scripts import demo_screenshot
    monkeypatch.setattr(demo_screenshot, "browser_missing", lambda: "no chromium and chromedriver on PATH")
    monkeypatch.setattr(demo_screenshot, "take", lambda *a: pytest.fail("went on without a browser"))
    assert demo_screenshot.main(["--out", str(tmp_path / "shot.json")]) == 2
    assert one_line(capsys.readouterr().err) == ("demo_screenshot: error: no chromium and chromedriver on PATH; the "
                                                 "screenshot needs a browser to drive")


@guards("scripts/demo_screenshot.py",
        "a demo that does not start is RunFailed with its own line",
        "    process.wait()\n    raise RunFailed(f\"demo.py did not start:",
        "    process.wait()\n    return process, None\n    raise RunFailed(f\"demo.py did not start:")
def test_demo_screenshot_says_why_the_demo_did_not_start(monkeypatch, tmp_path):
    from scripts import demo_screenshot
    monkeypatch.setattr(files, "ROOT", fake_demo(tmp_path, "sys.exit('demo: error: no checkpoint at x.pt')"))
    with pytest.raises(RunFailed, match="demo.py did not start: demo: error: no checkpoint at x.pt"):
        demo_screenshot.serve([])


@guards("scripts/demo_screenshot.py",
        "the demo server stopped whatever fails",
        "    finally:\n        server.terminate()\n        server.wait()\n",
        "    finally:\n        pass\n")
@guards("scripts/demo_screenshot.py",
        "the browser quit whatever fails",
        "        finally:\n            driver.quit()\n",
        "        finally:\n            pass\n")
@pytest.mark.parametrize("failing", ["the browser", "the page"])
def test_demo_screenshot_stops_the_demo_and_the_browser_whatever_fails(failing, monkeypatch, tmp_path):
    from scripts import demo_screenshot
    monkeypatch.setattr(files, "ROOT", fake_demo(tmp_path, "print('open http://127.0.0.1:1/', flush=True); "
                                                           "time.sleep(600)"))
    quit = []

    class Driver:
        def get(self, address):
            raise RuntimeError("the page did not load")

        def quit(self):
            quit.append(True)

    def browser():
        if failing == "the browser":
            raise RuntimeError("chromium did not start")
        return Driver()
    monkeypatch.setattr(demo_screenshot, "browser", browser)
    try:
        with pytest.raises(RuntimeError):
            demo_screenshot.take([], tmp_path / "shot.json", tmp_path / "shot.png")
        assert wait_gone(pid_in(tmp_path)), "the demo server was left running"
        assert quit == ([] if failing == "the browser" else [True])
    finally:
        if not gone(pid_in(tmp_path)):
            os.kill(pid_in(tmp_path), signal.SIGKILL)


@guards("scripts/demo_screenshot.py",
        "the wait for the page's answers times out",
        "WebDriverWait(driver, timeout).until",
        "WebDriverWait(driver, 10**9).until")
def test_the_wait_for_the_pages_answers_times_out():
    pytest.importorskip("selenium")
    from selenium.common.exceptions import TimeoutException

    from scripts import demo_screenshot

    class Silent:  # a page that sent a request and never had it answered
        def execute_script(self, script):
            return {"sent": "1", "answered": "0"}
    outcome = []

    def wait():
        try:
            demo_screenshot.predicted(Silent(), 0, timeout=1)
        except TimeoutException:
            outcome.append("timed out")
    waiting = threading.Thread(target=wait, daemon=True)
    waiting.start()
    waiting.join(30)
    assert outcome == ["timed out"]


@guards("scripts/demo_screenshot.py",
        "the committed screenshot drawn only beside the committed JSON",
        "                                    out.with_suffix(\".png\"), \"--screenshot\", \"picture\")",
        "                                    files.ROOT / \"plots\" / \"demo.png\", \"--screenshot\", \"picture\")")
def test_demo_screenshot_draws_beside_its_json_and_the_committed_one_only_beside_the_committed_json(tmp_path):
    from scripts import demo_screenshot
    outputs = [demo_screenshot.outputs(demo_screenshot.get_args_parser().parse_args(argv))
               for argv in (["--out", str(tmp_path / "shot.json")], [])]
    assert outputs == [(tmp_path / "shot.json", tmp_path / "shot.png"),
                       (ROOT / "results" / "demo_screenshot.json", ROOT / "plots" / "demo.png")]
