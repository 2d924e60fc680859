"""What Ray needs around it on this machine, for the runner: the environment every Ray process of the driver gets,
a HOME with Ray's bootstrap file while Ray starts, signals kept out of Ray's own calls, the reaping of what a private
instance leaves behind, and the open files that a sweep's run locks take. Ray itself is not imported here.
"""
import contextlib
import os
import signal
from pathlib import Path

from mnistlab.cli import STOPS, Terminated
from mnistlab.errors import UsageError

# Settings for every Ray process this driver starts: no usage statistics; Ray's lines to the terminal without colour
# codes, which garble logs and pipes; and this machine's address never learnt from a route lookup towards a public
# one (the driver's address is given to ray.init). For a private instance, addresses that stay on loopback (without
# the last, Ray 2.60 swaps 127.0.0.1 for the machine's outbound address and listens on every interface) and a token
# that only this driver's processes hold.
RAY_ENVIRONMENT = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
                   "RAY_COLOR_PREFIX": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
PRIVATE_ENVIRONMENT = {"RAY_AUTH_MODE": "token"}


def set_environment(token=None):
    """Set RAY_ENVIRONMENT, and for a private instance, whose token is given, PRIVATE_ENVIRONMENT with the token.
    Set before Ray is first imported, which reads some of them, and kept: the driver talks to Ray until it ends."""
    environment = dict(RAY_ENVIRONMENT)
    if token is not None:
        environment.update(PRIVATE_ENVIRONMENT, RAY_AUTH_TOKEN=token)
    os.environ.update(environment)


@contextlib.contextmanager
def bootstrap_home(private):
    """HOME, while Ray starts, a folder in private that holds Ray's bootstrap file: without it, Ray's head looks for
    cloud metadata at 169.254.169.254. Yields the driver's own HOME (None where unset), given back on leaving."""
    home = os.environ.get("HOME")
    boot_home = private / "home"
    boot_home.mkdir()
    (boot_home / "ray_bootstrap_config.yaml").write_text("{}\n")
    os.environ["HOME"] = str(boot_home)
    try:
        yield home
    finally:
        if home is None:
            os.environ.pop("HOME")
        else:
            os.environ["HOME"] = home


class DeferredSignals:
    """SIGINT, SIGTERM and SIGHUP, while Ray runs, only raise a flag, which check() raises between Ray's calls:
    raised inside ray.init or ray.wait, the exception comes out wrapped in another, or leaves Ray half started. As a
    context manager: the handlers there were are given back on leaving."""

    def __init__(self):
        self.caught, self.handlers = [], {}

    def __enter__(self):
        self.listen()
        return self

    def __exit__(self, *exception):
        for signum, handler in self.handlers.items():
            signal.signal(signum, handler)

    def listen(self):
        """Take the signals that are not ignored; again after ray.init, which takes SIGTERM for itself."""
        for signum in STOPS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                self.handlers.setdefault(signum, signal.getsignal(signum))
                signal.signal(signum, self.flag)

    def flag(self, signum, frame):
        self.caught.append(signum)

    def check(self):
        """KeyboardInterrupt for a SIGINT that came, cli.Terminated for a SIGTERM or SIGHUP."""
        if self.caught:
            raise KeyboardInterrupt if self.caught[0] == signal.SIGINT else Terminated(self.caught[0])


def reap(folder):
    """SIGKILL every other process that holds a file open under folder, or works in it: a private Ray instance's,
    whose every process logs into its own folder there, and the programs run in a scratch copy. (Ray's agents
    overwrite their environment with their names, so that cannot tell them.)"""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            descriptors = [entry / "cwd", *(entry / "fd").iterdir()]
        except OSError:  # gone already, or not ours to look at
            continue
        held = []
        for fd in descriptors:
            try:
                held.append(os.readlink(fd))
            except OSError:  # closed since the listing: the others still count
                continue
        if any(path == str(folder) or path.startswith(f"{folder}/") for path in held):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue


def open_files_for(count):
    """Let this process hold count more files open, a lock for each run of a sweep; UsageError where the
    machine's hard limit will not allow it."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 256  # what the program needs besides
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    if hard != resource.RLIM_INFINITY and hard < wanted:
        raise UsageError(f"{count:,} runs need {wanted:,} open files, over this machine's limit of {hard:,} (ulimit "
                         f"-Hn); split the sweep")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
