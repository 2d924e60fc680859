"""files.py's private folders: out of other users' reach, and never left behind by a process that died."""
import os
import stat
import subprocess
import sys

import pytest

import files

PREFIX = "mnist-test-private-"


@pytest.fixture
def parent(tmp_path):
    return tmp_path


def left(parent, owner_line):
    """A private folder as a process named by owner_line ("PID START NAMESPACE") leaves it."""
    folder = parent / f"{PREFIX}{len(list(parent.iterdir()))}"
    (folder / "ray").mkdir(parents=True)
    (folder / files.OWNER).write_text(owner_line + "\n")
    return folder


def dead_process():
    """The pid and start time of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    start = files.started(child.pid)
    child.kill()
    child.wait()
    return child.pid, start


def test_a_private_folder_is_for_this_user_alone_and_goes_when_left_however_it_is_left(parent):
    cleared = []
    with pytest.raises(KeyboardInterrupt):
        with files.private_folder(PREFIX, parent, clear=cleared.append) as folder:
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
            (folder / "ray").mkdir()
            (folder / "ray").chmod(0o777)  # as Ray makes its own folders
            raise KeyboardInterrupt
    assert cleared == [folder] and not folder.exists()


def test_the_folders_that_dead_processes_left_are_cleared_and_removed_and_no_others(parent):
    namespace = os.readlink("/proc/self/ns/pid")
    pid, start = dead_process()
    dead = left(parent, f"{pid} {start} {namespace}")
    reused = left(parent, f"{os.getpid()} 1 {namespace}")  # this pid, but another process's start: that one is gone
    alive = left(parent, files.owner())
    elsewhere = left(parent, f"{pid} {start} pid:[1]")  # another PID namespace's: not ours to judge
    unowned = parent / f"{PREFIX}notes"  # no owner file: not a private folder, or one being made this instant
    unowned.mkdir()
    kept = [alive, elsewhere, unowned]
    if os.geteuid() == 0:  # another user's, though its owner is gone
        kept.append(left(parent, f"{pid} {start} {namespace}"))
        os.chown(kept[-1], 65534, 65534)
    cleared = []
    with files.private_folder(PREFIX, parent, clear=cleared.append) as folder:
        assert sorted(cleared) == sorted([dead, reused])
        assert sorted(parent.iterdir()) == sorted([*kept, folder])
