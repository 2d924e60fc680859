import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import dataset
import engine
import files
import measurements
from model import MODELS, count_parameters
from recipes import resolve_recipe
from scripts.report import command, committed, experiments, pages, staging

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = {name: (ROOT / name).read_text() for name in pages.DOCUMENTS}
README = DOCUMENTS["README.md"]


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


def anchor(heading):
    """GitHub's anchor for a heading: lower case, punctuation but - and _ dropped, spaces as -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


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
    _, truth = committed.test_split()
    runs = [json.loads(path.read_text()) for path in sorted(committed.RESULTS.glob("*_seed*.json"))]
    tested = [run for run in runs if run["evaluated_on"] == "test"]
    assert len(tested) >= 3 * 8
    for run in tested:
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


def synthetic(n=300, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 1, 28, 28, generator=generator)
    return images, (images.flatten(1) @ torch.randn(28 * 28, 10, generator=generator)).argmax(1)


def recipe_for(model="custom_mlp"):
    return resolve_recipe(model, {}, seed=0, limit=None, train_size=None, validation=False, amp=False)


def test_robustness_without_a_shift_or_rotation_is_the_plain_accuracy():
    images, labels = synthetic()
    model = engine.build_model(recipe_for(), "cpu").eval()
    plain = engine.evaluate(model, dataset.TensorLoader(images, labels, 128)).acc
    sweep = measurements.robustness(model, images, labels, batch_size=128)
    assert sweep["shift"][0] == sweep["rotation"][0] == plain
    assert list(sweep["shift"]) == list(measurements.SHIFTS)
    assert list(sweep["rotation"]) == list(measurements.ROTATIONS)
    # Independently: a 2-pixel shift is the mean of four exact shifts done here with torch.roll on padded images.
    padded = F.pad(images, (2, 2, 2, 2), value=dataset.BACKGROUND)
    accs = []
    for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
        moved = torch.roll(padded, shifts=(2 * sy, 2 * sx), dims=(2, 3))[..., 2:30, 2:30]
        accs.append(engine.evaluate(model, dataset.TensorLoader(moved, labels, 128)).acc)
    assert sweep["shift"][2] == pytest.approx(sum(accs) / 4)


def test_a_rerun_changes_nothing_committed_until_every_run_is_whole_and_resumes_where_it_stopped(tmp_path,
                                                                                                  monkeypatch):
    import runner
    from errors import Interrupted
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


def test_an_unwritable_plots_folder_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    import errno
    import files
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


def test_signals_wait_for_the_moves_then_arrive(ctrl_c):
    import signal
    with pytest.raises(KeyboardInterrupt):
        with staging.deferred_signals():
            signal.raise_signal(signal.SIGINT)
            moved = True  # the block runs to its end first
    assert moved


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_a_termination_waits_for_the_moves_then_arrives_as_itself(signum):
    import signal

    from cli import Terminated, terminate
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
