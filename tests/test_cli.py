"""mnistlab/cli.py: what every program shares: the parser's one-line errors, the recipe's and the runner's flags,
Ctrl-C and SIGTERM, and run(), which turns the package's errors into one line and an exit status."""
import errno
import io
import shlex
import signal
import subprocess
import sys
import time

import pytest

import sweep
from helpers import (ONE_EPOCH, PYTHON, QUICK, ROOT, RUN, assert_one_line_error, assert_whole_files, checkpoint_of,
                     guards, results_of, start_training, sweep_args, wait_for)
from mnistlab import cli
from mnistlab import cli as command_line
from mnistlab import runner


@guards("mnistlab/cli.py",
        "run() puts back the signal handlers it found",
        "        for signum, previous in handled.items():\n            signal.signal(signum, previous)\n",
        "        pass\n")
def test_run_puts_back_the_signal_handlers_it_found():
    # A caller that goes on after run(), a test among others, is stopped by SIGTERM and SIGHUP as before it.
    before = {signum: signal.getsignal(signum) for signum in cli.ENDINGS}
    during = []
    assert cli.run("x", lambda: during.append([signal.getsignal(signum) for signum in cli.ENDINGS]) or 0) == 0
    assert during == [[signal.SIG_IGN if before[signum] is signal.SIG_IGN else cli.terminate for signum in cli.ENDINGS]]
    assert {signum: signal.getsignal(signum) for signum in cli.ENDINGS} == before


@guards("mnistlab/cli.py",
        "a count is at most its cap",
        'lambda v: 1 <= v <= high, f"from 1 to {high}"',
        'lambda v: 1 <= v, f"from 1 to {high}"')
@guards("mnistlab/cli.py",
        "--gpus-per-run is above 0",
        "type=number(float, lambda v: 0 < v",
        "type=number(float, lambda v: 0 <= v")
def test_runner_counts_are_held_to_their_caps():
    parser = command_line.OneLineErrorParser()
    command_line.add_runner_flags(parser)
    taken = parser.parse_args(["--jobs", "4096", "--cpus-per-run", "1024", "--gpus-per-run", "1"])
    assert (taken.jobs, taken.cpus_per_run, taken.gpus_per_run) == (4096, 1024, 1.0)
    for argv in (["--jobs", "4097"], ["--cpus-per-run", "1025"], ["--gpus-per-run", "0"], ["--jobs", "0"]):
        with pytest.raises(SystemExit) as stopped:
            parser.parse_args(argv)
        assert stopped.value.code == 2, argv


@guards("mnistlab/cli.py",
        "--hidden widths are held to the schema's bounds",
        '    if not RECIPE_SCHEMA["hidden"].allows(widths):',
        "    if not widths:")
@pytest.mark.parametrize("widths", ["10,5000", "0", "10,-1", ",".join(["8"] * 9)])
def test_hidden_widths_beyond_the_schema_are_refused(widths, tmp_path, cli):
    status, out, err = cli(["--model", "custom_mlp", "--hidden", widths, "--limit", "64", "--epochs", "1",
                            "--device", "cpu", "--out-dir", tmp_path])
    assert status == 2 and out == "" and err.count("\n") == 1, err
    assert f"--hidden: expected widths from 1 to 4096, at most 8 of them, joined by commas, e.g. 72,64; got " \
           f"'{widths}'" in err
    assert not (tmp_path / "results").exists()


@guards("mnistlab/cli.py",
        "a flag with choices takes only those",
        "            parser.add_argument(flag, choices=kind.choices, **values)",
        "            parser.add_argument(flag, **values)")
def test_an_optimizer_that_is_not_a_choice_is_refused(tmp_path, cli):
    status, out, err = cli(["--optimizer", "adam", "--limit", "64", "--epochs", "1", "--device", "cpu",
                            "--out-dir", tmp_path])
    assert status == 2 and out == "" and err.count("\n") == 1, err
    assert "--optimizer: invalid choice: 'adam'" in err
    assert not (tmp_path / "results").exists()


@guards("mnistlab/cli.py",
        "Ctrl-C ignored at start (nohup, a background job) stays ignored",
        "    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:",
        "    if False:")
