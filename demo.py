"""Draw a digit in the browser and watch the trained models read it.

    python demo.py                      # every model with a checkpoint in runs/, on http://127.0.0.1:8000
    python demo.py --port 8080 --checkpoint checkpoints/lenet5_seed0.pt --checkpoint other.pt

The page (demo.html) sends each drawing as a PNG to POST /predict, which makes it MNIST-like with preprocess.py,
as predict.py does, optionally moves it by ?dx=&dy= pixels after centring, and answers with every model's
probabilities and the 28x28 image they saw. The server is mnistlab/server.py.
"""
import sys
from pathlib import Path

from mnistlab.cli import OneLineErrorParser, exit_now, number, run, signal_status, stop_on_ctrl_c
from mnistlab.errors import UsageError
from mnistlab.server import load_models, make_server


def get_args_parser():
    parser = OneLineErrorParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=number(int, lambda v: 0 <= v <= 65535, "from 0 (any free port) to 65535"),
                        default=8000, help="the port on 127.0.0.1 to serve on")
    parser.add_argument("--checkpoint", type=Path, action="append",
                        help="a checkpoint to load; repeat for several (default: each model's best in runs/)")
    return parser


def main(args, started=lambda: None):
    """Serve until Ctrl-C; returns the exit status: 2 for a bad checkpoint or port, 130 for Ctrl-C, as main.py.
    started() is called once the models are loaded and the port is open, before anything is printed or served."""
    def body():
        import torch
        models = load_models(args.checkpoint)
        if not models:
            raise UsageError("no model trained on MNIST in runs/checkpoints; train one with "
                             "`python main.py --model lenet5_regularized`")
        try:
            server = make_server(models, args.port)
        except OSError as e:
            raise UsageError(f"cannot serve on 127.0.0.1:{args.port} ({e.strerror}); pass another --port") from None
        with server:
            started()
            names = ", ".join(f"{name} ({path})" for name, path, _, _ in models)
            print(f"reading with {names}\nopen http://127.0.0.1:{server.server_port}/ in a browser; Ctrl-C stops",
                  flush=True)
            # One image at a time gains nothing from intra-op threads; with requests in parallel threads, they only
            # fight over the cores (benchmarks/bench_demo.py).
            torch.set_num_threads(1)
            try:
                server.serve_forever()
            except KeyboardInterrupt as e:
                print("\ndemo.py: stopped", file=sys.stderr)
                return signal_status(e)
    return run("demo.py", body, interrupted="demo.py: interrupted while starting; nothing served")


if __name__ == "__main__":
    args = get_args_parser().parse_args()
    # exit_now: no Python shutdown, which a second Ctrl-C could catch half done, waiting on the serving threads.
    exit_now(main(args, started=stop_on_ctrl_c("demo.py: interrupted while starting; nothing served")))
