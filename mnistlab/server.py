"""The demo's HTTP server: it answers POST /predict with every model's reading of a drawn digit, and GET / with
demo.html. Standard library server, one thread per connection, bounded in connections, bytes, pixels, time and
requests read at once. It answers only to its own name and its own page, so that no other web page open in a
browser can use it."""
import base64
import io
import json
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from mnistlab.recipes import LABELS, evaluated_on

PAGE = Path(__file__).resolve().parents[1] / "demo.html"
HOSTS = ("127.0.0.1", "localhost", "[::1]")  # the names this server answers to, with its port
MAX_BYTES = 2 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
MAX_SHIFT = 10
TIMEOUT = 10           # s: the longest a connection may keep the server waiting for its next bytes
REQUEST_SECONDS = 30   # s: the longest a client may take to send one request whole, however it trickles
MAX_CONNECTIONS = 64   # connections open at once; the next ones get a 503, so file descriptors never run out
READING_AT_ONCE = 2    # requests decoded and read at once; the others wait their turn, so memory stays bounded


class BadRequest(Exception):
    """The request cannot be answered; the message says why, for the status given (400 by default)."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


class ModelFailed(Exception):
    """A model's answer is not a number: its checkpoint is broken."""


def decode(body, content_type):
    """The PIL image in a request body: PNG bytes sent as image/png, or a PNG data URL sent as text/plain (what a
    page's fetch sends for a string). No other format reaches a decoder."""
    from mnistlab import images
    if not body:
        raise BadRequest("empty body: send a PNG, as bytes or as a data URL")
    if content_type == "text/plain":
        header, _, data = body.partition(b",")
        if header != b"data:image/png;base64":
            raise BadRequest("a text body must be a PNG data URL, data:image/png;base64,...", 415)
        try:
            body = base64.b64decode(data, validate=True)
        except ValueError:
            raise BadRequest("the data URL is not valid base64") from None
    elif content_type != "image/png":
        raise BadRequest(f"send the PNG as Content-Type image/png, not {content_type or 'none'}", 415)
    try:
        return images.open_image(io.BytesIO(body), formats=("PNG",), max_pixels=MAX_PIXELS)
    except images.Unreadable as e:
        raise BadRequest(str(e)) from None


def shift(query):
    """(dx, dy) from a query string, in whole pixels, each at most MAX_SHIFT."""
    try:
        dx, dy = (int(parse_qs(query).get(key, ["0"])[0]) for key in ("dx", "dy"))
    except ValueError:
        raise BadRequest("dx and dy must be whole numbers") from None
    if max(abs(dx), abs(dy)) > MAX_SHIFT:
        raise BadRequest(f"shift dx={dx}, dy={dy}: at most {MAX_SHIFT} pixels each way")
    return dx, dy


