"""Latency of demo.py's POST /predict with the three report models, one client and ten at once.

    python -m benchmarks.bench_demo [--out PATH]   # with the report's seed-0 checkpoints in checkpoints/ (make report)

The server is `python demo.py`, in its own process, as users start it. The drawings are MNIST test digits
painted black on a white 280x280 canvas, as PNGs like the page sends. One client sends them in turn; then ten clients at once send 50 each. Every concurrent answer must equal the one
the single client got for the same drawing. Prints and writes to results/bench_demo.json the median and 95th
percentile of the time per request, from sending to the parsed answer.
"""
if __name__ == "__main__":  # Ctrl-C while torch imports, below: one line, not a traceback
    from mnistlab.cli import stop_on_ctrl_c
    allow_ctrl_c = stop_on_ctrl_c("bench_demo: interrupted while starting; nothing written")

import io
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import torch
from PIL import Image

import dataset
from mnistlab import engine, files
from mnistlab.cli import OneLineErrorParser, emit, run
from mnistlab.errors import RunFailed, UsageError
from mnistlab.recipes import MODEL_NAMES, run_name

PROG = "bench_demo"
CLIENTS, REQUESTS = 10, 50


def canvas(digit):
    """A 28x28 MNIST digit as black ink on a white 280x280 canvas, PNG bytes."""
    ink = Image.fromarray(255 - digit).resize((200, 200), Image.Resampling.BILINEAR)
    page = Image.new("L", (280, 280), 255)
    page.paste(ink, (40, 40))
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return buffer.getvalue()


def timed_post(address, body):
    start = time.perf_counter()
    request = urllib.request.Request(f"{address}predict", data=body, method="POST",
                                     headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = response.read()
    return time.perf_counter() - start, answer


def percentiles(seconds):
    milliseconds = sorted(1000 * s for s in seconds)
    return {"median_ms": statistics.median(milliseconds),
            "p95_ms": milliseconds[min(len(milliseconds) - 1, round(0.95 * len(milliseconds)))]}


def get_args_parser():
    parser = OneLineErrorParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="where the figures go, as JSON; default: results/bench_demo.json")
    return parser


def report_checkpoints():
    """The report's seed-0 checkpoints, one per model; UsageError for a missing one, before the server starts."""
    checkpoints = [files.RunPaths.of(files.ROOT, run_name(model)).checkpoint for model in MODEL_NAMES]
    for path in checkpoints:
        if not path.is_file():
            raise UsageError(f"no checkpoint at {path.relative_to(files.ROOT)}; `make report` trains the report's "
                             f"seed-0 models")
    return checkpoints


def main(argv=None):
    args = get_args_parser().parse_args(argv)

    def body():
        out = files.check_output(args.out or files.ROOT / "results" / "bench_demo.json", "--out")
        result = measure(report_checkpoints())
        files.save(out, files.write_json, result)
        emit(f"{result['device_name']}: one client {result['single']['median_ms']:.1f} ms median, "
             f"{result['single']['p95_ms']:.1f} ms p95; {CLIENTS} clients at once "
             f"{result['concurrent']['median_ms']:.1f} ms median, {result['concurrent']['p95_ms']:.1f} ms p95, "
             f"{result['concurrent_requests_per_second']:.0f} requests/s; {result['mismatches']} answers differed; "
             f"wrote {out}")
        return 0
    return run(PROG, body, interrupted=f"{PROG}: interrupted; nothing written")


def measure(checkpoints):
    flags = [flag for path in checkpoints for flag in ("--checkpoint", str(path))]
    images, _ = dataset.read_split(train=False)
    drawings = [canvas(images[i].numpy()) for i in range(REQUESTS)]
    server = subprocess.Popen([sys.executable, str(files.ROOT / "demo.py"), "--port", "0", *flags],
                              stdout=subprocess.PIPE, text=True)
    try:
        started = next((line for line in server.stdout if line.startswith("open ")), None)
        if started is None:
            raise RunFailed(f"demo.py did not start (exit status {server.wait()}, its error above)")
        address = started.split()[1]
        timed_post(address, drawings[0])  # warm-up
        single = [timed_post(address, body) for body in drawings]
        reference = [answer for _, answer in single]
        latencies, mismatches = [], []

        def client(k):
            for i in range(REQUESTS):
                j = (i + 5 * k) % REQUESTS
                seconds, answer = timed_post(address, drawings[j])
                latencies.append(seconds)
                if answer != reference[j]:
                    mismatches.append((k, j))

        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
    finally:
        # SIGTERM reaches only this process: the server is stopped here, not left serving.
        server.terminate()
        server.wait()
    return {"device_name": engine.describe_device(torch.device("cpu")), "torch": torch.__version__,
            "models": list(MODEL_NAMES), "requests": CLIENTS * REQUESTS, "clients": CLIENTS,
            "mismatches": len(mismatches), "single": percentiles([s for s, _ in single]),
            "concurrent": percentiles(latencies), "concurrent_requests_per_second": CLIENTS * REQUESTS / wall}


if __name__ == "__main__":
    allow_ctrl_c()
    sys.exit(main())
