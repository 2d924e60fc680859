"""The benchmarks' and scripts' defences: parsers with bounds, output paths checked before any work, quick runs
kept off the committed results, signals and a lost output as one line, and the report's refusal of a damaged
benchmark file. No benchmark measures anything here: each refusal happens before the work, which is stubbed to
fail the test where it is reached."""
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import files
from errors import UsageError
from scripts.report import appendices, committed, pages

ROOT = Path(__file__).resolve().parents[1]
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


def one_line(err):
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- files.check_output


def test_check_output_allows_a_regular_file_or_a_missing_name_and_makes_its_folder(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    assert files.check_output(tmp_path / "old.json", "--out") == tmp_path / "old.json"
    assert files.check_output(tmp_path / "new" / "deeper" / "x.json", "--out") == tmp_path / "new" / "deeper" / "x.json"
    assert (tmp_path / "new" / "deeper").is_dir() and not list((tmp_path / "new" / "deeper").iterdir())


def test_check_output_refuses_a_device_a_folder_and_a_named_pipe(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for path, what in (("/dev/full", "a device"), (tmp_path, "a folder"), (tmp_path / "pipe", "a named pipe (FIFO)")):
        with pytest.raises(UsageError) as refused:
            files.check_output(path, "--out")
        assert str(refused.value) == f"--out {path} is {what}, where this command writes a file; pass another --out"


def test_check_output_refuses_a_file_under_a_file(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(UsageError, match="cannot be written"):
        files.check_output(tmp_path / "plain" / "x.json", "--out")


# ---------------------------------------------------------------- every program, before its work


KINDS = {"/dev/full": "a device", "folder": "a folder", "pipe": "a named pipe (FIFO)"}


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


# ---------------------------------------------------------------- where the outputs go by default


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


def test_demo_screenshot_draws_beside_its_json_and_the_committed_one_only_beside_the_committed_json(tmp_path):
    from scripts import demo_screenshot
    outputs = [demo_screenshot.outputs(demo_screenshot.get_args_parser().parse_args(argv))
               for argv in (["--out", str(tmp_path / "shot.json")], [])]
    assert outputs == [(tmp_path / "shot.json", tmp_path / "shot.png"),
                       (ROOT / "results" / "demo_screenshot.json", ROOT / "plots" / "demo.png")]


# ---------------------------------------------------------------- parsers


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


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_bench_gpu_without_a_gpu_is_one_line_before_any_work(stubbed, tmp_path, capsys):
    assert stubbed("benchmarks.bench_gpu").main(["--out", str(tmp_path / "gpu.json")]) == 2
    assert one_line(capsys.readouterr().err) == ("bench_gpu: error: --device cuda: no CUDA device here; run this on "
                                                 "a machine with one, or pass --device cpu to check the script")


def test_reference_limit_keeps_at_most_the_whole_test_set():
    from benchmarks import reference
    train, test = reference.loaders(128, limit=20_000)
    assert (len(train.dataset), len(test.dataset)) == (20_000, 10_000)


def test_bench_demo_names_a_missing_checkpoint_before_starting_the_server(monkeypatch, tmp_path, capsys):
    module = importlib.import_module("benchmarks.bench_demo")
    monkeypatch.setattr(files, "ROOT", tmp_path)
    assert module.main(["--out", str(tmp_path / "demo.json")]) == 2
    assert one_line(capsys.readouterr().err) == ("bench_demo: error: no checkpoint at checkpoints/lenet5_seed0.pt; "
                                                 "`make report` trains the report's seed-0 models")



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

# ---------------------------------------------------------------- signals and a lost output


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


# ---------------------------------------------------------------- the report's benchmark files


def damaged(bench, damage):
    damage(bench)
    return bench


DAMAGES = {
    "a missing key": ("bench_time_to_accuracy.json", "time_to_accuracy", "make bench-time",
                      lambda b: b["summary"].pop("reference")),
    "a list for a table": ("bench_pipeline.json", "speed", "make bench", lambda b: b.update(median=[1, 2])),
    "text for a number": ("bench_predict.json", "predict", "python -m benchmarks.bench_predict",
                          lambda b: b.update(photo_acc="high")),
    "no repeats": ("bench_pipeline.json", "speed", "make bench", lambda b: b.update(train_ratios=[])),
    "a list for an object": ("demo_screenshot.json", "demo", "python -m scripts.demo_screenshot",
                             lambda b: b.update(shifted=[1])),
    "an unknown model": ("bench_predict.json", "predict", "python -m benchmarks.bench_predict",
                         lambda b: b.update(model="resnet")),
    # Text the README quotes as it is: markup in it would end a section early or break a table.
    "a section marker in a name": ("bench_pipeline.json", "speed", "make bench",
                                   lambda b: b.update(device_name="CPU <!-- /report:speed --> ha")),
    "a cell break in a label": ("bench_sweep.json", "sweep", "make bench-sweep",
                                lambda b: b["ways"].update({"a | b": b["ways"]["sweep.py --jobs 1"]})),
    "a second line in a command": ("bench_time_to_accuracy.json", "time_to_accuracy", "make bench-time",
                                   lambda b: b["commands"].update(fast="python main.py\n\n# Pwned")),
    "not a number": ("bench_time_to_accuracy.json", "time_to_accuracy", "make bench-time",
                     lambda b: b.update(default_speedup=float("nan"))),
    "true for a number": ("bench_predict.json", "predict", "python -m benchmarks.bench_predict",
                          lambda b: b.update(photo_acc=True)),
    "a negative count": ("bench_predict.json", "predict", "python -m benchmarks.bench_predict",
                         lambda b: b.update(count=-1)),
    "a 400-digit count": ("bench_predict.json", "predict", "python -m benchmarks.bench_predict",
                          lambda b: b.update(count=10 ** 400)),
    "an empty name": ("bench_predict.json", "predict", "python -m benchmarks.bench_predict",
                      lambda b: b.update(device_name="")),
    "bold": ("bench_pipeline.json", "speed", "make bench", lambda b: b.update(device_name="__init__ bold__")),
    "bold in a path that is no file here": ("bench_pipeline.json", "speed", "make bench",
                                            lambda b: b.update(device_name="scripts/__bold__.py")),
    "an emoji": ("bench_pipeline.json", "speed", "make bench", lambda b: b.update(device_name="CPU :warning:")),
    "struck through": ("bench_pipeline.json", "speed", "make bench", lambda b: b.update(device_name="~~AMD~~")),
    "a second command": ("bench_time_to_accuracy.json", "time_to_accuracy", "make bench-time",
                         lambda b: b["commands"].update(fast="python main.py; rm -rf / #")),
    "a row without its outcome": ("defences.json", "defences", "make defences",
                                  lambda b: b["defences"][0].pop("outcome")),
}


@pytest.mark.parametrize("case", DAMAGES)
def test_a_damaged_benchmark_file_stops_the_report_in_one_line(case, monkeypatch, tmp_path):
    file, section, command, damage = DAMAGES[case]
    for name in ("bench_time_to_accuracy.json", "bench_pipeline.json", "bench_predict.json", "bench_demo.json",
                 "demo_screenshot.json", "bench_sweep.json", "defences.json"):
        shutil.copy(ROOT / "results" / name, tmp_path / name)
    (tmp_path / file).write_text(json.dumps(damaged(json.loads((tmp_path / file).read_text()), damage)))
    monkeypatch.setattr(committed, "RESULTS", tmp_path)
    with pytest.raises(UsageError) as stopped:
        pages.SECTIONS[section]()
    message = str(stopped.value)
    assert "\n" not in message and str(tmp_path / file) in message
    assert f"rebuild it with `{command}`" in message and f"git checkout results/{file}" in message


@pytest.mark.parametrize("content", [None, "not json", "[1, 2]", "[" * 100_000 + "]" * 100_000])
def test_a_missing_or_unreadable_benchmark_file_stops_the_report_in_one_line(content, monkeypatch, tmp_path):
    if content is not None:
        (tmp_path / "bench_pipeline.json").write_text(content)
    monkeypatch.setattr(committed, "RESULTS", tmp_path)
    with pytest.raises(UsageError) as stopped:
        appendices.section_speed()
    assert str(stopped.value) == (f"{tmp_path}/bench_pipeline.json is missing or not JSON; rebuild it with "
                                  f"`make bench`, or restore it with `git checkout results/bench_pipeline.json`")


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