def test_ctrl_c_stays_ignored_where_the_program_was_started_with_it_ignored(tmp_path):
    # As `nohup predict.py ... &` starts it: Ctrl-C, sent while it starts, must not stop it.
    process = subprocess.Popen([sys.executable, str(ROOT / "predict.py"), str(tmp_path / "one.png"), "--checkpoint",
                                str(tmp_path / "none.pt")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()  # where it did not stop
        process.wait()
    assert process.returncode == 2 and err == (f"predict.py: error: --checkpoint: {tmp_path}/none.pt does not exist; "
                                               f"train the model first, e.g. `python main.py --model lenet5`\n"), err


@guards("mnistlab/cli.py",
        "the command to continue names the interpreter that ran it, not a bare python",
        'python, here = sys.executable, os.path.join(os.getcwd(), "")',
        'python, here = "python", os.path.join(os.getcwd(), "")')
@guards("sweep.py",
        "a stopped sweep says the command that continues it",
        "        except (KeyboardInterrupt, Interrupted) as e:",
        "        except ZeroDivisionError as e:")
def test_a_stopped_sweep_says_how_to_continue(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(runner, "jobs_to_train", lambda named, paths_of, out_dir, **kwargs: (["a job"], []))

    def train_and_report(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(runner, "train_and_report", train_and_report)
    monkeypatch.setattr(sys, "argv", ["sweep.py", "--model", "lenet5"])
    assert sweep.main(sweep_args("--out-dir", tmp_path)) == 130
    err = capsys.readouterr().err
    assert "sweep.py: interrupted; the finished runs are written whole." in err
    # The interpreter that ran it: a bare `python` may be one without torch.
    assert f"continue with: {shlex.quote(PYTHON)} sweep.py --model lenet5" in err


@guards("mnistlab/cli.py",
        "SIGTERM stops a run as Ctrl-C does, keeping its files whole",
        "                handled[signum] = signal.signal(signum, terminate)",
        "                pass")
@guards("mnistlab/cli.py",
        "SIGTERM exits 143, not Ctrl-C's 130",
        "    return 128 + (interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT)",
        "    return 130")
@guards("mnistlab/cli.py",
        "SIGHUP stops a program as SIGTERM does",
        "ENDINGS = (signal.SIGTERM, signal.SIGHUP)",
        "ENDINGS = (signal.SIGTERM,)")
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


@guards("mnistlab/cli.py",
        "a signal ignored at start (nohup's SIGHUP) stays ignored",
        "            if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored",
        "            if True:")
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


@guards("mnistlab/runs.py",
        "a reader that went away leaves the run's results marked interrupted",
        '"interrupted" if isinstance(e, (KeyboardInterrupt, BrokenPipeError)) else "failed"',
        '"interrupted" if isinstance(e, KeyboardInterrupt) else "failed"')
@guards("mnistlab/cli.py",
        "a reader that went away ends the program quietly, exit 141",
        "    except BrokenPipeError:\n        # The reader went away",
        "    except ZeroDivisionError:\n        # The reader went away")
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


@guards("mnistlab/runs.py",
        "a stopped or failed run writes its results so far",
        "        if history:\n            try:",
        "        if False:\n            try:")
@guards("mnistlab/cli.py",
        "output that cannot be written is one line, exit 1",
        "    except OSError as e:\n        raise OutputLost",
        "    except ZeroDivisionError as e:\n        raise OutputLost")
def test_output_that_cannot_be_written_is_one_line_and_keeps_the_run_resumable(tmp_path, cli, monkeypatch):
    class FillsUp(io.TextIOWrapper):  # `main.py ... > /dev/full`, or a disk that fills up during the run
        def write(self, text):
            if text.startswith("epoch  2/"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(text)
    stdout = FillsUp(open(tmp_path / "stdout.txt", "wb"))
    monkeypatch.setattr(sys, "stdout", stdout)
    argv = ["--model", "lenet5", *QUICK, "--epochs", "3", "--out-dir", tmp_path]
    status, _, err = cli(argv)
    stdout.buffer.close()  # not stdout.close(), which would flush the text that could not be written
    assert_one_line_error(err, status, 1, "main.py: error: cannot write the output (No space left on device); "
                                          "free some space or send it elsewhere")
    assert checkpoint_of(tmp_path)["epoch"] == 2 and results_of(tmp_path)["status"] == "failed"
    assert_whole_files(tmp_path)
    monkeypatch.undo()
    assert cli([*argv, "--resume"])[0] == 0 and results_of(tmp_path)["status"] == "complete"


@guards("mnistlab/cli.py",
        "a count is at least 1",
        "lambda v: 1 <= v <= high",
        "lambda v: 0 <= v <= high")
@guards("mnistlab/cli.py",
        "--gpus-per-run is at most one GPU",
        'lambda v: 0 < v <= 1, "above 0 and at most 1"',
        'lambda v: 0 < v, "above 0 and at most 1"')
@guards("mnistlab/cli.py",
        "an on-or-off flag takes only on or off",
        '    if text not in ("on", "off"):',
        "    if False:")
@guards("sweep.py",
        "a tag that would name another model's runs refused",
        "            check_run_name(model, tag)\n",
        "")
@guards("sweep.py",
        "a value given twice (a run named twice) refused",
        "    if repeated:\n",
        "    if False:\n")
@pytest.mark.parametrize("argv, message", [
    (["--model", "lenet5", "--dropout", "0.1", "0.2"], "--dropout applies only to lenet5_regularized"),
    (["--jobs", "0"], "--jobs: must be from 1 to 4096"),
    (["--gpus-per-run", "2"], "--gpus-per-run: must be above 0 and at most 1"),
    (["--lr", "0.1", "0.1"], "the grid names lenet5_lr0.1_seed0 more than once"),
    (["--batch-norm", "maybe"], "--batch-norm: expected on or off"),
    (["--model", "lenet5", "--tag", "regularized"], "would name lenet5's run like lenet5_regularized's runs"),
])
def test_bad_flags_get_one_line_before_any_run_or_ray(argv, message, tmp_path, run_sweep):
    # Nothing listens at this address: a sweep that reached for Ray before checking its flags would say so instead.
    status, out, err = run_sweep(*argv, *ONE_EPOCH, "--address", "127.0.0.1:1", "--out-dir", tmp_path)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "results").exists()
