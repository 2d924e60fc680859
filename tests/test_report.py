"""scripts/report/: the generated sections agree with the committed files, every link resolves, and the staged
rerun moves its runs into place all or none."""
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import zlib

import pytest
import torch
import torch.nn.functional as F

import dataset
from helpers import (LENET5_RUN, ROOT, change, check_advice, guards, one_line, png_declaring, refused, synthetic,
                     tiny_recipe)
from mnistlab import engine, files, measurements, recipes, runner, slots
from mnistlab.errors import RunFailed, UsageError
from mnistlab.recipes import resolve_recipe
from model import MODELS, count_parameters
from scripts import tune
from scripts.report import appendices, command, committed, experiments, pages, plots, staging

DOCUMENTS = {name: (ROOT / name).read_text() for name in pages.DOCUMENTS}


README = DOCUMENTS["README.md"]


def anchor(heading):
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def recipe_for(model="custom_mlp"):
    return resolve_recipe(model, {}, seed=0, limit=None, train_size=None, validation=False, amp=False)


@pytest.mark.parametrize("document, name", [(document, name) for document, names in pages.DOCUMENTS.items()
                                            for name in names])
def test_generated_section_agrees_with_the_results(document, name):
    written = pages.document_sections(document, DOCUMENTS[document])[name]
    assert written is not None, f"{document} has no <!-- report:{name} --> section"
    assert written == pages.rendered(document, name), f"{document}'s section {name!r} disagrees with results/; run " \
                                                       f"`make readme`"


def test_every_section_is_written_into_one_document():
    placed = [name for names in pages.DOCUMENTS.values() for name in names]
    assert sorted(placed) == sorted(pages.SECTIONS)


def test_every_relative_link_and_anchor_in_the_readme_and_docs_resolves_to_a_file_of_the_repository():
    documents = {ROOT / "README.md", *(ROOT / "docs").glob("*.md")}
    assert documents >= {ROOT / name for name in pages.DOCUMENTS}
    anchors = {path: {anchor(h) for h in re.findall(r"(?m)^#+ (.+)$", path.read_text())} for path in documents}
    broken, checked = [], 0
    for path in sorted(documents):
        text = re.sub(r"(?s)```.*?```", "", path.read_text())  # code is not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:: not this repository's
                continue
            checked += 1
            file, _, fragment = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not files.tracked(linked) or (fragment and fragment not in anchors.get(linked, ())):
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert checked > 50 and not broken, broken


def test_the_readme_is_the_report_and_short():
    assert len(README.encode()) <= 30_000
    first_screen = README.split("## ", 2)[:2]
    assert "<!-- report:results -->" in first_screen[0] and "comparison_3seeds.png" in first_screen[0]


def test_stored_predictions_give_the_reported_final_accuracy():
    runs = [json.loads(path.read_text()) for path in sorted(committed.RESULTS.glob("*_seed*.json"))]
    tested = [run for run in runs if run["evaluated_on"] == "test"]
    assert len(tested) >= 3 * 8 and sum(recipes.data_of(run["recipe"]) == "fashion-mnist" for run in tested) == 3 * 8
    for run in tested:
        _, truth = committed.test_split(recipes.data_of(run["recipe"]))
        predicted = torch.tensor([int(c) for c in run["predictions"]])
        accuracy = 100.0 * (predicted == truth).double().mean().item()
        assert accuracy == pytest.approx(run["history"][-1]["eval_acc"], abs=1e-9), run["recipe"]


def test_the_readme_stands_on_its_own():
    assert "../shared" not in README


def test_no_shift_and_no_rotation_give_each_runs_final_test_accuracy():
    runs = [json.loads(path.read_text()) for path in sorted(committed.RESULTS.glob("*_seed*.json"))]
    swept = [run for run in runs if "robustness" in run]
    assert len(swept) >= 3 * 8
    for run in swept:
        final = run["history"][-1]["eval_acc"]
        assert run["robustness"]["shift"]["0"] == run["robustness"]["rotation"]["0"] == final, run["recipe"]
        shifts = list(run["robustness"]["shift"].values())
        assert shifts[6] < shifts[1] <= 100


