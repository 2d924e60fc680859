"""sweep.py: a grid of main.py runs, one after another or at once on Ray, and the table that compares them.

Every Ray test runs in a network namespace of its own (unshare, as root), with a fake uplink whose packets go
nowhere: there, a Ray that ignored 127.0.0.1 would show as a listener on another address, and nothing it sent
could leave the machine. The namespace has its own process IDs too, so that the test sees every process Ray left.
"""
import json
import re
import shlex
import shutil
import signal
import sys
import time

import numpy as np
import pytest

import dataset
import sweep
from helpers import (ONE_EPOCH, PRIVATE, ROOT, STOPS, WORKERS_STARTED, binomial_p, guards, in_namespace,
                     needs_namespace, one_line, python, results, still_running, sweep_args, sweep_process,
                     without_seconds)
from mnistlab import runner, significance
from mnistlab.errors import UsageError


def table_rows(out):
    """{setting: its row's cells, empty ones left out} from the table sweep.py prints; cells are two spaces apart."""
    lines = out[out.index("\nsetting") + 1:].splitlines()[1:]
    rows = [re.split(r" {2,}", line.strip()) for line in lines if line and not line.startswith(
        ("Final", "not counted", "the runs"))]
    return {cells[0]: cells for cells in rows}


def table_of(monkeypatch, tmp_path, seeds, wrong, images=1_000):
    """sweep.py's table for lenet5 against custom_mlp at seeds, trained nowhere: on made-up labels for `images`
    images, lenet5's runs get every image right and custom_mlp's all but the first `wrong`, at every seed."""
    import sweep
    from mnistlab import runner, slots
    labels = np.arange(images) % 10
    monkeypatch.setattr(runner, "true_labels", lambda recipe: labels)

    def load(path, advice, recipe, labels):
        predictions = labels.copy()
        if recipe["model"] == "custom_mlp":
            predictions[:wrong] = (predictions[:wrong] + 1) % 10
        return {"predictions": "".join(map(str, predictions)),
                "history": [{"eval_acc": 100 * float((predictions == labels).mean())}]}
    monkeypatch.setattr(slots, "load", load)
    args = sweep.get_args_parser().parse_args(["--model", "lenet5", "custom_mlp", "--seed", *map(str, seeds)])
    return table_rows("\n" + "\n".join(sweep.table(args, sweep.grid(args), tmp_path)))


# Every path under a folder, NUL-separated.
LIST = ("import os, sys; print('\\0'.join(os.path.join(d, n) for d, ds, fs in os.walk(sys.argv[1]) "
        "for n in ['', *ds, *fs]))")


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


@guards("mnistlab/runner.py",
        "everything a private Ray instance reads sits in a folder only this user may enter",
        'None if settings.address else private / "ray"',
        'None if settings.address else Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))')
