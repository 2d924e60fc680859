"""sweep.py: a grid of main.py runs, one after another or at once on Ray, and the table that compares them.

Every Ray test runs in a network namespace of its own (unshare, as root), with a fake uplink whose packets go
nowhere: there, a Ray that ignored 127.0.0.1 would show as a listener on another address, and nothing it sent
could leave the machine. The namespace has its own process IDs too, so that the test sees every process Ray left.
"""
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import dataset
import significance
from conftest import ROOT, binomial_p, check_advice_in, without_seconds

QUICK = ["--limit", "256", "--epochs", "1"]
NAMESPACES = os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip") and shutil.which("ss")
needs_namespace = pytest.mark.skipif(not NAMESPACES, reason="Ray is tested only inside a network namespace of its "
                                                            "own: needs root, unshare, ip and ss")
# A fake uplink: an interface with a private address and a default route, whose packets nobody reads.
UPLINK = ("ip tuntap add dev uplink0 mode tun && ip addr add 10.99.0.2/24 dev uplink0 && ip link set uplink0 up && "
          "ip route add default via 10.99.0.1 dev uplink0")


def sweep(*argv, env=None):
    """sweep.py run with argv, one run after another: (exit status, stdout, stderr), each flag its refusals name
    checked to be one sweep.py accepts."""
    done = subprocess.run([sys.executable, str(ROOT / "sweep.py"), *map(str, argv)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)
    check_advice_in("sweep", done.stderr)
    return done.returncode, done.stdout, done.stderr


def in_namespace(script, uplink=True, timeout=300):
    """A bash script run as the first process of new network and PID namespaces, with loopback up and, where
    asked, the fake uplink: (exit status, stdout, stderr). Whatever it leaves running dies with it."""
    prelude = f"set -u; cd {shlex.quote(str(ROOT))}; ip link set lo up; {UPLINK if uplink else 'true'}; "
    done = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "bash", "-c", prelude + script],
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout, done.stderr


def results(out_dir, name):
    return json.loads((out_dir / "results" / f"{name}.json").read_text())


def table_rows(out):
    """{setting: its row's cells, empty ones left out} from the table sweep.py prints; cells are two spaces apart."""
    lines = out[out.index("\nsetting") + 1:].splitlines()[1:]
    rows = [re.split(r" {2,}", line.strip()) for line in lines if line and not line.startswith(
        ("Final", "not counted", "the runs"))]
    return {cells[0]: cells for cells in rows}


def python(*argv):
    """A command line that runs sweep.py or main.py with Ctrl-C and SIGHUP as a terminal gives them: a background
    shell would start it with SIGINT ignored, and nohup with SIGHUP ignored."""
    reset = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
             "signal.signal(signal.SIGHUP, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])")
    return shlex.join([sys.executable, "-c", reset, sys.executable, *map(str, argv)])


