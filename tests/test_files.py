"""mnistlab/files.py: atomic writes that keep the last good file, checked outputs, the run lock, and private folders
out of other users' reach and never left behind by a process that died."""
import errno
import json
import os
import stat
import subprocess
import sys

import pytest

from helpers import (PRIVATE, QUICK, RUN, WORKERS_STARTED, assert_one_line_error, assert_whole_files, checkpoint_of,
                     files_under, guards, in_namespace, needs_namespace, python, quick_recipe, results_of,
                     still_running, without_seconds)
from mnistlab import checkpoints, files, runs
from mnistlab.errors import UsageError

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


@guards("mnistlab/files.py",
        "a private folder is made for this user alone",
        "    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))\n",
        "    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))\n    folder.chmod(0o755)\n")
def test_a_private_folder_is_for_this_user_alone_and_goes_when_left_however_it_is_left(parent):
    cleared = []
    with pytest.raises(KeyboardInterrupt):
        with files.private_folder(PREFIX, parent, clear=cleared.append) as folder:
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.getuid()
            (folder / "ray").mkdir()
            (folder / "ray").chmod(0o777)  # as Ray makes its own folders
            raise KeyboardInterrupt
    assert cleared == [folder] and not folder.exists()


@guards("mnistlab/files.py",
        "what still runs in a dead run's folder is stopped before the folder goes",
        "            clear(folder)\n            shutil.rmtree(folder, ignore_errors=True)\n",
        "            shutil.rmtree(folder, ignore_errors=True)\n")
@guards("mnistlab/files.py",
        "a folder whose owner's pid now names another process is a dead run's",
        "started(int(pid)) != start",
        "started(int(pid)) is None")
@guards("mnistlab/files.py",
        "a folder of another PID namespace is not judged from this one",
        'namespace == os.readlink("/proc/self/ns/pid") and ',
        "")
@guards("mnistlab/files.py",
        "another user's folders are never removed",
        "info.st_uid == os.getuid() and orphaned",
        "orphaned")
@guards("mnistlab/files.py",
        "a folder without an owner file is not taken for a dead run's",
        "    except (OSError, ValueError):\n        return False",
        "    except (OSError, ValueError):\n        return True")
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


@guards("mnistlab/files.py",
        "atomic_write writes a temporary file and replaces the old one only once whole",
        '        with open(tmp, "wb") as f:\n            write(f)\n            f.flush()\n            '
        "os.fsync(f.fileno())\n        os.replace(tmp, path)",
        '        with open(path, "wb") as f:\n            write(f)\n            f.flush()\n            '
        "os.fsync(f.fileno())")
@guards("mnistlab/files.py",
        "atomic_write leaves no temporary file behind on failure",
        "        tmp.unlink(missing_ok=True)",
        "        pass")
def test_json_is_written_whole_or_not_at_all(tmp_path):
    from mnistlab import files
    (tmp_path / "kept.json").write_text('{"kept": true}')
    with pytest.raises(TypeError):
        files.write_json(tmp_path / "kept.json", {"bad": object()})
    assert json.loads((tmp_path / "kept.json").read_text()) == {"kept": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]


@guards("mnistlab/files.py",
        "check_output turns a path it cannot look at into one line",
        '    except OSError as e:\n        raise UsageError(f"{flag} {paths.printable(path)} is {paths.problem(e, '
        "path)}",
        '    except ZeroDivisionError as e:\n        raise UsageError(f"{flag} {paths.printable(path)} is '
        "{paths.problem(e, path)}")
def test_check_output_names_a_path_it_cannot_look_at(tmp_path):
    loop = tmp_path / "loop.json"
    loop.symlink_to(loop.name)
    with pytest.raises(UsageError) as refused:
        files.check_output(loop, "--out")
    assert str(refused.value) == f"--out {loop} is a symbolic link loop; pass another --out"


@guards("mnistlab/files.py",
        "check_output probes the output's folder",
        '        make_writable(path.parent)\n    except OSError as e:\n        raise UsageError(f"{flag}',
        "        path.parent.mkdir(parents=True, exist_ok=True)\n    except OSError as e:\n        raise "
        'UsageError(f"{flag}')
def test_check_output_probes_its_folder(tmp_path, read_only_probe):
    with pytest.raises(UsageError) as refused:
        files.check_output(tmp_path / "x.json", "--out")
    assert str(refused.value) == (f"--out {tmp_path / 'x.json'} cannot be written (Read-only file system); pass "
                                  f"another --out")


@guards("mnistlab/files.py",
        "RunLock removes a killed run's temporary files",
        "                stale.unlink(missing_ok=True)",
        "                pass")
