"""The fixtures the test modules share, and the order in which the suite runs. Helpers that are not fixtures are
in helpers.py."""
import errno
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

# Each of pytest-xdist's workers, and every program it starts, takes its share of the cores (torch would take them
# all in each), and torch's idle threads sleep rather than spin: on two cores, the suite took 302 s with two threads
# a worker, 286 s like this. Set before torch is first imported, which reads them; values the user set are kept.
# (Only a worker knows how many there are: pytest-xdist's controller, which starts them, runs no test.)
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0))
                                                     // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import main  # noqa: E402
import predict  # noqa: E402
import sweep  # noqa: E402
from helpers import QUICK, ROOT, check_advice_in, drawing  # noqa: E402
from mnistlab import server  # noqa: E402
from scripts import tune  # noqa: E402
from scripts.report import committed  # noqa: E402


def pytest_collection_modifyitems(items):
    # The slow tests first: with the suite on several workers (handed two tests at a time, pytest.ini), each takes
    # its share of them and the short ones fill in around them, instead of one worker running the last long test
    # alone.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture
def thread_count():
    """Set this process's torch thread count, as torch's default is set, for a test; put back after it."""
    import torch
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models(trained_runs):
    return server.load_models([trained_runs / "checkpoints" / f"{model}_seed0.pt" for model in ("lenet5", "custom_mlp")])


