"""mnistlab/paths.py: what a path a user names really is, and opening it only as a regular file."""
import gc
import io
import json
import os
import subprocess
import sys
import threading

import pytest

import predict
from helpers import ROOT, drawing, guards
from mnistlab import paths


@pytest.fixture
def no_open(monkeypatch):
    opened, real = [], os.open
    monkeypatch.setattr(os, "open", lambda path, *args: opened.append(path) or real(path, *args))
    return opened


TERMINAL = """
import os
from mnistlab import paths
master, slave = os.openpty()
name = os.ttyname(slave)
os.close(slave)
regular = os.stat(paths.__file__)
os.stat = lambda path, *args, **kwargs: regular  # the look saw a regular file: the terminal came after it
try:
    paths.open_file(name)
except paths.NotAFile as e:
    print(e)
try:
    os.close(os.open("/dev/tty", os.O_RDWR))
    print("a controlling terminal")
except OSError:
    print("no controlling terminal")
"""


@guards("mnistlab/paths.py",
        "a pipe, device or folder refused before it is opened",
        "        if not stat.S_ISREG(mode):\n            raise NotAFile(kind(mode))\n        # O_NONBLOCK",
        "        # O_NONBLOCK")
@pytest.mark.parametrize("kind", ["a named pipe (FIFO)", "a device", "a folder"])
def test_pipes_devices_and_folders_are_refused_before_they_are_opened(kind, tmp_path, no_open):
    path = {"a device": "/dev/null", "a folder": tmp_path}.get(kind, tmp_path / "pipe")
    if kind == "a named pipe (FIFO)":
        os.mkfifo(path)
    with pytest.raises(paths.NotAFile, match=rf"^{kind}$".replace("(", r"\(").replace(")", r"\)")):
        paths.open_file(path)
    assert no_open == []


@guards("mnistlab/paths.py",
        "O_NONBLOCK: a pipe put in a file's place does not block the open",
        "os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY",
        "os.O_RDONLY | os.O_NOCTTY")
@guards("mnistlab/paths.py",
        "what was opened is checked again (fstat) and refused where not a regular file",
        "        mode = os.fstat(fd).st_mode\n        if not stat.S_ISREG(mode):\n            raise NotAFile(kind(mode))\n",
        "")
def test_a_pipe_put_in_a_files_place_after_the_look_is_refused_without_blocking(tmp_path, monkeypatch):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    regular = os.stat(__file__)
    monkeypatch.setattr(os, "stat", lambda path, *args, **kwargs: regular)  # the look saw a regular file
    outcome = []

    def look():
        try:
            paths.open_file(pipe)
        except paths.NotAFile as e:
            outcome.append(str(e))
    thread = threading.Thread(target=look, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # blocked in open(): a writer lets it go
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail("opening a named pipe blocked")
    assert outcome == ["a named pipe (FIFO)"]


@guards("mnistlab/paths.py",
        "a file refused once open is closed",
        "    except BaseException:\n        os.close(fd)\n        raise",
        "    except BaseException:\n        raise")
def test_a_file_refused_once_open_leaves_no_descriptor_open(tmp_path, monkeypatch):
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    regular = os.stat(__file__)
    gc.collect()
    before = set(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "stat", lambda path, *args, **kwargs: regular)  # the look saw a regular file
    with pytest.raises(paths.NotAFile, match=r"^a named pipe \(FIFO\)$"):
        paths.open_file(pipe)
    monkeypatch.undo()
    assert set(os.listdir("/proc/self/fd")) - before == set()


@guards("mnistlab/paths.py",
        "O_NOCTTY: a terminal put in a file's place never becomes the controlling terminal",
        "os.O_NONBLOCK | os.O_NOCTTY",
        "os.O_NONBLOCK")
def test_a_terminal_put_in_a_files_place_never_becomes_the_controlling_terminal():
    # A session with no terminal that opens one, without O_NOCTTY, takes it for its own, and with it that
    # terminal's Ctrl-C and hang-ups: here a new session, as a program started by a service or in the background.
    result = subprocess.run([sys.executable, "-c", TERMINAL], capture_output=True, text=True, timeout=60, cwd=ROOT,
                            start_new_session=True)
    assert (result.stdout, result.stderr) == ("a device\nno controlling terminal\n", "")


@guards("mnistlab/paths.py",
        "DEL escaped as the other control characters",
        "[*range(32), 127]",
        "range(32)")
def test_a_printable_path_escapes_every_control_character_delete_included():
    assert paths.printable("a\x1b[31mb\x7fc\x00d") == "a\\x1b[31mb\\x7fc\\x00d"


@guards("mnistlab/paths.py",
        "control characters in a shown path escaped",
        "    return text.translate(CONTROLS) if escape_controls else text",
        "    return text")
@guards("mnistlab/paths.py",
        "bytes that are not UTF-8 shown as backslash-x escapes",
        '.decode("utf-8", "backslashreplace")',
        '.decode("utf-8", "surrogateescape")')
def test_file_names_that_are_not_utf8_or_hold_a_newline_give_valid_output(checkpoint, tmp_path, monkeypatch,
                                                                           capsys):
    folder = os.fsencode(tmp_path)
    for name in (b"bad\xff.png", b"new\nline.png"):
        drawing(1).save(os.path.join(folder, name).decode(errors="surrogateescape"))
    for json_output in (False, True):
        stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
        monkeypatch.setattr(sys, "stdout", stdout)  # as a terminal under en_US.UTF-8 takes it
        status = predict.main(predict.get_args_parser().parse_args(
            [str(tmp_path), "--checkpoint", str(checkpoint)] + (["--json"] if json_output else [])))
        written = stdout.buffer.getvalue().decode("utf-8")
        assert status == 0
        if json_output:
            assert [entry["file"] for entry in json.loads(written)] == [f"{tmp_path}/bad\\xff.png",
                                                                        f"{tmp_path}/new\nline.png"]
        else:
            assert [line.split(": ")[0] for line in written.splitlines()] == [f"{tmp_path}/bad\\xff.png",
                                                                             f"{tmp_path}/new\\nline.png"]
    assert "Traceback" not in capsys.readouterr().err
