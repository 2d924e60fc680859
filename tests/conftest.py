import subprocess
import sys
from pathlib import Path

import pytest

import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--limit", "512", "--epochs", "2", "--device", "cpu"]


@pytest.fixture
def cli(capsys):
    """Run main.py in-process: cli(argv) returns (exit status, stdout, stderr)."""
    def run(argv):
        try:
            status = main.main(main.get_args_parser().parse_args([str(a) for a in argv]))
        except SystemExit as e:
            status = e.code
        out, err = capsys.readouterr()
        return status, out, err
    return run


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def without_seconds(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def start(script, *argv, **kwargs):
    """script (main.py, predict.py, ...) as a child process, with pipes for its output."""
    return subprocess.Popen([sys.executable, str(ROOT / script), *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


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