def png_data_url(field):
    """A (28, 28) array in [0, 1] as a PNG data URL."""
    import numpy as np
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray((np.clip(field, 0, 1) * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Reader:
    """The loaded models, and what they make of one drawing."""

    def __init__(self, models):
        self.models = models  # [(name, checkpoint path, final accuracy % and where it was measured, model)]

    def read(self, image, dx=0, dy=0):
        import torch

        import dataset
        from mnistlab import engine, preprocess
        try:
            field = preprocess.mnist_like(image)
        except preprocess.Blank:
            return {"blank": True, "image": None, "shift": [dx, dy], "models": []}
        tensor = dataset.shift(preprocess.normalize([field]), dx, dy)
        seen = (tensor[0, 0] * dataset.MNIST.std + dataset.MNIST.mean).numpy()
        answers = []
        for name, path, accuracy, model in self.models:
            probabilities = engine.probabilities(model, tensor)[0]
            if not torch.isfinite(probabilities).all():
                raise ModelFailed(f"{LABELS[name]} ({path.name}) gave no finite answer: its checkpoint is broken; "
                                  f"train it again")
            answers.append({"model": name, "label": LABELS[name], "checkpoint": path.name, "accuracy": accuracy,
                            "digit": int(probabilities.argmax()),
                            "probabilities": [round(float(p), 5) for p in probabilities]})
        return {"blank": False, "image": png_data_url(seen), "shift": [dx, dy], "models": answers}


def handler(reader, seconds=TIMEOUT, request_seconds=REQUEST_SECONDS):
    reading = threading.BoundedSemaphore(READING_AT_ONCE)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = seconds  # for every read and write on the connection

        def handle_one_request(self):
            # The timeout bounds each read, not a client that sends a byte every few seconds: this bounds the
            # whole request, from its first line to its body's last byte.
            self.deadline = threading.Timer(request_seconds, self.hang_up)
            self.deadline.start()
            try:
                super().handle_one_request()
            finally:
                self.deadline.cancel()

        def parse_request(self):
            if len(self.raw_requestline.split()) == 2:
                # HTTP/0.9, a request line without a version: http.server would wait for headers that such a client
                # never sends, then answer the page with no status line. Refused at once, as HTTP/1.1.
                self.command, self.requestline = "", self.raw_requestline.decode("latin-1").rstrip("\r\n")
                self.send_error(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED,
                                "the request line names no HTTP version; end it with the version, 1.0 or 1.1")
                return False
            return super().parse_request()

        def hang_up(self):
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def do_HEAD(self):
            self.do_GET(head=True)

        def do_GET(self, head=False):
            self.deadline.cancel()
            if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
                self.close_connection = True  # a body not read must not pass for the next request
            if not self.from_here():
                return
            try:
                path = urlparse(self.path).path
            except ValueError:
                self.close_connection = True
                return self.answer(400, {"error": "the request's URL cannot be read"}, head=head)
            if path != "/":
                return self.answer(404, {"error": "no page here; the demo is at /"}, head=head)
            self.answer(200, PAGE.read_bytes(), "text/html; charset=utf-8", head=head)

        def do_POST(self):
            try:
                if not self.from_here():
                    return
                try:
                    url = urlparse(self.path)
                except ValueError:
                    raise BadRequest("the request's URL cannot be read") from None
                if url.path != "/predict":
                    raise BadRequest("POST drawings to /predict", 404)
                body = self.body()
                self.deadline.cancel()
                dx, dy = shift(url.query)
                content_type = self.headers.get("Content-Type", "").partition(";")[0].strip().lower()
                with reading:
                    self.answer(200, reader.read(decode(body, content_type), dx, dy))
            except BadRequest as e:
                self.close_connection = True  # its body may be unread, and must not pass for the next request
                self.answer(e.status, {"error": str(e)})
            except ModelFailed as e:
                self.answer(500, {"error": str(e)})

        def send_error(self, code, message=None, explain=None):
            """http.server's own refusals (a request line or headers too long or malformed, a method it has no
            do_ for), as JSON like every other answer."""
            self.close_connection = True
            self.request_version = self.protocol_version  # not HTTP/0.9, whose answers have no status line
            self.answer(code, {"error": message or HTTPStatus(code).phrase}, head=self.command == "HEAD")

        def from_here(self):
            """Whether the request is for this server by its own name, and a POST from its own page; answers it
            where not. Another web page can make a browser send requests here: by its own name after DNS
            rebinding (a Host that is not ours), or by ours from its page (an Origin that is not ours)."""
            port = self.server.server_port
            ours = {f"{host}:{port}" for host in HOSTS} | (set(HOSTS) if port == 80 else set())
            hosts = self.headers.get_all("Host") or []
            if len(hosts) != 1 or hosts[0].lower() not in ours:
                self.close_connection = True
                self.answer(421, {"error": f"this server answers only as http://127.0.0.1:{port}/"})
                return False
            origins = [origin.lower() for origin in self.headers.get_all("Origin") or []]
            foreign = len(origins) > 1 or origins and origins[0] not in {f"http://{host}" for host in ours}
            if self.command == "POST" and foreign:
                self.close_connection = True
                self.answer(403, {"error": "only the demo's own page may send drawings here"})
                return False
            return True

        def body(self):
            """The request body, read whole where its Content-Length is a number of bytes within MAX_BYTES."""
            if "Transfer-Encoding" in self.headers:
                self.close_connection = True  # the chunks are not read, so they must not pass for the next request
                raise BadRequest("send the body with a Content-Length, not chunked", 411)
            lengths = self.headers.get_all("Content-Length") or []
            if not lengths:
                self.close_connection = True
                raise BadRequest("no Content-Length: send the body's length in bytes", 411)
            if len(lengths) > 1 or not (lengths[0].isascii() and lengths[0].isdigit()):
                self.close_connection = True
                raise BadRequest("Content-Length must be one whole number of bytes")
            length = int(lengths[0])
            if length > MAX_BYTES:
                # Read what a client may reasonably send, so that it gets the answer; beyond that, hang up.
                self.close_connection = True
                if length <= 8 * MAX_BYTES:
                    while self.rfile.read(min(length, 1 << 20)) and (length := length - (1 << 20)) > 0:
                        pass
                raise BadRequest(f"the body is over {MAX_BYTES >> 20} MB; send at most {MAX_BYTES >> 20} MB", 413)
            return self.rfile.read(length)

        def answer(self, status, body, content_type="application/json", head=False):
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def log_message(self, *args):  # one line per request on stderr is noise in a demo
            pass

    return Handler


class Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bound on open connections, a listen backlog for bursts of clients, and no
    traceback for a client that hangs up or stalls."""
    request_queue_size = 128  # the listen backlog; the default, 5, resets clients when many connect at once
    block_on_close = False    # Ctrl-C stops at once, without waiting for idle connections to time out

    def __init__(self, address, handler_class):
        super().__init__(address, handler_class)
        self.connections = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):
        if not self.connections.acquire(blocking=False):
            try:
                request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):  # the client hung up or went quiet: its business
            return
        print(f"demo.py: error: a request failed ({type(error).__name__}: {error})".splitlines()[0], file=sys.stderr)


def load_models(checkpoints):
    """[(name, path, accuracy, model)] for the checkpoints given, or for each model's best one in runs/, saying on
    standard error which files there it skipped and why."""
    import torch

    from mnistlab import checkpoints as checkpoint_files
    from mnistlab import files, paths
    from mnistlab.recipes import MODEL_NAMES
    if not checkpoints:
        skipped = {}
        found = (checkpoint_files.best_checkpoint(files.DEFAULT_OUT_DIR, m, lambda e: skipped.setdefault(e.path, e))
                 for m in MODEL_NAMES)
        checkpoints = [path for path in found if path]
        for error in skipped.values():
            print(f"demo.py: skipped {paths.printable(error.path)}, which {error.reason}", file=sys.stderr)
    models = []
    for path in checkpoints:
        model, checkpoint = checkpoint_files.load_model(path, torch.device("cpu"), reader="demo.py")
        accuracy = {"acc": checkpoint["history"][-1]["eval_acc"],
                    "on": evaluated_on(checkpoint["recipe"])}
        models.append((checkpoint["recipe"]["model"], path, accuracy, model))
    return models


def make_server(models, port=8000, timeout=TIMEOUT, request_seconds=REQUEST_SECONDS):
    """The demo's HTTP server on 127.0.0.1:port (0: any free port), not yet serving."""
    return Server(("127.0.0.1", port), handler(Reader(models), timeout, request_seconds))
