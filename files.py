"""Everything a run puts on disk: atomic writes, results JSON, checkpoints, output paths and the run lock."""
import fcntl
import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

import paths
from errors import RunFailed, UsageError

ROOT = Path(__file__).resolve().parent
# Where main.py writes unless told otherwise; git ignores it. The report writes ROOT's results/ and plots/.
DEFAULT_OUT_DIR = ROOT / "runs"
CHECKPOINT_KEYS = {"model", "optimizer", "scheduler", "epoch", "recipe", "history", "rng", "predictions"}


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
    except (OSError, ValueError):
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


def prepare_out_dir(out_dir, outputs):
    """Create the folders of the files a command will write under out_dir and prove them writable by writing a
    probe file; check no output is a folder. Raises UsageError before any work where that fails."""
    folders = {path.parent for path in outputs}
    try:
        for folder in sorted(folders):
            make_writable(folder)
    except OSError as e:
        raise UsageError(f"--out-dir {out_dir} cannot be written ({e.strerror}: {e.filename}); "
                         f"pass a writable --out-dir") from None
    for path in outputs:
        if path.is_dir():
            raise UsageError(f"{path} is a folder, where this command writes a file; move it away or pass "
                             f"another --out-dir or --tag")


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


def save_checkpoint(path, checkpoint):
    atomic_write(path, lambda f: torch.save(checkpoint, f))


class CheckpointError(UsageError):
    """A checkpoint that cannot be used. The message names flag, the path, what is wrong (reason, e.g. "does not
    exist") and the fix (advice)."""

    def __init__(self, flag, path, reason, advice="delete it or train again"):
        super().__init__(f"{flag}: {paths.shown(path)} {reason}" + (f"; {advice}" if advice else ""))
        self.path, self.reason = path, reason


# The largest checkpoint read: the largest model main.py's flags allow, CustomMLP with eight hidden layers of 4,096,
# saves about 1.5 GB with its optimizer state; ours save well under 1 MB.
MAX_CHECKPOINT_BYTES = 2 * 1024**3


def check_archive(file):
    """ValueError saying why, unless file is a zip archive as torch.save writes one: every record stored
    uncompressed, so that reading it takes no more memory than the file's size, and that size within
    MAX_CHECKPOINT_BYTES. A small file with compressed records could expand to any size in torch.load."""
    try:
        with zipfile.ZipFile(file) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ValueError(f"is not a checkpoint of main.py ({type(e).__name__})") from None
    finally:
        file.seek(0)
    if any(record.compress_type != zipfile.ZIP_STORED for record in records):
        raise ValueError("is not a checkpoint of main.py: its records are compressed, which torch.save never does")
    size = os.fstat(file.fileno()).st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"holds {size / 1024**3:.1f} GB, more than the {MAX_CHECKPOINT_BYTES // 1024**3} GB of the "
                         f"largest model main.py trains")


def load_checkpoint(path, flag="--checkpoint"):
    """The checkpoint dict saved by main.py at path. A path that is not a regular file, or a file that is not such
    a checkpoint, is a CheckpointError that names flag."""
    path = Path(path)
    try:
        file = paths.open_file(path)
    except paths.NotAFile as e:
        if e.missing:
            reason, advice = "does not exist", "train the model first, e.g. `python main.py --model lenet5`"
        elif e.unreadable:
            reason, advice = f"is {e}", None
        else:
            reason, advice = f"is {e}, not a checkpoint file", "pass the .pt file that main.py wrote"
        raise CheckpointError(flag, path, reason, advice) from None
    with file:
        try:
            check_archive(file)
        except ValueError as e:
            raise CheckpointError(flag, path, str(e)) from None
        try:
            with warnings.catch_warnings():  # torch warns, in several lines, of odd tensors that the checks refuse
                warnings.simplefilter("ignore")
                checkpoint = torch.load(file, map_location="cpu", weights_only=True)
        except Exception as e:  # torch.load raises many kinds on a file that is not a checkpoint
            raise CheckpointError(flag, path, f"is not a checkpoint of main.py ({type(e).__name__})") from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEYS - set(checkpoint):
        missing = CHECKPOINT_KEYS - set(checkpoint) if isinstance(checkpoint, dict) else CHECKPOINT_KEYS
        raise CheckpointError(flag, path, f"is not a checkpoint of main.py (no {', '.join(sorted(missing))})")
    return checkpoint

