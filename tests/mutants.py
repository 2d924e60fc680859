"""Every defence, and the test that notices it going.

Each test module declares, above a test, the defences that the test guards (helpers.guards): a refusal, cap, timeout
or check, written as the code that holds it (`old`) and the same code with the defence deleted or loosened (`new`).
`make defences` makes each change in turn, in a scratch copy of the repository, runs that test there, and reports
it red (it noticed), GREEN (a defence no test guards), HUNG, or BROKEN (the change did not run at all: a bad
entry). The working tree is never touched. The table goes to results/defences.json, from which docs/defences.md
states how many defences are guarded. tests/test_mutants.py checks, in the ordinary suite, that each `old` still
reads as declared and that results/defences.json is the table of these declarations, all red.

    python -m tests.mutants --jobs 2        # every entry, two at once, into results/defences.json (make defences)
    python -m tests.mutants --only demo.py  # the entries whose file, defence or test holds this text, into runs/
    python -m tests.mutants --only demo.py --update  # those entries' rows put into results/defences.json
"""
if __name__ == "__main__" and not __package__:  # `python tests/mutants.py`: the package's modules would not import
    raise SystemExit("mutants: run it from the repository's root as python -m tests.mutants (or make defences)")

import hashlib
import importlib
import inspect
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks import output
from mnistlab import files
from mnistlab.cli import OneLineErrorParser, count, emit, run
from mnistlab.errors import UsageError
from mnistlab.ray_local import reap

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
TIMEOUT = 300  # seconds a test may take with its defence gone; a test that hangs instead of failing is reported


def declared():
    """Every defence that the test modules declare, in the order of their files and lines."""
    sys.path.insert(0, str(TESTS))  # as pytest imports them: helpers and each test module by their own names
    for path in sorted(TESTS.glob("test_*.py")):
        importlib.import_module(path.stem)
    import helpers
    return sorted(helpers.DEFENCES, key=lambda d: d.order)


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


# The pytest processes under way, so that Ctrl-C stops them too, and not only the one this thread waits for.
RUNNING = set()


def pytest(repo, nodes, workers=0, timeout=TIMEOUT):
    """(exit status of pytest running nodes in repo on workers processes (0: its own), its last lines); status None
    where it ran past timeout seconds."""
    # The tests' temporary folders beside the scratch copy, removed with it, even where a test is killed.
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-n", str(workers), "-p",
                                "no:cacheprovider", f"--basetemp={repo}-tmp", *nodes],
                               cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               # No bytecode: a mutant and its undoing can share a size and a second of mtime.
                               env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                               start_new_session=True)  # its own group, so that a hung test's children go with it
    RUNNING.add(process)
    try:
        out, _ = process.communicate(timeout=timeout)
        return process.returncode, out.strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        return None, []
    finally:
        stop(process)
        process.communicate()
        RUNNING.discard(process)


def stop(process):
    """SIGKILL a pytest that is still running (past TIMEOUT, or Ctrl-C here), and what it started."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def verdict(status):
    # pytest exits 1 when a test failed; 2, 4 and 5 mean it never got to judge (an import broke, no such test).
    return {1: "red", 0: "GREEN", None: "HUNG"}.get(status, "BROKEN")


def try_one(defence, repos):
    """The defence's row of the table: its outcome and the seconds it took, in a scratch copy taken from repos
    for the while."""
    repo = repos.get()
    path = repo / defence.file
    source = path.read_text()
    started = time.monotonic()
    try:
        if source.count(defence.old) != 1:
            outcome = "BROKEN"
        else:
            path.write_text(source.replace(defence.old, defence.new))
            outcome = verdict(pytest(repo, [defence.test])[0])
    finally:
        path.write_text(source)
        repos.put(repo)
    test, _, case = defence.test.partition("[")  # a parametrised test's one case, named apart: plain text
    return {"file": defence.file, "defence": defence.what, "test": test, **({"case": case[:-1]} if case else {}),
            "code": code(defence), "outcome": outcome, "seconds": round(time.monotonic() - started, 1)}


def code(defence):
    """A digest of the defence's code, that code without it, and its test's source from its def on (the other
    declarations above it aside): a row measured for other code, or with its test changed since, is stale."""
    test = inspect.getsource(defence.function)
    test = test[test.index(f"def {defence.function.__name__}("):]
    return hashlib.sha256(f"{defence.old}\0{defence.new}\0{test}".encode()).hexdigest()[:16]


def stale(defences, table):
    """The defences that table holds no row for, or a row measured for other code."""
    try:
        measured = {key(row): row.get("code") for row in table["defences"]}
    except (TypeError, KeyError, AttributeError):  # no table there yet, or not one
        measured = {}
    return [d for d in defences if measured.get((d.file, d.what, d.test)) != code(d)]


def try_each(chosen, repos, jobs):
    """Each chosen defence's row, in order, jobs of them at once (each test is a process of its own, mostly
    waiting on one core)."""
    pool = ThreadPoolExecutor(jobs)
    try:
        yield from pool.map(lambda defence: try_one(defence, repos), chosen)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list(RUNNING):
            stop(process)
        pool.shutdown(wait=True)  # each thread puts its file back


def get_args_parser():
    parser = OneLineErrorParser(prog="mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="only the entries whose file, defence or test holds this text; "
                                                     "default: every entry, or with --update every one changed")
    parser.add_argument("--file", nargs="+", metavar="FILE",
                        help="only the entries for these files, e.g. demo.py scripts/report/staging.py; default: "
                             "every file")
    parser.add_argument("--jobs", type=count(16), default=1, help="tests run at once, each in its own scratch copy, "
                                                                   "from 1 to 16")
    parser.add_argument("--out", type=Path, help="where the table goes, a .json file; default: results/defences.json "
                                                 "for every entry or --update, runs/defences.json for some")
    parser.add_argument("--update", action="store_true",
                        help="run only the --only entries, or else those declared or changed since the table at --out "
                             "was made, and put their rows into it, keeping the rows of every other entry still "
                             "declared")
    return parser


def key(row):
    """The entry a row of the table was made for: its file, defence and test."""
    return row["file"], row["defence"], row["test"] + (f"[{row['case']}]" if "case" in row else "")


def updated(out, rows, defences):
    """The table at out with rows put in, and the rows of entries no longer declared taken out, in defences' order."""
    table = files.read_json(out)
    try:
        measured = {key(row): row for row in table["defences"]}
    except (TypeError, KeyError):
        raise UsageError(f"--update: {out} holds no table of defences; run make defences without --update") from None
    measured.update((key(row), row) for row in rows)
    return [measured[(d.file, d.what, d.test)] for d in defences if (d.file, d.what, d.test) in measured]


