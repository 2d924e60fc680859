"""benchmarks/: their outputs, their refusals and their stops."""
import importlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, fake_demo, gone, guards, one_line, pid_in, wait_gone
from mnistlab import files
from mnistlab.errors import RunFailed

WITHOUT_ROOTS_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                          "--inh-caps=-dac_override,-dac_read_search"]


# Each program that writes a file, and the function that does its work once the checks have passed.
WORK = {"benchmarks.bench_pipeline": "measure", "benchmarks.bench_predict": "measure", "benchmarks.bench_gpu": "measure",
        "benchmarks.bench_time_to_accuracy": "measure_all", "benchmarks.bench_demo": "measure",
        "scripts.demo_screenshot": "take"}


PARSERS = [*WORK, "benchmarks.reference"]


STUBS = {**WORK, "benchmarks.reference": "train"}


class Worked(Exception):
    """Raised by a stubbed benchmark's work: the program went past its checks."""


@pytest.fixture
def stubbed(monkeypatch):
    """stubbed(module name): the module, its work replaced by one that raises Worked."""
    def stub(name):
        module = importlib.import_module(name)

        def work(*args):
            raise Worked
        monkeypatch.setattr(module, STUBS[name], work)
        return module
    return stub


KINDS = {"/dev/full": "a device", "folder": "a folder", "pipe": "a named pipe (FIFO)"}


