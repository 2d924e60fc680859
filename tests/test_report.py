import json
import re
from pathlib import Path

import pytest
import torch

from scripts import report

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", report.SECTIONS)
def test_generated_section_agrees_with_the_results(name):
    written = report.readme_sections(README)[name]
    assert written is not None, f"README.md has no <!-- report:{name} --> section"
    assert written == report.SECTIONS[name](), f"README section {name!r} disagrees with results/; run `make readme`"


def test_every_linked_image_exists():
    links = set(re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", README))
    figures = {"comparison_3seeds", "ablation", "confusion_matrix", "misclassified",
               *(f"{model}_seed0_curves" for model in ("lenet5", "custom_mlp", "lenet5_regularized"))}
    assert links >= {f"plots/{figure}.png" for figure in figures}
    assert not [link for link in links if not (ROOT / link).is_file()]


def test_stored_predictions_give_the_reported_final_accuracy():
    _, truth = report.test_split()
    runs = [json.loads(path.read_text()) for path in sorted(report.RESULTS.glob("*_seed*.json"))]
    tested = [run for run in runs if run["evaluated_on"] == "test"]
    assert len(tested) >= 3 * 8
    for run in tested:
        predicted = torch.tensor([int(c) for c in run["predictions"]])
        accuracy = 100.0 * (predicted == truth).double().mean().item()
        assert accuracy == pytest.approx(run["history"][-1]["eval_acc"], abs=1e-9), run["recipe"]


def test_the_readme_stands_on_its_own():
    assert "../shared" not in README


def test_no_shift_and_no_rotation_give_each_runs_final_test_accuracy():
    runs = [json.loads(path.read_text()) for path in sorted(report.RESULTS.glob("*_seed*.json"))]
    swept = [run for run in runs if "robustness" in run]
    assert len(swept) >= 3 * 8
    for run in swept:
        final = run["history"][-1]["eval_acc"]
        assert run["robustness"]["shift"]["0"] == run["robustness"]["rotation"]["0"] == final, run["recipe"]
        shifts = list(run["robustness"]["shift"].values())
        assert shifts[6] < shifts[1] <= 100
