"""The house rules, read from the tree: at the root, the programs and the design card's model.py and dataset.py; the
programs import the package; the package, scripts/ and benchmarks/ import no program; model.py and dataset.py need
nothing of the package but its errors and files; no test module imports another."""
import ast

from helpers import ROOT
from mnistlab import runner

PACKAGE = "mnistlab"
DESIGN_CARD = {"model", "dataset"}  # the assignment's two modules, at the root where its card puts them
PROGRAMS = {path.stem for path in ROOT.glob("*.py")} - DESIGN_CARD


def imported_modules(source):
    """The dotted name of every module a Python source imports, wherever the import stands: `from a import b` gives
    a.b and a, since b may be a module of a."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def imports(path):
    return set(imported_modules(path.read_text()))


def test_the_check_sees_every_kind_of_import():
    found = set(imported_modules("import main\nfrom predict import read\ndef f():\n    from mnistlab import runs\n"))
    assert {"main", "predict", "mnistlab", "mnistlab.runs"} <= found


def test_the_root_holds_the_programs_and_the_design_cards_modules_only():
    assert PROGRAMS == {"main", "predict", "demo", "sweep"}
    for program in PROGRAMS:
        assert any(name.startswith(f"{PACKAGE}.") for name in imports(ROOT / f"{program}.py")), program


def test_no_module_of_the_package_scripts_or_benchmarks_imports_a_program():
    offenders = [f"{path.relative_to(ROOT)} imports {name}"
                 for folder in (PACKAGE, "scripts", "benchmarks") for path in sorted((ROOT / folder).rglob("*.py"))
                 for name in imports(path) if name.split(".")[0] in PROGRAMS]
    assert not offenders, offenders


def test_model_and_dataset_take_only_errors_and_files_from_the_package():
    for module in DESIGN_CARD:
        taken = {".".join(name.split(".")[:2]) for name in imports(ROOT / f"{module}.py") if name.startswith(PACKAGE)}
        assert taken <= {PACKAGE, f"{PACKAGE}.errors", f"{PACKAGE}.files"}, (module, taken)
        assert not imports(ROOT / f"{module}.py") & PROGRAMS


def test_the_package_is_one_level_of_modules():
    assert not [path for path in (ROOT / PACKAGE).iterdir() if path.is_dir() and path.name != "__pycache__"]


def test_no_test_module_imports_another():
    tests = {path.stem for path in (ROOT / "tests").glob("test_*.py")}
    # tests.X is X a second time: a module imported twice over, its declarations and fixtures apart from pytest's.
    offenders = [f"{path.name} imports {name}" for path in (ROOT / "tests").glob("*.py")
                 for name in imports(path) if name.split(".")[0] in tests | {"conftest", "tests"}]
    assert not offenders, offenders


def test_what_ray_ships_to_workers_is_the_package_and_the_data_not_the_programs_or_scripts():
    shipped = {path.relative_to(ROOT).as_posix() for pattern in runner.PACKAGE for path in ROOT.glob(pattern)}
    assert f"{PACKAGE}/measurements.py" in shipped and "model.py" in shipped and "dataset.py" in shipped
    assert not {f"{program}.py" for program in PROGRAMS} & shipped
    offenders = [f"{name} imports {module}" for name in shipped if name.endswith(".py")
                 for module in imports(ROOT / name) if module.split(".")[0] in {"scripts", "benchmarks", *PROGRAMS}]
    assert not offenders, offenders
