"""mnistlab/server.py: the demo's HTTP server with good, hostile and concurrent requests."""
import contextlib
import io
import json
import re
import select
import socket
import threading
import time

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from helpers import PNGS, drawn, encoded, field_of, guards, nan_answers, png_declaring, port_of, post, raw, request
from mnistlab import engine, server

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto 28 28 lineto stroke showpage\n"


@contextlib.contextmanager
def serving(models, **kwargs):
    """A server of its own, for a test that changes it or wears it down: its address, "http://127.0.0.1:PORT/"."""
    httpd = server.make_server(models, 0, **kwargs)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@guards("mnistlab/server.py",
        "an Origin is ours only by its whole scheme, host and port",
        'origins[0] not in {f"http://{host}" for host in ours}',
        'not origins[0].startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))')
@pytest.mark.parametrize("origin", ["http://127.0.0.1:1", "http://127.0.0.1", "https://127.0.0.1:{port}",
                                    "http://localhost:{other}", "http://127.0.0.1:{port}.evil.example"])
def test_an_origin_is_ours_only_by_scheme_host_and_port(url, origin):
    origin = origin.format(port=port_of(url), other=port_of(url) + 1)
    status, _, body = request(url, "POST", "/predict", PNGS[1], {"Origin": origin, "Content-Type": "image/png"})
    assert status == 403 and b"probabilities" not in body


@guards("mnistlab/server.py",
        "two Content-Length headers refused",
        "if len(lengths) > 1 or not (lengths[0]",
        "if not (lengths[0]")
def test_two_content_length_headers_are_refused(url):
    n = len(PNGS[1])
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(url)}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n")
    assert raw(url, head.encode() + PNGS[1]).startswith(b"HTTP/1.1 400 ")


@guards("mnistlab/server.py",
        "the request deadline covers the body, not only the headers",
        "                body = self.body()\n                self.deadline.cancel()\n",
        "                self.deadline.cancel()\n                body = self.body()\n")
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


@guards("mnistlab/server.py",
        "a shift beyond MAX_SHIFT either way refused",
        "if max(abs(dx), abs(dy)) > MAX_SHIFT:",
        "if max(dx, dy) > MAX_SHIFT:")
@guards("mnistlab/server.py",
        "MAX_SHIFT is 10 pixels",
        "MAX_SHIFT = 10\n",
        "MAX_SHIFT = 28\n")
@pytest.mark.parametrize("query", ["dx=11", "dx=-11", "dy=11", "dy=-11", "dx=0&dy=-1000000"])
def test_a_shift_beyond_the_bound_either_way_is_refused(query):
    with pytest.raises(server.BadRequest, match="at most 10 pixels each way"):
        server.shift(query)


def test_a_shift_up_to_the_bound_either_way_is_taken():
    assert server.shift("dx=-10&dy=10") == (-10, 10) and server.shift("dx=10&dy=-10") == (10, -10)


def test_the_models_read_the_shifted_image_that_the_answer_shows(models, monkeypatch):
    seen, real = [], engine.probabilities

    def probabilities(model, tensor):
        seen.append(tensor.clone())
        return real(model, tensor)
    monkeypatch.setattr(engine, "probabilities", probabilities)
    answer = server.Reader(models).read(Image.open(io.BytesIO(PNGS[0])), 3, -2)
    import dataset
    field = field_of(answer)
    assert len(seen) == len(models)
    for tensor in seen:
        np.testing.assert_allclose((tensor[0, 0] * dataset.MNIST.std + dataset.MNIST.mean).numpy(), field,
                                   atol=1 / 255)


@guards("mnistlab/server.py",
        "only PNG reaches a decoder",
        'formats=("PNG",), max_pixels=MAX_PIXELS)',
        "max_pixels=MAX_PIXELS)")
@pytest.mark.parametrize("format", ["JPEG", "BMP", "GIF", "WEBP"])
def test_a_body_in_another_format_is_not_decoded_even_as_image_png(format, url):
    body = encoded(Image.open(io.BytesIO(PNGS[1])).convert("RGB"), format)
    status, answer = post(url, body, content_type="image/png")
    assert status == 400 and "not an image in a format it reads (PNG)" in answer["error"]


@guards("mnistlab/server.py",
        "the demo's own pixel cap passed to open_image",
        ", max_pixels=MAX_PIXELS)",
        ")")
