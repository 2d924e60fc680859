"""Defences of the tools (scripts/, benchmarks/, sweep.py, runner.py) that held with no test to notice them going
(issue 26): each test here was seen to fail, through tests/mutants.py, with its defence deleted or loosened. None
starts Ray: where Ray would be reached, ray.init is replaced by a function that fails the test."""
import argparse
import importlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

import files
import measurements
import runner
import slots
import sweep
import test_slots
from conftest import PYTHON, ROOT, check_advice, png_declaring
from errors import RunFailed, UsageError
from recipes import resolve_recipe
from scripts import tune
from scripts.report import command, committed, experiments, pages, plots, staging


def tiny_recipe(validation=False):
    return resolve_recipe("lenet5", {"batch_size": 32}, epochs=1, seed=0, limit=256, train_size=None,
                          validation=validation, amp=False)


def one_line(err):
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


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


def holding(path):
    """A child process that holds path open until killed; returns it once the file is open."""
    path.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen([sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'w'); "
                                "print('open', flush=True); time.sleep(600)", str(path)], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "open"
    return process


@pytest.fixture
def reaped():
    """Processes the test starts, killed at its end whatever happened."""
    started = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


# ---------------------------------------------------------------- scripts/report/staging.py: the rerun and its moves

# A whole PNG of one pixel (a filter byte and RGBA), as a staged run's curves must be.
TINY_PNG = png_declaring(1, 1, zlib.compress(bytes(5)))


@pytest.fixture
def staged_report(tmp_path, monkeypatch):
    """staging.rerun pointed at tmp_path, with runner.train_all replaced by one that writes every job's files
    (failing the runs named in the returned set): the moves without the training."""
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(staging, "PROGRESS", {"rerun": True, "moved": False})
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: resolve_recipe(
        "lenet5", {}, epochs=1, seed=seed, limit=256, train_size=None, validation=False, amp=False))
    failing = set()

    def train_all(jobs, settings, measure=None, line=None):
        for job in jobs:
            for kind in runner.KINDS:
                getattr(job.paths, kind).write_bytes(TINY_PNG * (kind == "curves") + f"{job.name} {kind}".encode())
        return {name: "boom" for name in failing}
    monkeypatch.setattr(runner, "train_all", train_all)
    return failing


def test_a_rerun_with_a_failed_run_moves_nothing_into_place(staged_report, tmp_path):
    staged_report.add("lenet5_seed1")
    with pytest.raises(RunFailed, match=r"1 runs failed \(lenet5_seed1\); nothing committed changed"):
        staging.rerun(["LeNet5"], runner.Settings())
    assert not list((tmp_path / "results").glob("*")) and not list((tmp_path / "plots").glob("*"))
    assert not list((tmp_path / "checkpoints").glob("*.pt"))


def test_a_signal_during_the_moves_lands_after_every_run_is_moved(staged_report, tmp_path, monkeypatch, ctrl_c):
    real, moves = os.replace, []

    def replace(source, target):
        moves.append(target)
        if len(moves) == 1:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, at the first move
        real(source, target)
    monkeypatch.setattr(staging.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        staging.rerun(["LeNet5"], runner.Settings())
    assert len(moves) == 3 * len(runner.KINDS) and staging.PROGRESS["moved"]
    for seed in experiments.SEEDS:
        assert (tmp_path / "results" / f"lenet5_seed{seed}.json").read_text() == f"lenet5_seed{seed} results"


def test_a_rerun_checks_the_committed_folders_before_it_trains(tmp_path, monkeypatch):
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: tiny_recipe())
    real = files.make_writable

    def staging_only(folder):  # the staging folder can be written, the committed ones not
        if staging.STAGING in folder.parents:
            return real(folder)
        raise OSError(13, "Permission denied", str(folder))
    monkeypatch.setattr(files, "make_writable", staging_only)
    monkeypatch.setattr(runner, "train_all", lambda *a, **k: pytest.fail("trained before checking the folders"))
    with pytest.raises(UsageError) as refused:
        staging.rerun(["LeNet5"], runner.Settings())
    # The report has no --out-dir to pass: the advice is the folder's permissions.
    assert str(refused.value).startswith(f"{tmp_path} cannot be written (Permission denied: ")
    assert str(refused.value).endswith("; fix its permissions") and "--out-dir" not in str(refused.value)


def test_a_staging_folder_that_refuses_the_rerun_says_how_to_start_over(staged_report, tmp_path):
    staged = files.RunPaths.of(staging.STAGING, "lenet5_seed0")
    staged.results.parent.mkdir(parents=True)
    other = resolve_recipe("lenet5", {}, epochs=2, seed=0, limit=256, train_size=None, validation=False, amp=False)
    staged.results.write_text(json.dumps({"status": "complete", "recipe": other}))  # a rerun of another recipes.py
    with pytest.raises(UsageError) as refused:
        staging.rerun(["LeNet5"], runner.Settings())
    check_advice("scripts.report.command", str(refused.value))
    assert str(refused.value) == (f"{staged.results} holds a finished run with epochs 2, where this one has epochs 1; "
                                  f"delete {staging.STAGING} to start the rerun over")
    shutil.rmtree(staging.STAGING)  # as advised
    staging.rerun(["LeNet5"], runner.Settings())
    assert (tmp_path / "results" / "lenet5_seed0.json").read_text() == "lenet5_seed0 results"


def test_a_staging_folder_that_cannot_be_written_is_refused_without_advice_to_delete_it(tmp_path, monkeypatch):
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: tiny_recipe())
    real = files.make_writable

    def committed_only(folder):
        if staging.STAGING in [folder, *folder.parents]:
            raise OSError(13, "Permission denied", str(folder))
        return real(folder)
    monkeypatch.setattr(files, "make_writable", committed_only)
    with pytest.raises(UsageError) as refused:
        staging.rerun(["LeNet5"], runner.Settings())
    # Deleting the staging folder would not make it writable: the advice is its permissions.
    assert str(refused.value).startswith(f"{staging.STAGING} cannot be written (Permission denied: ")
    assert str(refused.value).endswith("; fix its permissions")


