"""The staged rerun (--rerun): the experiments' runs train through runner.py into STAGING, and only once every one
is finished are their files moved into checkpoints/, plots/ and results/, all or none."""
import contextlib
import os
import re
import shutil
import signal

from . import committed, experiments
from mnistlab import files, measurements, runner
from mnistlab.cli import STOPS, emit
from mnistlab.errors import RunFailed, UsageError

# Where --rerun trains, so that nothing committed changes before every run is whole (git ignores checkpoints/).
STAGING = committed.ROOT / "checkpoints" / "report"
# How far the command got, for the line that a signal prints.
PROGRESS = {"rerun": False, "moved": False}


@contextlib.contextmanager
def deferred_signals():
    """Ctrl-C, SIGTERM and SIGHUP held back until the block is done, then delivered."""
    held, handlers = [], {}
    for signum in STOPS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            handlers[signum] = signal.signal(signum, lambda number, frame: held.append(number))
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for signum in held[:1]:
            signal.raise_signal(signum)


def stopped_line():
    if PROGRESS["moved"]:
        return ("report: interrupted after the rerun's runs were moved into results/, plots/ and checkpoints/; "
                "make readme redraws the figures, the README and docs/ from them")
    if PROGRESS["rerun"]:
        return (f"report: interrupted; the committed results are as they were, and the same command continues from "
                f"{STAGING}")
    return "report: interrupted; each document and figure is as it was, or whole and new"


def rerun(labels, settings):
    """Rerun the experiments' runs into STAGING, then move them into place once all are finished."""
    named = [(experiments.experiment_run_name(label, seed), experiments.experiment_recipe(label, seed))
             for label in labels for seed in experiments.SEEDS]
    staged_paths = [files.RunPaths.of(STAGING, name) for name, _ in named]
    # First, so that a staging folder that cannot be written is its own refusal, not one of the staged runs'.
    files.prepare_out_dir(STAGING, [path for staged in staged_paths for path in staged.outputs], flag=None)
    try:
        jobs, finished = runner.jobs_to_train(named, lambda name: files.RunPaths.of(STAGING, name), STAGING,
                                              flag=None, settings=settings)
    except UsageError as e:
        raise own_advice(e, f"delete {STAGING} to start the rerun over") from None
    files.prepare_out_dir(committed.ROOT, [path for name, _ in named
                                           for path in files.RunPaths.of(committed.ROOT, name).outputs], flag=None)
    moves = {name: [(getattr(staged, kind), getattr(files.RunPaths.of(committed.ROOT, name), kind))
                    for kind in runner.KINDS]  # each run's results last
             for (name, _), staged in zip(named, staged_paths)}
    # The runs finished already are checked before any training, which a refusal after it would throw away.
    check_moves([move for name in finished for move in moves[name]])
    emit(f"{len(named)} runs: {len(finished)} finished already in {STAGING}, {len(jobs)} to train")
    try:
        failed = runner.train_and_report(jobs, settings, measure=lambda job: measurements.measurements(job.recipe),
                                         line=runner.describe)
    except UsageError as e:  # another process holds a run's lock
        raise own_advice(e, "wait for it to end, then run this command again") from None
    if failed:
        raise RunFailed(f"{len(failed)} runs failed ({', '.join(failed)}); nothing committed changed")
    every = [move for name, _ in named for move in moves[name]]
    check_moves(every)
    # The moves take milliseconds; a signal waits for them, so that no run is left half moved.
    with deferred_signals():
        move_into_place(every)
        PROGRESS["moved"] = True
    emit(f"moved {len(named)} runs into {committed.ROOT / 'results'}, {committed.PLOTS} and "
         f"{committed.ROOT / 'checkpoints'}")


def own_advice(refusal, advice):
    """runner's refusal for a staged run in the report's words: its advice named sweep.py's and main.py's flags,
    which the report has not, and the settings it names are recipes.py's."""
    problem = re.sub(r"--(?=[a-z])", "", str(refusal).removeprefix("--resume: ").split("; ")[0])
    return UsageError(f"{problem}; {advice}")


def check_moves(moves):
    """UsageError, before anything is moved, unless every staged file is there (a finished run's checkpoint may be
    gone), a file and not a link, and the curves a PNG: a run moved without one would leave the committed files a
    mix of two reruns. (The results and checkpoint are checked whole where runner.jobs_to_train finds the run
    finished.)"""
    bad = [(source, "is missing" if not source.exists() and not source.is_symlink() else
            "is not a file the rerun wrote (a link, or not a PNG)")
           for source, _ in moves if source.is_symlink() or not source.is_file() or source.suffix == ".png" and
           not is_png(source)]
    if bad:
        incomplete = sorted({path.stem.removesuffix("_curves") for path, _ in bad})
        raise UsageError(f"{bad[0][0]} {bad[0][1]}, so {len(incomplete)} staged run{'s' * (len(incomplete) != 1)} "
                         f"({', '.join(incomplete)}) cannot be moved into place whole; delete {STAGING} to start the "
                         f"rerun over")


def is_png(path):
    """Whether path holds a whole PNG: every chunk there, its checksum right, up to the end."""
    from PIL import Image
    try:
        with Image.open(path, formats=["PNG"]) as image:
            image.verify()
    except Exception:  # whatever a damaged file makes Pillow raise
        return False
    return True


def move_into_place(moves):
    """Move each staged file over its committed one, keeping the committed one in STAGING until every move is made:
    where a move fails, every move made is undone, so that the committed files are as they were."""
    kept, undo = STAGING / "replaced", []
    try:
        for source, target in moves:
            if target.exists():
                backup = kept / target.relative_to(committed.ROOT)
                backup.parent.mkdir(parents=True, exist_ok=True)
                os.replace(target, backup)
                undo.append((target, backup))
            os.replace(source, target)
            undo.append((source, target))
    except OSError as e:
        for source, target in reversed(undo):
            os.replace(target, source)
        raise UsageError(f"could not move {source} to {target} ({e.strerror or e}); the committed files are as they "
                         f"were, the runs still in {STAGING}: fix that and run the same command") from None
    shutil.rmtree(kept, ignore_errors=True)
