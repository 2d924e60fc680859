"""The table of defences in tests/mutants.py still describes the code: each defence reads as listed, exactly once,
and its test exists. Whether each test fails without its defence is `make defences` (minutes, not for every run)."""
import ast
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import slots
from mutants import DEFENCES, ROOT


@pytest.mark.parametrize("defence", DEFENCES, ids=lambda d: f"{d.file}: {d.what}")
def test_each_defence_reads_as_listed_and_its_test_exists(defence):
    assert (ROOT / defence.file).read_text().count(defence.old) == 1
    assert defence.new != defence.old
    module, _, name = defence.test.partition("::")
    tests = {node.name for node in ast.walk(ast.parse((ROOT / module).read_text())) if isinstance(node, ast.FunctionDef)}
    assert name.split("[")[0] in tests


def test_no_defence_is_listed_twice():
    assert len({(d.file, d.old) for d in DEFENCES}) == len(DEFENCES)


def test_each_defence_is_described_in_text_the_readme_can_quote():
    for d in DEFENCES:
        test, _, case = d.test.partition("[")
        assert slots.is_plain_text(d.what) and slots.is_plain_text(test), d
        assert not case or slots.is_plain_text(case.removesuffix("]")), d


def test_the_committed_table_measures_this_list_and_every_test_failed_without_its_defence():
    # results/defences.json is what `make defences` found; the README states it. A row whose entry was changed or
    # removed here, or that is not red, fails: run `make defences` (or --update the entries changed) again.
    table = json.loads((ROOT / "results" / "defences.json").read_text())
    listed = [(d.file, d.what, d.test) for d in DEFENCES]
    measured = [(row["file"], row["defence"], row["test"] + (f"[{row['case']}]" if "case" in row else ""))
                for row in table["defences"]]
    assert [entry for entry in listed if entry in measured] == measured, "rows that are not this list's entries"
    assert table["listed"] == len(DEFENCES) and table["red"] == table["entries"] == len(measured)
    assert {row["outcome"] for row in table["defences"]} == {"red"}


@pytest.mark.parametrize("name, content", [("README.md", "# a readme\n"), ("run.json", '{"history": []}\n')])
def test_out_never_replaces_what_is_not_a_table_of_defences(name, content, tmp_path, capsys):
    import mutants
    out = tmp_path / name
    out.write_text(content)
    assert mutants.main(mutants.get_args_parser().parse_args(["--only", "bold", "--out", str(out)])) == 2
    assert out.read_text() == content and not list(tmp_path.glob(".*"))
    assert capsys.readouterr().err == (f"mutants: error: --out {out} is not a .json table of defences, and this would "
                                       f"replace it; pass another --out\n")


def test_a_scratch_copy_a_killed_run_left_is_removed_by_the_next(tmp_path, monkeypatch, capsys):
    import tempfile

    import files
    import mutants
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = files.started(child.pid)
    child.kill()
    child.wait()
    left = tmp_path / "mutants-killed"  # as a run killed with SIGKILL leaves its scratch copies
    (left / "0").mkdir(parents=True)
    (left / files.OWNER).write_text(f"{child.pid} {start} {os.readlink('/proc/self/ns/pid')}\n")
    # No copies made nor tests run: only the folders are in question here (and a scratch copy has no git to list).
    monkeypatch.setattr(mutants, "scratch_copy", lambda into: into.mkdir())
    monkeypatch.setattr(mutants, "pytest", lambda repo, nodes: (0, []))
    monkeypatch.setattr(mutants, "try_each", lambda chosen, repos, jobs: iter(()))
    argv = ["--only", "plain text is not blank", "--out", str(tmp_path / "defences.json")]
    assert mutants.main(mutants.get_args_parser().parse_args(argv)) == 0, capsys.readouterr()
    assert not left.exists() and not list(tmp_path.glob("mutants-*"))


@pytest.mark.parametrize("group", [False, True], ids=["the program", "its process group"])
def test_sighup_stops_a_run_leaving_no_scratch_copy_and_no_process(group, tmp_path):
    from conftest import ROOT, as_from_a_terminal
    process = subprocess.Popen([sys.executable, "-m", "tests.mutants", "--only", "plain text is not blank", "--out",
                                str(tmp_path / "defences.json")], cwd=ROOT, env={**os.environ, "TMPDIR": str(tmp_path)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               preexec_fn=as_from_a_terminal)
    try:
        while not list(tmp_path.glob("mutants-*/0-tmp")):  # its first pytest, in the first scratch copy, has begun
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGHUP) if group else process.send_signal(signal.SIGHUP)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 129 and err.strip() == "mutants: interrupted; nothing written, the working tree " \
                                                        "untouched", err
    assert not list(tmp_path.iterdir()) and not working_in(tmp_path)


def working_in(folder):
    """The processes whose working folder is in folder."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd").startswith(f"{folder}/"):
                found.append(pid)
        except OSError:  # gone meanwhile
            continue
    return found
def test_out_with_nothing_there_is_refused_for_its_name_only_and_a_json_name_is_taken(tmp_path, capsys, monkeypatch):
    import mutants
    out = tmp_path / "x.txt"
    assert mutants.main(mutants.get_args_parser().parse_args(["--only", "bold", "--out", str(out)])) == 2
    assert not out.exists() and capsys.readouterr().err == (f"mutants: error: --out {out} does not end in .json, and "
                                                            f"the table of defences is JSON; pass an --out that does\n")
    monkeypatch.setattr(mutants, "scratch_copy", lambda into: pytest.fail("took --out x.json"))
    with pytest.raises(pytest.fail.Exception, match="took --out x.json"):  # as advised: on to the work
        mutants.main(mutants.get_args_parser().parse_args(["--only", "bold", "--out", str(tmp_path / "x.json")]))