@guards("mnistlab/files.py",
        "RunLock removes only this run's temporary files",
        'path.parent.glob(f".{path.name}.*.tmp")',
        'path.parent.glob("*.tmp")')
def test_a_killed_runs_temporary_files_are_removed_and_only_its_own(tmp_path):
    paths = files.RunPaths.of(tmp_path, RUN)
    ours = [paths.results.with_name(f".{RUN}.json.99999.tmp"), paths.checkpoint.with_name(f".{RUN}.pt.99999.tmp"),
            paths.curves.with_name(f".{RUN}_curves.png.99999.tmp")]
    theirs = [paths.results.with_name(".custom_mlp_seed0.json.99999.tmp"),  # another run's, perhaps alive
              paths.checkpoint.with_name(f".{RUN}_other.pt.99999.tmp")]
    for path in ours + theirs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("left by a killed run")
    with files.RunLock(paths):
        assert [path.exists() for path in ours + theirs] == [False] * len(ours) + [True] * len(theirs)


@guards("mnistlab/files.py",
        "read_json reads damaged JSON as no results",
        "    except (OSError, ValueError, RecursionError):  # RecursionError: arrays nested thousands deep\n"
        "        return None",
        "    except (OSError, RecursionError):\n        return None")
def test_results_that_are_not_json_do_not_stop_a_run(tmp_path):
    paths = files.RunPaths.of(tmp_path, RUN)
    paths.results.parent.mkdir()
    paths.results.write_text('{"status": "compl')  # cut short, with no checkpoint: no finished run to keep
    assert files.read_json(paths.results) is None
    assert runs.decide(paths, quick_recipe(), resume=False).action == "fresh"


@guards("mnistlab/files.py",
        "RunLock: a second process of a run refuses while the first lives",
        "            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)",
        "            pass")
@guards("main.py",
        "training holds each run's lock",
        "            locks.enter_context(files.RunLock(path))",
        "            pass")
def test_a_second_process_of_the_same_run_refuses_while_the_first_lives(tmp_path, cli):
    paths = files.RunPaths.of(tmp_path, RUN)
    paths.lock.parent.mkdir(parents=True)
    with files.RunLock(paths):
        status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"another process is training {RUN} into {tmp_path} right now")
    assert not paths.checkpoint.exists()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, cli):
    paths = files.RunPaths.of(tmp_path, RUN)
    paths.lock.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", f"import fcntl, time; f = open({str(paths.lock)!r}, 'w'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    assert paths.lock.exists()
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])[0] == 0


@guards("mnistlab/files.py",
        "prepare_out_dir turns an unwritable --out-dir into one line",
        "    except OSError as e:\n        where, way",
        "    except ZeroDivisionError as e:\n        where, way")
@guards("main.py",
        "training checks where its files go before any work",
        "    files.prepare_out_dir(out_dir, outputs)",
        "    pass")
@pytest.mark.parametrize("where", ["/proc/x", "under a file", "results json is a folder"])
def test_an_out_dir_that_cannot_take_the_files_is_rejected_before_training(where, tmp_path, cli):
    (tmp_path / "a-file").write_text("")
    out_dir = {"/proc/x": "/proc/x", "under a file": tmp_path / "a-file" / "out"}.get(where, tmp_path / "out")
    if where == "results json is a folder":
        (tmp_path / "out" / "results" / f"{RUN}.json").mkdir(parents=True)
    status, out, err = cli(["--model", "lenet5", *QUICK, "--out-dir", out_dir])
    message = "is a folder, where this command writes a file" if "folder" in where else "cannot be written"
    assert_one_line_error(err, status, 2, message)
    assert "epoch" not in out


@guards("mnistlab/files.py",
        "make_writable proves a folder writable with a probe file",
        '    probe.write_bytes(b"")\n    probe.unlink()',
        "    pass")
@guards("mnistlab/files.py",
        "prepare_out_dir probes each output folder",
        "        for folder in sorted(folders):\n            make_writable(folder)",
        "        for folder in sorted(folders):\n            folder.mkdir(parents=True, exist_ok=True)")
def test_a_folder_that_exists_but_refuses_writes_is_found_by_the_probe(tmp_path, cli, read_only_probe):
    (tmp_path / "out").mkdir()
    status, out, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path / "out"])
    assert_one_line_error(err, status, 2, "cannot be written (Read-only file system")
    assert "epoch" not in out


@guards("mnistlab/files.py",
        "a failed write is one line naming the file",
        "        raise WriteError(path, e, resumable) from None",
        "        raise")
