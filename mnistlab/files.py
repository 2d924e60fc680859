"""Writing files: the one atomic write, results JSON, figures, a run's output paths, the run lock, and private
scratch folders.
checkpoints.py owns what a checkpoint holds; it writes through atomic_write here."""
import contextlib
import fcntl
import json
import os
import shutil
import stat
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mnistlab import paths
from mnistlab.errors import RunFailed, UsageError

ROOT = Path(__file__).resolve().parents[1]
# Where main.py writes unless told otherwise; git ignores it. The report writes ROOT's results/ and plots/.
DEFAULT_OUT_DIR = ROOT / "runs"


class WriteError(RunFailed):
    """A file could not be written; the message names it, the OS error, and the way on: where a checkpoint of the
    run is saved (resumable), resuming it in the same --out-dir."""

    def __init__(self, path, error, resumable=False):
        way_on = "free some space, then rerun with --resume" if resumable else \
            "free some space or pass another --out-dir, then rerun"
        super().__init__(f"cannot write {path} ({error.strerror or error}); {way_on}")


def save(path, write, obj, resumable=False):
    """write(path, obj), with a failure as a WriteError."""
    try:
        write(path, obj)
    except OSError as e:
        raise WriteError(path, e, resumable) from None


def atomic_write(path, write):
    """Write path whole or not at all: write(f) fills a temporary file beside it, which then replaces it.

    A failure, including one raised by write itself, leaves the old file as it was and no temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path, obj):
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def read_json(path):
    """The JSON at path, or None where it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return None


def save_figure(path, fig):
    # Every figure lays itself out (constrained layout); bbox_inches="tight" would render it twice to crop it.
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))


@dataclass(frozen=True)
class RunPaths:
    """The files of one run under an output folder."""
    results: Path
    curves: Path
    checkpoint: Path
    lock: Path

    @classmethod
    def of(cls, out_dir, run):
        out_dir = Path(out_dir)
        return cls(results=out_dir / "results" / f"{run}.json", curves=out_dir / "plots" / f"{run}_curves.png",
                   checkpoint=out_dir / "checkpoints" / f"{run}.pt", lock=out_dir / "checkpoints" / f".{run}.lock")

    @property
    def outputs(self):
        return self.results, self.curves, self.checkpoint


def make_writable(folder):
    """Create folder where it is missing and prove it writable by writing a probe file; OSError where that fails."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".probe.{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def prepare_out_dir(out_dir, outputs, flag="--out-dir"):
    """Create the folders of the files a command will write under out_dir and prove them writable by writing a
    probe file; check no output is a folder. Raises UsageError before any work where that fails. flag: the option
    that named out_dir, for the advice; None where the command chose the folder itself (the report's, the tuning's)."""
    folders = {path.parent for path in outputs}
    try:
        for folder in sorted(folders):
            make_writable(folder)
    except OSError as e:
        where, way = (f"{flag} {out_dir}", f"pass a writable {flag}") if flag else (out_dir, "fix its permissions")
        raise UsageError(f"{where} cannot be written ({e.strerror}: {e.filename}); {way}") from None
    for path in outputs:
        if path.is_dir():
            raise UsageError(f"{path} is a folder, where this command writes a file; move it away"
                             + (f" or pass another {flag} or --tag" if flag else ""))


def check_output(path, flag):
    """path, checked before any work as the file that flag names, by main.py's rule for its outputs: only a regular
    file or a missing name may be replaced. Its folder is created and proved writable by a probe file. UsageError,
    in one line, for anything else there (a folder, a device such as /dev/full, a named pipe) or a folder that
    cannot be written: replacing a device node with a file, or finding the folder unwritable only after the
    measuring, would each be worse than refusing now."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None  # the probe below says why its folder cannot be made
    except OSError as e:
        raise UsageError(f"{flag} {paths.printable(path)} is {paths.problem(e, path)}; pass another {flag}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise UsageError(f"{flag} {paths.printable(path)} is {paths.kind(mode)}, where this command writes a file; "
                         f"pass another {flag}")
    try:
        make_writable(path.parent)
    except OSError as e:
        raise UsageError(f"{flag} {paths.printable(path)} cannot be written ({e.strerror or e}); pass another "
                         f"{flag}") from None
    return path


def tracked(path):
    """Whether path is a file of the repository's: one git tracks, or, where git cannot tell (a copy without .git),
    any file there is in the repository outside runs/."""
    path = Path(path).resolve()
    if ROOT not in path.parents or DEFAULT_OUT_DIR in path.parents:
        return False
    try:
        listed = subprocess.run(["git", "ls-files", "--error-unmatch", "--", path], cwd=ROOT, capture_output=True)
    except OSError:  # no git
        return path.is_file()
    return listed.returncode == 0 or listed.returncode != 1 and path.is_file()  # 1: git knows it is not tracked


class RunLock:
    """Holds a run's lock file while the run is alive, so a second process of the same run refuses to start.

    flock is released by the kernel when its process dies, so a killed run leaves no stale lock behind.
    """

    def __init__(self, paths):
        self.paths = paths
        self.file = None

    def __enter__(self):
        self.file = open(self.paths.lock, "w")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.close()
            raise UsageError(f"another process is training {self.paths.checkpoint.stem} into "
                             f"{self.paths.checkpoint.parent.parent} right now; wait for it to end, or pass "
                             f"another --tag or --out-dir") from None
        # Temporary files of this run can only be left over from a killed process: the lock says none is alive.
        for path in self.paths.outputs:
            for stale in path.parent.glob(f".{path.name}.*.tmp"):
                stale.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc):
        self.file.close()


OWNER = "owner"  # in a private folder: the process that made it, as "PID START NAMESPACE"


def started(pid):
    """The start time of process pid (clock ticks since boot), or None where it is gone: with the pid, it names one
    process, never another that reuses the number."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def owner():
    """This process, as a private folder's owner file names it: its pid, its start time, and its PID namespace,
    within which alone the two name it."""
    return f"{os.getpid()} {started(os.getpid())} {os.readlink('/proc/self/ns/pid')}"


def orphaned(folder):
    """Whether folder is a private folder whose owner is gone: killed with SIGKILL, or a machine that lost power,
    skips every clean-up. One made in another PID namespace (a container's) is not this process's to judge, and one
    without an owner file is not a private folder (or one being made this instant)."""
    try:
        pid, start, namespace = (folder / OWNER).read_text().split()
        return namespace == os.readlink("/proc/self/ns/pid") and started(int(pid)) != start
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def private_folder(prefix, parent="/tmp", clear=lambda folder: None):
    """A folder in parent that only this user may enter (0700), removed on leaving. Whatever a program makes inside
    it is out of other users' reach, whatever modes it is given there: Ray makes its folders 0777.

    First, clear(folder) and remove every folder of this prefix that this user's dead processes left."""
    for folder in Path(parent).glob(f"{prefix}*"):
        try:
            info = folder.lstat()
        except OSError:  # removed meanwhile
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and orphaned(folder):
            clear(folder)
            shutil.rmtree(folder, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        (folder / OWNER).write_text(owner() + "\n")
        yield folder
    finally:
        clear(folder)
        shutil.rmtree(folder, ignore_errors=True)