def children_of_folder(folder):
    """Processes whose command line names folder."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder).encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


@guards("scripts/demo_screenshot.py",
        "--out checked before any work",
        "    out = files.check_output(args.out or COMMITTED, \"--out\")",
        "    out = Path(args.out or COMMITTED)")
@guards("benchmarks/bench_pipeline.py",
        "--out checked before any work",
        "        out = output.results_file(args.out, \"bench_pipeline.json\", quick=(",
        "        out = args.out or files.ROOT / \"results\" / \"bench_pipeline.json\"\n"
        "        (lambda *a, **k: None)(args.out, \"bench_pipeline.json\", quick=(")
@guards("benchmarks/bench_predict.py",
        "--out checked before any work",
        "    out = output.results_file(args.out, \"bench_predict.json\",",
        "    out = args.out or files.ROOT / \"results\" / \"bench_predict.json\"\n"
        "    (lambda *a, **k: None)(args.out, \"bench_predict.json\",")
@guards("benchmarks/bench_gpu.py",
        "--out checked before any work",
        "        out = output.results_file(args.out, \"bench_gpu.json\",",
        "        out = args.out or ROOT / \"results\" / \"bench_gpu.json\"\n"
        "        (lambda *a, **k: None)(args.out, \"bench_gpu.json\",")
@guards("benchmarks/bench_time_to_accuracy.py",
        "--out checked before any work",
        "        out = output.results_file(args.out, \"bench_time_to_accuracy.json\",",
        "        out = args.out or ROOT / \"results\" / \"bench_time_to_accuracy.json\"\n"
        "        (lambda *a, **k: None)(args.out, \"bench_time_to_accuracy.json\",")
@guards("benchmarks/bench_demo.py",
        "--out checked before any work",
        "        out = files.check_output(args.out or files.ROOT / \"results\" / \"bench_demo.json\", \"--out\")\n"
        "        result = measure(report_checkpoints())\n",
        "        result = measure(report_checkpoints())\n"
        "        out = files.check_output(args.out or files.ROOT / \"results\" / \"bench_demo.json\", \"--out\")\n")
@pytest.mark.parametrize("name", WORK)
@pytest.mark.parametrize("target", KINDS)
def test_every_output_is_checked_before_any_work(name, target, stubbed, tmp_path, capsys):
    module = stubbed(name)
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    path = target if target.startswith("/") else str(tmp_path / target)
    assert module.main(["--out", path]) == 2
    assert one_line(capsys.readouterr().err).endswith(f"--out {path} is {KINDS[target]}, where this command "
                                                      f"writes a file; pass another --out")
    assert Path("/dev/full").is_char_device()


@guards("benchmarks/output.py",
        "a benchmark's --out never replaces a file of the repository's",
        "    if given and Path(given).resolve()",
        "    if False and Path(given).resolve()")
@guards("benchmarks/output.py",
        "a benchmark's --out may name its own committed results",
        'Path(given).resolve() != files.ROOT / "results" / name and ',
        "")
@pytest.mark.parametrize("name", ["benchmarks.bench_pipeline", "benchmarks.bench_predict",
                                  "benchmarks.bench_time_to_accuracy"])
def test_out_never_replaces_a_file_of_the_repository_but_the_benchmarks_own(name, stubbed, tmp_path, capsys):
    module = stubbed(name)
    readme = (ROOT / "README.md").read_bytes()
    assert module.main(["--out", str(ROOT / "README.md")]) == 2
    own = f"results/{name.split('.')[1]}.json"
    assert one_line(capsys.readouterr().err).endswith(f"--out {ROOT / 'README.md'} is a file of the repository's, "
                                                      f"not this benchmark's {own}; pass another --out")
    assert (ROOT / "README.md").read_bytes() == readme
    for taken in (ROOT / own, tmp_path / "x.json"):  # its own, and another --out, as advised
        with pytest.raises(Worked):
            module.main(["--out", str(taken)])


@guards("benchmarks/output.py",
        "figure_beside refuses a figure at the JSON's own path",
        "    if figure.resolve() == out.resolve():",
        "    if False:")
@guards("scripts/demo_screenshot.py",
        "--screenshot checked before any work, and never --out itself",
        "    return out, output.figure_beside(out, args.screenshot, COMMITTED,",
        "    return out, args.screenshot or out.with_suffix(\".png\") or output.figure_beside(out, args.screenshot, "
        "COMMITTED,")
@guards("benchmarks/bench_predict.py",
        "--preview checked before any work, and never --out itself",
        "    return out, output.figure_beside(out, args.preview,",
        "    return out, args.preview or out.with_name(f\"{out.stem}_preview.png\") or output.figure_beside(out, "
        "args.preview,")
@pytest.mark.parametrize("name, flag", [("benchmarks.bench_predict", "--preview"),
                                        ("scripts.demo_screenshot", "--screenshot")])
def test_the_figure_beside_the_json_is_checked_too(name, flag, stubbed, tmp_path, capsys):
    module = stubbed(name)
    assert module.main(["--out", str(tmp_path / "x.json"), flag, "/dev/full"]) == 2
    assert one_line(capsys.readouterr().err).endswith(f"{flag} /dev/full is a device, where this command writes a "
                                                      f"file; pass another {flag}")
    assert module.main(["--out", str(tmp_path / "x.json"), flag, str(tmp_path / "x.json")]) == 2
    assert one_line(capsys.readouterr().err).endswith(f"{flag} and --out both name {tmp_path / 'x.json'}; give "
                                                      f"the {'figure' if flag == '--preview' else 'picture'} and "
                                                      f"the JSON different paths")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_an_unwritable_folder_is_one_line_before_any_work(tmp_path):
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0o555)
    # As a user runs it, without root's override; the work, were it reached, says so instead of measuring.
    code = ("import sys; import benchmarks.bench_pipeline as b; b.measure = lambda args: sys.exit('measured'); "
            f"sys.exit(b.main(['--out', {str(tmp_path / 'locked' / 'x.json')!r}]))")
    done = subprocess.run([*WITHOUT_ROOTS_OVERRIDE, sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert one_line(done.stderr) == (f"bench_pipeline: error: --out {tmp_path}/locked/x.json cannot be written "
                                     f"(Permission denied); pass another --out")


@guards("benchmarks/output.py",
        "a quick benchmark run never replaces the committed results",
        '    default = (files.DEFAULT_OUT_DIR if quick else files.ROOT / "results") / name',
        '    default = files.ROOT / "results" / name')
@guards("benchmarks/bench_pipeline.py",
        "a quick run writes runs/, not results/",
        "args.repeats, args.batch_size) != (REPEATS, RECIPES[\"lenet5\"][\"batch_size\"]))",
        "args.repeats, args.batch_size) == (REPEATS, RECIPES[\"lenet5\"][\"batch_size\"]) and False)")
@guards("benchmarks/bench_predict.py",
        "another checkpoint is a quick run",
        "quick=args.count != COUNT or args.checkpoint.resolve() != CHECKPOINT)",
        "quick=args.count != COUNT)")
@guards("benchmarks/bench_gpu.py",
        "fewer epochs, a --limit or the CPU is a quick run",
        "quick=args.epochs != EPOCHS or args.limit is not None or args.device == \"cpu\")",
        "quick=args.epochs != EPOCHS)")
@guards("benchmarks/bench_time_to_accuracy.py",
        "a quick run writes runs/, not results/",
        "quick=(args.seeds, args.reference_seeds) != (SEEDS, REFERENCE_SEEDS))",
        "quick=args.seeds != SEEDS)")
@pytest.mark.parametrize("name, argv, quick", [
    ("benchmarks.bench_pipeline", [], False), ("benchmarks.bench_pipeline", ["--repeats", "1"], True),
    ("benchmarks.bench_pipeline", ["--batch-size", "64"], True),
    ("benchmarks.bench_predict", [], False), ("benchmarks.bench_predict", ["--count", "50"], True),
    ("benchmarks.bench_predict", ["--checkpoint", "other.pt"], True),
    ("benchmarks.bench_gpu", [], False), ("benchmarks.bench_gpu", ["--epochs", "1"], True),
    ("benchmarks.bench_gpu", ["--limit", "512"], True), ("benchmarks.bench_gpu", ["--device", "cpu"], True),
    ("benchmarks.bench_time_to_accuracy", [], False), ("benchmarks.bench_time_to_accuracy", ["--seeds", "1"], True),
    ("benchmarks.bench_time_to_accuracy", ["--reference-seeds", "1"], True)])
def test_a_quick_run_does_not_replace_the_committed_results(name, argv, quick, stubbed, outputs_recorded, tmp_path):
    assert stubbed(name).main(argv) == 2
    file = f"{name.split('.')[-1]}.json"
    assert outputs_recorded == [tmp_path / "runs" / file if quick else ROOT / "results" / file]


@guards("benchmarks/bench_predict.py",
        "the committed preview drawn only beside the committed JSON",
        "COMMITTED_PREVIEW, out.with_name(f\"{out.stem}_preview.png\"), \"--preview\")",
        "COMMITTED_PREVIEW, COMMITTED_PREVIEW, \"--preview\")")
def test_bench_predict_draws_its_preview_beside_its_json_and_the_committed_one_only_beside_the_committed_json(
        stubbed, monkeypatch, tmp_path):
    module = stubbed("benchmarks.bench_predict")
    written = []
    monkeypatch.setattr(module, "measure", lambda args, out, preview: written.append((out, preview)))
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path / "runs")
    assert module.main(["--out", str(tmp_path / "elsewhere.json"), "--count", "50"]) == 0
    assert module.main(["--count", "50"]) == 0
    assert module.main(["--out", str(tmp_path / "elsewhere.json"), "--preview", str(tmp_path / "p.png")]) == 0
    assert module.main([]) == 0
    assert written == [(tmp_path / "elsewhere.json", tmp_path / "elsewhere_preview.png"),
                       (tmp_path / "runs" / "bench_predict.json", tmp_path / "runs" / "bench_predict_preview.png"),
                       (tmp_path / "elsewhere.json", tmp_path / "p.png"),
                       (ROOT / "results" / "bench_predict.json", ROOT / "plots" / "predict_preview.png")]


@guards("benchmarks/reference.py",
        "--seed from 0 to 4294967295",
        "lambda v: 0 <= v < 2**32",
        "lambda v: v < 2**32")
@guards("benchmarks/reference.py",
        "--device one of the devices",
        "\"--device\", default=\"cpu\", choices=[\"auto\", \"cpu\", \"cuda\", \"mps\", \"xpu\"],",
        "\"--device\", default=\"cpu\",")
@guards("benchmarks/bench_gpu.py",
        "--device one of the devices",
        "\"--device\", default=\"cuda\", choices=[\"cuda\", \"mps\", \"xpu\", \"cpu\"],",
        "\"--device\", default=\"cuda\",")
@pytest.mark.parametrize("name, argv, problem", [
    ("benchmarks.bench_predict", ["--count", "0"], "--count: must be from 1 to 10000, got 0"),
    ("benchmarks.bench_predict", ["--count", "-5"], "--count: must be from 1 to 10000, got -5"),
    ("benchmarks.bench_predict", ["--count", "10001"], "--count: must be from 1 to 10000, got 10001"),
    ("benchmarks.reference", ["--limit", "0"], "--limit: must be from 1 to 60000, got 0"),
    ("benchmarks.reference", ["--epochs", "-1"], "--epochs: must be from 1 to 1000, got -1"),
    ("benchmarks.reference", ["--seed", "-1"], "--seed: must be from 0 to 4294967295, got -1"),
    ("benchmarks.reference", ["--device", "bogus"], "--device: invalid choice: 'bogus'"),
    ("benchmarks.bench_pipeline", ["--repeats", "0"], "--repeats: must be from 1 to 100, got 0"),
    ("benchmarks.bench_pipeline", ["--batch-size", "0"], "--batch-size: must be from 1 to 60000, got 0"),
    ("benchmarks.bench_gpu", ["--epochs", "0"], "--epochs: must be from 1 to 1000, got 0"),
    ("benchmarks.bench_gpu", ["--limit", "-3"], "--limit: must be from 1 to 60000, got -3"),
    ("benchmarks.bench_gpu", ["--device", "bogus"], "--device: invalid choice: 'bogus'"),
    ("benchmarks.bench_time_to_accuracy", ["--seeds", "0"], "--seeds: must be from 1 to 100, got 0"),
    ("benchmarks.bench_demo", ["--outt", "x.json"], "unrecognized arguments: --outt x.json"),
    ("scripts.demo_screenshot", ["--out"], "--out: expected one argument"),
])
def test_bad_arguments_are_one_line_and_exit_2(name, argv, problem, stubbed, capsys):
    with pytest.raises(SystemExit) as stopped:
        stubbed(name).main(argv)
    assert stopped.value.code == 2
    assert problem in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("name", PARSERS)
def test_help_shows_each_default_and_no_none(name):
    text = " ".join(importlib.import_module(name).get_args_parser().format_help().split())
    assert "default: None" not in text
    for option in ("--out", "--count", "--repeats", "--epochs", "--seeds", "--limit"):
        if f"{option} " in text:
            assert "default" in text.split(f"{option} ", 2)[-1].split("--")[0], (option, text)


@pytest.mark.parametrize("name", ["scripts.demo_screenshot", "benchmarks.bench_demo"])
def test_help_starts_no_work(name, stubbed, capsys):
    module = stubbed(name)
    with pytest.raises(SystemExit) as stopped:
        module.main(["--help"])
    assert stopped.value.code == 0 and "--out" in capsys.readouterr().out


@guards("benchmarks/bench_gpu.py",
        "no such device: one line before any work",
        "        try:\n            device = engine.resolve_device(args.device)",
        "        rows = measure(args)\n        try:\n            device = engine.resolve_device(args.device)")
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_bench_gpu_without_a_gpu_is_one_line_before_any_work(stubbed, tmp_path, capsys):
    assert stubbed("benchmarks.bench_gpu").main(["--out", str(tmp_path / "gpu.json")]) == 2
    assert one_line(capsys.readouterr().err) == ("bench_gpu: error: --device cuda: no CUDA device here; run this on "
                                                 "a machine with one, or pass --device cpu to check the script")


def test_reference_limit_keeps_at_most_the_whole_test_set():
    from benchmarks import reference
    train, test = reference.loaders(128, limit=20_000)
    assert (len(train.dataset), len(test.dataset)) == (20_000, 10_000)


@guards("benchmarks/bench_demo.py",
        "a missing checkpoint named before the server starts",
        "        if not path.is_file():\n",
        "        if False:\n")
def test_bench_demo_names_a_missing_checkpoint_before_starting_the_server(monkeypatch, tmp_path, capsys):
    module = importlib.import_module("benchmarks.bench_demo")
    monkeypatch.setattr(files, "ROOT", tmp_path)
    assert module.main(["--out", str(tmp_path / "demo.json")]) == 2
    assert one_line(capsys.readouterr().err) == ("bench_demo: error: no checkpoint at checkpoints/lenet5_seed0.pt; "
                                                 "`make report` trains the report's seed-0 models")


@guards("benchmarks/bench_predict.py",
        "the report's checkpoint, missing, is named with make report",
        "    if args.checkpoint == CHECKPOINT and not CHECKPOINT.is_file():",
        "    if False:")
def test_bench_predict_names_the_report_checkpoint_it_lacks_and_how_to_get_it(monkeypatch, tmp_path, capsys):
    module = importlib.import_module("benchmarks.bench_predict")
    monkeypatch.setattr(files, "ROOT", tmp_path)
    monkeypatch.setattr(module, "CHECKPOINT", files.RunPaths.of(tmp_path, "lenet5_regularized_seed0").checkpoint)
    assert module.main(["--out", str(tmp_path / "predict.json")]) == 2
    assert one_line(capsys.readouterr().err) == ("bench_predict: error: no checkpoint at "
                                                 "checkpoints/lenet5_regularized_seed0.pt; `make report "
                                                 "ARGS=LeNet5_Regularized` trains it (git holds none), or pass "
                                                 "--checkpoint PATH")
    assert not list(tmp_path.iterdir())


@guards("benchmarks/bench_time_to_accuracy.py",
        "a signal stops the child run before the folder goes",
        "        process.terminate()\n        process.wait()\n        raise",
        "        raise")
@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stopped_benchmark_is_one_line_and_leaves_no_folder_and_no_process(signum, status, tmp_path):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    # Its own session, so that Ctrl-C can reach the benchmark and its child together, as from a terminal.
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_time_to_accuracy", "--seeds", "1",
                                "--reference-seeds", "1", "--out", str(tmp_path / "out.json")],
                               cwd=ROOT, env={**os.environ, "TMPDIR": str(temporary)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not (list(temporary.iterdir()) and children_of_folder(temporary)) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the child is now starting main.py
        assert children_of_folder(temporary), "the benchmark never started its first run"
        if signum == signal.SIGTERM:
            process.send_signal(signum)  # kill and job schedulers signal the process they started, only
        else:
            os.killpg(process.pid, signum)
        signalled = time.monotonic()
        out, err = process.communicate(timeout=60)
        # At once, not after waiting for its child's run to finish.
        assert time.monotonic() - signalled < 10
    finally:
        process.kill()
        process.wait()
    assert process.returncode == status
    assert one_line(err) == "bench_time_to_accuracy: interrupted; nothing written"
    assert not list(temporary.iterdir())
    assert not children_of_folder(temporary)
    assert not (tmp_path / "out.json").exists()


def test_a_lost_output_is_one_line_and_exit_1():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "benchmarks.reference", "--limit", "256", "--epochs", "1"],
                              cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1
    assert one_line(done.stderr) == ("reference: error: cannot write the output (No space left on device); free "
                                     "some space or send it elsewhere")


@guards("scripts/report/__main__.py",
        "Ctrl-C while it starts is one line",
        "allow_ctrl_c = stop_on_ctrl_c(",
        "allow_ctrl_c = (lambda message: lambda: None)(")
@guards("benchmarks/bench_pipeline.py",
        "Ctrl-C while it starts is one line",
        "allow_ctrl_c = stop_on_ctrl_c(",
        "allow_ctrl_c = (lambda message: lambda: None)(")
@guards("benchmarks/bench_gpu.py",
        "Ctrl-C while it starts is one line",
        "allow_ctrl_c = stop_on_ctrl_c(",
        "allow_ctrl_c = (lambda message: lambda: None)(")
@guards("benchmarks/bench_predict.py",
        "Ctrl-C while it starts is one line",
        "allow_ctrl_c = stop_on_ctrl_c(",
        "allow_ctrl_c = (lambda message: lambda: None)(")
@guards("benchmarks/bench_demo.py",
        "Ctrl-C while it starts is one line",
        "allow_ctrl_c = stop_on_ctrl_c(",
        "allow_ctrl_c = (lambda message: lambda: None)(")
@guards("benchmarks/bench_time_to_accuracy.py",
        "Ctrl-C while it starts is one line",
        "allow_ctrl_c = stop_on_ctrl_c(",
        "allow_ctrl_c = (lambda message: lambda: None)(")
@guards("benchmarks/reference.py",
        "Ctrl-C while it starts is one line",
        "allow_ctrl_c = stop_on_ctrl_c(",
        "allow_ctrl_c = (lambda message: lambda: None)(")
@pytest.mark.parametrize("name", ["scripts.report", "benchmarks.bench_pipeline", "benchmarks.bench_gpu",
                                  "benchmarks.bench_predict", "benchmarks.bench_demo",
                                  "benchmarks.bench_time_to_accuracy", "benchmarks.reference"])
def test_ctrl_c_while_a_script_starts_is_one_line(name):
    process = subprocess.Popen([sys.executable, "-m", name, "--help"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(0.5)  # past start-up, while torch is still importing
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    short = name.rsplit(".", 1)[1]
    assert process.returncode == 130 and err.strip() == f"{short}: interrupted while starting; nothing written", err
    assert out == ""


BOUNDS = [("benchmarks.bench_predict", "--count", 10_000), ("benchmarks.reference", "--epochs", 1000),
          ("benchmarks.reference", "--limit", 60_000), ("benchmarks.bench_pipeline", "--repeats", 100),
          ("benchmarks.bench_pipeline", "--batch-size", 60_000), ("benchmarks.bench_gpu", "--epochs", 1000),
          ("benchmarks.bench_gpu", "--limit", 60_000), ("benchmarks.bench_time_to_accuracy", "--seeds", 100),
          ("benchmarks.bench_time_to_accuracy", "--reference-seeds", 100), ("benchmarks.bench_sweep", "--runs", 256),
          ("benchmarks.bench_sweep", "--epochs", 100), ("benchmarks.bench_sweep", "--repeats", 20)]


@pytest.fixture
def bench_sweep(monkeypatch):
    from benchmarks import bench_sweep
    monkeypatch.setattr(bench_sweep, "timed", lambda *a: pytest.fail("measured before checking --out"))
    return bench_sweep


FAILING = ["-c", "import sys; print('half a run'); sys.exit('the run failed here')"]


@guards("benchmarks/bench_predict.py",
        "--count at most 10000",
        "type=count(COUNT), default=COUNT",
        "type=count(), default=COUNT")
@guards("benchmarks/reference.py",
        "--epochs at most 1000",
        "\"--epochs\", type=count(1000)",
        "\"--epochs\", type=count()")
@guards("benchmarks/reference.py",
        "--limit at most 60000",
        "\"--limit\", type=count(60_000)",
        "\"--limit\", type=count()")
@guards("benchmarks/bench_pipeline.py",
        "--repeats at most 100",
        "\"--repeats\", type=count(100)",
        "\"--repeats\", type=count()")
@guards("benchmarks/bench_pipeline.py",
        "--batch-size at most 60000",
        "\"--batch-size\", type=count(60_000)",
        "\"--batch-size\", type=count()")
@guards("benchmarks/bench_gpu.py",
        "--epochs at most 1000",
        "\"--epochs\", type=count(1000)",
        "\"--epochs\", type=count()")
@guards("benchmarks/bench_gpu.py",
        "--limit at most 60000",
        "\"--limit\", type=count(60_000)",
        "\"--limit\", type=count()")
@guards("benchmarks/bench_time_to_accuracy.py",
        "--seeds at most 100",
        "\"--seeds\", type=count(100)",
        "\"--seeds\", type=count()")
@guards("benchmarks/bench_time_to_accuracy.py",
        "--reference-seeds at most 100",
        "\"--reference-seeds\", type=count(100)",
        "\"--reference-seeds\", type=count()")
@guards("benchmarks/bench_sweep.py",
        "--runs at most 256",
        "\"--runs\", type=count(256)",
        "\"--runs\", type=count()")
@guards("benchmarks/bench_sweep.py",
        "--epochs at most 100",
        "\"--epochs\", type=count(100)",
        "\"--epochs\", type=count()")
@guards("benchmarks/bench_sweep.py",
        "--repeats at most 20",
        "\"--repeats\", type=count(20)",
        "\"--repeats\", type=count()")
@pytest.mark.parametrize("name, flag, high", BOUNDS)
def test_each_benchmark_flag_is_held_to_its_bounds(name, flag, high, capsys):
    parser = importlib.import_module(name).get_args_parser()
    assert getattr(parser.parse_args([flag, str(high)]), flag[2:].replace("-", "_")) == high
    for value in (high + 1, 0):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args([flag, str(value)])
        assert stopped.value.code == 2
        assert f"{flag}: must be from 1 to {high}, got {value}" in one_line(capsys.readouterr().err)


@guards("benchmarks/bench_sweep.py",
        "--out checked before any work",
        "        out = output.results_file(args.out, \"bench_sweep.json\",",
        "        out = args.out or ROOT / \"results\" / \"bench_sweep.json\"\n"
        "        (lambda *a, **k: None)(args.out, \"bench_sweep.json\",")
@pytest.mark.parametrize("target, kind", [("/dev/full", "a device"), ("folder", "a folder"),
                                          ("pipe", "a named pipe (FIFO)")])
def test_bench_sweep_checks_its_output_before_any_work(target, kind, bench_sweep, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    path = target if target.startswith("/") else str(tmp_path / target)
    assert bench_sweep.main(bench_sweep.get_args_parser().parse_args(["--out", path])) == 2
    assert one_line(capsys.readouterr().err) == (f"bench_sweep: error: --out {path} is {kind}, where this command "
                                                 f"writes a file; pass another --out")


@guards("benchmarks/bench_sweep.py",
        "a quick run writes runs/, not results/",
        "quick=(args.runs, args.epochs, args.repeats) != (RUNS, EPOCHS, REPEATS))",
        "quick=(args.runs, args.epochs) != (RUNS, EPOCHS))")
@pytest.mark.parametrize("argv, quick", [([], False), (["--runs", "2"], True), (["--epochs", "1"], True),
                                         (["--repeats", "1"], True)])
def test_a_quick_bench_sweep_does_not_replace_the_committed_results(argv, quick, bench_sweep, outputs_recorded,
                                                                    tmp_path):
    assert bench_sweep.main(bench_sweep.get_args_parser().parse_args(argv)) == 2
    name = "bench_sweep.json"
    assert outputs_recorded == [tmp_path / "runs" / name if quick else ROOT / "results" / name]


@guards("benchmarks/bench_gpu.py",
        "a failed run stops the benchmark",
        "    if done.returncode:\n        sys.exit(f\"bench_gpu:",
        "    if False:\n        sys.exit(f\"bench_gpu:")
@guards("benchmarks/bench_time_to_accuracy.py",
        "a failed run stops the benchmark",
        "    if process.wait():\n        sys.exit(",
        "    if process.wait() and False:\n        sys.exit(")
@guards("benchmarks/bench_sweep.py",
        "a failed way stops the benchmark",
        "    if done.returncode:\n        last =",
        "    if False:\n        last =")
def test_a_failed_process_stops_each_benchmark(tmp_path):
    from benchmarks import bench_gpu, bench_sweep, bench_time_to_accuracy
    with pytest.raises(SystemExit, match="bench_gpu: -c .* failed:\nthe run failed here"):
        bench_gpu.timed_process(FAILING)
    with pytest.raises(SystemExit, match="bench_time_to_accuracy: -c .* failed:\nthe run failed here"):
        bench_time_to_accuracy.timed_run(FAILING, tmp_path)
    with pytest.raises(RunFailed, match=r"failed \(the run failed here\); run it by hand"):
        bench_sweep.timed(FAILING, tmp_path)


@guards("benchmarks/bench_time_to_accuracy.py",
        "a failed import stops the start-up timing",
        "subprocess.run([sys.executable, \"-c\", code], cwd=ROOT, check=True)",
        "subprocess.run([sys.executable, \"-c\", code], cwd=ROOT)")
def test_a_failed_import_stops_the_start_up_timing(monkeypatch):
    from benchmarks import bench_time_to_accuracy
    monkeypatch.setattr(bench_time_to_accuracy, "IMPORTS", {"nothing": "import a_module_that_is_not_there"})
    with pytest.raises(subprocess.CalledProcessError):
        bench_time_to_accuracy.import_seconds(repeats=1)


@guards("benchmarks/bench_demo.py",
        "a demo that does not start is RunFailed",
        "        if started is None:\n",
        "        if False:\n")
def test_bench_demo_says_the_demo_did_not_start(monkeypatch, tmp_path):
    from benchmarks import bench_demo
    monkeypatch.setattr(files, "ROOT", fake_demo(tmp_path, "sys.exit(3)"))
    with pytest.raises(RunFailed, match=r"demo.py did not start \(exit status 3"):
        bench_demo.measure([])


@guards("benchmarks/bench_demo.py",
        "the demo server stopped whatever fails",
        "        server.terminate()\n        server.wait()\n",
        "        pass\n")
def test_bench_demo_stops_the_demo_when_a_request_fails(monkeypatch, tmp_path):
    from benchmarks import bench_demo
    monkeypatch.setattr(files, "ROOT", fake_demo(tmp_path, "print('open http://127.0.0.1:1/', flush=True); "
                                                           "time.sleep(600)"))
    try:
        with pytest.raises(OSError):  # nothing answers at port 1
            bench_demo.measure([])
        assert wait_gone(pid_in(tmp_path)), "the demo server was left running"
    finally:
        if not gone(pid_in(tmp_path)):
            os.kill(pid_in(tmp_path), signal.SIGKILL)
