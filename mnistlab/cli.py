"""What every command-line entry point shares: its parser, its output, its signals, and its exit statuses.

No torch here, so that a program can check its arguments and answer --help before the slow imports.
"""
import argparse
import math
import os
import shlex
import signal
import sys
import threading

from mnistlab.errors import Interrupted, RunFailed, UsageError
from mnistlab.recipes import DATASET_NAMES, RECIPE_SCHEMA, check_tag


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends each option's default, except where the help text itself says what happens without it."""

    def _get_help_string(self, action):
        hidden = action.default is None or action.default is False  # not `in`: 0 == False, and --seed 0 shows
        if isinstance(action.default, list):  # the values of a flag that takes several, as they are typed
            return f"{action.help} (default: {' '.join(map(str, action.default))})"
        return action.help if hidden else super()._get_help_string(action)


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, with its errors on one line instead of the usage text and an error line, and without abbreviated
    options: the programs print commands back to the user (how to resume), and those must say what was meant."""

    def __init__(self, **kwargs):
        super().__init__(allow_abbrev=False, **{"formatter_class": HelpFormatter, **kwargs})

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def number(kind, accept, requirement):
    """An argparse type: text parsed by kind, then held to accept(value)."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole' if kind is int else 'a'} number, got {text!r}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text}")
        return value
    return parse


def count(high=10**9):
    return number(int, lambda v: 1 <= v <= high, f"from 1 to {high}")


def parse_tag(text):
    try:
        return check_tag(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_widths(text):
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        widths = []
    if not RECIPE_SCHEMA["hidden"].allows(widths):
        raise argparse.ArgumentTypeError(f"expected {RECIPE_SCHEMA['hidden'].requirement}, joined by commas, e.g. "
                                         f"72,64; got {text!r}")
    return widths


def parse_switch(text):
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def setting(key):
    """The argparse type of the flag for a recipe setting: the kind and bounds that RECIPE_SCHEMA gives it."""
    kind = RECIPE_SCHEMA[key]
    if kind.kind is list:
        return parse_widths
    if kind.kind is str:
        return str
    return number(kind.kind, kind.allows, kind.bounds)


RECIPE = "the model's recipe (printed at start-up)"
# The flags that override a model's recipe, main.py's and sweep.py's alike: key, help.
RECIPE_FLAGS = [
    ("epochs", f"epochs to train; default: {RECIPE}, 10 for the default ones"),
    ("batch_size", f"training batch size; default: {RECIPE}"),
    ("lr", f"peak learning rate of the one-cycle schedule; default: {RECIPE}"),
    ("optimizer", f"sgd is Nesterov with momentum 0.9; default: {RECIPE}"),
    ("weight_decay", f"weight decay; default: {RECIPE}"),
    ("augment", "random rotation, shift and scale of training images: 1 is up to 5 degrees, 5%% and 5%%, 2 doubles "
                f"those ranges, 0 is none; default: {RECIPE}"),
    ("label_smoothing", f"label smoothing of the training loss; default: {RECIPE}"),
    ("hidden", f"hidden widths of custom_mlp, e.g. 72,64; default: {RECIPE}"),
    ("dropout", f"dropout probability, lenet5_regularized only; default: {RECIPE}"),
    ("batch_norm", f"batch norm layers, lenet5_regularized only; default: {RECIPE}"),
]


def add_recipe_flags(parser, many=False):
    """The recipe's flags on parser; with many, each takes one or more values, a grid's axis."""
    for key, help in RECIPE_FLAGS:
        flag, kind = f"--{key.replace('_', '-')}", RECIPE_SCHEMA[key]
        values = {"nargs": "+", "help": help.replace("default:", "one or more; default:")} if many else {"help": help}
        if kind.choices:
            parser.add_argument(flag, choices=kind.choices, **values)
        elif kind.kind is bool and many:
            parser.add_argument(flag, type=parse_switch, metavar="on|off", **values)
        elif kind.kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **values)
        elif key == "augment" and not many:
            parser.add_argument(flag, type=setting(key), nargs="?", const=1.0, metavar="STRENGTH",
                                help=help.replace("1 is", "1 (the bare flag) is"))
            parser.add_argument("--no-augment", dest="augment", action="store_const", const=0.0,
                                help="same as --augment 0")
        else:
            parser.add_argument(flag, type=setting(key), **values)


def add_data_flags(parser):
    """The flags that say what a run trains and scores on, and how: main.py's and sweep.py's alike."""
    parser.add_argument("--dataset", choices=DATASET_NAMES, default="mnist",
                        help="what to train and score on: handwritten digits, or Fashion-MNIST's clothes in the same "
                             "format; a run on another dataset than MNIST is named after it, e.g. "
                             "fashion-mnist_lenet5_seed0")
    parser.add_argument("--validation", action="store_true",
                        help="train on the first 50,000 training images and evaluate on the last 10,000 instead of the "
                             "test set, to compare recipes without looking at the test set; default: off")
    parser.add_argument("--limit", type=setting("limit"),
                        help="use only the first N training and N evaluation images, for quick checks; default: all")
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast, meant for GPUs; default: off")
    parser.add_argument("--eval-batch-size", type=setting("batch_size"), default=1000, help="batch size for evaluation")