def test_robustness_without_a_shift_or_rotation_is_the_plain_accuracy():
    images, labels = synthetic()
    model = engine.build_model(recipe_for(), "cpu").eval()
    plain = engine.evaluate(model, dataset.TensorLoader(images, labels, 128)).acc
    sweep = measurements.robustness(model, images, labels, batch_size=128)
    assert sweep["shift"][0] == sweep["rotation"][0] == plain
    assert list(sweep["shift"]) == list(measurements.SHIFTS)
    assert list(sweep["rotation"]) == list(measurements.ROTATIONS)
    # Independently: a 2-pixel shift is the mean of four exact shifts done here with torch.roll on padded images.
    padded = F.pad(images, (2, 2, 2, 2), value=dataset.MNIST.background)
    accs = []
    for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        moved = torch.roll(padded, shifts=(2 * sy, 2 * sx), dims=(2, 3))[..., 2:30, 2:30]
        accs.append(engine.evaluate(model, dataset.TensorLoader(moved, labels, 128)).acc)
    assert sweep["shift"][2] == pytest.approx(sum(accs) / 4)


@guards("mnistlab/measurements.py",
        "the robustness sweep fills in with the blank of the run's own dataset",
        "                                                dataset.DATASETS[data_of(recipe)].background)",
        "                                                dataset.MNIST.background)")
def test_the_robustness_sweep_fills_moved_images_in_with_the_runs_own_blank():
    class BlankBorder(torch.nn.Module):  # class 0 where an image's border is Fashion-MNIST's blank, else class 1
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))  # where evaluate finds the device

        def forward(self, x):
            border = torch.cat([x[:, 0, [0, -1], :].flatten(1), x[:, 0, :, [0, -1]].flatten(1)], 1)
            blank = (border - dataset.DATASETS["fashion-mnist"].background).abs().amax(1) < 1e-5
            return torch.stack([blank.float(), (~blank).float()], 1)
    fashion = dataset.DATASETS["fashion-mnist"]
    images = torch.full((8, 1, 28, 28), fashion.background)
    images[:, :, 10:18, 10:18] = 1.0  # something in the middle, the border blank
    batches = dataset.TensorLoader(images, torch.zeros(8, dtype=torch.long), 8)
    recipe = resolve_recipe("lenet5", {}, seed=0, dataset="fashion-mnist", train_size=None)
    measured = measurements.measurements(recipe)(BlankBorder(), batches, batches, contextlib.nullcontext())
    assert set(measured["robustness"]["shift"].values()) == {100.0}


def test_an_mnist_conclusion_on_fashion_mnist_holds_only_where_both_differences_are_real_leads():
    from types import SimpleNamespace as Compared

    from scripts.report import readme
    lead, behind, unclear = Compared(real=True, difference=0.5), Compared(real=True, difference=-0.5), Compared(
        real=False, difference=0.5)
    assert readme.outcome(lead, lead) == "holds"
    assert readme.outcome(lead, behind) == "is reversed"
    assert readme.outcome(lead, unclear) == "is not borne out (too small to measure here)"
    assert readme.outcome(unclear, lead) == readme.outcome(behind, lead) == "was not drawn on MNIST"


def test_a_rerun_changes_nothing_committed_until_every_run_is_whole_and_resumes_where_it_stopped(tmp_path,
                                                                                                  monkeypatch):
    from mnistlab import runner
    from mnistlab.errors import Interrupted
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: resolve_recipe(
        "lenet5", {}, epochs=2, seed=seed, limit=256, train_size=None, validation=False, amp=False))
    real, calls = engine.train_one_epoch, []

    def stopped_in_the_second_runs_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(engine, "train_one_epoch", stopped_in_the_second_runs_second_epoch)
    with pytest.raises(Interrupted):
        staging.rerun(["LeNet5"], runner.Settings())
    assert not list((tmp_path / "results").glob("*")) and not list((tmp_path / "plots").glob("*"))
    staged = tmp_path / "checkpoints" / "report" / "results"
    assert json.loads((staged / "lenet5_seed0.json").read_text())["status"] == "complete"
    assert json.loads((staged / "lenet5_seed1.json").read_text())["status"] == "interrupted"

    staging.rerun(["LeNet5"], runner.Settings())
    assert len(calls) == 4 + 1 + 2  # the second run resumed for its last epoch; the third ran whole
    for seed in experiments.SEEDS:
        run = json.loads((tmp_path / "results" / f"lenet5_seed{seed}.json").read_text())
        assert run["status"] == "complete" and len(run["history"]) == 2 and "final_train_eval" in run
        assert (tmp_path / "plots" / f"lenet5_seed{seed}_curves.png").exists()
        assert (tmp_path / "checkpoints" / f"lenet5_seed{seed}.pt").exists()
    assert not list(staged.glob("*.json"))