@guards("mnistlab/server.py",
        "MAX_PIXELS, the demo's pixel cap, is 4096x4096",
        "MAX_PIXELS = 4096 * 4096",
        "MAX_PIXELS = 8192 * 8192")
def test_the_demo_holds_images_to_its_own_lower_pixel_cap():
    with pytest.raises(server.BadRequest, match="5000x5000 pixels, over 16,777,216"):
        server.decode(png_declaring(5000, 5000), "image/png")


@guards("mnistlab/server.py",
        "a GET for any page but / is a 404",
        '            if path != "/":\n',
        "            if False:\n")
def test_any_other_page_is_a_404(url):
    status, _, body = request(url, "GET", "/demo.html")
    assert status == 404 and json.loads(body) == {"error": "no page here; the demo is at /"}


@guards("mnistlab/server.py",
        "a POST anywhere but /predict is a 404, its body unread",
        '                if url.path != "/predict":\n',
        "                if False:\n")
def test_a_drawing_posted_anywhere_but_predict_is_a_404_and_not_read(url):
    status, _, body = request(url, "POST", "/", PNGS[1], {"Content-Type": "image/png"})
    assert status == 404 and json.loads(body) == {"error": "POST drawings to /predict"}


@guards("mnistlab/server.py",
        "a request for another name (421) closes its connection",
        "                self.close_connection = True\n                self.answer(421",
        "                self.answer(421")
@guards("mnistlab/server.py",
        "a POST from another origin (403) closes its connection",
        "                self.close_connection = True\n                self.answer(403",
        "                self.answer(403")
@pytest.mark.parametrize("refused", ["Host: evil.example", "Origin: http://evil.example"])
def test_a_request_refused_for_its_name_or_origin_closes_its_connection(url, refused):
    host = f"Host: 127.0.0.1:{port_of(url)}\r\n"
    smuggled = f"GET / HTTP/1.1\r\n{host}\r\n".encode()  # the body, unread: it must not pass for a request
    head = (f"POST /predict HTTP/1.1\r\n{refused}\r\n{host if refused.startswith('Origin') else ''}"
            f"Content-Type: image/png\r\nContent-Length: {len(smuggled)}\r\n\r\n")
    answer = raw(url, head.encode() + smuggled)
    assert answer.startswith(b"HTTP/1.1 421 " if refused.startswith("Host") else b"HTTP/1.1 403 ")
    assert answer.count(b"HTTP/1.1 ") == 1


@guards("mnistlab/server.py",
        "a GET with a chunked body closes its connection",
        '!= "0" or "Transfer-Encoding" in self.headers:',
        '!= "0":')
def test_a_get_with_a_chunked_body_closes_its_connection(url):
    host = f"Host: 127.0.0.1:{port_of(url)}\r\n"
    smuggled = f"GET / HTTP/1.1\r\n{host}\r\n".encode()
    head = f"GET / HTTP/1.1\r\n{host}Transfer-Encoding: chunked\r\n\r\n"
    answer = raw(url, f"{head}{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 1


@guards("mnistlab/server.py",
        "a chunked body refused (411)",
        '            if "Transfer-Encoding" in self.headers:\n                self.close_connection = True  # the chunks',
        "            if False:\n                self.close_connection = True  # the chunks")
def test_a_chunked_body_with_a_content_length_as_well_gets_411(url):  # the classic smuggling pair
    body = f"{len(PNGS[1]):x}\r\n".encode() + PNGS[1] + b"\r\n0\r\n\r\n"
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(url)}\r\nContent-Type: image/png\r\n"
            f"Transfer-Encoding: chunked\r\nContent-Length: {len(body)}\r\n\r\n")
    answer = raw(url, head.encode() + body)
    assert answer.startswith(b"HTTP/1.1 411 ") and b"not chunked" in answer


@guards("mnistlab/server.py",
        "http.server's own refusals close their connection",
        "            self.close_connection = True\n            self.request_version = self.protocol_version",
        "            self.request_version = self.protocol_version")
def test_a_request_http_server_refuses_closes_its_connection(url):
    host = f"Host: 127.0.0.1:{port_of(url)}\r\n"
    answer = raw(url, f"PUT / HTTP/1.1\r\n{host}\r\nGET / HTTP/1.1\r\n{host}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 501 ") and answer.count(b"HTTP/1.1 ") == 1


@guards("mnistlab/server.py",
        "a body declared far over MAX_BYTES is refused unread, not drained",
        "if length <= 8 * MAX_BYTES:",
        "if True:")
