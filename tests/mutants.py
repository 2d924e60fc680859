"""Every defence, and the test that notices it going.

Each entry below is a refusal, cap, timeout or check, written as the code that holds it (`old`) and the same code
with the defence deleted or loosened (`new`). `make defences` makes each change in turn, in a scratch copy of the
repository, runs the entry's test there, and reports the test red (it noticed), GREEN (a defence no test guards),
HUNG, or BROKEN (the change did not run at all: a bad entry). The working tree is never touched. The table goes to
results/defences.json, from which the README states how many defences are guarded. tests/test_mutants.py checks,
in the ordinary suite, that each `old` still reads as listed and that results/defences.json is this table's.

    python -m tests.mutants                 # every entry, into results/defences.json (make defences)
    python -m tests.mutants --only demo.py  # the entries whose file, defence or test holds this text, into runs/
"""
if __name__ == "__main__" and not __package__:  # `python tests/mutants.py`: the package's modules would not import
    raise SystemExit("mutants: run it from the repository's root as python -m tests.mutants (or make defences)")

import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import files
from cli import OneLineErrorParser, emit, run
from errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds a test may take with its defence gone; a test that hangs instead of failing is reported


@dataclass(frozen=True)
class Defence:
    file: str  # relative to the repository root
    what: str  # the defence, in words
    old: str  # its code, exactly once in file
    new: str  # that code without the defence
    test: str  # the pytest node that must fail without it


# What the report quotes and counts, and what --overwrite may replace (issue 26's last three cases).
QUOTED = [
    Defence("slots.py", "a report run's parameter count is the model's, counted afresh",
            'if results.get("params") != params or type(results.get("params")) is not int:',
            'if type(results.get("params")) is not int:',
            "tests/test_slots.py::test_the_parameter_count_is_counted_not_taken_from_the_file"),
    Defence("slots.py", "a report run's device, device name and torch version are plain text",
            "            if not is_plain_text(results.get(key)):",
            "            if not isinstance(results.get(key), str):",
            "tests/test_slots.py::test_text_the_readme_quotes_from_a_run_is_plain"),
    Defence("slots.py", "plain text has no double underscores (bold) and no emoji codes",
            r"(?!.*__)(?!.*:[\w+-]+:)", "",
            "tests/test_slots.py::test_text_the_readme_quotes_from_a_run_is_plain"),
    Defence("slots.py", "plain text is 1 to 200 characters", "]{1,200}\")", "]{0,2000}\")",
            "tests/test_slots.py::test_text_the_readme_quotes_from_a_run_is_plain"),
    Defence("slots.py", "a results file nested too deep is one line, not a RecursionError",
            "    except RecursionError:\n        raise BadResults(path, \"is not a run's results (JSON nested too deep "
            "to read)\", advice) from None\n", "",
            "tests/test_slots.py::test_a_missing_or_unreadable_results_file_is_one_line"),
    Defence("files.py", "read_json takes JSON nested too deep as unreadable, not a RecursionError",
            "    except (OSError, ValueError, RecursionError):", "    except (OSError, ValueError):",
            "tests/test_scripts.py::test_a_missing_or_unreadable_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "a benchmark file's text is plain and its figures are figures",
            "                for bench in benches.values():\n                    check_plain(bench)\n", "",
            "tests/test_scripts.py::test_a_damaged_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "a benchmark file's figures are numbers from 0 to MAX_FIGURE, never true or false",
            "    elif type(value) not in (int, float) or not 0 <= value <= MAX_FIGURE:", "    elif value != value:",
            "tests/test_scripts.py::test_a_damaged_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "the README states a whole table of defences, not an --only run's",
            '    if table["complete"] is not True:', "    if False:",
            "tests/test_scripts.py::test_a_damaged_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "the fast sweep's choice is recipes.py's fast recipe",
            "    check_choice(fast_sweep()[0],", "    (fast_sweep()[0],",
            "tests/test_slots.py::test_a_believable_score_that_chooses_another_fast_recipe_than_recipes_py_is_refused"),
    Defence("scripts/report.py", "each default sweep's choice is recipes.py's recipe",
            "        check_choice(chosen, RECIPES[model], f'RECIPES[\"{model}\"]', tune.TUNING_DIR)", "        pass",
            "tests/test_slots.py::test_a_default_recipe_other_than_the_sweeps_choice_is_refused"),
    Defence("scripts/report.py", "only the runs a sweep scores are read and counted",
            "    return [tune.read_run(path) for path in sorted(seen)]",
            "    return [tune.read_run(path) for path in sorted((tune.FAST_DIR if fast else tune.TUNING_DIR)"
            '.glob("*.json"))]',
            "tests/test_slots.py::test_a_tuning_file_no_sweep_scores_is_named_and_neither_read_nor_counted"),
    Defence("scripts/report.py", "a left-out tuning file's name is shown on one line",
            "leaves out {paths.shown(path)}:", "leaves out {path}:",
            "tests/test_slots.py::test_a_tuning_file_no_sweep_scores_is_named_and_neither_read_nor_counted"),
    Defence("runs.py", "no plan trains over the report's measurements, --overwrite or not",
            '    if extra and plan.action != "done":', "    if False:",
            "tests/test_reliability.py::test_a_rerun_never_strips_a_finished_runs_results"),
    Defence("runs.py", "no --overwrite advice where it would strip measurements",
            'replace="" if extra else\n                 ", or --overwrite to replace it")',
            'replace=", or --overwrite to replace it")',
            "tests/test_reliability.py::test_a_rerun_never_strips_a_finished_runs_results"),
    Defence("runs.py", "a finished run whose checkpoint is gone is skipped by --resume and sweeps, not trained afresh",
            '        if not isinstance(saved, dict):\n            return Plan("fresh")\n        changed = '
            'differing(saved, recipe)  # finished',
            '        if True:\n            return Plan("fresh")\n        changed = '
            'differing(saved, recipe)  # finished',
            "tests/test_reliability.py::test_model_all_resume_skips_a_finished_run_whose_checkpoint_is_gone"),
    Defence("runs.py", "such a run with other settings is refused, not skipped as if it were this one",
            '        if changed:\n            raise UsageError(f"{paths.results} holds a finished run with',
            '        if False:\n            raise UsageError(f"{paths.results} holds a finished run with',
            "tests/test_reliability.py::test_model_all_resume_with_other_settings_never_trains_over_a_finished_run"),
]

