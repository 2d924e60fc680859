"""runner.py's dealings with Ray: the addresses it accepts, the head it checks for before Ray waits on it, and the
environment every Ray process of its gets."""
import argparse
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import runner
from conftest import ROOT
from errors import UsageError


def runner_args(**given):
    return argparse.Namespace(**{"jobs": 2, "address": None, "cpus_per_run": None, "gpus_per_run": None, **given})


@pytest.mark.parametrize("address, host, port", [("10.0.0.5:6379", "10.0.0.5", 6379), ("head:1", "head", 1),
                                                 ("[::1]:6379", "::1", 6379)])
def test_an_address_is_host_and_port(address, host, port):
    assert runner.split_address(address) == (host, port)


@pytest.mark.parametrize("address", ["::1", "::1:6379", "ray://head:10001", "head", "head:", ":6379", "head:0",
                                     "head:65536", "auto", "head:²", "head:6379 "])
def test_an_address_that_is_not_host_and_port_is_refused_in_one_line(address):
    with pytest.raises(UsageError, match=r"^--address .* is not HOST:PORT; give .* e\.g\. 10\.0\.0\.5:6379 or "
                                         r"\[::1\]:6379$"):
        runner.settings_of(runner_args(address=address))


def test_an_empty_address_is_refused_not_taken_for_none(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(UsageError, match="^--address is empty"):
        runner.settings_of(runner_args(address=""))


def test_a_bad_ray_address_in_the_environment_is_named_as_such(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "::1")
    with pytest.raises(UsageError, match="^RAY_ADDRESS '::1' is not HOST:PORT"):
        runner.settings_of(runner_args())


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


def test_a_grpc_server_is_taken_for_a_ray_head_and_gives_this_machines_address_towards_it(as_ray):
    assert runner.ray_head(serving(SETTINGS_FRAME)) == "127.0.0.1"


def test_a_grpc_server_that_does_not_answer_as_a_ray_head_is_refused_within_the_bound(capfd):
    address = serving(SETTINGS_FRAME)
    started = time.monotonic()
    with pytest.raises(UsageError, match=f"^--address {address}: what answers there is not a Ray "):
        runner.ray_head(address, seconds=2)
    assert time.monotonic() - started < 30  # Ray's client waits about 10 s for a connection, whatever its deadline
    assert capfd.readouterr().err == ""  # Ray's core logged its failed tries nowhere


@pytest.mark.parametrize("answer", [b"HTTP/1.1 400 Bad Request\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n", None])
def test_what_answers_but_is_not_a_ray_head_is_refused_within_the_bound(answer):
    address = serving(answer)
    started = time.monotonic()
    with pytest.raises(UsageError, match=rf"^--address {address}: what answers there is not a Ray \S+ head"):
        runner.ray_head(address, seconds=1)
    assert time.monotonic() - started < 5


def test_rays_lines_reach_the_terminal_without_colour_codes(monkeypatch, capsys):
    worker = pytest.importorskip("ray._private.worker")
    for key, value in runner.RAY_ENVIRONMENT.items():
        monkeypatch.setenv(key, value)
    worker.print_worker_logs({"pid": "raylet", "ip": "127.0.0.1", "localhost": "127.0.0.1",
                              "lines": ["a warning from the raylet"]}, sys.stderr)
    err = capsys.readouterr().err
    assert "a warning from the raylet" in err and "\x1b[" not in err


def test_the_driver_never_asks_a_route_to_a_public_address_for_its_own():
    # Ray learns a machine's address from the route towards 8.8.8.8 unless told it is no cluster node itself.
    code = ("import os, runner; os.environ.update(runner.RAY_ENVIRONMENT); import ray._private.services as s\n"
            "def lookup(*args): raise SystemExit('looked up a route to a public address')\n"
            "s.node_ip_address_from_perspective = lookup\n"
            "print(s.resolve_ip_for_localhost('127.0.0.1'))")
    pytest.importorskip("ray")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "127.0.0.1\n", done.stderr


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


def test_the_driver_joins_a_cluster_under_its_address_on_the_route_to_the_head(ray_init, as_ray, tmp_path):
    calls, _ = ray_init
    address = serving(SETTINGS_FRAME)
    runner.start_ray(runner.Settings(jobs=2, address=address), tmp_path / "package", tmp_path)
    assert calls[0]["address"] == address and calls[0]["_node_ip_address"] == "127.0.0.1"


def test_a_cluster_that_cannot_be_joined_names_the_token_that_may_be_wrong(ray_init, as_ray, tmp_path):
    # A cluster that refuses this driver's token says only that it could not connect.
    _, raised = ray_init
    raised.append(ConnectionError("Failed to connect to Ray cluster"))
    address = serving(SETTINGS_FRAME)
    with pytest.raises(UsageError, match=f"^cannot start Ray at {address} .*; check --address, and that "
                                         f"RAY_AUTH_MODE=token and RAY_AUTH_TOKEN give the cluster's token$"):
        runner.start_ray(runner.Settings(jobs=2, address=address), tmp_path / "package", tmp_path)


def test_a_cluster_that_wants_a_token_the_driver_lacks_is_one_line(ray_init, as_ray, tmp_path):
    import ray.exceptions
    _, raised = ray_init
    raised.append(ray.exceptions.AuthenticationError("Token authentication is enabled but no token was found"))
    address = serving(SETTINGS_FRAME)
    with pytest.raises(UsageError, match=f"^the Ray cluster at {address} wants a token, and this driver has none; "
                                         f"set RAY_AUTH_TOKEN"):
        runner.start_ray(runner.Settings(jobs=2, address=address), tmp_path / "package", tmp_path)


def test_reap_stops_a_process_that_works_in_the_folder_holding_no_file_there(tmp_path):
    folder = tmp_path / "private"
    (folder / "package").mkdir(parents=True)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], cwd=folder / "package")
    beside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], cwd=tmp_path)
    try:
        runner.reap(folder)
        assert worker.wait(timeout=20) == -9 and beside.poll() is None
    finally:
        for process in (worker, beside):
            process.kill()
            process.wait()