@pytest.mark.parametrize("damage, problem", [
    ("no checkpoint", "checkpoint is missing"),
    ("empty curves", "curves is not a file the rerun wrote (a link, or not a PNG)"),
    ("curves cut short in their image data", "curves is not a file the rerun wrote (a link, or not a PNG)"),
    ("curves a link", "curves is not a file the rerun wrote (a link, or not a PNG)")])
def test_a_damaged_staged_run_stops_the_rerun_in_one_line_before_any_training(damage, problem, trained_runs,
                                                                               tmp_path, monkeypatch):
    # Finished, so not trained again, but a file of it gone or not its own: each file of the runs finished already
    # is checked before the others train, which a refusal after them would throw away.
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(experiments, "SEEDS", (0, 1))
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: resolve_recipe(
        "lenet5", {}, epochs=1, seed=seed, limit=None, train_size=None, validation=False, amp=False))
    monkeypatch.setattr(runner, "train_all", lambda *a, **k: pytest.fail("trained before checking the staged runs"))
    made, staged = files.RunPaths.of(trained_runs, "lenet5_seed0"), files.RunPaths.of(staging.STAGING, "lenet5_seed0")
    for kind in runner.KINDS:
        getattr(staged, kind).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(getattr(made, kind), getattr(staged, kind))
    if damage == "no checkpoint":
        staged.checkpoint.unlink()
    elif damage == "empty curves":
        staged.curves.write_bytes(b"")
    elif damage == "curves cut short in their image data":  # its header whole: only reading on finds the cut
        png = made.curves.read_bytes()
        staged.curves.write_bytes(png[:png.index(b"IDAT") + 100])
    else:
        staged.curves.unlink()
        staged.curves.symlink_to(made.curves)
    with pytest.raises(UsageError) as refused:
        staging.rerun(["LeNet5"], runner.Settings())
    check_advice("scripts.report.command", str(refused.value))
    what = staged.checkpoint if damage == "no checkpoint" else staged.curves
    assert str(refused.value) == (f"{what} {problem.split(' ', 1)[1]}, so 1 staged run (lenet5_seed0) cannot be "
                                  f"moved into place whole; delete {staging.STAGING} to start the rerun over")
    assert not list((tmp_path / "results").glob("*")) and not list((tmp_path / "plots").glob("*"))


def test_a_rerun_whose_trained_run_lacks_a_file_moves_nothing_into_place(staged_report, tmp_path, monkeypatch):
    real = runner.train_all

    def without_a_checkpoint(jobs, *args, **kwargs):
        failed = real(jobs, *args, **kwargs)
        jobs[1].paths.checkpoint.unlink()
        return failed
    monkeypatch.setattr(runner, "train_all", without_a_checkpoint)
    with pytest.raises(UsageError, match=r"lenet5_seed1\.pt is missing, so 1 staged run \(lenet5_seed1\)"):
        staging.rerun(["LeNet5"], runner.Settings())
    assert not list((tmp_path / "results").glob("*")) and not list((tmp_path / "plots").glob("*"))


def test_a_move_that_fails_leaves_every_committed_file_as_it_was(staged_report, tmp_path, monkeypatch):
    for kind in runner.KINDS:  # the committed runs, which the rerun replaces
        for seed in experiments.SEEDS:
            committed = getattr(files.RunPaths.of(tmp_path, f"lenet5_seed{seed}"), kind)
            committed.parent.mkdir(parents=True, exist_ok=True)
            committed.write_text(f"committed {seed} {kind}")
    real, moves = os.replace, []

    def replace(source, target):
        moves.append(target)
        if len(moves) == 8:  # the second run's checkpoint, the committed one already kept aside
            raise OSError(13, "Permission denied")
        real(source, target)
    monkeypatch.setattr(staging.os, "replace", replace)
    with pytest.raises(UsageError, match=r"\(Permission denied\); the committed files are as they were"):
        staging.rerun(["LeNet5"], runner.Settings())
    for kind in runner.KINDS:  # and the staged runs are where the same command finds them
        for seed in experiments.SEEDS:
            name = f"lenet5_seed{seed}"
            assert getattr(files.RunPaths.of(tmp_path, name), kind).read_text() == f"committed {seed} {kind}"
            assert getattr(files.RunPaths.of(staging.STAGING, name), kind).read_bytes().endswith(f"{name} {kind}".encode())
    monkeypatch.setattr(staging.os, "replace", real)
    monkeypatch.setattr(runner, "plan", lambda named, *a, **k: ([], [name for name, _ in named]))  # all finished
    staging.rerun(["LeNet5"], runner.Settings())  # the same command, once the cause is gone
    for seed in experiments.SEEDS:
        assert (tmp_path / "results" / f"lenet5_seed{seed}.json").read_text() == f"lenet5_seed{seed} results"
    assert not (staging.STAGING / "replaced").exists()


def test_a_staged_run_another_process_trains_is_refused_in_the_reports_words(tmp_path, monkeypatch):
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: tiny_recipe() | {"seed": seed})
    monkeypatch.setattr(runner, "run_all", lambda *a, **k: pytest.fail("trained a run another process holds"))
    staged = files.RunPaths.of(staging.STAGING, "lenet5_seed1")
    staged.lock.parent.mkdir(parents=True)
    with files.RunLock(staged), pytest.raises(UsageError) as refused:
        staging.rerun(["LeNet5"], runner.Settings())
    check_advice("scripts.report.command", str(refused.value))
    assert str(refused.value) == (f"another process is training lenet5_seed1 into {staging.STAGING} right now; wait "
                                  f"for it to end, then run this command again")


