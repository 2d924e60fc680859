"""What many test modules share that is not a fixture: the declaration of defences, paths, small builders and
checks. Fixtures are conftest's; a test module imports from here, never from another test module."""
import base64
import contextlib
import http.client
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from itertools import count
from math import comb
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import sweep
from mnistlab import engine, files, runner
from mnistlab.recipes import resolve_recipe
from scripts import tune
from scripts.report import command

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Defence:
    file: str  # relative to the repository root
    what: str  # the defence, in words
    old: str  # its code, exactly once in file
    new: str  # that code without the defence
    test: str  # the pytest node that must fail without it
    order: tuple = field(default=(), compare=False)  # its test module, its line, and its place above it
    function: object = field(default=None, compare=False)  # the test function


DEFENCES = []  # every defence declared so far, in the order the test modules were imported
DECLARED = count()


def guards(file, what, old, new, case=None):
    """Declares that the test below fails where file's code old, a refusal, cap, timeout or check (what, in words),
    is replaced by new, the same code without it. case names one of a parametrized test's cases. `make defences`
    makes each change in a scratch copy and runs the test there (tests/mutants.py)."""
    def declare(test):
        module = Path(test.__code__.co_filename).resolve().relative_to(ROOT).as_posix()
        node = f"{module}::{test.__name__}" + (f"[{case}]" if case else "")
        # Decorators apply from the bottom up: the later one declared stands higher above the test.
        DEFENCES.append(Defence(file, what, old, new, node, (module, test.__code__.co_firstlineno, -next(DECLARED)),
                                test))
        return test
    return declare


def nan_answers(monkeypatch):
    monkeypatch.setattr(engine, "probabilities", lambda model, tensor: torch.full((len(tensor), 10), float("nan")))


def quick_recipe(model="lenet5", **changes):
    """The recipe of a QUICK run of model, as main.py resolves it, with changes on top."""
    recipe = resolve_recipe(model, {"epochs": 2}, seed=0, limit=512, train_size=None, validation=False, amp=False)
    return {**recipe, **changes}


def tiny_recipe(validation=False):
    return resolve_recipe("lenet5", {"batch_size": 32}, epochs=1, seed=0, limit=256, train_size=None,
                          validation=validation, amp=False)


def one_line(err):
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def holding(path):
    """A child process that holds path open until killed; returns it once the file is open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'w'); "
                                "print('open', flush=True); time.sleep(600)", str(path)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "open"
    return process


def gone(pid):
    """Whether the process pid has ended (and been reaped, or is a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid, seconds=20):
    deadline = time.monotonic() + seconds
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gone(pid)


def fake_demo(folder, script):
    """A demo.py in folder that runs script instead of serving; its process ID goes to folder/pid."""
    (folder / "demo.py").write_text(f"import os, sys, time\nopen({str(folder / 'pid')!r}, 'w').write(str(os.getpid()))"
                                    f"\n{script}\n")
    return folder


def pid_in(folder):
    return int((folder / "pid").read_text())


def sweep_args(*argv):
    return sweep.get_args_parser().parse_args([*map(str, argv), "--limit", "256", "--epochs", "1"])


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


class LossPastBeliefFromStep(torch.nn.Module):
    """model, with a constant logit of 1e6 for class 0 from its bad_step-th training step on (in training or,
    with when="eval", in evaluation): a finite loss near 1e6 on every image of another class, with gradients as
    bounded as the model's own."""

    def __init__(self, model, bad_step=1, when="train"):
        super().__init__()
        self.model, self.steps, self.bad_step, self.when = model, 0, bad_step, when

    def forward(self, x):
        self.steps += self.training
        logits = self.model(x)
        if (self.when == "train") == self.training and self.steps >= self.bad_step:
            logits = logits + torch.tensor([1e6] + [0.0] * 9)
        return logits


def encoded(image, format, **params):
    buffer = io.BytesIO()
    image.save(buffer, format=format, **params)
    return buffer.getvalue()


def assert_rejected(argv, tmp_path, cli, message):
    before = files_under(tmp_path)
    status, out, err = cli(argv)
    assert status == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "error:" in err
    assert message in err, err
    assert files_under(tmp_path) == before


def drawing(digit, size=(300, 400), offset=(0, 0), scale=1.0, ink=20, paper=235, mode="L", gradient=0.0):
    """A thick "1" or a ring "0", dark on light, drawn with PIL; optionally moved, scaled, or lit unevenly."""
    image = Image.new(mode, size, paper if mode == "L" else (paper,) * 3)
    draw = ImageDraw.Draw(image)
    cx, cy = size[0] / 2 + offset[0], size[1] / 2 + offset[1]
    if digit == 1:
        draw.line([(cx, cy - 130 * scale), (cx, cy + 130 * scale)], fill=ink if mode == "L" else (ink,) * 3,
                  width=round(26 * scale))
    else:
        draw.ellipse([cx - 75 * scale, cy - 120 * scale, cx + 75 * scale, cy + 120 * scale],
                     outline=ink if mode == "L" else (ink,) * 3, width=round(26 * scale))
    if gradient:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
        ramp = np.linspace(-gradient / 2, gradient / 2, size[0])[None, :] * 255
        image = Image.fromarray(np.clip(pixels + ramp, 0, 255).astype(np.uint8))
    return image