@guards("scripts/report/command.py",
        "the documents' and plots' folders proved writable before any work",
        "        for folder in (*folders, committed.PLOTS):  # checked",
        "        for folder in (*folders,):  # checked")
def test_an_unwritable_plots_folder_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    import errno

    from mnistlab import files
    monkeypatch.setattr(committed, "PLOTS", tmp_path / "plots")
    real = files.make_writable

    def read_only(folder):
        if folder == tmp_path / "plots":
            raise OSError(errno.EACCES, "Permission denied")
        return real(folder)
    monkeypatch.setattr(files, "make_writable", read_only)
    assert command.main(command.get_args_parser().parse_args([])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{tmp_path / 'plots'} cannot be written (Permission denied)" in err


@guards("scripts/report/command.py",
        "an error, a signal or a lost output is one line (cli.run)",
        "    return run(\"report\", body, interrupted=staging.stopped_line,",
        "    return body()\n    return run(\"report\", body, interrupted=staging.stopped_line,")
def test_output_that_cannot_be_written_is_one_line(copy, monkeypatch, capsys):
    # Only the report's last line is in question here, not the work before it.
    monkeypatch.setattr(committed, "check_all", lambda: None)
    monkeypatch.setattr(pages, "DOCUMENTS", {})
    monkeypatch.setattr(plots, "build_figures", lambda: None)
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        status = command.main(command.get_args_parser().parse_args([]))
    assert status == 1 and one_line(capsys.readouterr().err) == (
        "report: error: cannot write the output (No space left on device); free some space or send it elsewhere")


@guards("scripts/report/staging.py",
        "deferred_signals holds Ctrl-C and SIGTERM back",
        "handlers[signum] = signal.signal(signum, lambda number, frame: held.append(number))",
        "handlers[signum] = signal.getsignal(signum)")
@guards("scripts/report/staging.py",
        "deferred_signals delivers a held signal after the block",
        "        for signum in held[:1]:\n            signal.raise_signal(signum)",
        "        for signum in held[:0]:\n            signal.raise_signal(signum)")
def test_signals_wait_for_the_moves_then_arrive(ctrl_c):
    import signal
    with pytest.raises(KeyboardInterrupt):
        with staging.deferred_signals():
            signal.raise_signal(signal.SIGINT)
            moved = True  # the block runs to its end first
    assert moved


@guards("scripts/report/staging.py",
        "deferred_signals holds SIGHUP back too",
        "    for signum in STOPS:\n        if signal.getsignal(signum) is not signal.SIG_IGN:\n            handlers",
        "    for signum in (signal.SIGINT, signal.SIGTERM):\n        if signal.getsignal(signum) is not signal.SIG_IGN:"
        "\n            handlers")
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_a_termination_waits_for_the_moves_then_arrives_as_itself(signum):
    import signal

    from mnistlab.cli import Terminated, terminate
    number = getattr(signal, signum)
    previous = signal.signal(number, terminate)  # as cli.run installs it
    try:
        with pytest.raises(Terminated) as stopped:
            with staging.deferred_signals():
                signal.raise_signal(number)
                moved = True  # the block runs to its end first
        assert moved and stopped.value.signum == number
    finally:
        signal.signal(number, previous)


def test_the_parameter_counts_the_prose_quotes_are_the_models():
    lenet, mlp = MODELS["lenet5"](), MODELS["custom_mlp"]()
    convolutions = sum(p.numel() for name, p in lenet.named_parameters() if name.startswith("conv"))
    quoted = {"LeNet5's convolutions": convolutions, "its fully connected layers": count_parameters(lenet) - convolutions,
              "LeNet5": count_parameters(lenet), "the MLP's first layer": count_parameters(mlp.fc1)}
    assert not [what for what, figure in quoted.items() if f"{figure:,}" not in README]
    assert f"about {round(count_parameters(lenet), -2):,} parameters" in README


# A whole PNG of one pixel (a filter byte and RGBA), as a staged run's curves must be.
TINY_PNG = png_declaring(1, 1, zlib.compress(bytes(5)))


@pytest.fixture
def staged_report(tmp_path, monkeypatch):
    """staging.rerun pointed at tmp_path, with runner.train_and_report replaced by one that writes every job's files
    (failing the runs named in the returned set): the moves without the training."""
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(staging, "PROGRESS", {"rerun": True, "moved": False})
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: resolve_recipe(
        "lenet5", {}, epochs=1, seed=seed, limit=256, train_size=None, validation=False, amp=False))
    failing = set()

    def train_and_report(jobs, settings, measure=None, line=None):
        for job in jobs:
            for kind in runner.KINDS:
                getattr(job.paths, kind).write_bytes(TINY_PNG * (kind == "curves") + f"{job.name} {kind}".encode())
        return {name: "boom" for name in failing}
    monkeypatch.setattr(runner, "train_and_report", train_and_report)
    return failing