def test_a_body_declared_far_over_the_cap_is_refused_at_once_without_reading_it(models):
    with serving(models, timeout=2) as address:  # a server that waited for the body would give up after 2 s
        head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(address)}\r\nContent-Type: image/png\r\n"
                f"Content-Length: {100 * server.MAX_BYTES}\r\n\r\n")
        assert raw(address, head.encode()).startswith(b"HTTP/1.1 413 ")


@guards("mnistlab/server.py",
        "MAX_BYTES, the body cap, is 2 MB",
        "MAX_BYTES = 2 * 1024 * 1024\n",
        "MAX_BYTES = 16 * 1024 * 1024\n")
@guards("mnistlab/server.py",
        "REQUEST_SECONDS, the whole-request deadline, is 30 s",
        "REQUEST_SECONDS = 30 ",
        "REQUEST_SECONDS = 300 ")
@guards("mnistlab/server.py",
        "TIMEOUT, the longest silence, is 10 s",
        "TIMEOUT = 10 ",
        "TIMEOUT = None ")
@guards("mnistlab/server.py",
        "READING_AT_ONCE is 2",
        "READING_AT_ONCE = 2 ",
        "READING_AT_ONCE = 8 ")
@guards("mnistlab/server.py",
        "MAX_CONNECTIONS is 64",
        "MAX_CONNECTIONS = 64 ",
        "MAX_CONNECTIONS = 1024 ")
def test_the_demos_limits_are_those_the_readme_promises(models, monkeypatch):
    # README, "The demo": a body of at most 2 MB, an image of at most 4096x4096, 10 s of silence, 30 s for a whole
    # request, at most 64 connections, two drawings read at a time, a listen backlog of 128.
    assert (server.MAX_BYTES, server.MAX_PIXELS, server.TIMEOUT, server.REQUEST_SECONDS, server.MAX_CONNECTIONS,
            server.READING_AT_ONCE) == (2 * 1024 * 1024, 4096 * 4096, 10, 30, 64, 2)
    deadlines, timer = [], threading.Timer
    monkeypatch.setattr(threading, "Timer", lambda seconds, then: deadlines.append(seconds) or timer(seconds, then))
    httpd = server.make_server(models, 0)  # as main() makes it
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert request(f"http://127.0.0.1:{httpd.server_port}/", "GET", "/")[0] == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert httpd.RequestHandlerClass.timeout == 10 and httpd.request_queue_size == 128
    assert deadlines and set(deadlines) == {30}


@guards("mnistlab/server.py",
        "the server listens on 127.0.0.1 only",
        'Server(("127.0.0.1", port)',
        'Server(("", port)')
def test_the_server_listens_on_loopback_only(models, monkeypatch):
    bound = []

    def bind(self):  # where it would listen; nothing listens in this test
        bound.append(self.server_address)
        raise OSError("not bound in a test")
    monkeypatch.setattr(server.Server, "server_bind", bind)
    with pytest.raises(OSError, match="not bound in a test"):
        server.make_server(models, 0)
    assert bound == [("127.0.0.1", 0)]


@guards("mnistlab/server.py",
        "two Host headers refused (421)",
        "if len(hosts) != 1 or hosts[0].lower()",
        "if not hosts or hosts[0].lower()")
def test_two_host_headers_are_refused_even_when_both_are_ours(url):
    host = f"Host: 127.0.0.1:{port_of(url)}\r\n"
    assert raw(url, f"GET / HTTP/1.1\r\n{host}{host}\r\n".encode()).startswith(b"HTTP/1.1 421 ")


@guards("mnistlab/server.py",
        "a Content-Length in digits other than ASCII refused (400)",
        "(lengths[0].isascii() and lengths[0].isdigit())",
        "(lengths[0].isdigit())")
@pytest.mark.parametrize("length", ["\xb9\xb2", "1\xb2"])  # superscripts: digits to str.isdigit, in Latin-1 headers
def test_a_content_length_in_digits_other_than_ascii_is_refused(length, url):
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(url)}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {length}\r\n\r\n")
    assert raw(url, head.encode("latin-1") + PNGS[1][:12]).startswith(b"HTTP/1.1 400 ")


@guards("mnistlab/server.py",
        "a model that answers NaN is a 500",
        "            if not torch.isfinite(probabilities).all():\n",
        "            if False:\n")