def test_a_full_disk_stops_the_run_in_one_line_and_keeps_the_last_checkpoint(tmp_path, cli, monkeypatch):
    argv = ["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path]
    real, calls = checkpoints.save, []

    def save_checkpoint(path, checkpoint):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, checkpoint)
    monkeypatch.setattr(checkpoints, "save", save_checkpoint)
    status, _, err = cli(argv)
    assert_one_line_error(err, status, 1, f"cannot write {tmp_path}/checkpoints/{RUN}.pt (No space left on device)")
    assert checkpoint_of(tmp_path)["epoch"] == 1
    assert_whole_files(tmp_path)
    monkeypatch.setattr(checkpoints, "save", real)
    assert cli([*argv, "--resume"])[0] == 0
    assert cli(["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path / "straight"])[0] == 0
    assert (without_seconds(results_of(tmp_path)["history"]) ==
            without_seconds(results_of(tmp_path / "straight")["history"]))


@guards("mnistlab/files.py",
        "prepare_out_dir refuses a folder where an output file goes",
        "        if path.is_dir():",
        "        if False:")
def test_model_all_checks_where_its_comparison_figure_goes_before_training(tmp_path, cli):
    (tmp_path / "plots" / "comparison_seed0.png").mkdir(parents=True)
    status, out, err = cli(["--model", "all", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "comparison_seed0.png is a folder, where this command writes a file")
    assert "epoch" not in out


@guards("mnistlab/files.py",
        "make_writable removes its probe file",
        "    probe.unlink()",
        "    pass")
def test_the_number_of_images_used_is_recorded(tmp_path, cli):
    assert cli(["--model", "custom_mlp", "--limit", "12000", "--epochs", "1", "--device", "cpu",
                "--out-dir", tmp_path])[0] == 0
    results = results_of(tmp_path, "custom_mlp_seed0")
    assert results["train_images"] == 12_000 and results["eval_images"] == 10_000
    assert files_under(tmp_path / "results") == ["custom_mlp_seed0.json"]


def test_check_output_allows_a_regular_file_or_a_missing_name_and_makes_its_folder(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    assert files.check_output(tmp_path / "old.json", "--out") == tmp_path / "old.json"
    assert files.check_output(tmp_path / "new" / "deeper" / "x.json", "--out") == tmp_path / "new" / "deeper" / "x.json"
    assert (tmp_path / "new" / "deeper").is_dir() and not list((tmp_path / "new" / "deeper").iterdir())


@guards("mnistlab/files.py",
        "check_output refuses anything but a regular file or a missing name",
        "    if mode is not None and not stat.S_ISREG(mode):",
        "    if mode is not None and stat.S_ISDIR(mode):")
def test_check_output_refuses_a_device_a_folder_and_a_named_pipe(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for path, what in (("/dev/full", "a device"), (tmp_path, "a folder"), (tmp_path / "pipe", "a named pipe (FIFO)")):
        with pytest.raises(UsageError) as refused:
            files.check_output(path, "--out")
        assert str(refused.value) == f"--out {path} is {what}, where this command writes a file; pass another --out"


def test_check_output_refuses_a_file_under_a_file(tmp_path):
    (tmp_path / "plain").write_text("")
    with pytest.raises(UsageError, match="cannot be written"):
        files.check_output(tmp_path / "plain" / "x.json", "--out")


@guards("mnistlab/files.py",
        "the folders that dead runs left are removed by the next",
        "info.st_uid == os.getuid() and orphaned(folder):",
        "info.st_uid == os.getuid() and False:")
@needs_namespace
@pytest.mark.slow
def test_what_a_killed_sweep_left_is_removed_by_the_next_one(tmp_path):
    argv = ["sweep.py", "--model", "lenet5", "--seed", "0", "1", "--limit", "1024", "--epochs", "3", "--jobs", "2",
            "--out-dir", tmp_path / "sweep"]
    # Any next sweep on Ray, with runs of its own: the smallest.
    next_sweep = ["sweep.py", "--model", "lenet5", "--seed", "0", "1", "--limit", "256", "--epochs", "1", "--jobs", "2",
                  "--out-dir", tmp_path / "next"]
    script = PRIVATE + f"""
    setsid {python(*argv)} > {tmp_path}/out 2> {tmp_path}/err &
    sweep=$!
    for i in $(seq 900); do {WORKERS_STARTED} && break; sleep 0.1; done
    killed=$(private $sweep); kill -KILL $sweep; wait $sweep; echo "killed [$killed]"
    {python(*next_sweep)} > {tmp_path}/out2 2>&1; echo "status $?"
    [ -e "$killed" ] && echo "still there"
    {still_running(1)}
    """
    _, log, err = in_namespace(script)
    assert "killed [/tmp/mnist-ray-" in log, (log, err)
    assert log.split("status 0", 1)[1].strip() == "", (log, err, (tmp_path / "out2").read_text())
