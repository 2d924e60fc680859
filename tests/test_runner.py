"""mnistlab/runner.py: many runs, one after another or at once on Ray: the addresses it accepts, the head it checks
for before Ray waits on it, the environment and the folder every Ray process of its gets, and what it leaves
behind."""
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from helpers import (ONE_EPOCH, PRIVATE, ROOT, STOPS, guards, holding, in_namespace, needs_namespace, python, results,
                     still_running, tiny_recipe)
from mnistlab import files, runner
from mnistlab.errors import UsageError
from mnistlab.recipes import resolve_recipe
from scripts import tune


def runner_args(**given):
    return argparse.Namespace(**{"jobs": 2, "address": None, "cpus_per_run": None, "gpus_per_run": None, **given})


def serving(answer):
    """A server on loopback that accepts one connection and sends answer (None: says nothing), holding the
    connection open for 30 s; returns its address."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        connection, _ = server.accept()
        connection.recv(64)
        if answer is not None:
            connection.sendall(answer)
        time.sleep(30)
    threading.Thread(target=serve, daemon=True).start()
    return f"127.0.0.1:{server.getsockname()[1]}"


# What an HTTP/2 server's first frame looks like: an empty SETTINGS frame (length 0, type 4, no flags, stream 0).
SETTINGS_FRAME = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


@pytest.fixture
def as_ray(monkeypatch):
    """A gRPC server taken for a Ray head of this version: Ray's own request to it is the test's to make."""
    monkeypatch.setattr(runner, "asked_as_ray", lambda address, seconds: "ray")


@pytest.fixture
def ray_init(monkeypatch):
    """ray.init replaced by one that records its keyword arguments, then raises what calls[0] holds, if anything.
    The environment start_ray changes is put back after."""
    ray = pytest.importorskip("ray")
    calls, raised = [], []

    def init(**kwargs):
        calls.append(kwargs)
        if raised:
            raise raised[0]
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    return calls, raised


@pytest.mark.parametrize("address, host, port", [("10.0.0.5:6379", "10.0.0.5", 6379), ("head:1", "head", 1),
                                                 ("[::1]:6379", "::1", 6379)])
def test_an_address_is_host_and_port(address, host, port):
    assert runner.split_address(address) == (host, port)


@guards("mnistlab/runner.py",
        "a port is ASCII digits (isdigit takes superscripts, which int refuses)",
        'and re.fullmatch(r"[0-9]{1,5}", port) and',
        "and port.isdigit() and")
@guards("mnistlab/runner.py",
        "an address is checked before anything else runs",
        '        split_address(address, "--address" if args.address else "RAY_ADDRESS")',
        "        pass")
@guards("mnistlab/runner.py",
        "an IPv6 address without brackets is refused, not split at the wrong colon",
        '    elif ":" in host:\n        host = ""',
        '    elif False:\n        host = ""')
@guards("mnistlab/runner.py",
        "a port is 1 to 65535",
        'port) and 0 < int(port) < 65536)',
        'port))')
@pytest.mark.parametrize("address", ["::1", "::1:6379", "ray://head:10001", "head", "head:", ":6379", "head:0",
                                     "head:65536", "auto", "head:²", "head:6379 "])
def test_an_address_that_is_not_host_and_port_is_refused_in_one_line(address):
    with pytest.raises(UsageError, match=r"^--address .* is not HOST:PORT; give .* e\.g\. 10\.0\.0\.5:6379 or "
                                         r"\[::1\]:6379$"):
        runner.settings_of(runner_args(address=address))


@guards("mnistlab/runner.py",
        "an empty --address is refused, not taken for none",
        '    if args.address == "":',
        "    if False:")
def test_an_empty_address_is_refused_not_taken_for_none(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(UsageError, match="^--address is empty"):
        runner.settings_of(runner_args(address=""))


def test_a_bad_ray_address_in_the_environment_is_named_as_such(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "::1")
    with pytest.raises(UsageError, match="^RAY_ADDRESS '::1' is not HOST:PORT"):
        runner.settings_of(runner_args())


def test_a_grpc_server_is_taken_for_a_ray_head_and_gives_this_machines_address_towards_it(as_ray):
    assert runner.ray_head(serving(SETTINGS_FRAME)) == "127.0.0.1"


@guards("mnistlab/runner.py",
        "what answers at --address must answer Ray's first request as a head",
        'said = asked_as_ray(address, seconds) if',
        'said = "ray" if')
@guards("mnistlab/runner.py",
        "Ray's client asks in a process of its own, its core's lines kept off the terminal",
        "stderr=subprocess.DEVNULL, timeout=seconds + 30).stdout",
        "stderr=None).stdout")
@pytest.mark.slow
def test_a_grpc_server_that_does_not_answer_as_a_ray_head_is_refused_within_the_bound(capfd):
    address = serving(SETTINGS_FRAME)
    started = time.monotonic()
    with pytest.raises(UsageError, match=f"^--address {address}: what answers there is not a Ray "):
        runner.ray_head(address, seconds=2)
    assert time.monotonic() - started < 30  # Ray's client waits about 10 s for a connection, whatever its deadline
    assert capfd.readouterr().err == ""  # Ray's core logged its failed tries nowhere


@guards("mnistlab/runner.py",
        "what answers at --address must speak gRPC",
        'if answer[3:4] == b"\\x04" else "no gRPC"',
        'if answer else "no gRPC"')
@guards("mnistlab/runner.py",
        "a server that says nothing is refused within the bound",
        '        except OSError:  # a timeout, or a server that hung up\n            answer = b""',
        '        except ZeroDivisionError:\n            answer = b""')
@pytest.mark.parametrize("answer", [b"HTTP/1.1 400 Bad Request\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n", None])
def test_what_answers_but_is_not_a_ray_head_is_refused_within_the_bound(answer):
    address = serving(answer)
    started = time.monotonic()
    with pytest.raises(UsageError, match=rf"^--address {address}: what answers there is not a Ray \S+ head"):
        runner.ray_head(address, seconds=1)
    assert time.monotonic() - started < 5


@guards("mnistlab/runner.py",
        "the driver joins a cluster under its own address on the route to the head",
        "here = connection.getsockname()[0]",
        "here = None")
def test_the_driver_joins_a_cluster_under_its_address_on_the_route_to_the_head(ray_init, as_ray, tmp_path):
    calls, _ = ray_init
    address = serving(SETTINGS_FRAME)
    runner.start_ray(runner.Settings(jobs=2, address=address), tmp_path / "package", tmp_path)
    assert calls[0]["address"] == address and calls[0]["_node_ip_address"] == "127.0.0.1"


@guards("mnistlab/runner.py",
        "a cluster that cannot be joined names the token as well as the address",
        '+ (f"check --address, and that RAY_AUTH_MODE=token and RAY_AUTH_TOKEN give the cluster\'s "\n'
        '                            f"token" if settings.address else "run with --jobs 1")',
        '+ ("check --address, or run with --jobs 1")')
def test_a_cluster_that_cannot_be_joined_names_the_token_that_may_be_wrong(ray_init, as_ray, tmp_path):
    # A cluster that refuses this driver's token says only that it could not connect.
    _, raised = ray_init
    raised.append(ConnectionError("Failed to connect to Ray cluster"))
    address = serving(SETTINGS_FRAME)
    with pytest.raises(UsageError, match=f"^cannot start Ray at {address} .*; check --address, and that "
                                         f"RAY_AUTH_MODE=token and RAY_AUTH_TOKEN give the cluster's token$"):
        runner.start_ray(runner.Settings(jobs=2, address=address), tmp_path / "package", tmp_path)


@guards("mnistlab/runner.py",
        "a cluster that wants a token the driver lacks is one line, not a traceback",
        '        if type(e).__name__ != "AuthenticationError":  # Ray\'s, raised before it connects',
        "        if True:")
def test_a_cluster_that_wants_a_token_the_driver_lacks_is_one_line(ray_init, as_ray, tmp_path):
    import ray.exceptions
    _, raised = ray_init
    raised.append(ray.exceptions.AuthenticationError("Token authentication is enabled but no token was found"))
    address = serving(SETTINGS_FRAME)
    with pytest.raises(UsageError, match=f"^the Ray cluster at {address} wants a token, and this driver has none; "
                                         f"set RAY_AUTH_TOKEN"):
        runner.start_ray(runner.Settings(jobs=2, address=address), tmp_path / "package", tmp_path)


@pytest.fixture
def ray_init_environment(monkeypatch):
    """ray.init replaced: it records its keyword arguments and the Ray settings in the environment, then fails the
    call with RuntimeError('ray.init reached'). The environment that start_ray changes is restored after."""
    ray = pytest.importorskip("ray")
    calls = []

    def init(**kwargs):
        calls.append((kwargs, {k: v for k, v in os.environ.items() if k.startswith("RAY_")},
                      Path(os.environ["HOME"], "ray_bootstrap_config.yaml").is_file()))
        raise Reached
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    return calls


class Reached(Exception):
    """Raised by the stubbed ray.init."""


@pytest.fixture
def failing_start(monkeypatch, tmp_path, reaped):
    """runner.train_on_ray with Ray's start replaced by one that leaves a process holding a file in the scratch
    folder, then raises what the test sets in raised[0]; returns (raised, scratch folders made)."""
    made, raised = [], [UsageError("Ray did not start")]
    real_mkdtemp = files.tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        if kwargs.get("prefix") != runner.PRIVATE:
            return real_mkdtemp(*args, **kwargs)
        made.append(Path(real_mkdtemp(**{**kwargs, "dir": str(tmp_path)})))
        return str(made[-1])

    def start_ray(settings, package, private, scratch, token):
        reaped.append(holding(Path(scratch) / "session" / "raylet.out"))
        raise raised[0]
    monkeypatch.setattr(files.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(runner, "stage_package", lambda folder: None)
    monkeypatch.setattr(runner, "start_ray", start_ray)
    return raised, made


@pytest.fixture
def unfinished(tmp_path):
    """unfinished(threads): a run of 2 epochs under tmp_path, stopped after its first, whose checkpoint says it
    trained with threads (None: a checkpoint saved before the count was kept); returns its recipe."""
    import torch
    recipe = resolve_recipe("lenet5", {"batch_size": 32}, epochs=2, seed=0, limit=256, train_size=None,
                            validation=False, amp=False)
    assert runner.train_task({**recipe, "epochs": 1}, "lenet5_seed0", None, "cpu", out_dir=tmp_path)[1] is None
    path = tmp_path / "checkpoints" / "lenet5_seed0.pt"
    trained = torch.load(path, weights_only=True)
    (tmp_path / "results" / "lenet5_seed0.json").unlink()

    def made(threads):
        checkpoint = {**trained, "recipe": recipe}
        if threads is None:
            del checkpoint["threads"]
        else:
            checkpoint["threads"] = threads
        torch.save(checkpoint, path)
        return recipe
    return made


@pytest.fixture
def stopped_mid_sweep(monkeypatch, tmp_path):
    """runner.train_on_ray on a Ray stand-in whose ray.get(ref) first sends this process SIGTERM, as a SIGTERM to the
    sweep's process group reaches the driver while it kills the task's worker, and then answers as get(ref) says.
    Returns run(jobs, get, signum): the outcomes yielded before train_on_ray raised Terminated for signum, or
    pytest.fail."""
    from mnistlab.cli import ENDINGS, Terminated, terminate
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(runner, "start_ray", lambda *args: None)

    class Task:  # ray.remote(train).options(...); each .remote() is a ref
        def options(self, **settings):
            return self

        def remote(self, *args):
            return object()
    monkeypatch.setattr(ray, "remote", lambda function: Task())
    monkeypatch.setattr(ray, "wait", lambda refs, **kwargs: (refs[:1], refs[1:]))
    monkeypatch.setattr(ray, "cancel", lambda *args, **kwargs: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)

    def run(count, answer, signum=signal.SIGTERM):
        def get(ref):
            os.kill(os.getpid(), signum)
            return answer(ray)
        monkeypatch.setattr(ray, "get", get)
        jobs = [runner.Job(f"lenet5_seed{i}", {}, files.RunPaths.of(tmp_path, f"lenet5_seed{i}")) for i in range(count)]
        outcomes = []
        with pytest.raises(Terminated) as stopped:
            for outcome in runner.train_on_ray(jobs, runner.Settings(jobs=2), lambda job: None):
                outcomes.append(outcome)
        assert stopped.value.signum == signum
        return outcomes
    # As cli.run installs them: a signal the driver does not take for itself raises Terminated wherever it lands.
    handlers = {signum: signal.signal(signum, terminate) for signum in ENDINGS}
    yield run
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


RAY_NODE = """
start_node() {{  # name, then ray start's flags: the node's processes in a session of their own
  local name=$1; shift
  setsid {ray} start "$@" --block --num-cpus 1 --node-ip-address 127.0.0.1 --min-worker-port 0 --max-worker-port 0 \
    --object-store-memory 100000000 --disable-usage-stats > {tmp}/$name.log 2>&1 < /dev/null &
}}
session() {{ ps -e -o pid=,sid= | awk -v s=$1 '$2 == s {{print $1}}'; }}
"""


@guards("mnistlab/runner.py",
        "each run's lock held while it trains",
        "            locks.enter_context(files.RunLock(job.paths))",
        "            pass")
def test_a_second_tuning_of_the_same_run_refuses_while_the_first_holds_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tune, "STAGING", tmp_path / "staging")
    path, recipe = tmp_path / "lenet5_tiny_seed0.json", tiny_recipe(validation=True)
    paths = tune.run_paths(path)
    paths.lock.parent.mkdir(parents=True)
    with files.RunLock(paths):  # the first process, still training
        with pytest.raises(UsageError, match="another process is training lenet5_tiny_seed0"):
            tune.trainer(runner.Settings(), lambda setting, seed: recipe, lambda setting, seed: path)([({}, 0)])
    assert not path.exists()


@guards("mnistlab/runner.py",
        "RAY_ADDRESS only with --jobs above 1",
        "(os.environ.get(\"RAY_ADDRESS\") or None if args.jobs > 1 else None)",
        "(os.environ.get(\"RAY_ADDRESS\") or None)")
def test_ray_address_stands_in_for_address_only_for_runs_at_once(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert runner.settings_of(runner_args(jobs=1)).address is None
    assert runner.settings_of(runner_args(jobs=2)).address == "10.0.0.1:6379"
    assert runner.settings_of(runner_args(jobs=2, address="10.0.0.2:6379")).address == "10.0.0.2:6379"


@guards("mnistlab/runner.py",
        "--gpus-per-run refused where there is no GPU, before Ray starts",
        "            if settings.gpus and not gpus:\n",
        "            if False:\n")
def test_a_share_of_a_gpu_that_is_not_here_is_refused_before_ray_starts(ray_init_environment, monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "gpus_here", lambda settings: 0)
    with pytest.raises(UsageError, match="--gpus-per-run: this machine has no CUDA GPU for the runs to share"):
        runner.start_ray(runner.Settings(jobs=2, gpus=0.5), tmp_path / "package", tmp_path, tmp_path / "ray", "ab" * 32)
    assert not ray_init_environment


@guards("mnistlab/runner.py",
        "--address probed before Ray connects",
        "_node_ip_address=ray_head(settings.address), ",
        "")
@guards("mnistlab/runner.py",
        "the probe's refusal: nothing answers there",
        "    except OSError as e:\n        raise UsageError(f\"--address {address}: nothing answers there",
        "    except ZeroDivisionError as e:\n"
        "        raise UsageError(f\"--address {address}: nothing answers there")
def test_an_address_where_nothing_answers_is_refused_before_ray_connects(ray_init_environment, tmp_path):
    with pytest.raises(UsageError) as refused:
        runner.start_ray(runner.Settings(jobs=2, address="127.0.0.1:1"), tmp_path / "package", tmp_path)
    assert str(refused.value).startswith("--address 127.0.0.1:1: nothing answers there (")
    assert not ray_init_environment


@guards("mnistlab/runner.py",
        "the probe times out",
        "socket.create_connection((host, port), timeout=seconds)",
        "socket.create_connection((host, port))")
@pytest.mark.skipif(not (os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")),
                    reason="needs a network namespace of its own: root, unshare and ip")
def test_an_address_that_swallows_packets_is_refused_when_the_probe_times_out():
    # In a network namespace of its own, an address on a fake uplink whose packets nobody reads: a connection to
    # it is neither accepted nor refused, and without its timeout the probe would wait minutes.
    probe = shlex.join([sys.executable, "-c", "from mnistlab import runner; runner.ray_head('10.99.0.1:6379', seconds=2)"])
    script = ("ip link set lo up && ip tuntap add dev uplink0 mode tun && ip addr add 10.99.0.2/24 dev uplink0 && "
              f"ip link set uplink0 up && exec {probe}")
    # Without the timeout, the kernel's own retries of the connection take about two minutes.
    done = subprocess.run(["unshare", "--net", "bash", "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=40)
    assert done.returncode == 1 and "UsageError: --address 10.99.0.1:6379: nothing answers there (timed out)" in \
        done.stderr, done.stderr


@guards("mnistlab/runner.py",
        "Ray's workers get the package alone: no .venv, tests or raw data",
        "PACKAGE = (\"mnistlab/*.py\", \"model.py\", \"dataset.py\", \"data/bundle/*\")",
        "PACKAGE = (\"**/*.py\", \"data/bundle/*\")")
def test_rays_workers_get_the_package_and_nothing_else(tmp_path, monkeypatch):
    tree = tmp_path / "tree"
    for name in ("main.py", "model.py", "dataset.py", "mnistlab/runs.py", "scripts/tune.py", "data/bundle/train.gz", "data/MNIST/raw/train", ".venv/lib/site.py",
                 ".git/config", "runs/results/lenet5_seed0.json", "tests/test_main.py", "benchmarks/bench_gpu.py"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(name)
    monkeypatch.setattr(runner, "ROOT", tree)
    runner.stage_package(tmp_path / "package")
    staged = sorted(str(path.relative_to(tmp_path / "package")) for path in (tmp_path / "package").rglob("*")
                    if path.is_file())
    # No task runs a program, scripts/ or benchmarks/.
    assert staged == ["data/bundle/train.gz", "dataset.py", "mnistlab/runs.py", "model.py"]


@guards("mnistlab/runner.py",
        "a private instance listens on loopback only",
        "_node_ip_address=\"127.0.0.1\", ",
        "")
@guards("mnistlab/ray_local.py",
        "a private instance takes token authentication",
        "PRIVATE_ENVIRONMENT = {\"RAY_AUTH_MODE\": \"token\"}",
        "PRIVATE_ENVIRONMENT = {}")
@guards("mnistlab/ray_local.py",
        "a private instance's own token",
        "environment.update(PRIVATE_ENVIRONMENT, RAY_AUTH_TOKEN=token)",
        "environment.update(PRIVATE_ENVIRONMENT)")
@guards("mnistlab/ray_local.py",
        "no usage statistics sent",
        "RAY_ENVIRONMENT = {\"RAY_USAGE_STATS_ENABLED\": \"0\", ",
        "RAY_ENVIRONMENT = {")
@guards("mnistlab/runner.py",
        "no dashboard",
        "include_dashboard=False)",
        "include_dashboard=None)")
@guards("mnistlab/runner.py",
        "a private instance's files in the scratch folder, removed with it",
        "_temp_dir=str(scratch), ",
        "")
@guards("mnistlab/ray_local.py",
        "Ray's head finds its bootstrap file: no look for cloud metadata at 169.254.169.254",
        "    (boot_home / \"ray_bootstrap_config.yaml\").write_text(\"{}\\n\")\n",
        "")
@guards("mnistlab/ray_local.py",
        "the driver's HOME given back after Ray starts",
        "        else:\n            os.environ[\"HOME\"] = home\n",
        "")
def test_a_private_ray_instance_stays_on_loopback_behind_its_own_token(ray_init_environment, tmp_path):
    home = os.environ.get("HOME")
    with pytest.raises(Reached):
        runner.start_ray(runner.Settings(jobs=2), tmp_path / "package", tmp_path, tmp_path / "ray", "cd" * 32)
    ((kwargs, environment, bootstrap),) = ray_init_environment
    assert bootstrap, "Ray's head would look for cloud metadata at 169.254.169.254"
    assert os.environ.get("HOME") == home  # the driver's own home, given back
    assert kwargs["address"] == "local" and kwargs["_node_ip_address"] == "127.0.0.1"
    assert kwargs["include_dashboard"] is False and kwargs["_temp_dir"] == str(tmp_path / "ray")
    assert environment["RAY_AUTH_MODE"] == "token" and environment["RAY_AUTH_TOKEN"] == "cd" * 32
    assert environment["RAY_USAGE_STATS_ENABLED"] == "0"


@guards("mnistlab/runner.py",
        "a Ray error cut to 300 characters",
        "{lines[-1] if lines else ''}\".strip()[:300]",
        "{lines[-1] if lines else ''}\".strip()")
def test_a_ray_error_is_one_short_line():
    class RayTaskError(Exception):
        cause = RuntimeError("Traceback (most recent call last):\n  File \"x.py\", line 1\n" + "y" * 1000 + "\n")
    line = runner.one_line(RayTaskError("wrapped"))
    assert line == f"RuntimeError: {'y' * 1000}"[:300]


@guards("mnistlab/runner.py",
        "a private instance's leftover processes reaped",
        "    with files.private_folder(PRIVATE, clear=ray_local.reap) as private:",
        "    with files.private_folder(PRIVATE) as private:")
@guards("mnistlab/files.py",
        "a private folder removed when left",
        "        clear(folder)\n        shutil.rmtree(folder, ignore_errors=True)\n",
        "        clear(folder)\n")
@guards("mnistlab/ray_local.py",
        "the signal handlers given back",
        "        for signum, handler in self.handlers.items():\n            signal.signal(signum, handler)\n",
        "        pass\n")
def test_a_private_ray_instance_that_fails_to_start_leaves_no_folder_no_process_and_no_handler(failing_start,
                                                                                                 reaped):
    raised, made = failing_start
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(UsageError, match="Ray did not start"):
        list(runner.train_on_ray([], runner.Settings(jobs=2), lambda job: None))
    assert len(made) == 1 and not made[0].exists()
    assert reaped[0].wait(timeout=20) == -signal.SIGKILL
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers


@guards("mnistlab/runner.py",
        "Ray's own SIGTERM exit during its start is a SIGTERM",
        "            except SystemExit:  # Ray's own SIGTERM handler, installed during ray.init, went off "
        "first\n                raise Terminated from None\n",
        "")
def test_rays_own_sigterm_exit_during_its_start_is_a_sigterm(failing_start):
    from mnistlab.cli import Terminated
    raised, _ = failing_start
    raised[0] = SystemExit(0)  # Ray's SIGTERM handler, installed in ray.init, exits
    with pytest.raises(Terminated):
        list(runner.train_on_ray([], runner.Settings(jobs=2), lambda job: None))


@guards("mnistlab/runner.py",
        "the output folders proved writable before any work",
        "    files.prepare_out_dir(out_dir, [path for job in jobs",
        "    (lambda *a: None)(out_dir, [path for job in jobs")
def test_jobs_to_train_checks_the_output_folders_before_any_work(tmp_path, read_only_probe):
    with pytest.raises(UsageError, match=f"--out-dir {tmp_path} cannot be written"):
        runner.jobs_to_train([("lenet5_seed0", tiny_recipe())], lambda name: files.RunPaths.of(tmp_path, name),
                             tmp_path)


@guards("mnistlab/runner.py",
        "a run's results written last",
        "KINDS = (\"checkpoint\", \"curves\", \"results\")",
        "KINDS = (\"results\", \"checkpoint\", \"curves\")")
def test_a_run_whose_checkpoint_cannot_be_written_leaves_no_results(tmp_path):
    (tmp_path / "file").write_text("")
    paths = files.RunPaths(results=tmp_path / "results" / "x.json", curves=tmp_path / "plots" / "x.png",
                           checkpoint=tmp_path / "file" / "x.pt", lock=tmp_path / "x.lock")
    outcome = runner.Outcome(runner.Job("x", tiny_recipe(), paths),
                             {"checkpoint": b"weights", "curves": b"png", "results": b"{}"}, None, 1.0)
    with pytest.raises(files.WriteError):
        runner.install(outcome)
    assert not paths.results.exists()


@guards("mnistlab/runner.py",
        "a run's temporary folder removed",
        "tempfile.TemporaryDirectory(prefix=\"mnist-run-\") as folder",
        "contextlib.nullcontext(tempfile.mkdtemp(prefix=\"mnist-run-\")) as folder")
def test_a_run_trained_in_a_temporary_folder_leaves_none_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))
    made, error, _ = runner.train_task(tiny_recipe(), "lenet5_seed0", None, "cpu")
    assert error is None and set(made) == set(runner.KINDS)
    assert json.loads(made["results"])["status"] == "complete"
    assert not list(tmp_path.glob("mnist-run-*"))  # (torch may keep a cache of its own there)


@guards("mnistlab/runner.py",
        "a sweep's run on Ray takes one thread unless --cpus-per-run says",
        "settings.threads or (torch.get_num_threads() if local else 1)",
        "settings.threads or torch.get_num_threads()")
@guards("mnistlab/runner.py",
        "a sweep's run with --jobs 1 takes torch's default thread count",
        "    threads = None if settings is None else settings.threads or (torch.get_num_threads() if local else 1)",
        "    threads = None if settings is None else settings.threads or 1")
@pytest.mark.parametrize("began, settings, refused", [
    (3, runner.Settings(jobs=2), "this run would take 1, which changes its numbers; pass --cpus-per-run 3 to"),
    (3, runner.Settings(jobs=2, threads=3), None),
    (3, runner.Settings(address="127.0.0.1:1"), "this run would take 1, which changes its numbers; pass "
                                                 "--cpus-per-run 3 to"),
    (3, runner.Settings(jobs=1), None),  # torch's default here, 3
    (1, runner.Settings(jobs=1), "this run would take 3, which changes its numbers; pass --cpus-per-run 1 to"),
    (1, runner.Settings(jobs=1, threads=1), None),
    (None, runner.Settings(jobs=2), None),  # saved before the count was kept: unknown, so not refused
])
def test_a_run_resumes_only_at_the_thread_count_it_began_with(began, settings, refused, unfinished, tmp_path,
                                                              thread_count):
    thread_count(3)  # as torch's default would be on three cores
    recipe = unfinished(began)
    to_train = lambda: runner.jobs_to_train([("lenet5_seed0", recipe)], lambda name: files.RunPaths.of(tmp_path, name),
                                            tmp_path, settings=settings)
    if refused:
        with pytest.raises(UsageError) as error:
            to_train()
        assert str(error.value) == (f"{tmp_path}/checkpoints/lenet5_seed0.pt was trained with {began} torch "
                                    f"threads, and {refused} continue it")
    else:
        (job,), finished = to_train()
        assert job.resume_from and finished == []


@guards("mnistlab/runner.py",
        "a task killed by the signal that stops the sweep is the stop, not a failed run",
        "        signals.check()  # a task killed by the signal that stops the sweep is not a failed run\n",
        "")
def test_a_task_killed_by_the_signal_that_stops_the_sweep_is_the_stop_not_a_failed_run(stopped_mid_sweep):
    def killed(ray):
        raise ray.exceptions.WorkerCrashedError()
    assert stopped_mid_sweep(2, killed) == []  # no run reported failed: the sweep stopped


@guards("mnistlab/runner.py",
        "a signal that comes with the last run still stops the sweep",
        "            signals.check()  # the signal that killed the last tasks, which ended the loop\n",
        "")
@guards("mnistlab/ray_local.py",
        "SIGHUP stops a sweep on Ray as SIGTERM does",
        "        for signum in STOPS:",
        "        for signum in (signal.SIGINT, signal.SIGTERM):")
@guards("mnistlab/ray_local.py",
        "a sweep stopped by SIGHUP exits as SIGHUP does, not as SIGTERM",
        "raise KeyboardInterrupt if self.caught[0] == signal.SIGINT else Terminated(self.caught[0])",
        "raise KeyboardInterrupt if self.caught[0] == signal.SIGINT else Terminated()")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_that_arrives_with_the_last_run_still_stops_the_sweep(stopped_mid_sweep, signum):
    # The loop ends with the last run; the signal that came with it is not lost (exit 143 or 129, the continue line).
    outcomes = stopped_mid_sweep(1, lambda ray: ({}, None, 1.0), signum)
    assert [outcome.job.name for outcome in outcomes] == ["lenet5_seed0"] and outcomes[0].error is None


@guards("mnistlab/runner.py",
        "a signal while runs are pending stops the sweep",
        "            while pending:\n                signals.check()\n",
        "            while pending:\n")
@guards("mnistlab/runner.py",
        "the driver's signal handlers put back after ray.init takes SIGTERM",
        "            finally:\n                signals.listen()\n",
        "            finally:\n                pass\n")
@guards("mnistlab/runner.py",
        "a private instance's runs keep their temporary folders in its scratch folder, removed "
        "with it",
        '        if scratch:  # the runs\' temporary folders too, removed with it: a cancelled task is killed '
        'uncleaned\n            runtime_env["env_vars"]["TMPDIR"] = str(scratch)\n',
        "")
@guards("mnistlab/runner.py",
        "Ray's processes inherit SIGHUP blocked, so that a closed terminal stops the driver first",
        "            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})",
        "            held = signal.pthread_sigmask(signal.SIG_BLOCK, set())")
@needs_namespace
@pytest.mark.parametrize("signum, status", STOPS)
@pytest.mark.slow
def test_a_stopped_sweep_keeps_its_finished_runs_and_the_same_command_runs_only_the_rest(signum, status, tmp_path,
                                                                                        run_sweep):
    out = tmp_path / "sweep"
    argv = ["sweep.py", "--model", "lenet5", "--seed", "0", "1", "2", "3", "--limit", "1024", "--epochs", "4",
            "--jobs", "2", "--out-dir", out]
    temporary = tmp_path / "tmp"  # where the sweep and, unless it says otherwise, Ray's tasks make temporary files
    temporary.mkdir()
    script = PRIVATE + f"""
    TMPDIR={temporary} setsid {python(*argv)} > {tmp_path}/out 2> {tmp_path}/err &
    sweep=$!
    for i in $(seq 600); do grep -q accuracy {tmp_path}/out && break; sleep 0.1; done
    kill -{signum.name[3:]} -- {"" if signum == signal.SIGTERM else "-"}$sweep
    wait $sweep; stopped=$?; echo "left [$(private $sweep)]"; echo "status $stopped"
    {still_running(1)}
    """
    # Ctrl-C and a hangup reach the whole process group, as from a terminal; SIGTERM the sweep alone, as kill,
    # timeout and docker stop send it. (SIGTERM to the whole group can stop Ray's own processes first, and then
    # Ray's core exits the driver at once with 1; the next run removes what that left.)
    _, log, err = in_namespace(script)
    stderr = (tmp_path / "err").read_text()
    assert f"status {status}" in log and "left []" in log, (log, err, stderr)
    assert log.split(f"status {status}", 1)[1].strip() == "", "processes left after the sweep"
    assert "continue with: " in stderr and "Traceback" not in stderr, stderr
    finished = sorted(p.stem for p in (out / "results").glob("*.json"))
    assert 1 <= len(finished) < 4
    for name in finished:
        assert results(out, name)["status"] == "complete"
    assert not list(out.rglob("*.tmp"))
    assert not list(temporary.iterdir())  # nor a cancelled run's temporary folder, killed before it cleaned up
    kept = {name: (out / "results" / f"{name}.json").read_bytes() for name in finished}
    if signum != signal.SIGINT:  # what is on disk is the same whatever stopped it: one rerun tells for the three
        return

    status, printed, _ = run_sweep(*argv[1:], "--jobs", "1")
    assert status == 0
    assert f"{len(finished)} finished already, {4 - len(finished)} to train" in printed
    trained = re.findall(r"^(lenet5_seed\d): ", printed, re.MULTILINE)
    assert sorted(trained) == sorted(set(f"lenet5_seed{s}" for s in range(4)) - set(finished))
    assert all((out / "results" / f"{name}.json").read_bytes() == data for name, data in kept.items())


@guards("mnistlab/runner.py",
        "a run whose node dies is run again",
        "max_retries=RETRIES,",
        "max_retries=0,")
@guards("mnistlab/runner.py",
        "a head that refuses the driver's token is one line, not Ray's retries",
        '    if said == "token":\n',
        '    if False:\n')
@needs_namespace
@pytest.mark.slow
def test_a_sweep_on_two_nodes_completes_when_one_dies_mid_sweep(tmp_path, request):
    ray = shutil.which("ray", path=os.path.dirname(sys.executable))
    out = tmp_path / "sweep"
    # Each node's own temporary folder, short: Ray's sockets live there, and a socket's path holds 107 bytes at most.
    nodes = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(nodes, ignore_errors=True))
    # Token authentication, as the README asks of a cluster; the 127.0.0.1 in the namespace stays loopback only
    # because the namespace has no other interface.
    environment = f"export RAY_AUTH_MODE=token RAY_AUTH_TOKEN={'ab' * 32} RAY_USAGE_STATS_ENABLED=0; "
    script = environment + RAY_NODE.format(ray=ray, tmp=tmp_path) + f"""
    start_node head --head --port 6390 --temp-dir {nodes}/head --include-dashboard false; head=$!
    for i in $(seq 300); do grep -q "Ray runtime started" {tmp_path}/head.log && break; sleep 0.1; done
    start_node worker --address 127.0.0.1:6390 --temp-dir {nodes}/worker; worker=$!
    for i in $(seq 300); do grep -q "Ray runtime started" {tmp_path}/worker.log && break; sleep 0.1; done
    RAY_AUTH_TOKEN= {python("sweep.py", "--model", "lenet5", *ONE_EPOCH, "--address", "127.0.0.1:6390", "--out-dir",
                            out)} > {tmp_path}/tokenless 2>&1; echo "without a token $?"
    RAY_AUTH_TOKEN={'cd' * 32} {python("sweep.py", "--model", "lenet5", *ONE_EPOCH, "--address", "127.0.0.1:6390",
                                       "--out-dir", out)} > {tmp_path}/wrong 2>&1; echo "with another token $?"
    {python("sweep.py", "--model", "lenet5", "--seed", *range(6), "--limit", "1024", "--epochs", "3",
            "--address", "127.0.0.1:6390", "--out-dir", out)} > {tmp_path}/out 2> {tmp_path}/err &
    sweep=$!
    for i in $(seq 600); do [ -n "$(ps -e -o sid=,args= | awk -v s=$worker '$1 == s && /ray::train/')" ] && break
      sleep 0.1; done
    kill -KILL $(session $worker); echo "worker node killed"
    wait $sweep; echo "status $?"
    kill -TERM $head; for i in $(seq 100); do [ -z "$(session $head)" ] && break; sleep 0.1; done
    kill -KILL $(session $head) 2>/dev/null || true
    """
    status, log, err = in_namespace(script, uplink=False, timeout=400)
    printed, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert "worker node killed" in log and "status 0" in log, (log, err, printed, stderr)
    # Without the uplink, a route lookup towards a public address fails, and Ray says so.
    assert "external connectivity" not in stderr, stderr
    tokenless = (tmp_path / "tokenless").read_text().splitlines()
    assert "without a token 2" in log and tokenless[1:] == [
        "sweep.py: error: the Ray cluster at 127.0.0.1:6390 wants a token, and this driver has none; set RAY_AUTH_TOKEN "
        "to the cluster's token (RAY_AUTH_MODE=token asks for one)"], tokenless
    wrong = (tmp_path / "wrong").read_text().splitlines()  # one line, not Ray's retries a second apart
    assert "with another token 2" in log and wrong[1:] == [
        "sweep.py: error: the Ray cluster at 127.0.0.1:6390 refuses this driver's token; set RAY_AUTH_MODE=token and "
        "RAY_AUTH_TOKEN to the cluster's token"], wrong
    for seed in range(6):
        run = results(out, f"lenet5_seed{seed}")
        assert run["status"] == "complete" and len(run["history"]) == 3
        assert len(run["predictions"]) == 1024
    assert not list(out.rglob("*.tmp"))


@guards("mnistlab/runner.py",
        "--gpus-per-run refused without runs at once on Ray",
        "    if args.gpus_per_run and args.jobs == 1 and not address:",
        "    if False:")
def test_a_share_of_a_gpu_needs_runs_at_once(tmp_path, run_sweep):
    status, _, err = run_sweep("--model", "lenet5", *ONE_EPOCH, "--gpus-per-run", "0.5", "--out-dir", tmp_path)
    assert status == 2 and "--gpus-per-run shares a GPU among runs at once on Ray; add --jobs N" in err, err


@guards("mnistlab/runner.py",
        "a finished run with damaged results trained again",
        "                slots.load(paths.results, \"training it again\", recipe=recipe,\n"
        "                           labels=None if stopped else true_labels(recipe), diverged=stopped)\n",
        "")
def test_a_finished_run_whose_results_are_damaged_is_trained_again(tmp_path, run_sweep):
    argv = ["--model", "lenet5", "--seed", "0", "1", *ONE_EPOCH, "--out-dir", tmp_path]
    assert run_sweep(*argv)[0] == 0
    damaged = tmp_path / "results" / "lenet5_seed1.json"
    run = json.loads(damaged.read_text())
    damaged.write_text(json.dumps({**run, "predictions": run["predictions"][:-5]}))
    status, out, _ = run_sweep(*argv)
    assert status == 0 and "1 finished already, 1 to train" in out, out
    assert re.search(r"^lenet5_seed1: .*lenet5_seed1.json has predictions of 251 characters.*training it again", out,
                     re.MULTILINE), out
    assert results(tmp_path, "lenet5_seed1") == {**run, "history": results(tmp_path, "lenet5_seed1")["history"]}
    assert "not counted" not in out