@pytest.fixture
def report_in(tmp_path, monkeypatch):
    """The report's documents and plots/ in tmp_path (the documents copies of the committed ones)."""
    (tmp_path / "README.md").write_bytes((ROOT / "README.md").read_bytes())
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    monkeypatch.setattr(committed, "PAGES", tmp_path)
    monkeypatch.setattr(committed, "PLOTS", tmp_path / "plots")
    return tmp_path


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


@guards("scripts/report/staging.py",
        "a failed run in the rerun: nothing moved into place",
        "    if failed:\n        raise RunFailed(f\"{len(failed)} runs failed",
        "    if False:\n        raise RunFailed(f\"{len(failed)} runs failed")
def test_a_rerun_with_a_failed_run_moves_nothing_into_place(staged_report, tmp_path):
    staged_report.add("lenet5_seed1")
    with pytest.raises(RunFailed, match=r"1 runs failed \(lenet5_seed1\); nothing committed changed"):
        staging.rerun(["LeNet5"], runner.Settings())
    assert not list((tmp_path / "results").glob("*")) and not list((tmp_path / "plots").glob("*"))
    assert not list((tmp_path / "checkpoints").glob("*.pt"))


@guards("scripts/report/staging.py",
        "a signal waits for the moves (deferred_signals around them)",
        "    with deferred_signals():\n        move_into_place(every)",
        "    with contextlib.nullcontext():\n        move_into_place(every)")
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


@guards("scripts/report/staging.py",
        "the committed folders checked before the rerun trains",
        "    files.prepare_out_dir(committed.ROOT, [path for name, _ in named",
        "    (lambda *a, **k: None)(committed.ROOT, [path for name, _ in named")
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
    monkeypatch.setattr(runner, "train_and_report", lambda *a, **k: pytest.fail("trained before checking the folders"))
    with pytest.raises(UsageError) as refused:
        staging.rerun(["LeNet5"], runner.Settings())
    # The report has no --out-dir to pass: the advice is the folder's permissions.
    assert str(refused.value).startswith(f"{tmp_path} cannot be written (Permission denied: ")
    assert str(refused.value).endswith("; fix its permissions") and "--out-dir" not in str(refused.value)


@guards("scripts/report/staging.py",
        "a staged run's refusal drops runner's advice, which names flags the report has not",
        '.split("; ")[0])',
        ")")
@guards("scripts/report/staging.py",
        "a staging folder that refuses the rerun says how to start over",
        "    except UsageError as e:\n        raise own_advice(e, f\"delete {STAGING}",
        "    except ZeroDivisionError as e:\n        raise own_advice(e, f\"delete {STAGING}")
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


@guards("scripts/report/staging.py",
        "a staging folder that cannot be written is not advised deleted",
        "    files.prepare_out_dir(STAGING, [path for staged",
        "    (lambda *a, **k: None)(STAGING, [path for staged")
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


@guards("scripts/report/staging.py",
        "the runs staged already are checked before any training",
        "    check_moves([move for name in finished for move in moves[name]])\n",
        "")
@guards("scripts/report/staging.py",
        "a staged file that is a link is refused",
        "for source, _ in moves if source.is_symlink() or not",
        "for source, _ in moves if not")
@guards("scripts/report/staging.py",
        "a staged PNG is read to its end, every chunk's checksum checked",
        "            image.verify()\n",
        "            pass\n")
@guards("scripts/report/staging.py",
        "staged curves that are not a PNG are refused",
        'source.suffix == ".png" and\n           not is_png(source)]',
        'False]')
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
    monkeypatch.setattr(runner, "train_and_report",
                        lambda *a, **k: pytest.fail("trained before checking the staged runs"))
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