# ---------------------------------------------------------------- scripts/report/command.py: main


@pytest.fixture
def report_in(tmp_path, monkeypatch):
    """The report's documents and plots/ in tmp_path (the documents copies of the committed ones)."""
    (tmp_path / "README.md").write_bytes((ROOT / "README.md").read_bytes())
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    monkeypatch.setattr(committed, "PAGES", tmp_path)
    monkeypatch.setattr(committed, "PLOTS", tmp_path / "plots")
    return tmp_path


def test_a_failed_benchmark_in_a_full_rerun_stops_the_report(report_in, monkeypatch, capsys):
    monkeypatch.setattr(staging, "rerun", lambda labels, settings: None)
    monkeypatch.setattr(command.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 3))
    monkeypatch.setattr(committed, "check_all", lambda: pytest.fail("went on past a failed benchmark"))
    assert command.main(command.get_args_parser().parse_args(["--rerun"])) == 1
    assert one_line(capsys.readouterr().err) == ("report: error: benchmarks.bench_pipeline failed (above); rerun it "
                                                 "with make bench")


def test_a_document_without_a_sections_markers_is_refused():
    text = (ROOT / "docs" / "speed.md").read_text().replace("<!-- report:speed -->", "")
    with pytest.raises(UsageError, match="docs/speed.md has no <!-- report:speed --> section; restore it with git "
                                         "checkout -- docs/speed.md"):
        pages.render_document("docs/speed.md", text)


def test_nothing_is_drawn_before_every_section_is_rendered(report_in, monkeypatch, capsys):
    results = report_in / "results"
    shutil.copytree(ROOT / "results", results, ignore=shutil.ignore_patterns("tuning"))
    (results / "bench_pipeline.json").write_text("[1, 2]")  # damaged: the speed section cannot be rendered
    monkeypatch.setattr(committed, "RESULTS", results)
    caches = (committed.load, committed.correct, committed.comparison)
    for cache in caches:
        cache.cache_clear()
    readme = (report_in / "README.md").read_bytes()
    try:
        assert command.main(command.get_args_parser().parse_args([])) == 2
    finally:
        for cache in caches:
            cache.cache_clear()
    assert "bench_pipeline.json is missing or not JSON" in one_line(capsys.readouterr().err)
    assert not (report_in / "plots").exists() or not list((report_in / "plots").iterdir())
    assert (report_in / "README.md").read_bytes() == readme


def test_a_missing_document_is_one_line_that_says_how_to_restore_it(report_in, monkeypatch, capsys):
    monkeypatch.setattr(committed, "check_all", lambda: None)
    monkeypatch.setattr(plots, "build_figures", lambda: pytest.fail("drew figures for a report it cannot write"))
    (report_in / "docs" / "speed.md").unlink()
    assert command.main(command.get_args_parser().parse_args([])) == 2
    assert one_line(capsys.readouterr().err) == ("report: error: docs/speed.md cannot be read (No such file or "
                                                 "directory); restore it with git checkout -- docs/speed.md")


def test_a_document_is_replaced_whole_or_not_at_all(report_in, monkeypatch):
    monkeypatch.setattr(committed, "check_all", lambda: None)
    monkeypatch.setattr(plots, "build_figures", lambda: None)
    # A text that cannot be encoded fails in the middle of the write.
    monkeypatch.setattr(pages, "render_document", lambda name, text: "# a report\n" * 1000 + "\ud800")
    before = {path: path.read_bytes() for path in report_in.rglob("*") if path.is_file()}
    with pytest.raises(UnicodeEncodeError):
        command.main(command.get_args_parser().parse_args([]))
    assert {path: path.read_bytes() for path in report_in.rglob("*") if path.is_file()} == before  # no temporary file


def test_an_unknown_experiment_to_rerun_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stopped:
        command.get_args_parser().parse_args(["--rerun", "LeNet6"])
    assert stopped.value.code == 2 and "--rerun: invalid choice: 'LeNet6'" in one_line(capsys.readouterr().err)


copy = test_slots.copy  # the fixture: a copy of results/ that the report and the tuning read instead


@pytest.mark.parametrize("name", ["tuning/lenet5_lr0.1_bs128_seed0.json",
                                  "tuning/fast/lenet5_fast_ep2_bs64_lr0.05_ls0.1_seed2.json"])
def test_check_all_holds_each_scored_tuning_run_to_its_slot(copy, name):
    # Whole in form, but another setting's run: only the sweep that scores it, against its slot, can tell.
    test_slots.change(copy / name, lambda r: r["recipe"].update(lr=0.3))
    with pytest.raises(slots.BadResults, match=r"another run's recipe \(lr 0.3, not"):
        committed.check_all()


# ---------------------------------------------------------------- scripts/tune.py


def test_fast_and_model_together_are_refused(monkeypatch, capsys):
    monkeypatch.setattr(tune, "fast_sweep", lambda *a: pytest.fail("tuned despite the refusal"))
    assert tune.main(tune.get_args_parser().parse_args(["--fast", "--model", "lenet5"])) == 2
    assert one_line(capsys.readouterr().err) == "tune: error: --fast tunes LeNet5's fast recipe; drop --model"


def test_tune_refuses_a_model_it_has_no_search_for(capsys):
    with pytest.raises(SystemExit) as stopped:
        tune.get_args_parser().parse_args(["--model", "lenet6"])
    assert stopped.value.code == 2 and "--model: invalid choice: 'lenet6'" in one_line(capsys.readouterr().err)