def test_a_model_that_answers_nan_is_a_500_in_the_demo(models, monkeypatch):
    nan_answers(monkeypatch)
    with serving(models) as address:
        status, answer = post(address, PNGS[1])
    assert status == 500 and "gave no finite answer: its checkpoint is broken; train it again" in answer["error"]


@guards("mnistlab/server.py",
        "a body over MAX_BYTES refused (413)",
        "            if length > MAX_BYTES:\n",
        "            if length > 8 * MAX_BYTES:\n")
@guards("mnistlab/server.py",
        "an empty body refused (400)",
        '    if not body:\n        raise BadRequest("empty body',
        '    if False:\n        raise BadRequest("empty body')
@guards("mnistlab/server.py",
        "base64 decoded with validate: junk refused, not skipped",
        "base64.b64decode(data, validate=True)",
        "base64.b64decode(data)")
@guards("mnistlab/server.py",
        "an unreadable image is a 400, not a dropped connection",
        "    try:\n        return images.open_image(io.BytesIO(body), formats=(\"PNG\",), max_pixels=MAX_PIXELS)\n"
        "    except images.Unreadable as e:\n        raise BadRequest(str(e)) from None\n",
        "    return images.open_image(io.BytesIO(body), formats=(\"PNG\",), max_pixels=MAX_PIXELS)\n")
@guards("mnistlab/server.py",
        "a shift that is not a whole number refused (400)",
        '    try:\n        dx, dy = (int(parse_qs(query).get(key, ["0"])[0]) for key in ("dx", "dy"))\n'
        '    except ValueError:\n        raise BadRequest("dx and dy must be whole numbers") from None\n',
        '    dx, dy = (int(parse_qs(query).get(key, ["0"])[0]) for key in ("dx", "dy"))\n')
@pytest.mark.parametrize("body, query, status, message", [
    (b"", "", 400, "empty body"),
    (b"not an image at all", "", 400, "not an image"),
    (b"data:image/png;base64,@@@", "", 400, "not valid base64"),
    (b"\0" * (server.MAX_BYTES + 1), "", 413, f"send at most {server.MAX_BYTES >> 20} MB"),
    (None, "?dx=99", 400, "at most 10 pixels"),
    (None, "?dx=left", 400, "must be whole numbers"),
])
def test_bad_input_gets_a_4xx_and_the_server_stays_up(url, body, query, status, message):
    answered, answer = post(url, drawn(1) if body is None else body, query)
    assert answered == status and message in answer["error"]
    assert post(url, drawn(1))[1]["models"][0]["digit"] == 1


@guards("mnistlab/server.py",
        "a GET for another name refused (421)",
        "            if not self.from_here():\n                return\n            try:\n",
        "            try:\n")
@guards("mnistlab/server.py",
        "a POST for another name or from another origin refused",
        "                if not self.from_here():\n                    return\n",
        "")
@guards("mnistlab/server.py",
        "a Host that is not ours refused (421)",
        "if len(hosts) != 1 or hosts[0].lower() not in ours:",
        "if len(hosts) != 1:")
@guards("mnistlab/server.py",
        "a Host without the port is ours only on port 80",
        "| (set(HOSTS) if port == 80 else set())",
        "| set(HOSTS)")
@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "localhost", ""])
def test_a_request_for_another_name_gets_no_answer(url, host):
    host = host.format(port=port_of(url))
    for method, path in (("GET", "/"), ("POST", "/predict")):
        status, _, body = request(url, method, path, PNGS[1] if method == "POST" else None,
                                  {"Host": host, "Content-Type": "image/png"})
        assert status == 421 and b"probabilities" not in body and b"<html" not in body
    for ours in ("127.0.0.1", "localhost", "[::1]"):
        status, _, body = request(url, "POST", "/predict", PNGS[1],
                                  {"Host": f"{ours}:{port_of(url)}", "Content-Type": "image/png"})
        assert status == 200 and json.loads(body)["models"][0]["digit"] == 1


@guards("mnistlab/server.py",
        "a POST from another origin refused (403)",
        'foreign = len(origins) > 1 or origins and origins[0] not in {f"http://{host}" for host in ours}',
        "foreign = len(origins) > 1")