def main(args):
    def body():
        defences = declared()
        out_given = args.out or files.ROOT / "results" / "defences.json"
        changed = stale(defences, files.read_json(out_given) or {}) if args.update and args.only is None else None
        chosen = [d for d in changed or defences if (args.only or "") in f"{d.file} {d.what} {d.test}"
                  and (args.file is None or d.file in args.file)]
        if changed == []:
            emit(f"every declared defence has its row in {out_given}, measured for its code as it is; nothing to run")
            return 0
        if not chosen:
            raise UsageError("no declared defence is for those --file and holds that --only text; see the @guards "
                             "in tests/")
        out = output.results_file(args.out, "defences.json", quick=len(chosen) < len(defences) and not args.update,
                                  owner="the table of defences,")
        held = files.read_json(out) if out.exists() else {"defences": []}
        if out.suffix != ".json" or not (isinstance(held, dict) and isinstance(held.get("defences"), list)):
            if not out.exists():  # nothing there to replace: only its name is wrong
                raise UsageError(f"--out {out} does not end in .json, and the table of defences is JSON; pass an --out "
                                 f"that does")
            raise UsageError(f"--out {out} is not a .json table of defences, and this would replace it; pass another "
                             f"--out")
        # Its own folder, left by a killed run (SIGKILL) and removed by the next: each scratch copy is ~20 MB.
        with files.private_folder("mutants-", tempfile.gettempdir(), clear=reap) as scratch:
            repos = queue.SimpleQueue()
            for i in range(args.jobs):
                scratch_copy(Path(scratch, str(i)))
                repos.put(Path(scratch, str(i)))
            # Every chosen test once, all in place: as the suite runs, on every core, within TIMEOUT a test.
            tests = sorted({d.test for d in chosen})
            status, tail = pytest(Path(scratch, "0"), tests, "auto", TIMEOUT * len(tests))
            if status == 4:  # pytest's "no such test"
                raise UsageError("a declared test is not there (a test or a case= misnamed): " + " / ".join(tail))
            if status != 0:
                raise UsageError("the tests fail with every defence in place; fix that first: " + " / ".join(tail))
            emit("| file | defence | test | without it |\n|---|---|---|---|")
            rows = []
            for row in try_each(chosen, repos, args.jobs):
                rows.append(row)
                emit(f"| {row['file']} | {row['defence']} | `{row['test'].split('::', 1)[1]}` | {row['outcome']} "
                     f"({row['seconds']:.0f} s) |")
        if args.update:
            rows = updated(out, rows, defences)
        red = sum(row["outcome"] == "red" for row in rows)
        files.write_json(out, {"red": red, "entries": len(rows), "listed": len(defences),
                               "python": platform.python_version(), "defences": rows})
        emit(f"{red} of {len(rows)} defences are guarded by a test that fails without them; wrote {out}")
        return 0 if red == len(rows) else 1
    return run("mutants", body, interrupted="mutants: interrupted; nothing written, the working tree untouched")


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