@guards("scripts/report/staging.py",
        "every staged file is checked before any is moved",
        "    check_moves(every)\n",
        "")
def test_a_rerun_whose_trained_run_lacks_a_file_moves_nothing_into_place(staged_report, tmp_path, monkeypatch):
    real = runner.train_and_report

    def without_a_checkpoint(jobs, *args, **kwargs):
        failed = real(jobs, *args, **kwargs)
        jobs[1].paths.checkpoint.unlink()
        return failed
    monkeypatch.setattr(runner, "train_and_report", without_a_checkpoint)
    with pytest.raises(UsageError, match=r"lenet5_seed1\.pt is missing, so 1 staged run \(lenet5_seed1\)"):
        staging.rerun(["LeNet5"], runner.Settings())
    assert not list((tmp_path / "results").glob("*")) and not list((tmp_path / "plots").glob("*"))


@guards("scripts/report/staging.py",
        "a move that fails undoes every move made",
        "        for source, target in reversed(undo):\n            os.replace(target, source)\n",
        "")
@guards("scripts/report/staging.py",
        "each committed file is kept aside until every move is made",
        "            if target.exists():\n                backup = kept",
        "            if False:\n                backup = kept")
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
    monkeypatch.setattr(runner, "jobs_to_train", lambda named, *a, **k: ([], [name for name, _ in named]))  # all finished
    staging.rerun(["LeNet5"], runner.Settings())  # the same command, once the cause is gone
    for seed in experiments.SEEDS:
        assert (tmp_path / "results" / f"lenet5_seed{seed}.json").read_text() == f"lenet5_seed{seed} results"
    assert not (staging.STAGING / "replaced").exists()


@guards("scripts/report/staging.py",
        "a staged run another process holds is refused in the report's words",
        "    except UsageError as e:  # another process holds a run's lock",
        "    except ZeroDivisionError as e:  # another process holds a run's lock")
def test_a_staged_run_another_process_trains_is_refused_in_the_reports_words(tmp_path, monkeypatch):
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: tiny_recipe() | {"seed": seed})
    monkeypatch.setattr(runner, "train_each", lambda *a, **k: pytest.fail("trained a run another process holds"))
    staged = files.RunPaths.of(staging.STAGING, "lenet5_seed1")
    staged.lock.parent.mkdir(parents=True)
    with files.RunLock(staged), pytest.raises(UsageError) as refused:
        staging.rerun(["LeNet5"], runner.Settings())
    check_advice("scripts.report.command", str(refused.value))
    assert str(refused.value) == (f"another process is training lenet5_seed1 into {staging.STAGING} right now; wait "
                                  f"for it to end, then run this command again")


@guards("scripts/report/command.py",
        "a failed benchmark in a full rerun stops the report",
        "                raise RunFailed(\"benchmarks.bench_pipeline failed (above)",
        "                print(\"benchmarks.bench_pipeline failed (above)")
def test_a_failed_benchmark_in_a_full_rerun_stops_the_report(report_in, monkeypatch, capsys):
    monkeypatch.setattr(staging, "rerun", lambda labels, settings: None)
    monkeypatch.setattr(command.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 3))
    monkeypatch.setattr(committed, "check_all", lambda: pytest.fail("went on past a failed benchmark"))
    assert command.main(command.get_args_parser().parse_args(["--rerun"])) == 1
    assert one_line(capsys.readouterr().err) == ("report: error: benchmarks.bench_pipeline failed (above); rerun it "
                                                 "with make bench")


@guards("scripts/report/pages.py",
        "a document without a section's markers is refused",
        "        if not pattern.search(text):\n            raise UsageError(f\"{document} has no",
        "        if False:\n            raise UsageError(f\"{document} has no")
def test_a_document_without_a_sections_markers_is_refused():
    text = (ROOT / "docs" / "speed.md").read_text().replace("<!-- report:speed -->", "")
    with pytest.raises(UsageError, match="docs/speed.md has no <!-- report:speed --> section; restore it with git "
                                         "checkout -- docs/speed.md"):
        pages.render_document("docs/speed.md", text)