RUN = "lenet5_seed0"


def checkpoint_of(out_dir, run=RUN):
    return torch.load(out_dir / "checkpoints" / f"{run}.pt", weights_only=True)


def results_of(out_dir, run=RUN):
    return json.loads((out_dir / "results" / f"{run}.json").read_text())


def interrupt_epoch(monkeypatch, epoch, error=KeyboardInterrupt):
    """Make the epoch-th call of train_one_epoch, counted from now, raise error."""
    real, calls = engine.train_one_epoch, []

    def train_one_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise error
        return real(*args, **kwargs)
    monkeypatch.setattr(engine, "train_one_epoch", train_one_epoch)
    return lambda: monkeypatch.setattr(engine, "train_one_epoch", real)


def assert_one_line_error(err, status, expected_status, message):
    assert status == expected_status, err
    assert err.count("\n") == 1 and "Traceback" not in err and message in err, err


def outputs_of(out_dir, run=RUN):
    return {path.name: path.read_bytes() for path in files.RunPaths.of(out_dir, run).outputs}


def start_training(out_dir, *extra):
    return start("main.py", "--model", "lenet5", "--limit", "2000", "--epochs", "500", "--device", "cpu",
                 "--out-dir", out_dir, *extra)


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, "training ended before its first epoch"
        time.sleep(0.05)


def assert_whole_files(out_dir):
    """No temporary leftovers, and every output file there is complete."""
    assert not [p for p in out_dir.rglob("*") if p.name.endswith(".tmp")]
    results, curves = out_dir / "results" / f"{RUN}.json", out_dir / "plots" / f"{RUN}_curves.png"
    if results.exists():
        json.loads(results.read_text())
    if curves.exists():
        assert curves.read_bytes()[-8:] == b"IEND\xaeB`\x82"
    checkpoint_of(out_dir)


def change(path, edit):
    """Rewrite the JSON at path with edit(results) applied."""
    results = json.loads(path.read_text())
    edit(results)
    path.write_text(json.dumps(results))


def refused(copy, monkeypatch, path, *problem):
    """Run `python -m scripts.report` (make readme) on the copy: it must stop with one line naming path, each part
    of the problem, and advice that destroys nothing, having drawn and written nothing."""
    readme = (copy.parent / "README.md").read_bytes()
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert command.main(command.get_args_parser().parse_args([])) == 2
    message = err.getvalue()
    assert message.startswith(f"report: error: {path} ") and message.count("\n") == 1, message
    for part in problem:
        assert part in message, message
    assert "git checkout -- " in message and "--overwrite" not in message, message
    check_advice("scripts.report.command", message.strip())
    assert (copy.parent / "README.md").read_bytes() == readme
    assert not list((copy.parent / "plots").iterdir())  # nothing drawn
    return message


LENET5_RUN = "lenet5_lr0.1_bs128_seed0.json"


def train_and_score(path, recipe):
    """The tuning's trainer on one run stored at path; then the run's score as the sweep reads it."""
    tune.trainer(runner.Settings(), lambda setting, seed: recipe, lambda setting, seed: path)([({}, 0)])
    return tune.score_of(path, recipe)


ONE_EPOCH = ["--limit", "256", "--epochs", "1"]


NAMESPACES = os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip") and shutil.which("ss")


needs_namespace = pytest.mark.skipif(not NAMESPACES, reason="Ray is tested only inside a network namespace of its "
                                                            "own: needs root, unshare, ip and ss")


# A fake uplink: an interface with a private address and a default route, whose packets nobody reads.
UPLINK = ("ip tuntap add dev uplink0 mode tun && ip addr add 10.99.0.2/24 dev uplink0 && ip link set uplink0 up && "
          "ip route add default via 10.99.0.1 dev uplink0")


