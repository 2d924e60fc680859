"""The house rules that keep the package readable: no module imports an entry point."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The programs people run. Their own tests may import them; nothing else may, so that each stays thin and a
# library module never drags a command line along.
ENTRY_POINTS = {"main", "predict", "demo", "sweep"}
OWN_TESTS = {"tests/conftest.py", "tests/test_main.py", "tests/test_predict.py", "tests/test_demo.py",
             "tests/test_checkpoints.py", "tests/test_reliability.py", "tests/test_sweep.py",
             "tests/test_defences.py", "tests/test_defences_runs.py", "tests/test_defences_tools.py"}


def imported_modules(source):
    """The top-level names of every module a Python source imports, wherever the import stands."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_no_module_imports_an_entry_point():
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith((".venv/", "runs/")) or relative in OWN_TESTS:
            continue
        own = path.stem if path.parent == ROOT else None
        offenders += [f"{relative} imports {name}" for name in set(imported_modules(path.read_text()))
                      if name in ENTRY_POINTS and name != own]
    assert not offenders, offenders


def test_the_check_sees_every_kind_of_import():
    found = set(imported_modules("import main\nfrom predict import read\ndef f():\n    import demo.x\n"))
    assert {"main", "predict", "demo"} <= found


def test_no_module_rays_workers_get_imports_from_scripts():
    # runner.PACKAGE ships the root modules, not scripts/, to Ray's workers: measurements.py, which a report run's
    # task calls, or any module it imports would fail there on an import from scripts/.
    import runner
    shipped = sorted(path for pattern in runner.PACKAGE if pattern.endswith(".py") for path in ROOT.glob(pattern))
    assert "measurements.py" in {path.name for path in shipped}
    offenders = [f"{path.name} imports scripts" for path in shipped
                 if "scripts" in set(imported_modules(path.read_text()))]
    assert not offenders, offenders
