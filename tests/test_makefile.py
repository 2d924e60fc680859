"""The Makefile: its environment, built whole or not at all, and ARGS, passed to the programs as words.

Each test runs make in a copy of the Makefile with stand-ins on PATH for python3 and the environment's python, so
that it is fast and offline: `python3 -m venv DIR` makes DIR/bin/python, which passes `-c ""`, does as $FAKE_PIP
says for `-m pip` (fail, hang, or succeed), and otherwise writes its arguments, one a line, to argv (and, where
$FAKE_RUN says hang, runs until SIGTERM, which it notes in the file stopped).
"""
import os
import shutil
import signal
import subprocess
import time

import pytest

from helpers import ROOT, as_from_a_terminal, guards

PYTHON3 = """#!/bin/sh
[ "$1" = -m ] && [ "$2" = venv ] || exit 9
mkdir -p "$3/bin" && cp "$FAKE_PYTHON" "$3/bin/python"
"""


PYTHON = """#!/bin/sh
case "$1" in
  -c) exit 0;;
  -m) [ "$2" = pip ] || exit 9
      touch pip-started
      case "$FAKE_PIP" in fail) exit 1;; hang) exec sleep 60;; esac
      exit 0;;
esac
printf '%s\\n' "$@" > argv
[ "$FAKE_RUN" = hang ] || exit 0
trap 'touch stopped; exit 143' TERM
touch running
while :; do sleep 0.1; done
"""


pytestmark = pytest.mark.skipif(not shutil.which("make"), reason="needs make")


@pytest.fixture
def project(tmp_path):
    """A folder with the Makefile, a requirements.txt and the stand-ins; make(target, *variables, pip=...) runs make
    there (SIGINT and SIGHUP as a terminal gives them, however pytest was started, in a process group of its own)
    and returns the Popen."""
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "requirements.txt").write_text("torch\n")
    stand_ins = tmp_path / "stand-ins"
    stand_ins.mkdir()
    for name, text in (("python3", PYTHON3), ("python", PYTHON)):
        (stand_ins / name).write_text(text)
        (stand_ins / name).chmod(0o755)

    def make(*argv, pip="succeed", run="finish"):
        env = {**os.environ, "PATH": f"{stand_ins}:{os.environ['PATH']}", "FAKE_PYTHON": str(stand_ins / "python"),
               "FAKE_PIP": pip, "FAKE_RUN": run}
        env.pop("ARGS", None)
        env.pop("MAKEFLAGS", None)
        return subprocess.Popen(["make", "--no-print-directory", *argv], cwd=tmp_path, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                preexec_fn=as_from_a_terminal)
    return tmp_path, make


def ended(process):
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def test_a_failed_pip_leaves_no_environment_that_looks_ready(project):
    folder, make = project
    status, _, err = ended(make("venv", pip="fail"))
    assert status != 0 and "could not build .venv" in err
    assert not (folder / ".venv" / "requirements.txt").exists() and not (folder / ".venv").exists()
    assert ended(make("venv"))[0] == 0  # pip fixed: built, and ready
    assert (folder / ".venv" / "requirements.txt").read_text() == "torch\n"


@guards("Makefile",
        "a build stopped by Ctrl-C or SIGTERM puts back the environment there was",
        "\ttrap 'stop 130' INT; trap 'stop 143' TERM;",
        "\t: 'stop 130' INT; : 'stop 143' TERM;")