def test_a_tuning_run_that_fails_stops_the_sweep_and_is_not_stored_as_diverged(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    path, recipe = tmp_path / "lenet5_tiny_seed0.json", tiny_recipe(validation=True)
    monkeypatch.setattr(runner, "train_all", lambda jobs, *a, **k: {job.name: "out of memory" for job in jobs})
    with pytest.raises(RunFailed, match="lenet5_tiny_seed0: out of memory"):
        tune.trainer(runner.Settings(), lambda setting, seed: recipe, lambda setting, seed: path)([({}, 0)])
    assert not path.exists()


def test_a_second_tuning_of_the_same_run_refuses_while_the_first_holds_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    path, recipe = tmp_path / "lenet5_tiny_seed0.json", tiny_recipe(validation=True)
    paths = tune.run_paths(path)
    paths.lock.parent.mkdir(parents=True)
    with files.RunLock(paths):  # the first process, still training
        with pytest.raises(UsageError, match="another process is training lenet5_tiny_seed0"):
            tune.trainer(runner.Settings(), lambda setting, seed: recipe, lambda setting, seed: path)([({}, 0)])
    assert not path.exists()


# ---------------------------------------------------------------- scripts/demo_screenshot.py


def fake_demo(folder, script):
    """A demo.py in folder that runs script instead of serving; its process ID goes to folder/pid."""
    (folder / "demo.py").write_text(f"import os, sys, time\nopen({str(folder / 'pid')!r}, 'w').write(str(os.getpid()))"
                                    f"\n{script}\n")
    return folder


def pid_in(folder):
    return int((folder / "pid").read_text())


def test_demo_screenshot_without_a_browser_is_one_line_before_any_work(monkeypatch, tmp_path, capsys):
    from scripts import demo_screenshot
    monkeypatch.setattr(demo_screenshot, "browser_missing", lambda: "no chromium and chromedriver on PATH")
    monkeypatch.setattr(demo_screenshot, "take", lambda *a: pytest.fail("went on without a browser"))
    assert demo_screenshot.main(["--out", str(tmp_path / "shot.json")]) == 2
    assert one_line(capsys.readouterr().err) == ("demo_screenshot: error: no chromium and chromedriver on PATH; the "
                                                 "screenshot needs a browser to drive")


def test_demo_screenshot_says_why_the_demo_did_not_start(monkeypatch, tmp_path):
    from scripts import demo_screenshot
    monkeypatch.setattr(files, "ROOT", fake_demo(tmp_path, "sys.exit('demo: error: no checkpoint at x.pt')"))
    with pytest.raises(RunFailed, match="demo.py did not start: demo: error: no checkpoint at x.pt"):
        demo_screenshot.serve([])


@pytest.mark.parametrize("failing", ["the browser", "the page"])
def test_demo_screenshot_stops_the_demo_and_the_browser_whatever_fails(failing, monkeypatch, tmp_path):
    from scripts import demo_screenshot
    monkeypatch.setattr(files, "ROOT", fake_demo(tmp_path, "print('open http://127.0.0.1:1/', flush=True); "
                                                           "time.sleep(600)"))
    quit = []

    class Driver:
        def get(self, address):
            raise RuntimeError("the page did not load")

        def quit(self):
            quit.append(True)

    def browser():
        if failing == "the browser":
            raise RuntimeError("chromium did not start")
        return Driver()
    monkeypatch.setattr(demo_screenshot, "browser", browser)
    try:
        with pytest.raises(RuntimeError):
            demo_screenshot.take([], tmp_path / "shot.json", tmp_path / "shot.png")
        assert wait_gone(pid_in(tmp_path)), "the demo server was left running"
        assert quit == ([] if failing == "the browser" else [True])
    finally:
        if not gone(pid_in(tmp_path)):
            os.kill(pid_in(tmp_path), signal.SIGKILL)


def test_the_wait_for_the_pages_answers_times_out():
    pytest.importorskip("selenium")
    from selenium.common.exceptions import TimeoutException
    from scripts import demo_screenshot

    class Silent:  # a page that sent a request and never had it answered
        def execute_script(self, script):
            return {"sent": "1", "answered": "0"}
    outcome = []

    def wait():
        try:
            demo_screenshot.predicted(Silent(), 0, timeout=1)
        except TimeoutException:
            outcome.append("timed out")
    waiting = threading.Thread(target=wait, daemon=True)
    waiting.start()
    waiting.join(30)
    assert outcome == ["timed out"]


# ---------------------------------------------------------------- benchmarks


BOUNDS = [("benchmarks.bench_predict", "--count", 10_000), ("benchmarks.reference", "--epochs", 1000),
          ("benchmarks.reference", "--limit", 60_000), ("benchmarks.bench_pipeline", "--repeats", 100),
          ("benchmarks.bench_pipeline", "--batch-size", 60_000), ("benchmarks.bench_gpu", "--epochs", 1000),
          ("benchmarks.bench_gpu", "--limit", 60_000), ("benchmarks.bench_time_to_accuracy", "--seeds", 100),
          ("benchmarks.bench_time_to_accuracy", "--reference-seeds", 100), ("benchmarks.bench_sweep", "--runs", 256),
          ("benchmarks.bench_sweep", "--epochs", 100), ("benchmarks.bench_sweep", "--repeats", 20)]


@pytest.mark.parametrize("name, flag, high", BOUNDS)
def test_each_benchmark_flag_is_held_to_its_bounds(name, flag, high, capsys):
    parser = importlib.import_module(name).get_args_parser()
    assert getattr(parser.parse_args([flag, str(high)]), flag[2:].replace("-", "_")) == high
    for value in (high + 1, 0):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args([flag, str(value)])
        assert stopped.value.code == 2
        assert f"{flag}: must be from 1 to {high}, got {value}" in one_line(capsys.readouterr().err)


@pytest.fixture
def bench_sweep(monkeypatch):
    from benchmarks import bench_sweep
    monkeypatch.setattr(bench_sweep, "timed", lambda *a: pytest.fail("measured before checking --out"))
    return bench_sweep


@pytest.mark.parametrize("target, kind", [("/dev/full", "a device"), ("folder", "a folder"),
                                          ("pipe", "a named pipe (FIFO)")])
def test_bench_sweep_checks_its_output_before_any_work(target, kind, bench_sweep, tmp_path, capsys):
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    path = target if target.startswith("/") else str(tmp_path / target)
    assert bench_sweep.main(bench_sweep.get_args_parser().parse_args(["--out", path])) == 2
    assert one_line(capsys.readouterr().err) == (f"bench_sweep: error: --out {path} is {kind}, where this command "
                                                 f"writes a file; pass another --out")


@pytest.mark.parametrize("argv, quick", [([], False), (["--runs", "2"], True), (["--epochs", "1"], True),
                                         (["--repeats", "1"], True)])
def test_a_quick_bench_sweep_does_not_replace_the_committed_results(argv, quick, bench_sweep, outputs_recorded,
                                                                    tmp_path):
    assert bench_sweep.main(bench_sweep.get_args_parser().parse_args(argv)) == 2
    name = "bench_sweep.json"
    assert outputs_recorded == [tmp_path / "runs" / name if quick else ROOT / "results" / name]


FAILING = ["-c", "import sys; print('half a run'); sys.exit('the run failed here')"]


def test_a_failed_process_stops_each_benchmark(tmp_path):
    from benchmarks import bench_gpu, bench_sweep, bench_time_to_accuracy
    with pytest.raises(SystemExit, match="bench_gpu: -c .* failed:\nthe run failed here"):
        bench_gpu.timed_process(FAILING)
    with pytest.raises(SystemExit, match="bench_time_to_accuracy: -c .* failed:\nthe run failed here"):
        bench_time_to_accuracy.timed_run(FAILING, tmp_path)
    with pytest.raises(RunFailed, match=r"failed \(the run failed here\); run it by hand"):
        bench_sweep.timed(FAILING, tmp_path)


def test_a_failed_import_stops_the_start_up_timing(monkeypatch):
    from benchmarks import bench_time_to_accuracy
    monkeypatch.setattr(bench_time_to_accuracy, "IMPORTS", {"nothing": "import a_module_that_is_not_there"})
    with pytest.raises(subprocess.CalledProcessError):
        bench_time_to_accuracy.import_seconds(repeats=1)


def test_bench_demo_says_the_demo_did_not_start(monkeypatch, tmp_path):
    from benchmarks import bench_demo
    monkeypatch.setattr(files, "ROOT", fake_demo(tmp_path, "sys.exit(3)"))
    with pytest.raises(RunFailed, match=r"demo.py did not start \(exit status 3"):
        bench_demo.measure([])


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


# ---------------------------------------------------------------- sweep.py


def sweep_args(*argv):
    return sweep.get_args_parser().parse_args([*map(str, argv), "--limit", "256", "--epochs", "1"])


class Planned(Exception):
    """Raised by a stubbed runner.plan: the sweep went past its checks."""


@pytest.fixture
def planned(monkeypatch):
    def plan(named, *args, **kwargs):
        raise Planned(len(named))
    monkeypatch.setattr(runner, "plan", plan)


def test_a_grid_past_the_cap_is_refused_and_one_at_it_is_taken(planned, capsys):
    assert sweep.main(sweep_args("--seed", *range(1001))) == 2
    assert one_line(capsys.readouterr().err) == ("sweep.py: error: the grid holds 1,001 runs, more than the 1,000 one "
                                                 "sweep takes; split it into several sweeps")
    with pytest.raises(Planned, match="1000"):
        sweep.main(sweep_args("--seed", *range(1000)))


def test_a_tag_too_long_for_the_runs_names_is_one_line():
    with pytest.raises(UsageError, match="the runs' names would hold 67 characters of tag"):
        sweep.grid(sweep_args("--tag", "t" * 60, "--lr", "0.05", "0.1"))


@pytest.mark.parametrize("argv, problem", [(["--model", "lenet6"], "--model: invalid choice: 'lenet6'"),
                                           (["--recipe", "slow"], "--recipe: invalid choice: 'slow'"),
                                           (["--device", "tpu"], "--device: invalid choice: 'tpu'")])
def test_a_bad_choice_is_refused_by_the_parser(argv, problem, capsys):
    with pytest.raises(SystemExit) as stopped:
        sweep_args(*argv)
    assert stopped.value.code == 2 and problem in one_line(capsys.readouterr().err)


def test_a_stopped_sweep_says_how_to_continue(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(runner, "plan", lambda named, paths_of, out_dir, **kwargs: (["a job"], []))

    def train_all(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "train_all", train_all)
    monkeypatch.setattr(sys, "argv", ["sweep.py", "--model", "lenet5"])
    assert sweep.main(sweep_args("--out-dir", tmp_path)) == 130
    err = capsys.readouterr().err
    assert "sweep.py: interrupted; the finished runs are written whole." in err
    # The interpreter that ran it: a bare `python` may be one without torch.
    assert f"continue with: {shlex.quote(PYTHON)} sweep.py --model lenet5" in err


def test_a_table_with_no_finished_run_says_so(tmp_path):
    args = sweep_args("--lr", "0.05", "0.1")
    assert sweep.table(args, sweep.grid(args), tmp_path) == [
        "no setting has a finished run to compare", "not counted: lenet5_lr0.05, seed 0 (is missing)",
        "not counted: lenet5_lr0.1, seed 0 (is missing)"]


def test_the_table_counts_only_runs_that_fill_their_slots(tmp_path):
    # The report's lenet5_seed0, 10 epochs on every image, where this sweep's run (1 epoch, 256 images) would be.
    (tmp_path / "results").mkdir()
    shutil.copy(ROOT / "results" / "lenet5_seed0.json", tmp_path / "results" / "lenet5_seed0.json")
    args = sweep_args("--model", "lenet5")
    assert sweep.table(args, sweep.grid(args), tmp_path) == [
        "no setting has a finished run to compare",
        "not counted: lenet5, seed 0 (holds another run's recipe (epochs 10, not 1))"]


# ---------------------------------------------------------------- runner.py


def runner_args(**given):
    return argparse.Namespace(**{"jobs": 1, "address": None, "cpus_per_run": None, "gpus_per_run": None, **given})


def test_ray_address_stands_in_for_address_only_for_runs_at_once(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert runner.settings_of(runner_args()).address is None
    assert runner.settings_of(runner_args(jobs=2)).address == "10.0.0.1:6379"
    assert runner.settings_of(runner_args(jobs=2, address="10.0.0.2:6379")).address == "10.0.0.2:6379"


@pytest.fixture
def ray_init(monkeypatch):
    """ray.init replaced: it records its keyword arguments and the Ray settings in the environment, then fails the
    call with RuntimeError('ray.init reached'). The environment that start_ray changes is restored after."""
    ray = pytest.importorskip("ray")
    calls = []

    def init(**kwargs):
        calls.append((kwargs, {k: v for k, v in os.environ.items() if k.startswith("RAY_")},
                      Path(os.environ["HOME"], "ray_bootstrap_config.yaml").is_file()))
        raise Reached
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    return calls


class Reached(Exception):
    """Raised by the stubbed ray.init."""


def test_a_share_of_a_gpu_that_is_not_here_is_refused_before_ray_starts(ray_init, monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "gpus_here", lambda settings: 0)
    with pytest.raises(UsageError, match="--gpus-per-run: this machine has no CUDA GPU for the runs to share"):
        runner.start_ray(runner.Settings(jobs=2, gpus=0.5), tmp_path / "package", tmp_path, tmp_path / "ray", "ab" * 32)
    assert not ray_init


def test_an_address_where_nothing_answers_is_refused_before_ray_connects(ray_init, tmp_path):
    with pytest.raises(UsageError) as refused:
        runner.start_ray(runner.Settings(jobs=2, address="127.0.0.1:1"), tmp_path / "package", tmp_path)
    assert str(refused.value).startswith("--address 127.0.0.1:1: nothing answers there (")
    assert not ray_init


@pytest.mark.skipif(not (os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")),
                    reason="needs a network namespace of its own: root, unshare and ip")
def test_an_address_that_swallows_packets_is_refused_when_the_probe_times_out():
    # In a network namespace of its own, an address on a fake uplink whose packets nobody reads: a connection to
    # it is neither accepted nor refused, and without its timeout the probe would wait minutes.
    probe = shlex.join([sys.executable, "-c", "import runner; runner.ray_head('10.99.0.1:6379', seconds=2)"])
    script = ("ip link set lo up && ip tuntap add dev uplink0 mode tun && ip addr add 10.99.0.2/24 dev uplink0 && "
              f"ip link set uplink0 up && exec {probe}")
    # Without the timeout, the kernel's own retries of the connection take about two minutes.
    done = subprocess.run(["unshare", "--net", "bash", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=40)
    assert done.returncode == 1 and "UsageError: --address 10.99.0.1:6379: nothing answers there (timed out)" in \
        done.stderr, done.stderr


def test_rays_workers_get_the_package_and_nothing_else(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    for name in ("main.py", "scripts/tune.py", "data/bundle/train.gz", "data/MNIST/raw/train", ".venv/lib/site.py",
                 ".git/config", "runs/results/lenet5_seed0.json", "tests/test_main.py", "benchmarks/bench_gpu.py"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
    monkeypatch.setattr(runner, "ROOT", tree)
    runner.stage_package(tmp_path / "package")
    staged = sorted(str(path.relative_to(tmp_path / "package")) for path in (tmp_path / "package").rglob("*")
                    if path.is_file())
    assert staged == ["data/bundle/train.gz", "main.py"]  # no task runs scripts/


def test_what_the_reports_rerun_sends_to_rays_workers_needs_nothing_from_scripts(tmp_path, monkeypatch):
    # Ray's workers get PACKAGE, without scripts/: a measure that named a function there would fail in every task.
    from ray import cloudpickle
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: tiny_recipe() | {"seed": seed})
    sent = []

    def train_all(jobs, settings, measure, line):
        sent.extend(cloudpickle.dumps(measure(job)) for job in jobs)  # as run_on_ray sends it to each task
        return {job.name: "not trained here" for job in jobs}
    monkeypatch.setattr(runner, "train_all", train_all)
    with pytest.raises(RunFailed):
        staging.rerun(["LeNet5"], runner.Settings(jobs=2))
    assert len(sent) == len(experiments.SEEDS) and not any(b"scripts" in pickled for pickled in sent)


def test_a_private_ray_instance_stays_on_loopback_behind_its_own_token(ray_init, tmp_path):
    home = os.environ.get("HOME")
    with pytest.raises(Reached):
        runner.start_ray(runner.Settings(jobs=2), tmp_path / "package", tmp_path, tmp_path / "ray", "cd" * 32)
    ((kwargs, environment, bootstrap),) = ray_init
    assert bootstrap, "Ray's head would look for cloud metadata at 169.254.169.254"
    assert os.environ.get("HOME") == home  # the driver's own home, given back
    assert kwargs["address"] == "local" and kwargs["_node_ip_address"] == "127.0.0.1"
    assert kwargs["include_dashboard"] is False and kwargs["_temp_dir"] == str(tmp_path / "ray")
    assert environment["RAY_AUTH_MODE"] == "token" and environment["RAY_AUTH_TOKEN"] == "cd" * 32
    assert environment["RAY_USAGE_STATS_ENABLED"] == "0"


def test_a_ray_error_is_one_short_line():
    class RayTaskError(Exception):
        cause = RuntimeError("Traceback (most recent call last):\n  File \"x.py\", line 1\n" + "y" * 1000 + "\n")
    line = runner.one_line(RayTaskError("wrapped"))
    assert line == f"RuntimeError: {'y' * 1000}"[:300]


def test_reap_kills_what_holds_a_file_in_the_scratch_folder_and_nothing_else(tmp_path, reaped):
    scratch = tmp_path / "ray-x"
    inside, beside = holding(scratch / "session" / "log"), holding(tmp_path / "ray-xy" / "log")  # a longer name
    reaped += [inside, beside]
    runner.reap(str(scratch))
    assert inside.wait(timeout=20) == -signal.SIGKILL
    assert beside.poll() is None


def test_reap_kills_a_process_even_where_one_of_its_files_closes_while_it_looks(tmp_path, reaped, monkeypatch):
    scratch = tmp_path / "ray-x"
    inside = holding(scratch / "session" / "log")
    reaped.append(inside)
    real, seen = os.readlink, set()

    def readlink(path):
        process = Path(path).parent.parent.name
        if process not in seen:  # each process's first descriptor closes between the listing and its reading
            seen.add(process)
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path)
    monkeypatch.setattr(runner.os, "readlink", readlink)
    runner.reap(str(scratch))
    assert inside.wait(timeout=20) == -signal.SIGKILL


def test_reap_spares_the_process_that_calls_it(tmp_path):
    code = ("import sys, runner; f = open(sys.argv[1] + '/log', 'w'); runner.reap(sys.argv[1]); "
            "print('survived')")
    (tmp_path / "scratch").mkdir()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "scratch")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "survived\n", done


@pytest.fixture
def failing_start(monkeypatch, tmp_path, reaped):
    """runner.run_on_ray with Ray's start replaced by one that leaves a process holding a file in the scratch
    folder, then raises what the test sets in raised[0]; returns (raised, scratch folders made)."""
    made, raised = [], [UsageError("Ray did not start")]
    real_mkdtemp = files.tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        if kwargs.get("prefix") != runner.PRIVATE:
            return real_mkdtemp(*args, **kwargs)
        made.append(Path(real_mkdtemp(**{**kwargs, "dir": str(tmp_path)})))
        return str(made[-1])

    def start_ray(settings, package, private, scratch, token):
        reaped.append(holding(Path(scratch) / "session" / "raylet.out"))
        raise raised[0]
    monkeypatch.setattr(files.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(runner, "stage_package", lambda folder: None)
    monkeypatch.setattr(runner, "start_ray", start_ray)
    return raised, made


def test_a_private_ray_instance_that_fails_to_start_leaves_no_folder_no_process_and_no_handler(failing_start,
                                                                                                 reaped):
    raised, made = failing_start
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(UsageError, match="Ray did not start"):
        list(runner.run_on_ray([], runner.Settings(jobs=2), lambda job: None))
    assert len(made) == 1 and not made[0].exists()
    assert reaped[0].wait(timeout=20) == -signal.SIGKILL
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers


def test_rays_own_sigterm_exit_during_its_start_is_a_sigterm(failing_start):
    from cli import Terminated
    raised, _ = failing_start
    raised[0] = SystemExit(0)  # Ray's SIGTERM handler, installed in ray.init, exits
    with pytest.raises(Terminated):
        list(runner.run_on_ray([], runner.Settings(jobs=2), lambda job: None))


def test_more_runs_than_the_hard_limit_on_open_files_is_refused(monkeypatch):
    import resource
    set_to = []
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda kind, limits: set_to.append(limits))
    with pytest.raises(UsageError, match="5,000 runs need 5,256 open files, over this machine's limit of 4,096"):
        runner.open_files_for(5000)
    runner.open_files_for(3000)
    assert set_to == [(3256, 4096)]


def test_plan_checks_the_output_folders_before_any_work(tmp_path, read_only_probe):
    with pytest.raises(UsageError, match=f"--out-dir {tmp_path} cannot be written"):
        runner.plan([("lenet5_seed0", tiny_recipe())], lambda name: files.RunPaths.of(tmp_path, name), tmp_path)


def test_a_run_whose_checkpoint_cannot_be_written_leaves_no_results(tmp_path):
    (tmp_path / "file").write_text("")
    paths = files.RunPaths(results=tmp_path / "results" / "x.json", curves=tmp_path / "plots" / "x.png",
                           checkpoint=tmp_path / "file" / "x.pt", lock=tmp_path / "x.lock")
    outcome = runner.Outcome(runner.Job("x", tiny_recipe(), paths),
                             {"checkpoint": b"weights", "curves": b"png", "results": b"{}"}, None, 1.0)
    with pytest.raises(files.WriteError):
        runner.install(outcome)
    assert not paths.results.exists()


def test_a_run_trained_in_a_temporary_folder_leaves_none_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))
    made, error, _ = runner.train(tiny_recipe(), "lenet5_seed0", None, "cpu")
    assert error is None and set(made) == set(runner.KINDS)
    assert json.loads(made["results"])["status"] == "complete"
    assert not list(tmp_path.glob("mnist-run-*"))  # (torch may keep a cache of its own there)


@pytest.fixture
def thread_count():
    """Set this process's torch thread count, as torch's default is set, for a test; put back after it."""
    import torch
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_a_run_records_the_thread_count_it_was_given(tmp_path, monkeypatch, thread_count):
    import torch
    threads = torch.get_num_threads() + 1  # never the count the run would take by default
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))
    made, error, _ = runner.train(tiny_recipe(), "lenet5_seed0", threads, "cpu")
    assert error is None and json.loads(made["results"])["threads"] == threads
    assert torch.load(io.BytesIO(made["checkpoint"]), weights_only=True)["threads"] == threads


