"""What a careless or hostile user does to main.py: each case must end in one line and a clear exit status, with
every file whole and nothing of value overwritten."""
import errno
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import checkpoints
import engine
import files
import runs
from conftest import PYTHON, QUICK, ROOT, files_under, start, without_seconds

RUN = "lenet5_seed0"


def checkpoint_of(out_dir, run=RUN):
    return torch.load(out_dir / "checkpoints" / f"{run}.pt", weights_only=True)


def results_of(out_dir, run=RUN):
    return json.loads((out_dir / "results" / f"{run}.json").read_text())


def interrupt_epoch(monkeypatch, epoch, error=KeyboardInterrupt):
    """Make the epoch-th call of train_one_epoch, counted from now, raise error."""
    real, calls = engine.train_one_epoch, []

    def train_one_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise error
        return real(*args, **kwargs)
    monkeypatch.setattr(engine, "train_one_epoch", train_one_epoch)
    return lambda: monkeypatch.setattr(engine, "train_one_epoch", real)


def assert_one_line_error(err, status, expected_status, message):
    assert status == expected_status, err
    assert err.count("\n") == 1 and "Traceback" not in err and message in err, err


# 1: the default output folder is not the repo's committed results/ and plots/

def test_by_default_runs_go_to_a_git_ignored_folder(tmp_path, cli, monkeypatch):
    assert files.DEFAULT_OUT_DIR == ROOT / "runs"
    if shutil.which("git") and (ROOT / ".git").exists():
        ignored = subprocess.run(["git", "check-ignore", "-q", "runs/results/lenet5_seed0.json"], cwd=ROOT)
        assert ignored.returncode == 0
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path / "runs")
    status, out, _ = cli(["--model", "lenet5", *QUICK])
    assert status == 0 and f"wrote {tmp_path}/runs/results/{RUN}.json" in out
    assert (tmp_path / "runs" / "checkpoints" / f"{RUN}.pt").is_file()


# 3: forgetting --resume does not throw progress away

