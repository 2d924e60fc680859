"""Draw a digit in the browser and watch the trained models read it.

    python demo.py                      # every model with a checkpoint in runs/, on http://127.0.0.1:8000
    python demo.py --port 8080 --checkpoint checkpoints/lenet5_seed0.pt --checkpoint other.pt

The page (demo.html) sends each drawing as a PNG to POST /predict, which makes it MNIST-like with predict.py's
own preprocessing, optionally moves it by ?dx=&dy= pixels after centring, and answers with every model's
probabilities and the 28x28 image they saw. Standard library server, one thread per request.
"""
import argparse
import base64
import io
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from recipes import LABELS, evaluated_on

PAGE = Path(__file__).resolve().parent / "demo.html"
MAX_BYTES = 2 * 1024 * 1024
MAX_PIXELS = 4096 * 4096
MAX_SHIFT = 10


class BadRequest(Exception):
    """The request cannot be read; the message says why, for a 400."""


def decode(body):
    """The PIL image in a request body: PNG (or other image) bytes, or a data URL of them."""
    from PIL import Image, UnidentifiedImageError
    if not body:
        raise BadRequest("empty body: send a PNG, as bytes or as a data URL")
    if body.startswith(b"data:"):
        try:
            body = base64.b64decode(body.partition(b",")[2], validate=True)
        except ValueError:
            raise BadRequest("the data URL is not valid base64") from None
    try:
        image = Image.open(io.BytesIO(body))
        if image.width * image.height > MAX_PIXELS:
            raise BadRequest(f"the image is {image.width}x{image.height}; send at most 4096x4096")
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise BadRequest(f"not an image Pillow can read ({type(e).__name__})") from None


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
        import dataset
        import engine
        import predict
        try:
            field = predict.mnist_like(image)
        except predict.Blank:
            return {"blank": True, "image": None, "shift": [dx, dy], "models": []}
        tensor = dataset.shift(predict.normalize([field]), dx, dy)
        seen = (tensor[0, 0] * dataset.MNIST_STD + dataset.MNIST_MEAN).numpy()
        answers = []
        for name, path, accuracy, model in self.models:
            probabilities = engine.probabilities(model, tensor)[0]
            answers.append({"model": name, "label": LABELS[name], "checkpoint": str(path), "accuracy": accuracy,
                            "digit": int(probabilities.argmax()),
                            "probabilities": [round(float(p), 5) for p in probabilities]})
        return {"blank": False, "image": png_data_url(seen), "shift": [dx, dy], "models": answers}


def handler(reader):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if urlparse(self.path).path != "/":
                return self.answer(404, {"error": f"no page at {self.path}; the demo is at /"})
            self.answer(200, PAGE.read_bytes(), "text/html; charset=utf-8")

        def do_POST(self):
            url = urlparse(self.path)
            if url.path != "/predict":
                return self.answer(404, {"error": f"POST to /predict, not {url.path}"})
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BYTES:
                    # Read what a client may reasonably send, so that it gets the answer; beyond that, hang up.
                    if length <= 8 * MAX_BYTES:
                        while self.rfile.read(min(length, 1 << 20)) and (length := length - (1 << 20)) > 0:
                            pass
                    else:
                        self.close_connection = True
                    raise BadRequest("the body is over 2 MB; send at most 2 MB")
                query = parse_qs(url.query)
                dx, dy = (int(query.get(key, ["0"])[0]) for key in ("dx", "dy"))
                if max(abs(dx), abs(dy)) > MAX_SHIFT:
                    raise BadRequest(f"shift dx={dx}, dy={dy}: at most {MAX_SHIFT} pixels each way")
                self.answer(200, reader.read(decode(self.rfile.read(length)), dx, dy))
            except BadRequest as e:
                self.answer(400, {"error": str(e)})
            except ValueError:
                self.answer(400, {"error": "dx, dy and Content-Length must be whole numbers"})

        def answer(self, status, body, content_type="application/json"):
            if not isinstance(body, bytes):
                body = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # one line per request on stderr is noise in a demo
            pass

    return Handler


def load_models(checkpoints):
    """[(name, path, accuracy, model)] for the checkpoints given, or for each model's best one in runs/."""
    import files
    import predict
    import runs
    import torch
    from recipes import MODEL_NAMES
    if not checkpoints:
        checkpoints = [p for p in (predict.best_checkpoint(files.DEFAULT_OUT_DIR, m) for m in MODEL_NAMES) if p]
    models = []
    for path in checkpoints:
        model, checkpoint = runs.load_model(path, torch.device("cpu"))
        accuracy = {"acc": checkpoint["history"][-1]["eval_acc"],
                    "on": evaluated_on(checkpoint["recipe"])}
        models.append((checkpoint["recipe"]["model"], path, accuracy, model))
    return models


def make_server(models, port=8000):
    """The demo's HTTP server on 127.0.0.1:port (0: any free port), not yet serving."""
    return ThreadingHTTPServer(("127.0.0.1", port), handler(Reader(models)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--port", type=int, default=8000, help="the port on 127.0.0.1 to serve on")
    parser.add_argument("--checkpoint", type=Path, action="append",
                        help="a checkpoint to load; repeat for several (default: each model's best in runs/)")
    args = parser.parse_args()
    import torch
    from errors import UsageError
    try:
        models = load_models(args.checkpoint)
        if not models:
            raise UsageError("no trained model in runs/checkpoints; train one with "
                             "`python main.py --model lenet5_regularized`")
        server = make_server(models, args.port)
    except UsageError as e:
        print(f"demo.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"demo.py: error: cannot serve on 127.0.0.1:{args.port} ({e.strerror}); pass another --port",
              file=sys.stderr)
        sys.exit(2)
    names = ", ".join(f"{name} ({path})" for name, path, _, _ in models)
    print(f"reading with {names}\nopen http://127.0.0.1:{server.server_port}/ in a browser; Ctrl-C stops", flush=True)
    # One image at a time gains nothing from intra-op threads; with requests in parallel threads, they only
    # fight over the cores (benchmarks/bench_demo.py).
    torch.set_num_threads(1)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