@pytest.fixture
def unfinished(tmp_path):
    """unfinished(threads): a run of 2 epochs under tmp_path, stopped after its first, whose checkpoint says it
    trained with threads (None: a checkpoint saved before the count was kept); returns its recipe."""
    import torch
    recipe = resolve_recipe("lenet5", {"batch_size": 32}, epochs=2, seed=0, limit=256, train_size=None,
                            validation=False, amp=False)
    assert runner.train({**recipe, "epochs": 1}, "lenet5_seed0", None, "cpu", out_dir=tmp_path)[1] is None
    path = tmp_path / "checkpoints" / "lenet5_seed0.pt"
    trained = torch.load(path, weights_only=True)
    (tmp_path / "results" / "lenet5_seed0.json").unlink()

    def made(threads):
        checkpoint = {**trained, "recipe": recipe}
        if threads is None:
            del checkpoint["threads"]
        else:
            checkpoint["threads"] = threads
        torch.save(checkpoint, path)
        return recipe
    return made


@pytest.mark.parametrize("began, settings, refused", [
    (3, runner.Settings(jobs=2), "this run would take 1, which changes its numbers; pass --cpus-per-run 3 to"),
    (3, runner.Settings(jobs=2, threads=3), None),
    (3, runner.Settings(address="127.0.0.1:1"), "this run would take 1, which changes its numbers; pass "
                                                 "--cpus-per-run 3 to"),
    (3, runner.Settings(jobs=1), None),  # torch's default here, 3
    (1, runner.Settings(jobs=1), "this run would take 3, which changes its numbers; pass --cpus-per-run 1 to"),
    (1, runner.Settings(jobs=1, threads=1), None),
    (None, runner.Settings(jobs=2), None),  # saved before the count was kept: unknown, so not refused
])
def test_a_run_resumes_only_at_the_thread_count_it_began_with(began, settings, refused, unfinished, tmp_path,
                                                              thread_count):
    thread_count(3)  # as torch's default would be on three cores
    recipe = unfinished(began)
    plan = lambda: runner.plan([("lenet5_seed0", recipe)], lambda name: files.RunPaths.of(tmp_path, name), tmp_path,
                               settings=settings)
    if refused:
        with pytest.raises(UsageError) as error:
            plan()
        assert str(error.value) == (f"{tmp_path}/checkpoints/lenet5_seed0.pt was trained with {began} torch "
                                    f"threads, and {refused} continue it")
    else:
        (job,), finished = plan()
        assert job.resume_from and finished == []


