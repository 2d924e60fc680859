"""Every defence, and the test that notices it going.

Each entry below is a refusal, cap, timeout or check, written as the code that holds it (`old`) and the same code
with the defence deleted or loosened (`new`). `python tests/mutants.py` (or `make defences`) makes each change in
turn, in a scratch copy of the repository, runs the entry's test there, and reports the test red (it noticed), green
(a defence no test guards) or broken (the change did not run at all: a bad entry). The working tree is never touched.
tests/test_mutants.py checks, in the ordinary suite, that each `old` still reads as listed, so the table cannot rot.

    python tests/mutants.py                 # all of them, ~15 min on 2 CPU cores
    python tests/mutants.py --only demo.py  # the entries whose file, defence or test contains this text
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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
            "            if not is_plain_text(results.get(key)):", "            if not isinstance(results.get(key), str):",
            "tests/test_slots.py::test_text_the_readme_quotes_from_a_run_is_plain"),
    Defence("scripts/report.py", "a benchmark file's text is plain and its numbers finite",
            "                for bench in benches.values():\n                    check_plain(bench)\n", "",
            "tests/test_scripts.py::test_a_damaged_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "a benchmark file's numbers are finite",
            "    elif isinstance(value, float) and not math.isfinite(value):", "    elif False:",
            "tests/test_scripts.py::test_a_damaged_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "the fast sweep's choice is recipes.py's fast recipe",
            "    check_choice(fast_sweep()[0],", "    (fast_sweep()[0],",
            "tests/test_slots.py::test_a_believable_score_that_chooses_another_fast_recipe_than_recipes_py_is_refused"),
    Defence("scripts/report.py", "each default sweep's choice is recipes.py's recipe",
            '        check_choice(chosen, RECIPES[model], f\'RECIPES["{model}"]\', "make tune")',
            "        pass",
            "tests/test_slots.py::test_a_default_recipe_other_than_the_sweeps_choice_is_refused"),
    Defence("scripts/report.py", "only the runs a sweep scores are read and counted",
            "    return [tune.read_run(path) for path in sorted(seen)]",
            "    return [tune.read_run(path) for path in sorted((tune.FAST_DIR if fast else tune.TUNING_DIR)"
            '.glob("*.json"))]',
            "tests/test_slots.py::test_a_tuning_file_no_sweep_scores_is_named_and_neither_read_nor_counted"),
    Defence("runs.py", "--overwrite never strips the report's measurements from a results file",
            "        if overwrite and extra:", "        if False:",
            "tests/test_reliability.py::test_a_rerun_never_strips_a_finished_runs_results"),
    Defence("runs.py", "no --overwrite advice where it would strip measurements",
            '        replace = "" if extra else ", or --overwrite to replace it"',
            '        replace = ", or --overwrite to replace it"',
            "tests/test_reliability.py::test_a_rerun_never_strips_a_finished_runs_results"),
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
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None, []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def verdict(status):
    # pytest exits 1 when a test failed; 2, 4 and 5 mean it never got to judge (an import broke, no such test).
    return {1: "red", 0: "GREEN", None: "HUNG"}.get(status, "BROKEN")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="only the entries whose file, defence or test contains this text "
                                                   "(default: every entry)")
    args = parser.parse_args()
    chosen = [d for d in DEFENCES if args.only in f"{d.file} {d.what} {d.test}"]
    if not chosen:
        sys.exit(f"mutants.py: no entry matches --only {args.only!r}")
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
        repo = Path(scratch)
        scratch_copy(repo)
        status, tail = pytest(repo, sorted({d.test for d in chosen}))
        if status != 0:
            sys.exit("mutants.py: the tests fail with every defence in place; fix that first:\n" + "\n".join(tail))
        print("| file | defence | test | without it |\n|---|---|---|---|", flush=True)
        failures = 0
        for d in chosen:
            path = repo / d.file
            source = path.read_text()
            if source.count(d.old) != 1:
                outcome, seconds = "BROKEN (code not found once)", 0.0
            else:
                started = time.monotonic()
                path.write_text(source.replace(d.old, d.new))
                try:
                    status, tail = pytest(repo, [d.test])
                finally:
                    path.write_text(source)
                outcome, seconds = verdict(status), time.monotonic() - started
            failures += outcome != "red"
            print(f"| {d.file} | {d.what} | `{d.test.split('::', 1)[1]}` | {outcome} ({seconds:.0f} s) |", flush=True)
    print(f"\n{len(chosen) - failures} of {len(chosen)} defences are guarded by a test that fails without them")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