def test_a_drawing_sent_from_another_sites_page_is_refused(url):
    for origin in ("http://evil.example", "null", f"http://evil.example:{port_of(url)}"):
        status, _, body = request(url, "POST", "/predict", PNGS[1], {"Origin": origin, "Content-Type": "image/png"})
        assert status == 403 and b"probabilities" not in body
    status, _, _ = request(url, "POST", "/predict", PNGS[1],
                           {"Origin": f"http://127.0.0.1:{port_of(url)}", "Content-Type": "image/png"})
    assert status == 200


@guards("mnistlab/server.py",
        "a text body that is not a PNG data URL refused (415)",
        'if header != b"data:image/png;base64":',
        "if False:")
@guards("mnistlab/server.py",
        "a Content-Type other than image/png or text/plain refused (415)",
        '    elif content_type != "image/png":\n',
        "    elif False:\n")
def test_an_eps_body_never_reaches_a_decoder(url, monkeypatch):
    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(1))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *args, **kwargs: opened.append(1))
    answers = {content_type: request(url, "POST", "/predict", EPS, {"Content-Type": content_type})[0]
               for content_type in ("text/plain", "image/png", "application/postscript", "image/eps")}
    assert answers == {"text/plain": 415, "image/png": 400, "application/postscript": 415, "image/eps": 415}
    assert opened == []


@guards("mnistlab/server.py",
        "a body without a Content-Length refused (411)",
        "            if not lengths:\n",
        "            if False:\n")
@guards("mnistlab/server.py",
        "a Content-Length that is not a count of bytes refused (400)",
        "not (lengths[0].isascii() and lengths[0].isdigit())",
        "not lengths[0].isascii()")
@pytest.mark.parametrize("length, status", [(None, 411), ("-1", 400), ("ten", 400), ("+{n}", 400), ("{n}, {n}", 400)])
def test_a_body_length_that_is_not_a_count_of_bytes_gets_a_4xx(url, length, status):
    head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(url)}\r\nContent-Type: image/png\r\n"
    head += f"Content-Length: {length.format(n=len(PNGS[1]))}\r\n" if length else ""
    answer = raw(url, head.encode() + b"\r\n" + PNGS[1])
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()) and answer.count(b"HTTP/1.1") == 1


@guards("mnistlab/server.py",
        "TIMEOUT bounds every read and write on a connection",
        "        timeout = seconds  # for every read",
        "        timeout = None  # for every read")
def test_a_client_that_stalls_is_cut_off_and_the_others_still_answered(models):
    with serving(models, timeout=0.5) as address:
        with socket.create_connection(("127.0.0.1", port_of(address)), timeout=5) as stalled:
            stalled.sendall(f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(address)}\r\nContent-Type: "
                            f"image/png\r\nContent-Length: 1000\r\n\r\n".encode() + PNGS[1][:10])
            assert post(address, PNGS[1])[0] == 200
            started = time.monotonic()
            assert stalled.recv(1) == b"" and time.monotonic() - started < 3  # hung up on, not waited for


@guards("mnistlab/server.py",
        "the request deadline (REQUEST_SECONDS) is started for each request",
        "            self.deadline.start()\n",
        "")
def test_a_client_that_trickles_its_request_is_cut_off_at_the_deadline(models):
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


@guards("mnistlab/server.py",
        "an HTTP/0.9 request line refused (505) with a status line",
        "            if len(self.raw_requestline.split()) == 2:\n",
        "            if False:\n")
@guards("mnistlab/server.py",
        "a GET whose URL cannot be read is a 400",
        "            try:\n                path = urlparse(self.path).path\n            except ValueError:\n"
        "                self.close_connection = True\n"
        "                return self.answer(400, {\"error\": \"the request's URL cannot be read\"}, head=head)\n",
        "            path = urlparse(self.path).path\n")
@guards("mnistlab/server.py",
        "a POST whose URL cannot be read is a 400",
        "                try:\n                    url = urlparse(self.path)\n                except ValueError:\n"
        "                    raise BadRequest(\"the request's URL cannot be read\") from None\n",
        "                url = urlparse(self.path)\n")
@guards("mnistlab/server.py",
        "http.server's own refusals have a status line (not HTTP/0.9's bare body)",
        "            self.request_version = self.protocol_version  # not HTTP/0.9",
        "            pass  # not HTTP/0.9")
