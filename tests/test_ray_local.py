"""mnistlab/ray_local.py: what Ray needs around it on this machine: the environment its processes get, the reaping
of what a private instance leaves behind, and the open files a sweep's run locks take."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, guards, holding
from mnistlab import ray_local
from mnistlab.errors import UsageError


@guards("mnistlab/ray_local.py",
        "Ray's lines carry no colour codes",
        '"RAY_COLOR_PREFIX": "0", ',
        "")
def test_rays_lines_reach_the_terminal_without_colour_codes(monkeypatch, capsys):
    worker = pytest.importorskip("ray._private.worker")
    for key, value in ray_local.RAY_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    worker.print_worker_logs({"pid": "raylet", "ip": "127.0.0.1", "localhost": "127.0.0.1",
                              "lines": ["a warning from the raylet"]}, sys.stderr)
    err = capsys.readouterr().err
    assert "a warning from the raylet" in err and "\x1b[" not in err


@guards("mnistlab/ray_local.py",
        "the driver never looks up a route to a public address",
        ', "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}',
        "}")
def test_the_driver_never_asks_a_route_to_a_public_address_for_its_own():
    # Ray learns a machine's address from the route towards 8.8.8.8 unless told it is no cluster node itself.
    code = ("import os; from mnistlab import ray_local; os.environ.update(ray_local.RAY_ENVIRONMENT)\n"
            "import ray._private.services as s\n"
            "def lookup(*args): raise SystemExit('looked up a route to a public address')\n"
            "s.node_ip_address_from_perspective = lookup\n"
            "print(s.resolve_ip_for_localhost('127.0.0.1'))")
    pytest.importorskip("ray")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "127.0.0.1\n", done.stderr


@guards("mnistlab/ray_local.py",
        "reap stops what works in the folder, not only what holds a file there",
        'descriptors = [entry / "cwd", *(entry / "fd").iterdir()]',
        'descriptors = list((entry / "fd").iterdir())')
def test_reap_stops_a_process_that_works_in_the_folder_holding_no_file_there(tmp_path):
    folder = tmp_path / "private"
    (folder / "package").mkdir(parents=True)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], cwd=folder / "package")
    beside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], cwd=tmp_path)
    try:
        ray_local.reap(folder)
        assert worker.wait(timeout=20) == -9 and beside.poll() is None
    finally:
        for process in (worker, beside):
            process.kill()
            process.wait()


@guards("mnistlab/ray_local.py",
        "reap: SIGKILL what holds a file in the scratch folder",
        "                os.kill(int(entry.name), signal.SIGKILL)",
        "                pass")
@guards("mnistlab/ray_local.py",
        "reap: only files inside the scratch folder, not beside it",
        "path.startswith(f\"{folder}/\")",
        "path.startswith(f\"{scratch}\")")
def test_reap_kills_what_holds_a_file_in_the_scratch_folder_and_nothing_else(tmp_path, reaped):
    scratch = tmp_path / "ray-x"
    inside, beside = holding(scratch / "session" / "log"), holding(tmp_path / "ray-xy" / "log")  # a longer name
    reaped += [inside, beside]
    ray_local.reap(str(scratch))
    assert inside.wait(timeout=20) == -signal.SIGKILL
    assert beside.poll() is None


@guards("mnistlab/ray_local.py",
        "reap: a descriptor closed while it looks does not hide the process",
        "            except OSError:  # closed since the listing: the others still count\n"
        "                continue\n",
        "            except OSError:\n                held = []\n                break\n")
def test_reap_kills_a_process_even_where_one_of_its_files_closes_while_it_looks(tmp_path, reaped, monkeypatch):
    scratch = tmp_path / "ray-x"
    inside = holding(scratch / "session" / "log")
    reaped.append(inside)
    real, seen = os.readlink, set()

    def readlink(path):
        process = Path(path).parent.parent.name
        if process not in seen:  # each process's first descriptor closes between the listing and its reading
            seen.add(process)
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return real(path)
    monkeypatch.setattr(ray_local.os, "readlink", readlink)
    ray_local.reap(str(scratch))
    assert inside.wait(timeout=20) == -signal.SIGKILL


@guards("mnistlab/ray_local.py",
        "reap: never the driver itself",
        "        if not entry.name.isdigit() or int(entry.name) == os.getpid():",
        "        if not entry.name.isdigit():")
def test_reap_spares_the_process_that_calls_it(tmp_path):
    code = ("import sys; from mnistlab import ray_local; f = open(sys.argv[1] + '/log', 'w'); "
            "ray_local.reap(sys.argv[1]); print('survived')")
    (tmp_path / "scratch").mkdir()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "scratch")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "survived\n", done


@guards("mnistlab/ray_local.py",
        "more runs than the hard limit on open files refused",
        "    if hard != resource.RLIM_INFINITY and hard < wanted:\n",
        "    if False:\n")
def test_more_runs_than_the_hard_limit_on_open_files_is_refused(monkeypatch):
    import resource
    set_to = []
    monkeypatch.setattr(resource, "getrlimit", lambda kind: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda kind, limits: set_to.append(limits))
    with pytest.raises(UsageError, match="5,000 runs need 5,256 open files, over this machine's limit of 4,096"):
        ray_local.open_files_for(5000)
    ray_local.open_files_for(3000)
    assert set_to == [(3256, 4096)]
