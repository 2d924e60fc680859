"""demo.py: the server's API with good, bad and concurrent requests, and the page in a real headless browser."""
import base64
import io
import json
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image, ImageDraw

import demo
import files
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
def server(trained_runs):
    checkpoints = [trained_runs / "checkpoints" / f"{model}_seed0.pt" for model in ("lenet5", "custom_mlp")]
    server, address = demo_screenshot.serve(demo.load_models(checkpoints))
    yield address
    server.shutdown()
    server.server_close()


def post(address, body, query=""):
    """(status, JSON answer) of POST /predict."""
    request = urllib.request.Request(f"{address}predict{query}", data=body, method="POST")
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


@pytest.mark.parametrize("body, query, message", [
    (b"", "", "empty body"),
    (b"not an image at all", "", "not an image"),
    (b"data:image/png;base64,@@@", "", "not valid base64"),
    (b"\0" * (2 * 1024 * 1024 + 1), "", "send at most 2 MB"),
    (None, "?dx=99", "at most 10 pixels"),
    (None, "?dx=left", "must be whole numbers"),
])
def test_bad_input_gets_a_400_and_the_server_stays_up(server, body, query, message):
    status, answer = post(server, drawn(1) if body is None else body, query)
    assert status == 400 and message in answer["error"]
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
    monkeypatch.setattr(sys, "argv", ["demo.py"])
    with pytest.raises(SystemExit) as exit:
        demo.main()
    assert exit.value.code == 2
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