@guards("scripts/report/command.py",
        "nothing drawn before every section is rendered",
        "        texts = {name: pages.render_document(name, pages.read_document(name)) for name in pages.DOCUMENTS}\n"
        "        # Only now, with every file checked and all the text rendered, is anything drawn or written.\n"
        "        plots.build_figures()\n",
        "        plots.build_figures()\n"
        "        texts = {name: pages.render_document(name, pages.read_document(name)) for name in pages.DOCUMENTS}\n")
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


@guards("scripts/report/pages.py",
        "a document that cannot be read is one line",
        "    except (OSError, UnicodeDecodeError) as e:\n        raise UsageError(f\"{name} cannot be read",
        "    except UnicodeDecodeError as e:\n        raise UsageError(f\"{name} cannot be read")
def test_a_missing_document_is_one_line_that_says_how_to_restore_it(report_in, monkeypatch, capsys):
    monkeypatch.setattr(committed, "check_all", lambda: None)
    monkeypatch.setattr(plots, "build_figures", lambda: pytest.fail("drew figures for a report it cannot write"))
    (report_in / "docs" / "speed.md").unlink()
    assert command.main(command.get_args_parser().parse_args([])) == 2
    assert one_line(capsys.readouterr().err) == ("report: error: docs/speed.md cannot be read (No such file or "
                                                 "directory); restore it with git checkout -- docs/speed.md")


@guards("scripts/report/command.py",
        "each document replaced whole or not at all (atomic write)",
        "files.atomic_write(committed.PAGES / name, lambda f: f.write(text.encode()))",
        "(committed.PAGES / name).write_text(text)")
def test_a_document_is_replaced_whole_or_not_at_all(report_in, monkeypatch):
    monkeypatch.setattr(committed, "check_all", lambda: None)
    monkeypatch.setattr(plots, "build_figures", lambda: None)
    # A text that cannot be encoded fails in the middle of the write.
    monkeypatch.setattr(pages, "render_document", lambda name, text: "# a report\n" * 1000 + "\ud800")
    before = {path: path.read_bytes() for path in report_in.rglob("*") if path.is_file()}
    with pytest.raises(UnicodeEncodeError):
        command.main(command.get_args_parser().parse_args([]))
    assert {path: path.read_bytes() for path in report_in.rglob("*") if path.is_file()} == before  # no temporary file


@guards("scripts/report/command.py",
        "--rerun takes only the report's experiments",
        "metavar=\"EXPERIMENT\", choices=list(EXPERIMENTS),",
        "metavar=\"EXPERIMENT\",")
def test_an_unknown_experiment_to_rerun_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stopped:
        command.get_args_parser().parse_args(["--rerun", "LeNet6"])
    assert stopped.value.code == 2 and "--rerun: invalid choice: 'LeNet6'" in one_line(capsys.readouterr().err)


@guards("scripts/report/committed.py",
        "check_all: every tuning run a sweep scores, through its slot",
        "    check_choices()\n    for path in left_out():\n",
        "    for path in ():\n")
@pytest.mark.parametrize("name", ["tuning/lenet5_lr0.1_bs128_seed0.json",
                                  "tuning/fast/lenet5_fast_ep2_bs64_lr0.05_ls0.1_seed2.json"])
def test_check_all_holds_each_scored_tuning_run_to_its_slot(copy, name):
    # Whole in form, but another setting's run: only the sweep that scores it, against its slot, can tell.
    change(copy / name, lambda r: r["recipe"].update(lr=0.3))
    with pytest.raises(slots.BadResults, match=r"another run's recipe \(lr 0.3, not"):
        committed.check_all()


def test_what_the_reports_rerun_sends_to_rays_workers_needs_nothing_from_scripts(tmp_path, monkeypatch):
    # Ray's workers get PACKAGE, without scripts/: a measure that named a function there would fail in every task.
    from ray import cloudpickle
    monkeypatch.setattr(committed, "ROOT", tmp_path)
    monkeypatch.setattr(staging, "STAGING", tmp_path / "checkpoints" / "report")
    monkeypatch.setattr(experiments, "experiment_recipe", lambda label, seed: tiny_recipe() | {"seed": seed})
    sent = []

    def train_and_report(jobs, settings, measure, line):
        sent.extend(cloudpickle.dumps(measure(job)) for job in jobs)  # as train_on_ray sends it to each task
        return {job.name: "not trained here" for job in jobs}
    monkeypatch.setattr(runner, "train_and_report", train_and_report)
    with pytest.raises(RunFailed):
        staging.rerun(["LeNet5"], runner.Settings(jobs=2))
    assert len(sent) == len(experiments.SEEDS) and not any(b"scripts" in pickled for pickled in sent)