@needs_namespace
@pytest.mark.skipif(not shutil.which("setpriv"), reason="needs setpriv to act as another user")
@pytest.mark.slow
def test_a_local_sweep_makes_main_pys_runs_on_loopback_only_out_of_other_users_reach_and_leaves_no_process(
        tmp_path, cli, thread_count):
    out = tmp_path / "sweep"
    # While it runs: what listens, every few tenths of a second; and, once Ray's workers have their package, another
    # user's attempts to change what the instance reads (the package that Ray unpacks and starts every worker in).
    script = PRIVATE + f"""
    {python("sweep.py", "--model", "lenet5", "custom_mlp", "--seed", "0", "1", *ONE_EPOCH, "--jobs", "2",
            "--out-dir", out)} > {tmp_path}/out 2> {tmp_path}/err &
    sweep=$!
    (for i in $(seq 900); do {WORKERS_STARTED} && break; sleep 0.1; done
     {sys.executable} -c {shlex.quote(LIST)} "$(private $sweep)" > {tmp_path}/paths
     setpriv --reuid=65534 --regid=65534 --clear-groups {sys.executable} -I -c {shlex.quote(ATTACK)} \
       < {tmp_path}/paths > {tmp_path}/planted
     kill -0 $sweep 2>/dev/null && echo "attacked while it ran") > {tmp_path}/attacker 2>&1 &
    attacker=$!
    while kill -0 $sweep 2>/dev/null; do ss -Hltnup >> {tmp_path}/listening; sleep 0.2; done
    wait $sweep; echo "status $?"; wait $attacker
    {still_running(2)}
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
    # Attacked while the instance ran, where the attack once worked: the package Ray unpacks and starts workers in.
    assert (tmp_path / "attacker").read_text() == "attacked while it ran\n"
    paths = (tmp_path / "paths").read_text().split("\0")
    assert any("/runtime_resources/working_dir_files/" in path for path in paths), paths
    assert (tmp_path / "planted").read_text() == ""
    printed = (tmp_path / "out").read_text()

    # main.py, with the thread count the sweep's runs had (one each), makes the same runs.
    reference = tmp_path / "main"
    thread_count(1)
    for model in ("lenet5", "custom_mlp"):
        for seed in (0, 1):
            status, _, err = cli(["--model", model, "--seed", seed, *ONE_EPOCH, "--device", "cpu", "--out-dir",
                                  reference])
            assert status == 0, err
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


@needs_namespace
@pytest.mark.parametrize("signum, status", STOPS)
@pytest.mark.slow
def test_a_sweep_stopped_while_ray_starts_leaves_no_process(signum, status, tmp_path):
    script = PRIVATE + f"""
    setsid {python("sweep.py", "--model", "lenet5", "--seed", "0", "1", *ONE_EPOCH, "--jobs", "2", "--out-dir",
                   tmp_path / "sweep")} > {tmp_path}/out 2> {tmp_path}/err &
    sweep=$!
    for i in $(seq 600); do grep -q "to train" {tmp_path}/out && break; sleep 0.1; done
    sleep 1.5; kill -{signum.name[3:]} -- {"-" if signum == signal.SIGINT else ""}$sweep
    wait $sweep; stopped=$?; echo "left [$(private $sweep)]"; echo "status $stopped"
    {still_running(2)}
    """
    # Ctrl-C reaches the whole process group, Ray's processes too, as from a terminal; SIGTERM and SIGHUP the sweep
    # alone, as kill and timeout send them. (SIGTERM to the whole group while Ray starts can make Ray's own core
    # abort the driver, which nothing in the driver can then clean up.)
    _, log, err = in_namespace(script)
    stderr = (tmp_path / "err").read_text()
    assert f"status {status}" in log and "left []" in log, (log, err, stderr)
    assert log.split(f"status {status}", 1)[1].strip() == "", "processes left after the sweep"
    assert "continue with: " in stderr and "Traceback" not in stderr, stderr


@guards("sweep.py",
        "a failed run: exit status 1",
        "        if failed:\n            print(f\"sweep.py:",
        "        if False:\n            print(f\"sweep.py:")
def test_a_run_that_fails_is_named_and_the_others_go_on(tmp_path, run_sweep):
    status, out, err = run_sweep("--model", "lenet5", "--lr", "0.1", "10", "--batch-size", "8", "--limit", "512",
                             "--epochs", "1", "--out-dir", tmp_path)
    assert status == 1, (out, err)
    assert re.search(r"^lenet5_lr10_seed0: failed: training diverged", out, re.MULTILINE), out
    assert re.search(r"^lenet5_lr0.1_seed0: test accuracy", out, re.MULTILINE), out
    assert "1 of 2 runs failed: lenet5_lr10_seed0 (training diverged" in err
    assert "not counted: lenet5_lr10" in out
    assert "Traceback" not in err


def test_a_cluster_that_does_not_answer_is_one_line_not_a_long_wait(tmp_path):
    status, _, err = sweep_process("--model", "lenet5", *ONE_EPOCH, "--address", "127.0.0.1:1", "--out-dir", tmp_path)
    assert status == 2 and "--address 127.0.0.1:1: nothing answers there" in err and len(err.splitlines()) == 1, err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_share_of_a_gpu_that_is_not_there_is_one_line_not_a_sweep_that_never_starts(tmp_path):
    status, _, err = sweep_process("--model", "lenet5", *ONE_EPOCH, "--jobs", "2", "--gpus-per-run", "0.5",
                                   "--out-dir", tmp_path)
    assert status == 2 and "--gpus-per-run: this machine has no CUDA GPU" in err and len(err.splitlines()) == 1, err


def test_ray_address_in_the_environment_does_not_send_jobs_1_to_ray(tmp_path, run_sweep, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "garbage")
    status, out, err = run_sweep("--model", "lenet5", *ONE_EPOCH, "--out-dir", tmp_path)
    assert status == 0 and "cluster" not in out and "Ray" not in err, (out, err)


def test_a_grid_past_the_cap_is_refused(tmp_path, run_sweep):
    status, _, err = run_sweep("--model", "lenet5", "--seed", *range(1001), *ONE_EPOCH, "--out-dir", tmp_path)
    assert status == 2 and "the grid holds 1,001 runs, more than the 1,000 one sweep takes" in err, err


@guards("mnistlab/significance.py",
        "a verdict needs two seeds",
        "    if len(comparison.discordant) < 2:",
        "    if len(comparison.discordant) < 1:")
def test_one_seed_gets_no_verdict(tmp_path, run_sweep):
    status, out, _ = run_sweep("--model", "lenet5", "custom_mlp", *ONE_EPOCH, "--out-dir", tmp_path)
    assert status == 0 and "not measurable (one seed; give --seed two values or more)" in out, out
    assert all(cells[-1] != "real" for cells in table_rows(out).values())


@guards("mnistlab/significance.py",
        "two seeds get a verdict, one does not",
        "comparison.discordant) < 2",
        "comparison.discordant) <= 2")
@guards("mnistlab/significance.py",
        "one seed gets no verdict, two do",
        "len(comparison.discordant) < 2:",
        "len(comparison.discordant) > 1:")
@guards("mnistlab/significance.py",
        "the seeds counted are the comparison's seed pairs",
        "    if len(comparison.discordant)",
        "    if len(comparison.ahead)")
@guards("mnistlab/significance.py",
        "a verdict asks for two seeds before it asks whether the difference is real",
        '    if len(comparison.discordant) < 2:\n        return f"{NOT_MEASURABLE} ({too_few_seeds})"\n',
        '    if comparison.real:\n        return REAL\n    if len(comparison.discordant) < 2:\n        return '
        'f"{NOT_MEASURABLE} ({too_few_seeds})"\n')
@guards("sweep.py",
        "the table gives the verdict of verdict(), not Comparison.real alone",
        'f"{c.p:.3g}", verdict(c, len(args.seed))))',
        'f"{c.p:.3g}", "real" if c.real else verdict(c, len(args.seed))))')
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


@guards("sweep.py",
        "one seed in common with the best is not advised as one seed given",
        "verdict(c, len(args.seed))",
        "verdict(c)")
def test_a_setting_with_one_seed_in_common_with_the_best_says_so_and_the_same_command_mends_it(tmp_path, run_sweep):
    import sweep as program
    argv = ["--model", "lenet5", "custom_mlp", "--seed", "0", "1", *ONE_EPOCH, "--out-dir", tmp_path]
    assert run_sweep(*argv)[0] == 0
    (tmp_path / "results" / "custom_mlp_seed1.json").unlink()  # two seeds given, one left to one of the settings
    args = program.get_args_parser().parse_args(list(map(str, argv)))
    lines = program.table(args, program.grid(args), tmp_path)
    verdicts = [cells[-1] for cells in table_rows("\n" + "\n".join(lines)).values() if cells[-1] != "best"]
    assert verdicts == ["not measurable (one seed in common with the best; the same command trains the runs not "
                        "counted)"], lines
    status, out, _ = run_sweep(*argv)
    assert status == 0 and "3 finished already, 1 to train" in out and "one seed" not in out, out


@guards("sweep.py",
        "values whose run names collide are refused as a collision, not as a value given twice",
        "        if differ:  # values apart",
        "        if False:  # values apart")
def test_values_whose_run_names_collide_are_refused_as_a_collision_and_values_apart_in_the_name_are_taken():
    import sweep as program
    from mnistlab.errors import UsageError
    parse = program.get_args_parser().parse_args
    with pytest.raises(UsageError) as refused:
        program.grid(parse(["--lr", "0.1", "0.1000001"]))
    assert str(refused.value) == ("--lr 0.1 and 0.1000001 would both name the run lenet5_lr0.1_seed0: the runs' names "
                                  "collide, since a name keeps 6 significant digits; give values that differ in those")
    assert [name for _, name, _ in program.grid(parse(["--lr", "0.1", "0.100001"]))] == [
        "lenet5_lr0.1_seed0", "lenet5_lr0.100001_seed0"]


def test_a_sweep_on_fashion_mnist_names_its_runs_after_it_and_trains_them_on_it():
    import sweep as program
    grid = program.grid(program.get_args_parser().parse_args(["--dataset", "fashion-mnist", "--lr", "0.05", "0.1"]))
    assert [(label, name, recipe["dataset"]) for label, name, recipe in grid] == [
        ("fashion-mnist_lenet5_lr0.05", "fashion-mnist_lenet5_lr0.05_seed0", "fashion-mnist"),
        ("fashion-mnist_lenet5_lr0.1", "fashion-mnist_lenet5_lr0.1_seed0", "fashion-mnist")]


def test_a_finished_run_with_other_settings_is_refused(tmp_path, run_sweep):
    assert run_sweep("--model", "lenet5", *ONE_EPOCH, "--out-dir", tmp_path)[0] == 0
    status, _, err = run_sweep("--model", "lenet5", "--limit", "256", "--epochs", "2", "--out-dir", tmp_path)
    assert status == 2 and "holds a run with --epochs 1, where this one has --epochs 2; pass --tag NAME" in err, err


def test_a_finished_sweep_trains_nothing_again(tmp_path, run_sweep):
    argv = ["--model", "lenet5", "--seed", "0", "1", *ONE_EPOCH, "--out-dir", tmp_path]
    assert run_sweep(*argv)[0] == 0
    written = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    time.sleep(0.01)
    status, out, _ = run_sweep(*argv)
    assert status == 0 and "2 runs: 2 finished already, 0 to train" in out
    assert {p: p.stat().st_mtime_ns for p in written} == written


def test_a_finished_run_whose_checkpoint_is_gone_is_never_trained_over(tmp_path, run_sweep):
    # `sweep.py --out-dir .`: the report commits its runs' results, with its measurements, and no checkpoints.
    assert run_sweep("--model", "lenet5", *ONE_EPOCH, "--out-dir", tmp_path)[0] == 0
    path = tmp_path / "results" / "lenet5_seed0.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "robustness": {"rotation": {"0": 98.0}}}))
    (tmp_path / "checkpoints" / "lenet5_seed0.pt").unlink()
    kept = path.read_bytes()
    status, out, _ = run_sweep("--model", "lenet5", *ONE_EPOCH, "--out-dir", tmp_path)
    assert status == 0 and "1 runs: 1 finished already, 0 to train" in out, out
    status, out, err = run_sweep("--model", "lenet5", "--limit", "256", "--epochs", "2", "--out-dir", tmp_path)
    assert status == 2 and err.count("\n") == 1 and (
        f"{path} holds a finished run with --epochs 1, where this one has --epochs 2; pass --tag NAME" in err), err
    assert path.read_bytes() == kept and not (tmp_path / "checkpoints" / "lenet5_seed0.pt").exists()


@guards("mnistlab/runs.py",
        "a sweep does not train a run that diverged in its first epoch again",
        "        if stopped_diverged(held, 0):",
        "        if False:")
@guards("mnistlab/runs.py",
        "a sweep does not resume a run that diverged after its checkpoint's epochs",
        '(DIVERGED, SAME):                  ("unfinished",     "resume",            "diverged")',
        '(DIVERGED, SAME):                  ("unfinished",     "resume",            "resume")')
@guards("mnistlab/runner.py",
        "a run that diverged already is finished for a sweep, not trained again",
        '        stopped = decision.action == "diverged" and diverged is not None',
        "        stopped = False")
@guards("sweep.py",
        "a diverged run found finished still fails the sweep, exit 1",
        "            failed = {**diverged, **(",
        "            failed = {**(")
@guards("sweep.py",
        "the table names the runs it does not count even where none finished",
        '        return ["no setting has a finished run to compare", *not_counted]',
        '        return ["no setting has a finished run to compare"]')
@pytest.mark.parametrize("epoch", [1, 2])
def test_a_run_past_the_readers_bound_fails_and_the_same_command_does_not_train_it_again(epoch, tmp_path,
                                                                                       monkeypatch, capsys):
    import sweep as sweep_py
    from helpers import LossPastBeliefFromStep
    from mnistlab import engine
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


class Planned(Exception):
    """Raised by a stubbed runner.jobs_to_train: the sweep went past its checks."""


@pytest.fixture
def planned(monkeypatch):
    def jobs_to_train(named, *args, **kwargs):
        raise Planned(len(named))
    monkeypatch.setattr(runner, "jobs_to_train", jobs_to_train)


@guards("sweep.py",
        "MAX_RUNS: at most 1000 runs a sweep",
        "MAX_RUNS = 1000",
        "MAX_RUNS = 100_000")
@guards("sweep.py",
        "a grid past MAX_RUNS refused",
        "        if len(grid_runs) > MAX_RUNS:",
        "        if len(grid_runs) > 2 * MAX_RUNS:")
def test_a_grid_past_the_cap_is_refused_and_one_at_it_is_taken(planned, capsys):
    assert sweep.main(sweep_args("--seed", *range(1001))) == 2
    assert one_line(capsys.readouterr().err) == ("sweep.py: error: the grid holds 1,001 runs, more than the 1,000 one "
                                                 "sweep takes; split it into several sweeps")
    with pytest.raises(Planned, match="1000"):
        sweep.main(sweep_args("--seed", *range(1000)))


@guards("sweep.py",
        "a tag too long for the runs' names is one line",
        "            try:\n                check_tag(tag)\n            except ValueError:\n",
        "            if False:\n                check_tag(tag)\n            if False:\n")
def test_a_tag_too_long_for_the_runs_names_is_one_line():
    with pytest.raises(UsageError, match="the runs' names would hold 67 characters of tag"):
        sweep.grid(sweep_args("--tag", "t" * 60, "--lr", "0.05", "0.1"))


@guards("sweep.py",
        "--model takes only the models",
        "default=[\"lenet5\"], choices=MODEL_NAMES,",
        "default=[\"lenet5\"],")
@guards("sweep.py",
        "--recipe takes only the named recipes",
        "default=[\"default\"], choices=RECIPE_NAMES,",
        "default=[\"default\"],")
@guards("sweep.py",
        "--device takes only the devices",
        "p.add_argument(\"--device\", default=\"auto\", choices=[\"auto\", \"cpu\", \"cuda\", \"mps\", \"xpu\"],",
        "p.add_argument(\"--device\", default=\"auto\",")
@pytest.mark.parametrize("argv, problem", [(["--model", "lenet6"], "--model: invalid choice: 'lenet6'"),
                                           (["--recipe", "slow"], "--recipe: invalid choice: 'slow'"),
                                           (["--device", "tpu"], "--device: invalid choice: 'tpu'")])
def test_a_bad_choice_is_refused_by_the_parser(argv, problem, capsys):
    with pytest.raises(SystemExit) as stopped:
        sweep_args(*argv)
    assert stopped.value.code == 2 and problem in one_line(capsys.readouterr().err)


@guards("sweep.py",
        "no finished run: no comparison",
        "    if not any(correct.values()):\n",
        "    if False:\n")
def test_a_table_with_no_finished_run_says_so(tmp_path):
    args = sweep_args("--lr", "0.05", "0.1")
    assert sweep.table(args, sweep.grid(args), tmp_path) == [
        "no setting has a finished run to compare", "not counted: lenet5_lr0.05, seed 0 (is missing)",
        "not counted: lenet5_lr0.1, seed 0 (is missing)"]


@guards("sweep.py",
        "the table counts only runs that fill their slots",
        "\"train it again with this command\",\n                                 recipe=recipe, labels=labels)",
        "\"train it again with this command\")")
def test_the_table_counts_only_runs_that_fill_their_slots(tmp_path):
    # The report's lenet5_seed0, 10 epochs on every image, where this sweep's run (1 epoch, 256 images) would be.
    (tmp_path / "results").mkdir()
    shutil.copy(ROOT / "results" / "lenet5_seed0.json", tmp_path / "results" / "lenet5_seed0.json")
    args = sweep_args("--model", "lenet5")
    assert sweep.table(args, sweep.grid(args), tmp_path) == [
        "no setting has a finished run to compare",
        "not counted: lenet5, seed 0 (holds another run's recipe (epochs 10, not 1))"]