# The demo, the images it reads and the predictions: demo.py, images.py, preprocess.py, predict.py, paths.py.
SERVING = [
    Defence("demo.py", "two Content-Length headers refused",
            "if len(lengths) > 1 or not (lengths[0]", "if not (lengths[0]",
            "tests/test_defences.py::test_two_content_length_headers_are_refused"),
    Defence("demo.py", "a body over MAX_BYTES refused (413)",
            "            if length > MAX_BYTES:\n", "            if length > 8 * MAX_BYTES:\n",
            "tests/test_demo.py::test_bad_input_gets_a_4xx_and_the_server_stays_up"),
]

# Training, checkpoints and result files: runs.py, files.py, checkpoints.py, main.py, cli.py, slots.py,
# significance.py.
RUNS = [
]

# The tools behind the report and many runs at once: scripts/, benchmarks/, sweep.py, runner.py.
TOOLS = [
]

DEFENCES = QUOTED + SERVING + RUNS + TOOLS


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name]


def scratch_copy(into):
    """The repository's files as they are in the working tree (ignored ones aside), and the extracted MNIST."""
    for name in tracked_files():
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    if (ROOT / "data" / "MNIST").is_dir():
        os.symlink(ROOT / "data" / "MNIST", into / "data" / "MNIST")


def pytest(repo, nodes):
    """(exit status of pytest running nodes in repo, its last lines); status None where it ran past TIMEOUT."""
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *nodes],
                               cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               # No bytecode: a mutant and its undoing can share a size and a second of mtime.
                               env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                               start_new_session=True)  # its own group, so that a hung test's children go with it
    try:
        out, _ = process.communicate(timeout=TIMEOUT)
        return process.returncode, out.strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        return None, []
    finally:
        if process.poll() is None:  # past TIMEOUT, or Ctrl-C here: the test and what it started go
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def verdict(status):
    # pytest exits 1 when a test failed; 2, 4 and 5 mean it never got to judge (an import broke, no such test).
    return {1: "red", 0: "GREEN", None: "HUNG"}.get(status, "BROKEN")


def try_each(chosen, repo):
    """Each chosen defence with its outcome and the seconds it took, as a row of the table."""
    for d in chosen:
        path = repo / d.file
        source = path.read_text()
        started = time.monotonic()
        if source.count(d.old) != 1:
            outcome = "BROKEN"
        else:
            path.write_text(source.replace(d.old, d.new))
            try:
                outcome = verdict(pytest(repo, [d.test])[0])
            finally:
                path.write_text(source)
        yield {"file": d.file, "defence": d.what, "test": d.test, "outcome": outcome,
               "seconds": round(time.monotonic() - started, 1)}


def get_args_parser():
    parser = OneLineErrorParser(prog="mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="only the entries whose file, defence or test holds this text; "
                                                   "default: every entry")
    parser.add_argument("--out", type=Path, help="where the table goes, as JSON; default: results/defences.json for "
                                                 "every entry, runs/defences.json for some")
    return parser


def main(args):
    def body():
        chosen = [d for d in DEFENCES if args.only in f"{d.file} {d.what} {d.test}"]
        if not chosen:
            raise UsageError(f"no entry's file, defence or test holds --only {args.only!r}; see tests/mutants.py")
        out = files.bench_output(args.out, "defences.json", quick=len(chosen) < len(DEFENCES))
        with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
            repo = Path(scratch)
            scratch_copy(repo)
            status, tail = pytest(repo, sorted({d.test for d in chosen}))
            if status != 0:
                raise UsageError("the tests fail with every defence in place; fix that first: " + " / ".join(tail))
            emit("| file | defence | test | without it |\n|---|---|---|---|")
            rows = []
            for row in try_each(chosen, repo):
                rows.append(row)
                emit(f"| {row['file']} | {row['defence']} | `{row['test'].split('::', 1)[1]}` | {row['outcome']} "
                     f"({row['seconds']:.0f} s) |")
        red = sum(row["outcome"] == "red" for row in rows)
        files.write_json(out, {"red": red, "entries": len(rows), "complete": len(rows) == len(DEFENCES),
                               "python": platform.python_version(), "defences": rows})
        emit(f"{red} of {len(rows)} defences are guarded by a test that fails without them; wrote {out}")
        return 0 if red == len(rows) else 1
    return run("mutants", body, interrupted="mutants: interrupted; nothing written, the working tree untouched")


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