def add_runner_flags(parser, jobs=1):
    """The flags that say where many runs train (runner.py): one after another here, at once on a private local Ray
    instance, or on a Ray cluster."""
    parser.add_argument("--jobs", type=count(4096), default=jobs,
                        help="runs at once on a private Ray instance on this machine, reachable on loopback only; 1 "
                             "trains them one after another in this process, without Ray")
    parser.add_argument("--address",
                        help="a running Ray cluster to send the runs to, as HOST:PORT of its head; its resources "
                             "decide how many run at once; default: $RAY_ADDRESS where --jobs is above 1, else none")
    parser.add_argument("--cpus-per-run", type=count(1024),
                        help="CPU cores, and torch threads, that each run takes; default: 1 on Ray, torch's default "
                             "with --jobs 1. The thread count changes a run's numbers, and a run resumes only at its own")
    parser.add_argument("--gpus-per-run", type=number(float, lambda v: 0 < v <= 1, "above 0 and at most 1"),
                        help="the share of a GPU each run takes on Ray, e.g. 0.1 packs ten runs onto one GPU; "
                             "default: none")


# The signals that stop a program as Ctrl-C does: SIGTERM as kill, timeout and job schedulers send it, SIGHUP as a
# closed terminal or SSH session sends it.
ENDINGS = (signal.SIGTERM, signal.SIGHUP)
STOPS = (signal.SIGINT, *ENDINGS)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (signum): handled like Ctrl-C, with its own exit status."""

    def __init__(self, signum=signal.SIGTERM):
        super().__init__(signum)
        self.signum = signum


def terminate(signum, frame):
    raise Terminated(signum)


def signal_status(interrupt):
    """The exit status of a program stopped by this KeyboardInterrupt, as a shell gives one killed by the signal:
    143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl-C."""
    return 128 + (interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT)


def stop_on_ctrl_c(message):
    """Make Ctrl-C print message and end the process at once, with exit status 130; returns the function that gives
    Ctrl-C back to Python as a KeyboardInterrupt. For start-up, where nothing is written yet, and where a
    KeyboardInterrupt raised inside a library's import can be swallowed there, or turned into another error."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # started with Ctrl-C ignored, as by nohup: so it stays
        return lambda: None

    def stop(signum, frame):
        os.write(2, f"\n{message}\n".encode())
        os._exit(130)
    signal.signal(signal.SIGINT, stop)
    return lambda: signal.signal(signal.SIGINT, signal.default_int_handler)


class OutputLost(Exception):
    """Standard output cannot be written (a full disk, /dev/full); the OSError's message is the cause."""


def emit(text):
    """text on standard output at once, so that each line shows as it is ready. A reader that went away stays a
    BrokenPipeError; any other failure to write is OutputLost."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        raise
    except OSError as e:
        raise OutputLost(e.strerror or str(e)) from None


def lose_output():
    """Send what is left for standard output to /dev/null, so that nothing more fails at exit."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def run(prog, body, interrupted="interrupted", stopped=str):
    """body()'s exit status, with the package's errors as one line on standard error and their exit statuses:
    2 bad input (UsageError), 1 a run that failed (RunFailed) or output that cannot be written, 130 Ctrl-C and
    143 SIGTERM, 129 SIGHUP, 141 a reader that went away. interrupted is the line for a signal before anything was saved (or
    the function that gives it, as things stand then);
    stopped(e) the one for an errors.Interrupted run, which says what was saved and how to go on. The handlers it
    installs are put back as they were when it returns, so that a caller that goes on (a test) is stopped as before."""
    handled = {}
    if threading.current_thread() is threading.main_thread():  # only there can Python handle a signal
        for signum in ENDINGS:
            if signal.getsignal(signum) is not signal.SIG_IGN:  # nohup's SIGHUP stays ignored
                handled[signum] = signal.signal(signum, terminate)
    try:
        return _outcome(prog, body, interrupted, stopped)
    finally:
        for signum, previous in handled.items():
            signal.signal(signum, previous)


def _outcome(prog, body, interrupted, stopped):
    """run()'s exit status for body, its errors turned into their lines."""
    try:
        return body()
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"\n{stopped(e)}", file=sys.stderr)
        return signal_status(e.by)
    except KeyboardInterrupt as e:
        print(f"\n{interrupted() if callable(interrupted) else interrupted}", file=sys.stderr)
        return signal_status(e)
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly. Files are as the last finished step left them.
        lose_output()
        return 141
    except OutputLost as e:
        lose_output()
        print(f"{prog}: error: cannot write the output ({e}); free some space or send it elsewhere", file=sys.stderr)
        return 1


def command_again(argv):
    """The command line that runs this program again with argv: through the interpreter that runs it now, since a
    bare `python` may be one without torch; relative to the working folder where it lies inside it."""
    python, here = sys.executable, os.path.join(os.getcwd(), "")
    return shlex.join([python.removeprefix(here), *argv])


def exit_now(status):
    """Exit with status, without Python's shutdown, which takes about a second once torch is imported and does
    nothing a finished command needs: its files are written and closed, and only the output buffers remain."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        status = status or 141
    except OSError:
        status = status or 1
    os._exit(status)
