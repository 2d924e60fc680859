"""The exceptions that the command-line tools turn into exit statuses, and how Ctrl-C ends them while they start.
No torch here, so that they can be caught before torch is imported."""
import os
import signal
import sys


class UsageError(Exception):
    """Bad input, exit status 2. The message names the problem and the fix."""


class RunFailed(Exception):
    """A run stopped on an error of its own, such as a diverging loss or a failed write: exit status 1."""


class Interrupted(Exception):
    """A signal stopped a run (`by`, a KeyboardInterrupt). Its checkpoint holds epochs_saved full epochs; its
    results and curves were written too unless a second signal came first. done names the runs finished before."""

    def __init__(self, epochs_saved, by, results_written=True, done=()):
        super().__init__(f"interrupted after epoch {epochs_saved}" if epochs_saved else
                         "interrupted during the first epoch")
        self.epochs_saved, self.by, self.results_written, self.done = epochs_saved, by, results_written, done


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