@guards("scripts/report/committed.py",
        "text with markup passes only as the path of a file of the repository's",
        "            and (files.ROOT / value).is_file())",
        "            )")
@guards("mnistlab/slots.py",
        "plain text has no emoji codes",
        r"(?!.*:[\w+-]+:)",
        "")
@guards("scripts/report/committed.py",
        "a benchmark file's text is plain and its figures are figures",
        "                for bench in benches.values():\n                    check_plain(bench)\n",
        "")
@guards("scripts/report/committed.py",
        "a benchmark file's figures are numbers from 0 to MAX_FIGURE, never true or false",
        "    elif type(value) not in (int, float) or not 0 <= value <= MAX_FIGURE:",
        "    elif value != value:")
@guards("scripts/report/committed.py",
        "a damaged benchmark file is one line naming it (the exceptions caught)",
        "except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as e:",
        "except (KeyError, TypeError) as e:")
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


@guards("mnistlab/files.py",
        "read_json takes JSON nested too deep as unreadable, not a RecursionError",
        "    except (OSError, ValueError, RecursionError):",
        "    except (OSError, ValueError):")
@guards("scripts/report/committed.py",
        "a missing or non-object benchmark file is one line",
        "                if not isinstance(bench, dict):\n",
        "                if bench is None:\n")
@pytest.mark.parametrize("content", [None, "not json", "[1, 2]", "[" * 100_000 + "]" * 100_000])
def test_a_missing_or_unreadable_benchmark_file_stops_the_report_in_one_line(content, monkeypatch, tmp_path):
    if content is not None:
        (tmp_path / "bench_pipeline.json").write_text(content)
    monkeypatch.setattr(committed, "RESULTS", tmp_path)
    with pytest.raises(UsageError) as stopped:
        appendices.section_speed()
    assert str(stopped.value) == (f"{tmp_path}/bench_pipeline.json is missing or not JSON; rebuild it with "
                                  f"`make bench`, or restore it with `git checkout results/bench_pipeline.json`")


@guards("scripts/report/committed.py",
        "a recipe other than recipes.py's names recipes.py",
        "        if not e.problem.startswith(\"holds another run's recipe (\"):",
        "        if True:")
def test_an_edit_to_recipes_py_is_named_as_the_cause_and_undoing_it_is_the_way_on(copy, monkeypatch):
    from mnistlab import recipes
    monkeypatch.setitem(recipes.RECIPES["lenet5"], "lr", 0.05)  # an edit to recipes.py
    message = refused(copy, monkeypatch, copy / "lenet5_seed0.json", "another run's recipe (lr 0.1, not 0.05)")
    assert message.endswith("; where mnistlab/recipes.py was edited, undo that (`git checkout -- mnistlab/recipes.py`) "
                             f"or rerun every run with `make report`; else restore the file with `git checkout -- "
                             f"{copy / 'lenet5_seed0.json'}`\n")
    monkeypatch.setitem(recipes.RECIPES["lenet5"], "lr", 0.1)  # undone, as advised
    committed.load.cache_clear()
    committed.check_all()


@guards("scripts/report/committed.py",
        "check_all: every experiment's runs",
        "    for label in EXPERIMENTS:\n        load(label)\n    check_choices()\n",
        "    check_choices()\n")
@pytest.mark.parametrize("name", ["custom_mlp_noaug_n30000_seed2.json",
                                  "tuning/custom_mlp_h78_lr0.1_wd0.001_aug1_seed1.json",
                                  "tuning/fast/lenet5_fast_ep2_bs64_lr0.05_ls0.1_seed2.json"])
def test_every_file_the_report_uses_is_checked_before_any_section(copy, name):
    change(copy / name, lambda r: r["history"][-1].update(seconds=-1))
    with pytest.raises(slots.BadResults, match="negative or past belief"):
        committed.check_all()


@guards("scripts/report/committed.py",
        "only the runs a sweep scores are read and counted",
        "    return [tune.read_run(path) for path in sorted(seen)]",
        "    return [tune.read_run(path) for path in sorted((tune.FAST_DIR if fast else tune.TUNING_DIR)"
        '.glob("*.json"))]')
