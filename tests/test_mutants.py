"""tests/mutants.py, the runner of `make defences`, and the two cheap checks that keep its table honest: each defence
declared beside its test reads as declared, exactly once, and results/defences.json holds each as red. Whether each
test fails without its defence is `make defences` itself (minutes, not for every run)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import mutants
from helpers import ROOT, guards
from mnistlab import slots


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


def test_each_declared_defence_reads_once_in_its_file_and_in_plain_words():
    defences = mutants.declared()
    assert defences
    misread = [f"{d.file}: {d.what}" for d in defences if (ROOT / d.file).read_text().count(d.old) != 1
               or d.new == d.old]
    assert not misread, f"declarations whose code no longer reads once in its file (mend the @guards): {misread}"
    # A later test of the same name in its module would run in its stead, unguarded.
    replaced = [d.test for d in defences if getattr(sys.modules[d.function.__module__], d.function.__name__, None)
                is not d.function]
    assert not replaced, f"declared tests that another of the same name replaces: {replaced}"
    assert len({(d.file, d.old) for d in defences}) == len(defences), "a defence declared twice"
    for d in defences:  # docs/defences.md quotes them
        test, _, case = d.test.partition("[")
        assert slots.is_plain_text(d.what) and slots.is_plain_text(test), d
        assert not case or slots.is_plain_text(case.removesuffix("]")), d


def test_the_committed_table_holds_each_declared_defence_as_red():
    # results/defences.json is what `make defences` found; docs/defences.md states it. A defence declared, changed or
    # moved since, or one not red, fails here: run `make defences` (or --update the ones changed) again.
    table = json.loads((ROOT / "results" / "defences.json").read_text())
    declared = mutants.declared()
    assert [mutants.key(row) for row in table["defences"]] == [(d.file, d.what, d.test) for d in declared]
    assert not mutants.stale(declared, table), "defences whose code changed since they were measured"
    assert table["listed"] == table["entries"] == table["red"] == len(declared)
    assert {row["outcome"] for row in table["defences"]} == {"red"}


@guards("tests/mutants.py", "make defences never replaces a file that is not a .json table of defences",
        '        if out.suffix != ".json" or not (isinstance(held, dict) and isinstance(held.get("defences"), '
        "list)):", "        if False:")
@pytest.mark.parametrize("name, content", [("README.md", "# a readme\n"), ("run.json", '{"history": []}\n')])
def test_out_never_replaces_what_is_not_a_table_of_defences(name, content, tmp_path, capsys):
    out = tmp_path / name
    out.write_text(content)
    assert mutants.main(mutants.get_args_parser().parse_args(["--only", "bold", "--out", str(out)])) == 2
    assert out.read_text() == content and not list(tmp_path.glob(".*"))
    assert capsys.readouterr().err == (f"mutants: error: --out {out} is not a .json table of defences, and this would "
                                       f"replace it; pass another --out\n")


@guards("tests/mutants.py",
        "make defences keeps its scratch copies in a private folder the next run clears",
        "~20 MB.\n        with files.private_folder(\"mutants-\", tempfile.gettempdir(), clear=reap) as scratch:",
        "~20 MB.\n        with tempfile.TemporaryDirectory(prefix=\"mutants-\") as scratch:")
def test_a_scratch_copy_a_killed_run_left_is_removed_by_the_next(tmp_path, monkeypatch, capsys):
    import tempfile

    from mnistlab import files
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
    monkeypatch.setattr(mutants, "pytest", lambda repo, nodes, *how: (0, []))
    monkeypatch.setattr(mutants, "try_each", lambda chosen, repos, jobs: iter(()))
    argv = ["--only", "plain text is not blank", "--out", str(tmp_path / "defences.json")]
    assert mutants.main(mutants.get_args_parser().parse_args(argv)) == 0, capsys.readouterr()
    assert not left.exists() and not list(tmp_path.glob("mutants-*"))


@pytest.mark.parametrize("group", [False, True], ids=["the program", "its process group"])
def test_sighup_stops_a_run_leaving_no_scratch_copy_and_no_process(group, tmp_path):
    from helpers import ROOT, as_from_a_terminal
    # Importing torchvision makes torch's compile cache under TMPDIR: torch's, not a scratch copy, so kept apart.
    cache = tmp_path.with_name(f"{tmp_path.name}-inductor")
    process = subprocess.Popen([sys.executable, "-m", "tests.mutants", "--only", "plain text is not blank", "--out",
                                str(tmp_path / "defences.json")], cwd=ROOT,
                               env={**os.environ, "TMPDIR": str(tmp_path), "TORCHINDUCTOR_CACHE_DIR": str(cache)},
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


@guards("tests/mutants.py",
        "an --out with nothing there is refused for its name, not as a file it would replace",
        "            if not out.exists():  # nothing there " "to replace",
        "            if False:  # nothing there " "to replace")
def test_out_with_nothing_there_is_refused_for_its_name_only_and_a_json_name_is_taken(tmp_path, capsys, monkeypatch):
    out = tmp_path / "x.txt"
    assert mutants.main(mutants.get_args_parser().parse_args(["--only", "bold", "--out", str(out)])) == 2
    assert not out.exists() and capsys.readouterr().err == (f"mutants: error: --out {out} does not end in .json, and "
                                                            f"the table of defences is JSON; pass an --out that does\n")
    monkeypatch.setattr(mutants, "scratch_copy", lambda into: pytest.fail("took --out x.json"))
    with pytest.raises(pytest.fail.Exception, match="took --out x.json"):  # as advised: on to the work
        mutants.main(mutants.get_args_parser().parse_args(["--only", "bold", "--out", str(tmp_path / "x.json")]))


def test_out_never_names_a_file_of_the_repository_but_the_tables_own(capsys):
    assert mutants.main(mutants.get_args_parser().parse_args(["--only", "bold", "--out", str(ROOT / "README.md")])) == 2
    assert capsys.readouterr().err == (f"mutants: error: --out {ROOT / 'README.md'} is a file of the repository's, not "
                                       f"the table of defences, results/defences.json; pass another --out\n")