@pytest.mark.parametrize("data", [
    b"POST http://[::1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n",
    b"GET http://[::1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
    b"PUT / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /\r\n",  # HTTP/0.9: http.server would send the page with no status line
])
def test_malformed_requests_get_one_json_answer(url, data, capsys):  # every refusal is JSON
    answer = raw(url, data.replace(b"{port}", str(port_of(url)).encode()))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert answer.count(b"HTTP/1.") == 1 and re.match(rb"HTTP/1.[01] (400|414|501|505) ", head), answer[:200]
    assert "error" in json.loads(body) and capsys.readouterr().err == ""


@guards("mnistlab/server.py",
        "a GET with a Content-Length body closes its connection",
        '            if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:\n',
        '            if "Transfer-Encoding" in self.headers:\n')
@guards("mnistlab/server.py",
        "a refused POST closes its connection (its body may be unread)",
        "                self.close_connection = True  # its body may be unread",
        "                pass  # its body may be unread")
@pytest.mark.parametrize("method, path, headers", [("POST", "/other", "Content-Type: image/png\r\n"),
                                                   ("GET", "/", "")])
def test_a_body_the_server_does_not_read_is_never_the_next_request(url, method, path, headers):
    host = f"Host: 127.0.0.1:{port_of(url)}\r\n"
    smuggled = f"GET / HTTP/1.1\r\n{host}\r\n".encode()
    head = f"{method} {path} HTTP/1.1\r\n{host}{headers}Content-Length: {len(smuggled)}\r\n\r\n"
    answer = raw(url, head.encode() + smuggled)
    assert answer.count(b"HTTP/1.1 ") == 1


@guards("mnistlab/server.py",
        "two Origin headers refused (403)",
        "foreign = len(origins) > 1 or origins and",
        "foreign = origins and")
def test_two_origins_are_refused_even_when_the_first_is_ours(url):
    ours = f"http://127.0.0.1:{port_of(url)}"
    for origins in ([ours, "http://evil.example"], [ours, ours]):
        data = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:{port_of(url)}\r\nContent-Type: image/png\r\n"
                + "".join(f"Origin: {origin}\r\n" for origin in origins)
                + f"Content-Length: {len(PNGS[1])}\r\n\r\n").encode() + PNGS[1]
        assert raw(url, data).startswith(b"HTTP/1.1 403 ")


@guards("mnistlab/server.py",
        "READING_AT_ONCE drawings read at once, the others wait",
        "reading = threading.BoundedSemaphore(READING_AT_ONCE)",
        "reading = threading.BoundedSemaphore(4 * READING_AT_ONCE)")
def test_only_a_few_drawings_are_read_at_once(models):
    reading, most, lock = [0], [0], threading.Lock()

    class Slow(server.Reader):
        def read(self, image, dx=0, dy=0):
            with lock:
                reading[0] += 1
                most[0] = max(most[0], reading[0])
            time.sleep(0.2)
            with lock:
                reading[0] -= 1
            return super().read(image, dx, dy)
    httpd = server.Server(("127.0.0.1", 0), server.handler(Slow(models)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{httpd.server_port}/"
    try:
        clients = [threading.Thread(target=post, args=(address, PNGS[1])) for _ in range(8)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(30)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert most[0] == server.READING_AT_ONCE


@guards("mnistlab/server.py",
        "MAX_CONNECTIONS open at once, the next get a 503",
        "threading.BoundedSemaphore(MAX_CONNECTIONS)",
        "threading.BoundedSemaphore(16 * MAX_CONNECTIONS)")
@guards("mnistlab/server.py",
        "a closed connection gives its place back",
        "        finally:\n            self.connections.release()",
        "        finally:\n            pass")
def test_connections_beyond_the_cap_get_503_and_the_server_carries_on(models):
    with serving(models, timeout=5) as address:
        idle = [socket.create_connection(("127.0.0.1", port_of(address)), timeout=5)
                for _ in range(server.MAX_CONNECTIONS)]
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


@guards("mnistlab/server.py",
        "a listen backlog of 128, not 5, for bursts of clients",
        "    request_queue_size = 128",
        "    request_queue_size = 5")
def test_a_burst_of_clients_waits_in_the_listen_backlog(models):
    httpd = server.make_server(models, 0)  # not serving yet: every connection waits in the backlog
    clients = [socket.socket() for _ in range(60)]
    try:
        for client in clients:
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", httpd.server_port))
        _, connected, _ = select.select([], clients, [], 2)
        assert len([c for c in connected if c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0]) == 60
    finally:
        for client in clients:
            client.close()
        httpd.server_close()