@guards("scripts/report/committed.py",
        "a left-out tuning file's name is shown on one line",
        "leaves out {paths.printable(path)}:",
        "leaves out {path}:")
@guards("scripts/report/committed.py",
        "check_all: the tuning files no sweep scores are named",
        "    for path in left_out():\n",
        "    for path in []:\n")
def test_a_tuning_file_no_sweep_scores_is_named_and_neither_read_nor_counted(copy, capsys):
    # A whole run under a name outside the search space (a copy, another space's run) and a damaged stray file: the
    # README is the committed one, so its count and minutes of tuning runs are those of the sweep's own files.
    readme = (copy.parent / "README.md").read_bytes()
    strays = [copy / "tuning" / "lenet5_lr0.3_bs128_seed0.json", copy / "tuning" / "fast" / "notes.json",
              copy / "tuning" / "two\nlines.json"]
    shutil.copy(copy / "tuning" / LENET5_RUN, strays[0])
    strays[1].write_text("not a run")
    strays[2].write_text("{}")
    assert command.main(command.get_args_parser().parse_args([])) == 0
    assert (copy.parent / "README.md").read_bytes() == readme
    lines = capsys.readouterr().out.splitlines()
    for path in strays:  # each on one line, a newline in its name shown as \n
        escaped = str(path).replace("\n", "\\n")
        assert (f"report: leaves out {escaped}: no sweep of scripts/tune.py scores it (move it away to quiet this "
                f"line)") in lines


@guards("scripts/report/committed.py",
        "the fast sweep's choice is recipes.py's fast recipe",
        "    check_choice(fast_sweep()[0],",
        "    (fast_sweep()[0],")
@guards("scripts/report/command.py",
        "make readme checks every file, and the sweeps' choices, before it renders anything",
        "        committed.check_all()  # slots.BadResults is a UsageError: one line, exit 2\n",
        "")
@guards("scripts/report/committed.py",
        "check_all: the sweeps' choices against recipes.py",
        "        load(label)\n    check_choices()\n",
        "        load(label)\n")
def test_a_believable_score_that_chooses_another_fast_recipe_than_recipes_py_is_refused(copy, monkeypatch, capsys):
    # Within the percentages every slot allows, three 1-epoch runs at 99.5% make the sweep choose one epoch, while
    # recipes.py's fast recipe, which the README describes, trains two.
    for seed in tune.FAST_TUNING_SEEDS:
        change(copy / "tuning" / "fast" / f"lenet5_fast_ep1_bs128_lr0.1_ls0.1_seed{seed}.json",
               lambda r: r["history"][-1].update(eval_acc=99.5))
    readme = (copy.parent / "README.md").read_bytes()
    assert command.main(command.get_args_parser().parse_args([])) == 2
    fast = copy / "tuning" / "fast"
    assert capsys.readouterr().err == (
        f"report: error: the sweep in {fast} chooses epochs 1, but mnistlab/recipes.py's NAMED_RECIPES[\"fast\"][\"lenet5\"] "
        f"has epochs 2; restore the committed sweep with `git checkout -- {fast}`, or, to adopt its choice, copy it "
        f"into mnistlab/recipes.py and rebuild the report with `make report`\n")
    assert (copy.parent / "README.md").read_bytes() == readme and not list((copy.parent / "plots").iterdir())


@guards("scripts/report/committed.py",
        "the default sweeps' advice restores their files, not the fast sweep's too",
        "{folder / files_there if files_there else folder}",
        "{folder}")
@guards("scripts/report/committed.py",
        "each default sweep's choice is recipes.py's recipe",
        "        check_choice(chosen, RECIPES[model], f'RECIPES[\"{model}\"]', tune.TUNING_DIR, \"*.json\")",
        "        pass")
def test_a_default_recipe_other_than_the_sweeps_choice_is_refused(copy, monkeypatch):
    # (the report's own runs would be refused too, as runs of another recipe: check_choices alone is tried here)
    monkeypatch.setitem(recipes.RECIPES, "custom_mlp", {**recipes.RECIPES["custom_mlp"], "hidden": [72, 64]})
    with pytest.raises(UsageError, match=r'chooses hidden 75-32, but mnistlab/recipes.py\'s RECIPES\["custom_mlp"\] has '
                                         r"hidden 72-64; restore the committed sweep with `git checkout -- .*tuning/\*\.json`"):
        committed.check_choices()