@guards("Makefile",
        "a build stopped by a hangup puts back the environment there was too",
        " trap 'stop 129' HUP;",
        "")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_build_stopped_during_pip_puts_back_the_environment_there_was(signum, project):
    folder, make = project
    assert ended(make("venv"))[0] == 0
    (folder / ".venv" / "good").write_text("the environment that worked")
    (folder / "requirements.txt").write_text("torch\nnumpy\n")  # stale: a rebuild
    (folder / "pip-started").unlink()
    process = make("venv", pip="hang")
    deadline = time.monotonic() + 30
    while not (folder / "pip-started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # Ctrl-C and a closed terminal's hangup reach the whole process group; SIGTERM (kill) reaches make alone.
    if signum == signal.SIGTERM:
        process.send_signal(signum)
    else:
        os.killpg(process.pid, signum)
    status, _, err = ended(process)
    assert status != 0 and "interrupted; .venv is as it was before" in err, err
    assert (folder / ".venv" / "good").exists() and not (folder / ".venv.old").exists()
    assert (folder / ".venv" / "requirements.txt").read_text() == "torch\n"
    (folder / "pip-started").unlink()
    assert ended(make("venv"))[0] == 0  # the same command, to the end this time
    assert (folder / ".venv" / "requirements.txt").read_text() == "torch\nnumpy\n"


@guards("Makefile",
        "the ready copy of requirements.txt is written only after pip succeeds",
        "touch $(OWNED) && { $(PYTHON) -m pip install",
        "touch $(OWNED) && cp requirements.txt $(READY) && { $(PYTHON) -m pip install")
@guards("Makefile",
        "a rebuild after a killed build keeps the environment that worked",
        "\tif [ -e $(VENV).old ] && [ ! -e $(READY) ]; then rm -rf $(VENV); \\\n",
        "\tif false; then rm -rf $(VENV); \\\n")
def test_a_build_killed_during_pip_looks_unready_and_the_rebuild_keeps_the_environment_that_worked(project):
    folder, make = project
    assert ended(make("venv"))[0] == 0
    (folder / ".venv" / "good").write_text("the environment that worked")
    (folder / "requirements.txt").write_text("torch\nnumpy\n")
    (folder / "pip-started").unlink()
    process = make("venv", pip="hang")
    deadline = time.monotonic() + 30
    while not (folder / "pip-started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # no trap runs
    ended(process)
    # The copy of the requirements says the environment is whole: written before pip ends, it would lie.
    assert not (folder / ".venv" / "requirements.txt").exists() and (folder / ".venv.old" / "good").exists()
    status, _, err = ended(make("venv", pip="fail"))
    assert status != 0 and (folder / ".venv" / "good").exists() and not (folder / ".venv.old").exists(), err


@guards("Makefile",
        "ARGS reach main.py as words, never run by the shell",
        "\tset -f; exec $(PYTHON) main.py $${ARGS:---model lenet5 --epochs 10}",
        "\texec $(PYTHON) main.py $(if $(ARGS),$(ARGS),--model lenet5 --epochs 10)")
@pytest.mark.parametrize("args, words", [
    ("--model all", ["--model", "all"]),
    ("--epochs 1; touch ran-by-the-shell", ["--epochs", "1;", "touch", "ran-by-the-shell"]),
    ("--tag `touch ran-by-the-shell` *", ["--tag", "`touch", "ran-by-the-shell`", "*"]),
    ("", ["--model", "lenet5", "--epochs", "10"]),
])
def test_args_reach_the_program_as_words_never_as_shell_commands(args, words, project):
    folder, make = project
    assert ended(make("venv"))[0] == 0
    status, _, err = ended(make("train", f"ARGS={args}"))
    assert status == 0, err
    assert (folder / "argv").read_text().splitlines() == ["main.py", *words]
    assert not (folder / "ran-by-the-shell").exists()


@guards("Makefile",
        "the program replaces the recipe's shell, so that SIGTERM to make reaches it",
        "\tset -f; exec $(PYTHON) main.py",
        "\tset -f; $(PYTHON) main.py")
def test_sigterm_to_make_alone_reaches_the_program_it_runs(project):
    folder, make = project
    assert ended(make("venv"))[0] == 0
    process = make("train", run="hang")
    try:
        deadline = time.monotonic() + 30
        while not (folder / "running").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)  # as kill and job schedulers send it: make forwards it to its child
        ended(process)
        deadline = time.monotonic() + 10
        while not (folder / "stopped").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (folder / "stopped").exists(), "the program ran on without the signal"
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # whatever the make left behind
        except ProcessLookupError:
            pass