@needs_namespace
def test_a_local_sweep_makes_main_pys_runs_listens_on_loopback_only_and_leaves_no_process(tmp_path):
    out = tmp_path / "sweep"
    script = f"""
    {python("sweep.py", "--model", "lenet5", "custom_mlp", "--seed", "0", "1", *QUICK, "--jobs", "2",
            "--out-dir", out)} > {tmp_path}/out 2> {tmp_path}/err &
    sweep=$!
    while kill -0 $sweep 2>/dev/null; do ss -Hltnup >> {tmp_path}/listening; sleep 0.2; done
    wait $sweep; echo "status $?"
    sleep 1; ps -e -o pid=,args= | grep -v -e 'ps -e' -e grep -e ' bash' || true
    """
    status, log, err = in_namespace(script)
    assert "status 0" in log, (log, err, (tmp_path / "err").read_text())
    left = log.split("status 0", 1)[1].strip()
    assert left == "", f"processes left after the sweep:\n{left}"
    listening = (tmp_path / "listening").read_text().splitlines()
    assert any("raylet" in line or "gcs_server" in line for line in listening), "Ray never seen listening"
    for line in listening:
        local = line.split()[4]
        assert local.startswith(("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")), line  # the last: IPv4 loopback, on an IPv6 socket
    printed = (tmp_path / "out").read_text()

    # main.py, with the thread count the sweep's runs had (one each), makes the same runs.
    reference = tmp_path / "main"
    for model in ("lenet5", "custom_mlp"):
        for seed in (0, 1):
            done = subprocess.run([sys.executable, "main.py", "--model", model, "--seed", str(seed), *QUICK,
                                   "--device", "cpu", "--out-dir", str(reference)], cwd=ROOT, capture_output=True,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
            assert done.returncode == 0, done.stderr
            name = f"{model}_seed{seed}"
            ours, theirs = results(out, name), results(reference, name)
            assert without_seconds(ours.pop("history")) == without_seconds(theirs.pop("history"))
            assert ours == theirs  # the predictions, the recipe and the device with its thread count too
            assert (out / "plots" / f"{name}_curves.png").read_bytes() == \
                (reference / "plots" / f"{name}_curves.png").read_bytes()
            assert (out / "checkpoints" / f"{name}.pt").stat().st_size > 0

    # The table's verdicts are significance.py's, called directly on the stored predictions.
    labels = dataset.load_splits(limit=256)[3].numpy()
    correct = {model: {seed: np.frombuffer(results(out, f"{model}_seed{seed}")["predictions"].encode(), np.uint8)
                       - ord("0") == labels for seed in (0, 1)} for model in ("lenet5", "custom_mlp")}
    best, compared = significance.against_best(correct)
    rows = table_rows(printed)
    assert rows[best][-1] == "best"
    other = next(model for model in correct if model != best)
    c = compared[other]
    assert rows[other][3:5] == [f"{c.difference:+.2f}", f"{c.interval[0]:+.2f} to {c.interval[1]:+.2f}"]
    assert rows[other][-1] == ("real" if c.real else f"not measurable ({c.detectable:.2f} needed)")


# The shell's lines that name the private folder of the sweep whose pid is $sweep in this PID namespace: Ray's
# scratch, its package and the driver's home, none of which may outlive it.
PRIVATE = ("private() { awk -v pid=$1 -v ns=$(readlink /proc/self/ns/pid) '$1 == pid && $3 == ns "
           "{ sub(\"/owner$\", \"\", FILENAME); print FILENAME }' /tmp/mnist-ray-*/owner 2>/dev/null; }\n")
STOPS = [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]


@needs_namespace
@pytest.mark.parametrize("signum, status", STOPS)
def test_a_sweep_stopped_while_ray_starts_leaves_no_process(signum, status, tmp_path):
    script = PRIVATE + f"""
    setsid {python("sweep.py", "--model", "lenet5", "--seed", "0", "1", *QUICK, "--jobs", "2", "--out-dir",
                   tmp_path / "sweep")} > {tmp_path}/out 2> {tmp_path}/err &
    sweep=$!
    for i in $(seq 600); do grep -q "to train" {tmp_path}/out && break; sleep 0.1; done
    sleep 1.5; kill -{signum.name[3:]} -- {"-" if signum == signal.SIGINT else ""}$sweep
    wait $sweep; stopped=$?; echo "left [$(private $sweep)]"; echo "status $stopped"
    sleep 2; ps -e -o pid=,args= | grep -v -e 'ps -e' -e grep -e ' bash' || true
    """
    # Ctrl-C reaches the whole process group, Ray's processes too, as from a terminal; SIGTERM and SIGHUP the sweep
    # alone, as kill and timeout send them. (SIGTERM to the whole group while Ray starts can make Ray's own core
    # abort the driver, which nothing in the driver can then clean up.)
    _, log, err = in_namespace(script)
    stderr = (tmp_path / "err").read_text()
    assert f"status {status}" in log and "left []" in log, (log, err, stderr)
    assert log.split(f"status {status}", 1)[1].strip() == "", "processes left after the sweep"
    assert "continue with: " in stderr and "Traceback" not in stderr, stderr


@needs_namespace
@pytest.mark.parametrize("signum, status", STOPS)
def test_a_stopped_sweep_keeps_its_finished_runs_and_the_same_command_runs_only_the_rest(signum, status, tmp_path):
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
    sleep 1; ps -e -o pid=,args= | grep -v -e 'ps -e' -e grep -e ' bash' || true
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

    status, printed, _ = sweep(*argv[1:], "--jobs", "1")
    assert status == 0
    assert f"{len(finished)} finished already, {4 - len(finished)} to train" in printed
    trained = re.findall(r"^(lenet5_seed\d): ", printed, re.MULTILINE)
    assert sorted(trained) == sorted(set(f"lenet5_seed{s}" for s in range(4)) - set(finished))
    assert all((out / "results" / f"{name}.json").read_bytes() == data for name, data in kept.items())


# Every path under a folder, NUL-separated: what the sweep's Ray instance reads.
LIST = "import os, sys; print('\\0'.join(os.path.join(d, n) for d, ds, fs in os.walk(sys.argv[1]) for n in ['', *ds, *fs]))"
# Another user's attempts on each path: append to it, make a file in it, move it away (to swap in a copy of its own).
ATTACK = """
import os, sys
for path in filter(None, sys.stdin.read().strip().split("\\0")):
    for attempt in (lambda: open(path, "a").close(), lambda: open(os.path.join(path, "planted"), "x").close(),
                    lambda: os.rename(path, path + ".moved")):
        try:
            attempt()
            print("wrote", path)
        except OSError:
            pass
"""
WORKERS_STARTED = "ls -d $(private $sweep)/ray/session_*/runtime_resources/working_dir_files/*/ > /dev/null 2>&1"


@needs_namespace
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv to act as another user")
def test_no_other_user_can_change_what_the_sweeps_ray_instance_reads_while_it_runs(tmp_path):
    out = tmp_path / "sweep"
    script = PRIVATE + f"""
    setsid {python("sweep.py", "--model", "lenet5", "--seed", "0", "1", "--limit", "1024", "--epochs", "3",
                   "--jobs", "2", "--out-dir", out)} > {tmp_path}/out 2> {tmp_path}/err &
    sweep=$!
    for i in $(seq 900); do {WORKERS_STARTED} && break; sleep 0.1; done
    {sys.executable} -c {shlex.quote(LIST)} "$(private $sweep)" > {tmp_path}/paths
    setpriv --reuid=65534 --regid=65534 --clear-groups {sys.executable} -I -c {shlex.quote(ATTACK)} \
      < {tmp_path}/paths > {tmp_path}/planted
    wait $sweep; echo "status $?"
    """
    _, log, err = in_namespace(script)
    paths = (tmp_path / "paths").read_text().split("\0")
    assert "status 0" in log, (log, err, (tmp_path / "err").read_text())
    # The attack was tried where it once worked: the package that Ray unpacks and starts every worker in.
    assert any("/runtime_resources/working_dir_files/" in path for path in paths), paths
    assert (tmp_path / "planted").read_text() == ""
    assert all(results(out, f"lenet5_seed{seed}")["status"] == "complete" for seed in (0, 1))


@needs_namespace
def test_what_a_killed_sweep_left_is_removed_by_the_next_one(tmp_path):
    argv = ["sweep.py", "--model", "lenet5", "--seed", "0", "1", "--limit", "1024", "--epochs", "3", "--jobs", "2",
            "--out-dir", tmp_path / "sweep"]
    script = PRIVATE + f"""
    setsid {python(*argv)} > {tmp_path}/out 2> {tmp_path}/err &
    sweep=$!
    for i in $(seq 900); do {WORKERS_STARTED} && break; sleep 0.1; done
    killed=$(private $sweep); kill -KILL $sweep; wait $sweep; echo "killed [$killed]"
    {python(*argv)} > {tmp_path}/out2 2>&1; echo "status $?"
    [ -e "$killed" ] && echo "still there"
    sleep 1; ps -e -o pid=,args= | grep -v -e 'ps -e' -e grep -e ' bash' || true
    """
    _, log, err = in_namespace(script)
    assert "killed [/tmp/mnist-ray-" in log, (log, err)
    assert log.split("status 0", 1)[1].strip() == "", (log, err, (tmp_path / "out2").read_text())


RAY_NODE = """
start_node() {{  # name, then ray start's flags: the node's processes in a session of their own
  local name=$1; shift
  setsid {ray} start "$@" --block --num-cpus 1 --node-ip-address 127.0.0.1 --min-worker-port 0 --max-worker-port 0 \
    --object-store-memory 100000000 --disable-usage-stats > {tmp}/$name.log 2>&1 < /dev/null &
}}
session() {{ ps -e -o pid=,sid= | awk -v s=$1 '$2 == s {{print $1}}'; }}
"""


@needs_namespace
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
    RAY_AUTH_TOKEN= {python("sweep.py", "--model", "lenet5", *QUICK, "--address", "127.0.0.1:6390", "--out-dir",
                            out)} > {tmp_path}/tokenless 2>&1; echo "without a token $?"
    RAY_AUTH_TOKEN={'cd' * 32} {python("sweep.py", "--model", "lenet5", *QUICK, "--address", "127.0.0.1:6390",
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


def test_a_run_that_fails_is_named_and_the_others_go_on(tmp_path):
    status, out, err = sweep("--model", "lenet5", "--lr", "0.1", "10", "--batch-size", "8", "--limit", "512",
                             "--epochs", "1", "--out-dir", tmp_path)
    assert status == 1, (out, err)
    assert re.search(r"^lenet5_lr10_seed0: failed: training diverged", out, re.MULTILINE), out
    assert re.search(r"^lenet5_lr0.1_seed0: test accuracy", out, re.MULTILINE), out
    assert "1 of 2 runs failed: lenet5_lr10_seed0 (training diverged" in err
    assert "not counted: lenet5_lr10" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--model", "lenet5", "--dropout", "0.1", "0.2"], "--dropout applies only to lenet5_regularized"),
    (["--jobs", "0"], "--jobs: must be from 1 to 4096"),
    (["--gpus-per-run", "2"], "--gpus-per-run: must be above 0 and at most 1"),
    (["--lr", "0.1", "0.1"], "the grid names lenet5_lr0.1_seed0 more than once"),
    (["--batch-norm", "maybe"], "--batch-norm: expected on or off"),
    (["--model", "lenet5", "--tag", "regularized"], "would name lenet5's run like lenet5_regularized's runs"),
])
def test_bad_flags_get_one_line_before_any_run_or_ray(argv, message, tmp_path):
    # Nothing listens at this address: a sweep that reached for Ray before checking its flags would say so instead.
    status, out, err = sweep(*argv, *QUICK, "--address", "127.0.0.1:1", "--out-dir", tmp_path)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists()


def test_a_cluster_that_does_not_answer_is_one_line_not_a_long_wait(tmp_path):
    status, _, err = sweep("--model", "lenet5", *QUICK, "--address", "127.0.0.1:1", "--out-dir", tmp_path)
    assert status == 2 and "--address 127.0.0.1:1: nothing answers there" in err and len(err.splitlines()) == 1, err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_share_of_a_gpu_that_is_not_there_is_one_line_not_a_sweep_that_never_starts(tmp_path):
    status, _, err = sweep("--model", "lenet5", *QUICK, "--jobs", "2", "--gpus-per-run", "0.5", "--out-dir", tmp_path)
    assert status == 2 and "--gpus-per-run: this machine has no CUDA GPU" in err and len(err.splitlines()) == 1, err


def test_a_share_of_a_gpu_needs_runs_at_once(tmp_path):
    status, _, err = sweep("--model", "lenet5", *QUICK, "--gpus-per-run", "0.5", "--out-dir", tmp_path)
    assert status == 2 and "--gpus-per-run shares a GPU among runs at once on Ray; add --jobs N" in err, err


def test_ray_address_in_the_environment_does_not_send_jobs_1_to_ray(tmp_path):
    status, out, err = sweep("--model", "lenet5", *QUICK, "--out-dir", tmp_path,
                             env={**os.environ, "RAY_ADDRESS": "garbage"})
    assert status == 0 and "cluster" not in out and "Ray" not in err, (out, err)


def test_a_grid_past_the_cap_is_refused(tmp_path):
    status, _, err = sweep("--model", "lenet5", "--seed", *range(1001), *QUICK, "--out-dir", tmp_path)
    assert status == 2 and "the grid holds 1,001 runs, more than the 1,000 one sweep takes" in err, err


def test_a_finished_run_whose_results_are_damaged_is_trained_again(tmp_path):
    argv = ["--model", "lenet5", "--seed", "0", "1", *QUICK, "--out-dir", tmp_path]
    assert sweep(*argv)[0] == 0
    damaged = tmp_path / "results" / "lenet5_seed1.json"
    run = json.loads(damaged.read_text())
    damaged.write_text(json.dumps({**run, "predictions": run["predictions"][:-5]}))
    status, out, _ = sweep(*argv)
    assert status == 0 and "1 finished already, 1 to train" in out, out
    assert re.search(r"^lenet5_seed1: .*lenet5_seed1.json has predictions of 251 characters.*training it again", out,
                     re.MULTILINE), out
    assert results(tmp_path, "lenet5_seed1") == {**run, "history": results(tmp_path, "lenet5_seed1")["history"]}
    assert "not counted" not in out


def test_one_seed_gets_no_verdict(tmp_path):
    status, out, _ = sweep("--model", "lenet5", "custom_mlp", *QUICK, "--out-dir", tmp_path)
    assert status == 0 and "not measurable (one seed; give --seed two values or more)" in out, out
    assert all(cells[-1] != "real" for cells in table_rows(out).values())


def table_of(monkeypatch, tmp_path, seeds, wrong, images=1_000):
    """sweep.py's table for lenet5 against custom_mlp at seeds, trained nowhere: on made-up labels for `images`
    images, lenet5's runs get every image right and custom_mlp's all but the first `wrong`, at every seed."""
    import runner
    import slots
    import sweep
    labels = np.arange(images) % 10
    monkeypatch.setattr(runner, "labels_of", lambda recipe: labels)

    def load(path, advice, recipe, labels):
        predictions = labels.copy()
        if recipe["model"] == "custom_mlp":
            predictions[:wrong] = (predictions[:wrong] + 1) % 10
        return {"predictions": "".join(map(str, predictions)),
                "history": [{"eval_acc": 100 * float((predictions == labels).mean())}]}
    monkeypatch.setattr(slots, "load", load)
    args = sweep.get_args_parser().parse_args(["--model", "lenet5", "custom_mlp", "--seed", *map(str, seeds)])
    return table_rows("\n" + "\n".join(sweep.table(args, sweep.grid(args), tmp_path)))


def test_a_difference_is_real_from_two_seeds_and_never_from_one(monkeypatch, tmp_path):
    # 30 images that only lenet5 gets right, none the other way: McNemar's p is 2 / 2**30 by hand, and every
    # resampling of the images keeps custom_mlp behind. Yet one seed pair says nothing of how runs vary by seed.
    p = f"{binomial_p(0, 30):.3g}"
    assert binomial_p(0, 30) == 2 / 2 ** 30
    one = table_of(monkeypatch, tmp_path, [0], wrong=30)
    assert one["lenet5"][-1] == "best"
    assert one["custom_mlp"][1:4] == ["1", "97.00", "-3.00"] and one["custom_mlp"][5] == p, one
    assert one["custom_mlp"][-1] == "not measurable (one seed; give --seed two values or more)"
    two = table_of(monkeypatch, tmp_path, [0, 1], wrong=30)
    assert two["custom_mlp"][1:4] == ["2", "97.00 ± 0.00", "-3.00"] and two["custom_mlp"][5] == p, two
    assert two["custom_mlp"][-1] == "real"
def test_a_setting_with_one_seed_in_common_with_the_best_says_so_and_the_same_command_mends_it(tmp_path):
    import sweep as program
    argv = ["--model", "lenet5", "custom_mlp", "--seed", "0", "1", *QUICK, "--out-dir", tmp_path]
    assert sweep(*argv)[0] == 0
    (tmp_path / "results" / "custom_mlp_seed1.json").unlink()  # two seeds given, one left to one of the settings
    args = program.get_args_parser().parse_args(list(map(str, argv)))
    lines = program.table(args, program.grid(args), tmp_path)
    verdicts = [cells[-1] for cells in table_rows("\n" + "\n".join(lines)).values() if cells[-1] != "best"]
    assert verdicts == ["not measurable (one seed in common with the best; the same command trains the runs not "
                        "counted)"], lines
    status, out, _ = sweep(*argv)
    assert status == 0 and "3 finished already, 1 to train" in out and "one seed" not in out, out


def test_values_whose_run_names_collide_are_refused_as_a_collision_and_values_apart_in_the_name_are_taken():
    import sweep as program
    from errors import UsageError
    parse = program.get_args_parser().parse_args
    with pytest.raises(UsageError) as refused:
        program.grid(parse(["--lr", "0.1", "0.1000001"]))
    assert str(refused.value) == ("--lr 0.1 and 0.1000001 would both name the run lenet5_lr0.1_seed0: the runs' names "
                                  "collide, since a name keeps 6 significant digits; give values that differ in those")
    assert [name for _, name, _ in program.grid(parse(["--lr", "0.1", "0.100001"]))] == [
        "lenet5_lr0.1_seed0", "lenet5_lr0.100001_seed0"]


def test_a_finished_run_with_other_settings_is_refused(tmp_path):
    assert sweep("--model", "lenet5", *QUICK, "--out-dir", tmp_path)[0] == 0
    status, _, err = sweep("--model", "lenet5", "--limit", "256", "--epochs", "2", "--out-dir", tmp_path)
    assert status == 2 and "holds a run with --epochs 1, where this one has --epochs 2; pass --tag NAME" in err, err


def test_a_finished_sweep_trains_nothing_again(tmp_path):
    argv = ["--model", "lenet5", "--seed", "0", "1", *QUICK, "--out-dir", tmp_path]
    assert sweep(*argv)[0] == 0
    written = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    time.sleep(0.01)
    status, out, _ = sweep(*argv)
    assert status == 0 and "2 runs: 2 finished already, 0 to train" in out
    assert {p: p.stat().st_mtime_ns for p in written} == written


def test_a_finished_run_whose_checkpoint_is_gone_is_never_trained_over(tmp_path):
    # `sweep.py --out-dir .`: the report commits its runs' results, with its measurements, and no checkpoints.
    assert sweep("--model", "lenet5", *QUICK, "--out-dir", tmp_path)[0] == 0
    path = tmp_path / "results" / "lenet5_seed0.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "robustness": {"rotation": {"0": 98.0}}}))
    (tmp_path / "checkpoints" / "lenet5_seed0.pt").unlink()
    kept = path.read_bytes()
    status, out, _ = sweep("--model", "lenet5", *QUICK, "--out-dir", tmp_path)
    assert status == 0 and "1 runs: 1 finished already, 0 to train" in out, out
    status, out, err = sweep("--model", "lenet5", "--limit", "256", "--epochs", "2", "--out-dir", tmp_path)
    assert status == 2 and err.count("\n") == 1 and (
        f"{path} holds a finished run with --epochs 1, where this one has --epochs 2; pass --tag NAME" in err), err
    assert path.read_bytes() == kept and not (tmp_path / "checkpoints" / "lenet5_seed0.pt").exists()


@pytest.mark.parametrize("epoch", [1, 2])
def test_a_run_past_the_readers_bound_fails_and_the_same_command_does_not_train_it_again(epoch, tmp_path,
                                                                                       monkeypatch, capsys):
    import engine
    import sweep as sweep_py
    from test_engine import LossPastBeliefFromStep
    build_model = engine.build_model  # 256 images in batches of 128: step 3 is step 1 of epoch 2
    monkeypatch.setattr(engine, "build_model", lambda *args: LossPastBeliefFromStep(build_model(*args),
                                                                                     2 * epoch - 1))
    args = sweep_py.get_args_parser().parse_args(["--model", "lenet5", "--limit", "256", "--epochs", "2",
                                                  "--device", "cpu", "--out-dir", str(tmp_path)])
    assert sweep_py.main(args) == 1
    out, err = capsys.readouterr()
    assert re.search(rf"^lenet5_seed0: failed: training diverged: train loss became \S+ in epoch {epoch}, past the "
                     rf"10000", out, re.MULTILINE), out
    assert "not counted: lenet5, seed 0 (failed)" in out and "1 of 1 runs failed: lenet5_seed0" in err, (out, err)
    run = results(tmp_path, "lenet5_seed0")
    assert run["status"] == "diverged" and len(run["history"]) == epoch - 1
    written = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    assert sweep_py.main(args) == 1
    out, err = capsys.readouterr()
    assert "1 runs: 1 finished already (1 diverged), 0 to train" in out, out
    assert "not counted: lenet5, seed 0 (failed)" in out
    assert err.count("\n") == 1 and (f"1 of 1 runs failed: lenet5_seed0 (training diverged in epoch {epoch}, as "
                                     f"{tmp_path}/results/lenet5_seed0.json says; lower --lr (it was 0.1))") in err, err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == written