@pytest.fixture
def stopped_mid_sweep(monkeypatch, tmp_path):
    """runner.run_on_ray on a Ray stand-in whose ray.get(ref) first sends this process SIGTERM, as a SIGTERM to the
    sweep's process group reaches the driver while it kills the task's worker, and then answers as get(ref) says.
    Returns run(jobs, get, signum): the outcomes yielded before run_on_ray raised Terminated for signum, or
    pytest.fail."""
    from cli import ENDINGS, Terminated, terminate
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(runner, "start_ray", lambda *args: None)

    class Task:  # ray.remote(train).options(...); each .remote() is a ref
        def options(self, **settings):
            return self

        def remote(self, *args):
            return object()
    monkeypatch.setattr(ray, "remote", lambda function: Task())
    monkeypatch.setattr(ray, "wait", lambda refs, **kwargs: (refs[:1], refs[1:]))
    monkeypatch.setattr(ray, "cancel", lambda *args, **kwargs: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)

    def run(count, answer, signum=signal.SIGTERM):
        def get(ref):
            os.kill(os.getpid(), signum)
            return answer(ray)
        monkeypatch.setattr(ray, "get", get)
        jobs = [runner.Job(f"lenet5_seed{i}", {}, files.RunPaths.of(tmp_path, f"lenet5_seed{i}")) for i in range(count)]
        outcomes = []
        with pytest.raises(Terminated) as stopped:
            for outcome in runner.run_on_ray(jobs, runner.Settings(jobs=2), lambda job: None):
                outcomes.append(outcome)
        assert stopped.value.signum == signum
        return outcomes
    # As cli.run installs them: a signal the driver does not take for itself raises Terminated wherever it lands.
    handlers = {signum: signal.signal(signum, terminate) for signum in ENDINGS}
    yield run
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def test_a_task_killed_by_the_signal_that_stops_the_sweep_is_the_stop_not_a_failed_run(stopped_mid_sweep):
    def killed(ray):
        raise ray.exceptions.WorkerCrashedError()
    assert stopped_mid_sweep(2, killed) == []  # no run reported failed: the sweep stopped


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_that_arrives_with_the_last_run_still_stops_the_sweep(stopped_mid_sweep, signum):
    # The loop ends with the last run; the signal that came with it is not lost (exit 143 or 129, the continue line).
    outcomes = stopped_mid_sweep(1, lambda ray: ({}, None, 1.0), signum)
    assert [outcome.job.name for outcome in outcomes] == ["lenet5_seed0"] and outcomes[0].error is None


def test_an_unwritable_tuning_staging_folder_names_no_flag_the_tuning_does_not_have(tmp_path, monkeypatch,
                                                                                    read_only_probe):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    monkeypatch.setattr(runner, "train_all", lambda *a, **k: pytest.fail("trained before checking the folders"))
    train = tune.trainer(runner.Settings(), lambda setting, seed: tiny_recipe(validation=True),
                         lambda setting, seed: tmp_path / "tuning" / "lenet5_x_seed0.json")
    with pytest.raises(UsageError) as refused:
        train([({}, 0)])
    assert str(refused.value).endswith("; fix its permissions") and "--out-dir" not in str(refused.value)
