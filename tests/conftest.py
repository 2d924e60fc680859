import errno
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from math import comb
from pathlib import Path

import pytest

import main

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run main.py in-process: cli(argv) returns (exit status, stdout, stderr), each flag its refusals name checked
    to be one main.py accepts. sys.argv is main.py's, as in the program, whatever started pytest: the advice to
    run again quotes it."""
    def run(argv):
        argv = [str(a) for a in argv]
        monkeypatch.setattr(sys, "argv", ["main.py", *argv])
        try:
            status = main.main(main.get_args_parser().parse_args(argv))
        except SystemExit as e:
            status = e.code
        out, err = capsys.readouterr()
        check_advice_in("main", err)
        return status, out, err
    return run


@pytest.fixture
def ctrl_c():
    """Ctrl-C raises KeyboardInterrupt in this process, as in a program started from a terminal, even where pytest
    itself runs with SIGINT ignored (a shell's background job): the code keeps an ignored SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


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


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory):
    """An output folder with lenet5 and custom_mlp checkpoints, trained for one epoch on 20,000 images."""
    import dataset
    import files
    import runs
    import torch
    from recipes import resolve_recipe, run_name
    out_dir = tmp_path_factory.mktemp("runs")
    train_images, train_labels, test_images, test_labels = dataset.load_splits()
    data = train_images[:20_000], train_labels[:20_000], test_images, test_labels
    for model in ("lenet5", "custom_mlp"):
        recipe = resolve_recipe(model, {}, epochs=1, seed=0, limit=None, train_size=None, validation=False, amp=False)
        runs.train_run(recipe, data, torch.device("cpu"), files.RunPaths.of(out_dir, run_name(model)))
    return out_dir


@pytest.fixture
def read_only_probe(monkeypatch):
    """Make the probe file that proves a folder writable fail as on a read-only file system. Root passes every
    permission check, so that is what stops it."""
    import files
    write_bytes = files.Path.write_bytes

    def read_only(path, data):
        if path.name.startswith(".probe"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return write_bytes(path, data)
    monkeypatch.setattr(files.Path, "write_bytes", read_only)


@pytest.fixture
def outputs_recorded(monkeypatch, tmp_path):
    """The paths that programs check as their outputs, stopping each program at its first check. runs/ is
    tmp_path/runs."""
    import files
    from errors import UsageError
    recorded = []

    def check(path, flag):
        recorded.append(Path(path))
        raise UsageError("stopped at the first output")
    monkeypatch.setattr(files, "check_output", check)
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path / "runs")
    return recorded