def sweep_process(*argv):
    """sweep.py run as a program with argv: (exit status, stdout, stderr), each flag its refusals name checked to be
    one sweep.py accepts. For the sweeps that reach for Ray, whose import and environment would stay in pytest's
    process; the others run in it (the run_sweep fixture)."""
    done = subprocess.run([sys.executable, str(ROOT / "sweep.py"), *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    check_advice_in("sweep", done.stderr)
    return done.returncode, done.stdout, done.stderr


def in_namespace(script, uplink=True, timeout=300):
    """A bash script run as the first process of new network and PID namespaces, with loopback up and, where
    asked, the fake uplink: (exit status, stdout, stderr). Whatever it leaves running dies with it."""
    prelude = f"set -u; cd {shlex.quote(str(ROOT))}; ip link set lo up; {UPLINK if uplink else 'true'}; "
    done = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", "-c", prelude + script],
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def results(out_dir, name):
    return json.loads((out_dir / "results" / f"{name}.json").read_text())


def python(*argv):
    """A command line that runs sweep.py or main.py with Ctrl-C and SIGHUP as a terminal gives them: a background
    shell would start it with SIGINT ignored, and nohup with SIGHUP ignored."""
    reset = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
             "signal.signal(signal.SIGHUP, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])")
    return shlex.join([sys.executable, "-c", reset, sys.executable, *map(str, argv)])


# The shell's lines that name the private folder of the sweep whose pid is $sweep in this PID namespace: Ray's
# scratch, its package and the driver's home, none of which may outlive it.
PRIVATE = ("private() { awk -v pid=$1 -v ns=$(readlink /proc/self/ns/pid) '$1 == pid && $3 == ns "
           "{ sub(\"/owner$\", \"\", FILENAME); print FILENAME }' /tmp/mnist-ray-*/owner 2>/dev/null; }\n")


STOPS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]


def still_running(seconds):
    """The shell's line that prints what still runs in the namespace besides the script's own shells, once nothing
    does or after seconds: what a stopped program's last processes get to end."""
    listing = "ps -e -o pid=,args= | grep -v -e 'ps -e' -e grep -e ' bash'"
    return (f'for i in $(seq {10 * seconds}); do [ -z "$({listing})" ] && break; sleep 0.1; done; '
            f"{listing} || true")


WORKERS_STARTED = "ls -d $(private $sweep)/ray/session_*/runtime_resources/working_dir_files/*/ > /dev/null 2>&1"



# The interpreter as the programs name it in the commands that they print to run them again (cli.command_again).
PYTHON = sys.executable.removeprefix(os.path.join(os.getcwd(), ""))


QUICK = ["--limit", "512", "--epochs", "2", "--device", "cpu"]


# A flag as a message names it, and a program whose own flags follow its name in a command that the message gives
# (None: a tool of another package's, such as `ray start --head`, whose flags are its own business).
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


PROGRAMS = {"main.py": "main", "sweep.py": "sweep", "predict.py": "predict", "scripts.report": "scripts.report.command",
            "make ": None, "ray ": None}


def flags_of(module):
    import importlib
    return set(importlib.import_module(module).get_args_parser()._option_string_actions)


def check_advice(module, message):
    """Every --flag that message, printed by module's program (main, sweep, predict, scripts.report.command), names
    is one that program accepts; a flag after another program's name, in the same clause (`python main.py --model
    x`), that program's: advice the user cannot follow is worse than none."""
    for clause in re.split(r"[;`()]|, or ", message.split("unrecognized arguments:")[0]):  # not what was typed
        named = [(clause.find(name), program) for name, program in PROGRAMS.items() if name in clause]
        start, program = min(named, key=lambda found: found[0]) if named else (len(clause), module)
        for match in FLAG.finditer(clause):
            owner = module if match.start() < start else program
            if owner:
                assert match.group() in flags_of(owner), f"{message!r} names {match.group()}, which {owner} lacks"


def check_advice_in(module, err):
    """check_advice for each line of a program's stderr."""
    for line in err.splitlines():
        check_advice(module, line)


def binomial_p(k, n):
    """Two-sided exact binomial p-value at even odds: the chance of a split no likelier than k of n."""
    return sum(comb(n, i) for i in range(n + 1) if comb(n, i) <= comb(n, k)) / 2 ** n


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def png_declaring(width, height, idat=None, colour_type=6, palette=None, transparent=None):
    """PNG bytes whose header declares width x height at 8 bits, RGBA unless colour_type says otherwise, with idat
    (compressed rows) as its data: none by default, enough for a test of what happens before decoding."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))
            + (chunk(b"PLTE", palette) if palette else b"") + (chunk(b"tRNS", transparent) if transparent else b"")
            + (chunk(b"IDAT", idat) if idat is not None else b"") + chunk(b"IEND", b""))


def as_from_a_terminal():
    """Ctrl-C and SIGHUP as a program started from a terminal gets them, even where pytest itself runs with them
    ignored, as a shell's background job (`&`) and nohup start it: the programs keep an ignored signal ignored, on
    purpose."""
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def start(script, *argv, **kwargs):
    """script (main.py, predict.py, ...) as a child process, with pipes for its output, and signals as from a
    terminal."""
    return subprocess.Popen([sys.executable, str(ROOT / script), *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_terminal, **kwargs)


def interrupted_while_starting(script, *argv):
    """script run with argv and sent Ctrl-C a second in, while torch is still being imported: (exit status,
    stdout, stderr)."""
    process = start(script, *argv)
    try:
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()  # where it did not stop
        process.wait()
    return process.returncode, out, err


def similar(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def synthetic(n=300, seed=0):
    """Images whose class a fixed random projection decides: learnable, and nothing like MNIST."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 28, 28, generator=generator)
    projection = torch.randn(28 * 28, 10, generator=generator)
    return images, (images.flatten(1) @ projection).argmax(1)