def test_a_fresh_run_refuses_to_replace_an_unfinished_one(tmp_path, cli, monkeypatch):
    argv = ["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path]
    restore = interrupt_epoch(monkeypatch, 2)
    assert cli(argv)[0] == 130
    restore()
    saved = (tmp_path / "checkpoints" / f"{RUN}.pt").read_bytes()
    status, _, err = cli(argv)
    assert_one_line_error(err, status, 2, "holds an unfinished run (epoch 1 of 3); add --resume to continue it, "
                                          "or --overwrite to start over")
    assert (tmp_path / "checkpoints" / f"{RUN}.pt").read_bytes() == saved
    status, out, _ = cli([*argv, "--overwrite"])
    assert status == 0 and out.count("epoch ") == 3
    assert cli(argv)[0] == 2  # a finished run is not run again without --overwrite


def test_resume_at_another_thread_count_is_refused_naming_what_sets_it(tmp_path, cli, monkeypatch):
    argv = ["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path]
    began = torch.get_num_threads()
    restore = interrupt_epoch(monkeypatch, 2)
    assert cli(argv)[0] == 130
    restore()
    assert checkpoint_of(tmp_path)["threads"] == results_of(tmp_path)["threads"] == began
    saved = (tmp_path / "checkpoints" / f"{RUN}.pt").read_bytes()
    torch.set_num_threads(began + 1)  # as on a machine with another core count
    try:
        status, _, err = cli([*argv, "--resume"])
    finally:
        torch.set_num_threads(began)
    assert_one_line_error(err, status, 2, f"--resume: {tmp_path}/checkpoints/{RUN}.pt was trained with {began} torch "
                                          f"threads, and this run would take {began + 1}, which changes its numbers; "
                                          f"set OMP_NUM_THREADS={began} in the environment to continue it\n")
    assert (tmp_path / "checkpoints" / f"{RUN}.pt").read_bytes() == saved
    # The advice, followed: a fresh process, where torch reads the count from the environment.
    done = subprocess.run([sys.executable, "main.py", *map(str, argv), "--resume"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": str(began)}, timeout=300)
    assert done.returncode == 0 and len(re.findall(r"^epoch ", done.stdout, re.MULTILINE)) == 2, done.stderr
    assert results_of(tmp_path)["threads"] == began and len(results_of(tmp_path)["history"]) == 3


# A finished run is not silently replaced by one with other settings (issue 20)

def outputs_of(out_dir, run=RUN):
    return {path.name: path.read_bytes() for path in files.RunPaths.of(out_dir, run).outputs}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A folder holding a finished QUICK lenet5 run; tests copy it, so each sees the same bytes."""
    import main
    out_dir = tmp_path_factory.mktemp("finished")
    assert main.main(main.get_args_parser().parse_args(["--model", "lenet5", *QUICK, "--out-dir", str(out_dir)])) == 0
    return out_dir


@pytest.mark.parametrize("change, differs", [
    (["--lr", "0.05"], "with --lr 0.1, where this run has --lr 0.05"),
    (["--epochs", "1"], "with --epochs 2, where this run has --epochs 1"),
    (["--limit", "256"], "with --limit 512, where this run has --limit 256"),
    (["--train-size", "100"], "with no --train-size, where this run has --train-size 100"),
    (["--augment"], "with --augment 0.0, where this run has --augment 1.0"),
    (["--label-smoothing", "0.1"], "with --label-smoothing 0.0, where this run has --label-smoothing 0.1"),
])
def test_a_finished_run_is_not_replaced_by_one_with_other_settings(change, differs, finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    status, out, err = cli(["--model", "lenet5", *QUICK, *change, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"already holds a finished {RUN} {differs}; pass --tag NAME to keep both, "
                                          "or --overwrite to replace it")
    assert out == "" and outputs_of(tmp_path) == before
    status, out, _ = cli(["--model", "lenet5", *QUICK, *change, "--out-dir", tmp_path, "--tag", "other"])
    assert status == 0 and outputs_of(tmp_path) == before  # the tagged run has files of its own
    status, _, _ = cli(["--model", "lenet5", *QUICK, *change, "--out-dir", tmp_path, "--overwrite"])
    assert status == 0 and results_of(tmp_path)["recipe"] != json.loads(before[f"{RUN}.json"])["recipe"]


def test_a_run_saved_before_label_smoothing_existed_reads_as_trained_without_it(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    checkpoint = checkpoint_of(tmp_path)
    del checkpoint["recipe"]["label_smoothing"]
    torch.save(checkpoint, tmp_path / "checkpoints" / f"{RUN}.pt")
    status, _, err = cli(["--model", "lenet5", *QUICK, "--label-smoothing", "0.1", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "with --label-smoothing 0.0, where this run has --label-smoothing 0.1")
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "with the same settings")


def test_results_without_their_checkpoint_are_not_replaced_either(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (tmp_path / "checkpoints" / f"{RUN}.pt").unlink()
    results = (tmp_path / "results" / f"{RUN}.json").read_bytes()
    status, _, err = cli(["--model", "lenet5", *QUICK, "--lr", "0.05", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "with --lr 0.1, where this run has --lr 0.05")
    assert (tmp_path / "results" / f"{RUN}.json").read_bytes() == results


def test_results_whose_history_is_not_a_list_are_rewritten_by_resume(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "results" / f"{RUN}.json"
    path.write_text(json.dumps({**results_of(tmp_path), "history": 5}))
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "holds an unfinished run (epoch 2 of 2); add --resume to continue it")
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--resume"])[0] == 0
    assert len(results_of(tmp_path)["history"]) == 2


def test_the_same_run_twice_needs_overwrite_and_reproduces_the_first(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    first = results_of(tmp_path)
    status, out, _ = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--overwrite"])
    assert status == 0 and out.count("epoch ") == 2
    again = results_of(tmp_path)
    assert without_seconds(again["history"]) == without_seconds(first["history"])
    assert again["predictions"] == first["predictions"]


# Issue 26, item 2: the report's results hold measurements that a rerun does not write

@pytest.mark.parametrize("checkpoint", ["kept", "deleted"])
def test_a_rerun_never_strips_a_finished_runs_results(checkpoint, finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (tmp_path / "results" / f"{RUN}.json").write_text(json.dumps(
        {**results_of(tmp_path), "final_train_eval": {"acc": 99.1}, "robustness": {"rotation": [98.0]}}))
    if checkpoint == "deleted":
        (tmp_path / "checkpoints" / f"{RUN}.pt").unlink()
    before = outputs_of(tmp_path) if checkpoint == "kept" else (tmp_path / "results" / f"{RUN}.json").read_bytes()
    status, out, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"already holds a finished {RUN} with the same settings; pass --tag NAME "
                                          f"or another --out-dir to train it again beside it\n")
    assert out == "" and "--overwrite" not in err
    assert (outputs_of(tmp_path) if checkpoint == "kept" else (tmp_path / "results" / f"{RUN}.json").read_bytes()) \
        == before
    # Not even --overwrite strips them (`main.py --overwrite --out-dir .` over the report's runs).
    status, out, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--overwrite"])
    assert_one_line_error(err, status, 2, f"{tmp_path}/results/{RUN}.json holds measurements that this run does not "
                                          f"make ('final_train_eval', 'robustness'), which training it would throw "
                                          f"away; pass --tag NAME or another --out-dir to train beside it\n")
    assert out == ""
    assert (outputs_of(tmp_path) if checkpoint == "kept" else (tmp_path / "results" / f"{RUN}.json").read_bytes()) \
        == before


def with_measurements_and_no_checkpoint(finished, tmp_path):
    """A copy of the finished run as the report commits its runs: results with measurements, no checkpoint."""
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (tmp_path / "results" / f"{RUN}.json").write_text(json.dumps(
        {**results_of(tmp_path), "final_train_eval": {"acc": 99.1}, "robustness": {"rotation": [98.0]}}))
    (tmp_path / "checkpoints" / f"{RUN}.pt").unlink()
    return (tmp_path / "results" / f"{RUN}.json").read_bytes()


def test_model_all_resume_skips_a_finished_run_whose_checkpoint_is_gone(finished, tmp_path, cli):
    # `main.py --model all --resume --out-dir .`: the report commits results, not checkpoints.
    kept = with_measurements_and_no_checkpoint(finished, tmp_path)
    status, out, _ = cli(["--model", "all", *QUICK, "--out-dir", tmp_path, "--resume"])
    assert status == 0 and f"lenet5: finished already, in {tmp_path}/results/{RUN}.json" in out
    assert (tmp_path / "results" / f"{RUN}.json").read_bytes() == kept


def test_model_all_resume_with_other_settings_never_trains_over_a_finished_run(finished, tmp_path, cli):
    kept = with_measurements_and_no_checkpoint(finished, tmp_path)
    status, out, err = cli(["--model", "all", *QUICK[:-2], "--epochs", "1", "--out-dir", tmp_path, "--resume"])
    assert_one_line_error(err, status, 2, f"{tmp_path}/results/{RUN}.json holds a finished run with --epochs 2, "
                                          f"where this one has --epochs 1; pass --tag NAME to keep both, or another "
                                          f"--out-dir\n")
    assert out == "" and (tmp_path / "results" / f"{RUN}.json").read_bytes() == kept
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # no model of the three trained


def test_a_run_writes_exactly_the_keys_that_overwrite_may_replace(finished):
    # RESULT_KEYS is what --overwrite may throw away; a key train_run writes but RESULT_KEYS misses would make every
    # finished run look as if it held the report's measurements, and a key listed but never written would let
    # --overwrite strip one.
    assert set(results_of(finished)) == set(runs.RESULT_KEYS)


def test_model_all_offers_resume_to_skip_a_finished_run(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    status, _, err = cli(["--model", "all", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, f"finished {RUN} with the same settings; pass --resume to skip it, ")


# Issue 26, item 6: Ctrl-C in a rerun of a finished run must not cost the finished model

def test_ctrl_c_in_a_rerun_keeps_the_finished_model(finished, tmp_path, cli, monkeypatch, capsys):
    import predict
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    interrupt_epoch(monkeypatch, 2)
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert status == 2 and outputs_of(tmp_path) == before, err
    # With --overwrite the finished run is given up, as asked; predict.py then says why it reads another one.
    shutil.copy(tmp_path / "checkpoints" / f"{RUN}.pt", tmp_path / "checkpoints" / "lenet5_kept_seed0.pt")
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path, "--overwrite"])[0] == 130
    monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path)
    predict.load(predict.get_args_parser().parse_args(["--model", "lenet5", "x.png"]))
    err = capsys.readouterr().err
    assert (f"predict.py: skipped {tmp_path}/checkpoints/{RUN}.pt, which holds an unfinished run (epoch 1 of 2), "
            f"which main.py --resume finishes\n") in err
    assert f"reading with lenet5 from {tmp_path}/checkpoints/lenet5_kept_seed0.pt" in err


# Issue 26, item 10: a checkpoint this user may not read may be a good one: no advice that destroys it

def test_an_unreadable_checkpoint_is_not_called_damaged(finished, tmp_path):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    (tmp_path / "checkpoints" / f"{RUN}.pt").chmod(0)
    before = outputs_of(tmp_path)
    # Root reads anything; without these capabilities it meets file permissions as any user does.
    prefix = [] if os.geteuid() else ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                                      "--inh-caps=-dac_override,-dac_read_search"]
    if prefix and not shutil.which("setpriv"):
        pytest.skip("needs setpriv to drop root's permission to read anything")
    done = subprocess.run([*prefix, sys.executable, ROOT / "main.py", "--model", "lenet5", *QUICK, "--out-dir",
                           tmp_path], capture_output=True, text=True, timeout=120)
    assert_one_line_error(done.stderr, done.returncode, 2,
                          f"{tmp_path}/checkpoints/{RUN}.pt is not readable (Permission denied); check its "
                          f"permissions, or pass --tag NAME or another --out-dir to train beside it")
    assert "--overwrite" not in done.stderr
    (tmp_path / "checkpoints" / f"{RUN}.pt").chmod(0o644)
    assert outputs_of(tmp_path) == before


def test_model_all_refuses_before_training_any_model(finished, tmp_path, cli):
    shutil.copytree(finished, tmp_path, dirs_exist_ok=True)
    before = outputs_of(tmp_path)
    status, out, err = cli(["--model", "all", *QUICK, "--epochs", "1", "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "with --epochs 2, where this run has --epochs 1")
    assert out == "" and outputs_of(tmp_path) == before
    assert not (tmp_path / "checkpoints" / "custom_mlp_seed0.pt").exists()


def test_predict_prefers_a_full_run_to_a_quick_one_with_a_better_score(trained_runs, tmp_path):
    (tmp_path / "checkpoints").mkdir()
    full = trained_runs / "checkpoints" / "lenet5_seed0.pt"
    shutil.copy(full, tmp_path / "checkpoints" / "lenet5_seed0.pt")
    quick = torch.load(full, weights_only=True)
    quick["recipe"]["limit"] = 512
    quick["history"][-1]["eval_acc"] = 100.0
    torch.save(quick, tmp_path / "checkpoints" / "lenet5_quick_seed0.pt")
    assert checkpoints.best_checkpoint(tmp_path).name == "lenet5_seed0.pt"
    (tmp_path / "checkpoints" / "lenet5_seed0.pt").unlink()
    assert checkpoints.best_checkpoint(tmp_path).name == "lenet5_quick_seed0.pt"  # a quick run is better than none


# 4: two processes of the same run

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


# 5, and the Ctrl-C cases: real signals to a real process

def start_training(out_dir, *extra):
    return start("main.py", "--model", "lenet5", "--limit", "2000", "--epochs", "500", "--device", "cpu",
                 "--out-dir", out_dir, *extra)


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, "training ended before its first epoch"
        time.sleep(0.05)


def assert_whole_files(out_dir):
    """No temporary leftovers, and every output file there is complete."""
    assert not [p for p in out_dir.rglob("*") if p.name.endswith(".tmp")]
    results, curves = out_dir / "results" / f"{RUN}.json", out_dir / "plots" / f"{RUN}_curves.png"
    if results.exists():
        json.loads(results.read_text())
    if curves.exists():
        assert curves.read_bytes()[-8:] == b"IEND\xaeB`\x82"
    checkpoint_of(out_dir)


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_keeps_the_last_epoch_and_says_how_to_resume(sig, status, tmp_path):
    stale = tmp_path / "results" / f".{RUN}.json.99999.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_text("left by a killed run")
    process = start_training(tmp_path)
    wait_for(tmp_path / "checkpoints" / f"{RUN}.pt", process)
    time.sleep(0.5)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status
    assert "Traceback" not in err and "checkpoint, results and curves so far are saved" in err
    assert err.splitlines()[-1].startswith(f"resume with: {shlex.quote(PYTHON)} ")
    assert err.splitlines()[-1].endswith("--resume")
    assert_whole_files(tmp_path)
    assert (tmp_path / "plots" / f"{RUN}_curves.png").exists()
    results, checkpoint = results_of(tmp_path), checkpoint_of(tmp_path)
    assert results["status"] == "interrupted"
    assert 1 <= len(results["history"]) == checkpoint["epoch"] < 500
    assert results["history"] == checkpoint["history"]


def test_sighup_stays_ignored_where_the_program_was_started_with_it_ignored(tmp_path):
    # As `nohup python main.py ... &` starts it: a closed terminal must not stop it.
    process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--model", "lenet5", "--limit", "2000",
                                "--epochs", "500", "--device", "cpu", "--out-dir", str(tmp_path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        wait_for(tmp_path / "checkpoints" / f"{RUN}.pt", process)
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()


def test_a_second_ctrl_c_exits_at_once_leaving_whole_files(tmp_path):
    process = start_training(tmp_path)
    wait_for(tmp_path / "checkpoints" / f"{RUN}.pt", process)
    process.send_signal(signal.SIGINT)
    time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err
    assert "checkpoint" in err
    assert_whole_files(tmp_path)


# 6: Ctrl-C after the last epoch, while the final results are written

def test_resume_finishes_a_run_stopped_during_its_final_pass(tmp_path, cli, monkeypatch):
    import runs
    argv = ["--model", "lenet5", *QUICK, "--out-dir", tmp_path]
    real, calls = runs.figures.curves, []

    def curves(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the final curves, after the last epoch's checkpoint
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(runs.figures, "curves", curves)
    status, _, err = cli(argv)
    assert status == 130 and "resume with:" in err
    assert results_of(tmp_path)["status"] == "interrupted" and checkpoint_of(tmp_path)["epoch"] == 2
    monkeypatch.setattr(runs.figures, "curves", real)
    status, out, _ = cli([*argv, "--resume"])
    assert status == 0 and "after epoch 2" in out and out.count("epoch ") == 1  # the "resuming" line only
    results = results_of(tmp_path)
    assert results["status"] == "complete" and len(results["predictions"]) == 512
    straight = tmp_path / "straight"
    assert cli(["--model", "lenet5", *QUICK, "--out-dir", straight])[0] == 0
    assert results["predictions"] == results_of(straight)["predictions"]
    assert without_seconds(results["history"]) == without_seconds(results_of(straight)["history"])


# 7: --model all, interrupted and resumed

def test_model_all_resumes_where_it_stopped(tmp_path, cli, monkeypatch):
    argv = ["--model", "all", "--limit", "256", "--epochs", "2", "--device", "cpu", "--out-dir", tmp_path]
    restore = interrupt_epoch(monkeypatch, 3)  # lenet5's 2 epochs, then custom_mlp's first
    status, _, err = cli(argv)
    restore()
    assert status == 130
    assert "lenet5 finished; interrupted during the first epoch of the next model, which saved nothing." in err
    assert err.splitlines()[-1].endswith("--resume")
    lenet = (tmp_path / "checkpoints" / "lenet5_seed0.pt").read_bytes()
    status, out, _ = cli([*argv, "--resume"])
    assert status == 0 and "lenet5: finished already" in out
    assert (tmp_path / "checkpoints" / "lenet5_seed0.pt").read_bytes() == lenet
    for model in ("lenet5", "custom_mlp", "lenet5_regularized"):
        assert results_of(tmp_path, f"{model}_seed0")["status"] == "complete"
    assert (tmp_path / "plots" / "comparison_seed0.png").is_file()
    straight = tmp_path / "straight"
    assert cli([*argv[:-1], straight])[0] == 0
    assert (without_seconds(results_of(tmp_path, "custom_mlp_seed0")["history"]) ==
            without_seconds(results_of(straight, "custom_mlp_seed0")["history"]))


# 8 and 10: bad places to write, found before any training

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


def test_a_folder_that_exists_but_refuses_writes_is_found_by_the_probe(tmp_path, cli, read_only_probe):
    (tmp_path / "out").mkdir()
    status, out, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path / "out"])
    assert_one_line_error(err, status, 2, "cannot be written (Read-only file system")
    assert "epoch" not in out


# 9: a failed write in the middle of a run

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


def test_a_failed_first_checkpoint_does_not_advise_resuming(tmp_path, cli, monkeypatch):
    def save_checkpoint(path, checkpoint):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoints, "save", save_checkpoint)
    status, _, err = cli(["--model", "lenet5", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 1, "(No space left on device); free some space or pass another --out-dir, "
                                          "then rerun\n")


def test_model_all_checks_where_its_comparison_figure_goes_before_training(tmp_path, cli):
    (tmp_path / "plots" / "comparison_seed0.png").mkdir(parents=True)
    status, out, err = cli(["--model", "all", *QUICK, "--out-dir", tmp_path])
    assert_one_line_error(err, status, 2, "comparison_seed0.png is a folder, where this command writes a file")
    assert "epoch" not in out


# 10: the rest

def test_batch_norm_trains_when_the_last_batch_would_hold_one_image(tmp_path, cli):
    status, _, err = cli(["--model", "lenet5_regularized", "--limit", "513", "--epochs", "1", "--device", "cpu",
                          "--out-dir", tmp_path])
    assert status == 0, err
    assert results_of(tmp_path, "lenet5_regularized_seed0")["train_images"] == 513


@pytest.mark.parametrize("damage, message", [
    ("wrong shapes", "its weights do not have the shapes of model.py's lenet5"),
    ("missing keys", "is not a checkpoint of main.py (no model)"),
    ("corrupt rng", "does not fit this run"),
    ("truncated", "is not a checkpoint of main.py"),
])
def test_a_damaged_checkpoint_is_refused_on_resume(damage, message, tmp_path, cli, monkeypatch):
    argv = ["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path]
    restore = interrupt_epoch(monkeypatch, 2)
    assert cli(argv)[0] == 130
    restore()
    path = tmp_path / "checkpoints" / f"{RUN}.pt"
    checkpoint = checkpoint_of(tmp_path)
    if damage == "wrong shapes":
        checkpoint["model"]["fc1.weight"] = torch.zeros(3, 3)
    elif damage == "missing keys":
        del checkpoint["model"]
    elif damage == "corrupt rng":
        checkpoint["rng"]["cpu"] = torch.zeros(7, dtype=torch.uint8)
    torch.save(checkpoint, path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    status, out, err = cli([*argv, "--resume"])
    assert_one_line_error(err, status, 2, message)
    assert not re.search(r"^epoch ", out, re.MULTILINE)  # no training


def test_a_broken_pipe_ends_the_run_quietly_and_keeps_it_resumable(tmp_path):  # `main.py ... | head -3`
    process = start_training(tmp_path)
    wait_for(tmp_path / "checkpoints" / f"{RUN}.pt", process)
    time.sleep(0.5)
    process.stdout.close()
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141 and err == ""
    assert_whole_files(tmp_path)
    assert results_of(tmp_path)["status"] == "interrupted"
    assert len(results_of(tmp_path)["history"]) == checkpoint_of(tmp_path)["epoch"]


def test_output_that_cannot_be_written_is_one_line_and_keeps_the_run_resumable(tmp_path, cli, monkeypatch):
    class FillsUp(io.TextIOWrapper):  # `main.py ... > /dev/full`, or a disk that fills up during the run
        def write(self, text):
            if text.startswith("epoch  2/"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(text)
    monkeypatch.setattr(sys, "stdout", FillsUp(open(tmp_path / "stdout.txt", "wb")))
    argv = ["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path]
    status, _, err = cli(argv)
    assert_one_line_error(err, status, 1, "main.py: error: cannot write the output (No space left on device); "
                                          "free some space or send it elsewhere")
    assert checkpoint_of(tmp_path)["epoch"] == 2 and results_of(tmp_path)["status"] == "failed"
    assert_whole_files(tmp_path)
    monkeypatch.undo()
    assert cli([*argv, "--resume"])[0] == 0 and results_of(tmp_path)["status"] == "complete"


def test_the_number_of_images_used_is_recorded(tmp_path, cli):
    assert cli(["--model", "custom_mlp", "--limit", "12000", "--epochs", "1", "--device", "cpu",
                "--out-dir", tmp_path])[0] == 0
    results = results_of(tmp_path, "custom_mlp_seed0")
    assert results["train_images"] == 12_000 and results["eval_images"] == 10_000
    assert files_under(tmp_path / "results") == ["custom_mlp_seed0.json"]