@pytest.fixture(scope="module")
def url(models):
    """The demo's server on a free port, serving in a thread: its address."""
    httpd = server.make_server(models, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    drawing(1).save(folder / "one.png")
    drawing(0, mode="RGB").save(folder / "zero.jpg", quality=80)
    Image.new("L", (100, 100), 255).save(folder / "blank.png")
    (folder / "fake.png").write_text("not an image")
    png = (folder / "one.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[:len(png) // 2])
    (folder / "empty").mkdir()
    (folder / "no-images").mkdir()
    (folder / "no-images" / "notes.txt").write_text("")
    return folder


@pytest.fixture
def run_predict(capsys):
    """predict.py in-process: run_predict(*argv) returns (exit status, stdout, stderr), each flag its refusals name
    checked to be one predict.py accepts."""
    def run(*argv):
        status = predict.main(predict.get_args_parser().parse_args([str(a) for a in argv]))
        out, err = capsys.readouterr()
        check_advice_in("predict", err)
        return status, out, err
    return run


@pytest.fixture
def checkpoint(trained_runs):
    return trained_runs / "checkpoints" / "lenet5_seed0.pt"


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """A folder holding a finished QUICK lenet5 run (2 epochs on 512 images): tests that change it copy it first,
    so that each sees the same bytes."""
    import main
    out_dir = tmp_path_factory.mktemp("finished")
    assert main.main(main.get_args_parser().parse_args(["--model", "lenet5", *QUICK, "--out-dir", str(out_dir)])) == 0
    return out_dir


@pytest.fixture
def copy(tmp_path, monkeypatch):
    """A copy of results/, README.md and docs/ that the report and the tuning read instead, and an empty plots/
    folder that they would draw into; returns the copy's results/ folder."""
    results = tmp_path / "results"
    shutil.copytree(ROOT / "results", results)
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    (tmp_path / "plots").mkdir()
    for name, value in (("ROOT", tmp_path), ("RESULTS", results), ("PLOTS", tmp_path / "plots"),
                        ("PAGES", tmp_path)):
        monkeypatch.setattr(committed, name, value)
    monkeypatch.setattr(tune, "TUNING_DIR", results / "tuning")
    monkeypatch.setattr(tune, "FAST_DIR", results / "tuning" / "fast")
    caches = (committed.load, committed.correct, committed.comparison)
    for cache in caches:
        cache.cache_clear()  # runs read from the committed results/ by other tests
    yield results
    for cache in caches:
        cache.cache_clear()  # runs read from the copy


def in_process(program, capsys, monkeypatch):
    """A function that runs program (the module main or sweep) in this process, as its command line would:
    run(argv) returns (exit status, stdout, stderr), each flag its refusals name checked to be one the program
    accepts. sys.argv is the program's, as in the program, whatever started pytest: the advice to run again quotes
    it. The process's import of torch is paid once, not once a run."""
    name = program.__name__
    def run(argv):
        argv = [str(a) for a in argv]
        monkeypatch.setattr(sys, "argv", [f"{name}.py", *argv])
        try:
            status = program.main(program.get_args_parser().parse_args(argv))
        except SystemExit as e:
            status = e.code
        out, err = capsys.readouterr()
        check_advice_in(name, err)
        return status, out, err
    return run


@pytest.fixture
def cli(capsys, monkeypatch):
    """main.py in-process: cli(argv) returns (exit status, stdout, stderr)."""
    return in_process(main, capsys, monkeypatch)


@pytest.fixture
def run_sweep(capsys, monkeypatch, thread_count):
    """sweep.py in-process, its runs one after another (Ray's tests start it as a program):
    run_sweep(*argv) returns (exit status, stdout, stderr). The torch thread count that --cpus-per-run sets is put
    back after the test."""
    run = in_process(sweep, capsys, monkeypatch)
    return lambda *argv: run(argv)


@pytest.fixture
def ctrl_c():
    """Ctrl-C raises KeyboardInterrupt in this process, as in a program started from a terminal, even where pytest
    itself runs with SIGINT ignored (a shell's background job): the code keeps an ignored SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def reaped():
    """Processes the test starts, killed at its end whatever happened."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory):
    """An output folder with lenet5 and custom_mlp checkpoints, trained for one epoch on 20,000 images."""
    import torch

    import dataset
    from mnistlab import files, runs
    from mnistlab.recipes import resolve_recipe, run_name
    out_dir = tmp_path_factory.mktemp("runs")
    train_images, train_labels, test_images, test_labels = dataset.load_splits()
    data = train_images[:20_000], train_labels[:20_000], test_images, test_labels
    for model in ("lenet5", "custom_mlp"):
        recipe = resolve_recipe(model, {}, epochs=1, seed=0, limit=None, train_size=None, validation=False, amp=False)
        runs.train_run(recipe, data, torch.device("cpu"), files.RunPaths.of(out_dir, run_name(model)))
    return out_dir


@pytest.fixture(scope="session")
def fashion():
    """Fashion-MNIST's folder of decompressed files, from Debian's package. Where it is not installed the test is
    skipped, saying so; in CI (CI=1), which installs it, that is a failure: no test skips there in silence."""
    import dataset
    data = dataset.DATASETS["fashion-mnist"]
    if not all((data.archives / f"{name}.gz").exists() for name in data.sha256):
        needs = f"needs Fashion-MNIST in {data.archives}: sudo apt-get install {dataset.FASHION_PACKAGE}"
        pytest.fail(needs) if os.environ.get("CI") else pytest.skip(needs)
    return dataset.prepare(name="fashion-mnist")


@pytest.fixture(scope="session")
def fashion_run(fashion, tmp_path_factory):
    """A folder holding a finished QUICK lenet5 run on Fashion-MNIST (2 epochs on 512 images)."""
    out_dir = tmp_path_factory.mktemp("fashion")
    argv = ["--model", "lenet5", "--dataset", "fashion-mnist", *QUICK, "--out-dir", str(out_dir)]
    assert main.main(main.get_args_parser().parse_args(argv)) == 0
    return out_dir


@pytest.fixture
def read_only_probe(monkeypatch):
    """Make the probe file that proves a folder writable fail as on a read-only file system. Root passes every
    permission check, so that is what stops it."""
    from mnistlab import files
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
    from mnistlab import files
    from mnistlab.errors import UsageError
    recorded = []

    def check(path, flag):
        recorded.append(Path(path))
        raise UsageError("stopped at the first output")
    monkeypatch.setattr(files, "check_output", check)
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path / "runs")
    return recorded
