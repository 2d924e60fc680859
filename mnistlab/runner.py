"""Many runs: one after another in this process, or at once as Ray Core tasks, on a private local Ray instance, on
a Ray cluster, or packed onto a GPU.

Wherever a run trains, it trains into a temporary folder through runs.train_run and comes back to the driver as
its files' bytes, as Ray's own examples return results as values; the driver writes them under the run's lock with
the one atomic write, the results last, so that a results file always means its run is whole. No folder is shared
between machines: the package's code and the bundled MNIST reach Ray's workers as its runtime_env working_dir.
Ray is imported only where runs go to it.
"""
import contextlib
import functools
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mnistlab import files, ray_local
from mnistlab.cli import Terminated, emit
from mnistlab.errors import RunFailed, UsageError
from mnistlab.recipes import data_of

ROOT = Path(__file__).resolve().parents[1]
# What a run's files are, in the order the driver writes them: its results last, as the mark of a whole run.
KINDS = ("checkpoint", "curves", "results")
# What Ray's workers need: the package, the design card's model.py and dataset.py that it imports, and the bundled
# MNIST; never the programs, .venv, .git or anyone's runs. A task runs runner.train_task and, for the report,
# measurements.measure: neither needs scripts/.
PACKAGE = ("mnistlab/*.py", "model.py", "dataset.py", "data/bundle/*")
# A task whose worker or node dies is run again this many times; a run that fails on its own is not.
RETRIES = 3
POLL_SECONDS = 0.5  # how often the driver looks for a signal while it waits on Ray
PRIVATE = "mnist-ray-"  # the prefix of the folder in /tmp that holds all a Ray instance of this driver's reads


@dataclass(frozen=True)
class Job:
    """One run to train: its name, its recipe, where its files go, and the checkpoint it resumes from, if any."""
    name: str
    recipe: dict
    paths: files.RunPaths
    resume_from: bytes = None


@dataclass(frozen=True)
class Settings:
    """How to run the jobs. jobs 1 trains them one after another in this process, without Ray; more runs that
    many at once on a private local Ray instance, or on the cluster at address. threads: each run's torch threads
    (None: torch's default, where runs go one at a time). gpus: each run's share of a GPU, for Ray."""
    jobs: int = 1
    address: str = None
    threads: int = None
    gpus: float = 0.0
    device: str = "auto"
    eval_batch_size: int = 1000


@dataclass(frozen=True)
class Outcome:
    """A finished job: the files it made, by kind, and the run's own error in one line, where it failed."""
    job: Job
    made: dict
    error: str
    seconds: float


def train_task(recipe, name, threads, device, resume_from=None, eval_batch_size=1000, measure=None, out_dir=None):
    """Train one run; returns (its files' bytes by kind, its error or None, seconds). Runs in this process or in a
    Ray worker alike: the same code makes the same files. With out_dir, the run trains in place there, as main.py
    does, and resumes from the checkpoint there; without, in a temporary folder, and its files come back as bytes."""
    import torch

    import dataset
    from mnistlab import checkpoints, engine, runs
    start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    device = engine.resolve_device(device)
    data = dataset.load_splits(device=device, validation=recipe["validation"], limit=recipe["limit"],
                               name=data_of(recipe))
    with contextlib.nullcontext(out_dir) if out_dir else tempfile.TemporaryDirectory(prefix="mnist-run-") as folder:
        paths = files.RunPaths.of(folder, name)
        if resume_from and not out_dir:
            files.atomic_write(paths.checkpoint, lambda f: f.write(resume_from))
        checkpoint = checkpoints.load_checked(paths.checkpoint, "--resume") if resume_from else None
        error = None
        try:
            runs.train_run(recipe, data, device, paths, checkpoint, eval_batch_size=eval_batch_size, measure=measure)
        except RunFailed as e:
            error = str(e)
        made = {} if out_dir else {kind: getattr(paths, kind).read_bytes() for kind in KINDS
                                   if getattr(paths, kind).exists()}
    return made, error, time.perf_counter() - start


def install(outcome):
    """Write a job's files where they belong, results last; the caller holds the run's lock. A kind without a place
    (None) is not kept."""
    for kind in KINDS:
        target = getattr(outcome.job.paths, kind)
        if target is not None and kind in outcome.made:
            data = outcome.made[kind]
            files.save(target, files.atomic_write, lambda f: f.write(data), resumable=False)


def train_each(jobs, settings, measure=lambda job: None):
    """Train every job; yields each Outcome as it finishes, once its files are written. measure(job) gives the
    job's runs.train_run measure hook. KeyboardInterrupt (cli.Terminated for SIGTERM and SIGHUP) stops what is
    pending and running; what finished is written whole, and with jobs 1, the run in flight keeps its checkpoint, as
    main.py's."""
    if settings.jobs == 1 and settings.address is None:
        for job in jobs:
            # A run laid out as main.py lays it out trains in place; any other (the tuning's) in a temporary folder.
            folder = job.paths.results.parent.parent
            in_place = folder if job.paths == files.RunPaths.of(folder, job.name) else None
            outcome = Outcome(job, *train_task(job.recipe, job.name, settings.threads, settings.device,
                                               job.resume_from, settings.eval_batch_size, measure(job), in_place))
            install(outcome)  # nothing to write for a run trained in place
            yield outcome
        return
    yield from train_on_ray(jobs, settings, measure)


def jobs_to_train(named_recipes, paths_of, out_dir, flag="--out-dir", settings=None, diverged=None):
    """Jobs for the (name, recipe) pairs still to train, and the names of those finished already: a finished run is
    skipped, an unfinished one resumes from its checkpoint. UsageError, before any work, for a run that would
    replace another with other settings, or resume at another thread count than settings give it. paths_of(name)
    gives where a run's files go, under out_dir, which flag named (None: the program chose it). diverged, where
    given, gets {name: error} for each run that diverged already, which is finished: trained again, it would
    diverge again. Without it, such a run is trained again."""
    import torch

    from mnistlab import runs, slots
    jobs, finished = [], []
    # Each run's torch threads: --cpus-per-run, else one on Ray, else this process's default, where train_task runs.
    local = settings is not None and settings.jobs == 1 and settings.address is None
    threads = None if settings is None else settings.threads or (torch.get_num_threads() if local else 1)
    for name, recipe in named_recipes:
        paths = paths_of(name)
        decision = runs.decide(paths, recipe, resume=True, skip_finished=True, threads=threads,
                               set_threads="pass --cpus-per-run {} to continue it".format)
        stopped = decision.action == "diverged" and diverged is not None
        if decision.action == "done" or stopped:
            try:  # finished, but is its results file whole? A damaged one is trained again, not skipped forever
                slots.load(paths.results, "training it again", recipe=recipe,
                           labels=None if stopped else true_labels(recipe), diverged=stopped)
                finished.append(name)
                if stopped:
                    diverged[name] = (f"training diverged in epoch {len(decision.results['history']) + 1}, as "
                                      f"{paths.results} says; lower --lr (it was {recipe['lr']})")
                continue
            except slots.BadResults as e:
                emit(f"{name}: {e}")
            jobs.append(Job(name, recipe, paths))
        else:
            jobs.append(Job(name, recipe, paths, paths.checkpoint.read_bytes() if decision.checkpoint else None))
    files.prepare_out_dir(out_dir, [path for job in jobs for path in job.paths.outputs if path is not None], flag)
    return jobs, finished


@functools.cache
def _split_labels(validation, limit, name):
    import dataset
    return dataset.load_splits(validation=validation, limit=limit, name=name)[3].numpy()


def true_labels(recipe):
    """The true labels of the images a recipe's run is scored on."""
    return _split_labels(recipe["validation"], recipe["limit"], data_of(recipe))


def train_and_report(jobs, settings, measure=lambda job: None, line=lambda outcome: None):
    """Train the jobs under their runs' locks, with a progress bar over runs on a terminal and line(outcome)
    printed as each finishes, so that many workers never interleave their epochs; returns {name: error} for those
    that failed."""
    from tqdm import tqdm
    failed = {}
    ray_local.open_files_for(len(jobs))
    with contextlib.ExitStack() as locks:
        for job in jobs:
            locks.enter_context(files.RunLock(job.paths))
        with tqdm(total=len(jobs), unit="run", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
            for outcome in train_each(jobs, settings, measure):
                if outcome.error:
                    failed[outcome.job.name] = outcome.error
                text = line(outcome)
                if bar.disable:
                    emit(text)
                else:
                    bar.write(text, file=sys.stdout)
                bar.update()
    return failed


def describe(outcome):
    """The line for a finished job: its name, and its final accuracy and seconds, or its error."""
    if outcome.error:
        return f"{outcome.job.name}: failed: {outcome.error}"
    results = json.loads(outcome.made["results"]) if "results" in outcome.made else \
        files.read_json(outcome.job.paths.results)
    return (f"{outcome.job.name}: {results['evaluated_on']} accuracy {results['history'][-1]['eval_acc']:.2f}%, "
            f"{outcome.seconds:.0f} s")


def settings_of(args):
    """The Settings that cli.add_runner_flags' flags ask for; UsageError for a combination that cannot run. RAY_ADDRESS
    stands in for --address only where runs are asked to go at once (--jobs above 1): --jobs 1 never needs Ray."""
    if args.address == "":
        raise UsageError("--address is empty (an unset variable?); give the Ray head's HOST:PORT, or drop --address to "
                         "run on this machine")
    address = args.address or (os.environ.get("RAY_ADDRESS") or None if args.jobs > 1 else None)
    if address:
        split_address(address, "--address" if args.address else "RAY_ADDRESS")
    if args.gpus_per_run and args.jobs == 1 and not address:
        raise UsageError("--gpus-per-run shares a GPU among runs at once on Ray; add --jobs N or --address, or drop "
                         "it (with --jobs 1, --device picks the device)")
    return Settings(jobs=args.jobs, address=address, threads=args.cpus_per_run, gpus=args.gpus_per_run or 0.0,
                    device=getattr(args, "device", "auto"), eval_batch_size=getattr(args, "eval_batch_size", 1000))


def train_on_ray(jobs, settings, measure):
    """train_each's runs at once, as Ray tasks: each outcome installed and yielded as its task ends. A signal stops
    the sweep between Ray's calls, and what is pending is cancelled."""
    with ray_local.DeferredSignals() as signals, started_ray(settings, signals) as ray:
        task = ray.remote(train_task).options(num_cpus=settings.threads or 1, num_gpus=settings.gpus,
                                              max_retries=RETRIES, retry_exceptions=False)
        device = "cuda" if settings.gpus else "cpu"
        pending = {task.remote(job.recipe, job.name, settings.threads or 1, device, job.resume_from,
                               settings.eval_batch_size, measure(job)): job for job in jobs}
        try:
            while pending:
                signals.check()
                done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_SECONDS)
                for ref in done:
                    outcome = collected(ray, ref, pending.pop(ref), signals)
                    install(outcome)
                    yield outcome
            signals.check()  # the signal that killed the last tasks, which ended the loop
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def collected(ray, ref, job, signals):
    """The Outcome of job, whose task ref has ended: its run's, or the error that ended the task."""
    try:
        return Outcome(job, *ray.get(ref))
    except ray.exceptions.RayError as e:
        signals.check()  # a task killed by the signal that stops the sweep is not a failed run
        return Outcome(job, {}, one_line(e), 0.0)


@contextlib.contextmanager
def started_ray(settings, signals):
    """Ray, imported and started as settings say, for as long as the block runs, and shut down after."""
    token = None if settings.address else secrets.token_hex(32)  # the private instance's, and only its
    # Everything this driver and its Ray instance read, under one folder only this user may enter: Ray makes its own
    # folders 0777, and starts its workers in the package it unpacks there. Its short name leaves room for Ray's
    # sockets, whose paths hold 107 bytes at most.
    with files.private_folder(PRIVATE, clear=ray_local.reap) as private:
        package, scratch = private / "package", None if settings.address else private / "ray"
        stage_package(package)
        try:
            try:
                start_ray(settings, package, private, scratch, token)
            except SystemExit:  # Ray's own SIGTERM handler, installed during ray.init, went off first
                raise Terminated from None
            finally:
                signals.listen()
            import ray  # only now: start_ray sets the environment Ray reads on import
            signals.check()
            yield ray
        finally:
            if "ray" in sys.modules:  # imported by start_ray, which may have stopped half way
                sys.modules["ray"].shutdown()
        # Leaving the private folder SIGKILLs what still holds a file there: a signal in the middle of ray.init can
        # leave a private instance's agents behind, orphaned, even after ray.shutdown.


def one_line(error):
    """A Ray error as one line: the first line of its cause, where Ray wraps it."""
    cause = getattr(error, "cause", None) or error
    lines = [line for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}".strip()[:300]


def stage_package(folder):
    """Copy what Ray's workers need into folder, the working_dir that Ray ships to every node."""
    for pattern in PACKAGE:
        for path in ROOT.glob(pattern):
            target = folder / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def start_ray(settings, package, private, scratch=None, token=None):
    """Connect to the cluster at settings.address, or start a private Ray instance on this machine, reachable on
    loopback only: Ray's processes run code for anyone who can reach them. package is what the tasks run, private
    the folder of this user's that holds it, and scratch the private instance's own folder."""
    ray_local.set_environment(token)
    with ray_local.bootstrap_home(private) as home:  # which the tasks get back through their runtime_env
        init_ray(settings, package, scratch, home)


def init_ray(settings, package, scratch, home):
    """ray.init, as start_ray says, with home the driver's own HOME; a UsageError for what keeps Ray from starting
    or connecting."""
    try:
        try:
            import ray
        except ImportError:
            raise UsageError("Ray is not installed here, and runs at once need it: pip install -r "
                             "requirements.txt, or run them one after another with --jobs 1") from None
        runtime_env = {"working_dir": str(package), "env_vars": {"HOME": home or ""}}
        if scratch:  # the runs' temporary folders too, removed with it: a cancelled task is killed uncleaned
            runtime_env["env_vars"]["TMPDIR"] = str(scratch)
        common = dict(runtime_env=runtime_env, log_to_driver=False, logging_level="ERROR", include_dashboard=False)
        if settings.address:
            # Ray would otherwise learn this machine's address from a route lookup towards a public one.
            ray.init(address=settings.address, _node_ip_address=ray_head(settings.address), **common)
        else:
            gpus = gpus_here(settings)
            if settings.gpus and not gpus:
                raise UsageError("--gpus-per-run: this machine has no CUDA GPU for the runs to share; drop it, or "
                                 "send the runs to a cluster with GPUs (--address)")
            # The instance's processes, and the workers they start, inherit SIGHUP blocked, as Ray blocks SIGINT:
            # a closed terminal's hangup then stops this driver, which stops them, rather than killing them under it
            # (its core would exit 1 at once, cleaning up nothing). Blocked here, a hangup waits until it can stop it.
            held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
            try:
                ray.init(address="local", num_cpus=settings.jobs * (settings.threads or 1), num_gpus=gpus,
                         _node_ip_address="127.0.0.1", _temp_dir=str(scratch), **common)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
    except (ConnectionError, RuntimeError, ValueError) as e:
        # A cluster that refuses this driver's token says only that it could not connect.
        raise UsageError(f"cannot start Ray{f' at {settings.address}' if settings.address else ''} ({one_line(e)}); "
                         + (f"check --address, and that RAY_AUTH_MODE=token and RAY_AUTH_TOKEN give the cluster's "
                            f"token" if settings.address else "run with --jobs 1")) from None
    except Exception as e:
        if type(e).__name__ != "AuthenticationError":  # Ray's, raised before it connects
            raise
        raise UsageError(f"the Ray cluster at {settings.address} wants a token, and this driver has none; set "
                         f"RAY_AUTH_TOKEN to the cluster's token (RAY_AUTH_MODE=token asks for one)") from None


def split_address(address, given="--address"):
    """(host, port) of a HOST:PORT or [IPV6]:PORT address; UsageError, naming where it was given, for anything else:
    ray:// is Ray Client's, which needs ray[client], not installed here."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # an IPv6 address wants its brackets, or the port cannot be told from it
    if not (host and re.fullmatch(r"[0-9]{1,5}", port) and 0 < int(port) < 65536):  # not isdigit(): it takes ²
        raise UsageError(f"{given} {address!r} is not HOST:PORT; give the Ray head's address and GCS port, e.g. "
                         f"10.0.0.5:6379 or [::1]:6379")
    return host, int(port)


# A gRPC server, as Ray's head is, answers HTTP/2's client preface with a SETTINGS frame: type 4, the fourth byte.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def ray_head(address, seconds=10):
    """This machine's address on its route to the Ray head at address. UsageError, within seconds twice over,
    unless a gRPC server answers there, and answers Ray's first request as a head of this Ray version does: Ray
    would wait on anything else for minutes."""
    host, port = split_address(address)
    try:
        connection = socket.create_connection((host, port), timeout=seconds)
    except OSError as e:
        raise UsageError(f"--address {address}: nothing answers there ({e.strerror or e}); start the cluster's head "
                         f"first (ray start --head), or drop --address to run on this machine") from None
    with connection:
        try:
            connection.sendall(HTTP2_PREFACE)
            answer = connection.recv(9)
        except OSError:  # a timeout, or a server that hung up
            answer = b""
        here = connection.getsockname()[0]
    said = asked_as_ray(address, seconds) if answer[3:4] == b"\x04" else "no gRPC"
    if said == "token":
        raise UsageError(f"the Ray cluster at {address} refuses this driver's token; set RAY_AUTH_MODE=token and "
                         f"RAY_AUTH_TOKEN to the cluster's token")
    if said not in ("no gRPC", "timeout"):
        return here
    ray = importlib.metadata.version("ray")
    raise UsageError(f"--address {address}: what answers there is not a Ray {ray} head (no answer as one); give the "
                     f"GCS port of a head that runs Ray {ray}, 6379 unless ray start --port said otherwise")


# Ray's own client asks what answers for its cluster's ID, as ray.init does first, in a process of its own: its core
# logs each failed try on stderr, and aborts where RAY_AUTH_MODE=token comes without a token.
ASK_AS_RAY = """import sys
from ray._raylet import InnerGcsClient
try:
    InnerGcsClient.standalone(sys.argv[1], None, int(sys.argv[2]))
    print("ray")
except Exception as e:
    print("timeout" if "imed out" in str(e) or "Deadline Exceeded" in str(e) else
          "token" if "InvalidAuthToken" in str(e) or "Unauthenticated" in str(e) else "refused")
"""


def asked_as_ray(address, seconds):
    """How the gRPC server at address answers Ray's first request, its cluster's ID, within about seconds (and
    Ray's import): "ray"; "timeout", as anything that is not a Ray head of this version; "token", a head that
    refuses this driver's token (or lack of one); anything else ray.init is left to name."""
    try:
        said = subprocess.run([sys.executable, "-c", ASK_AS_RAY, address, str(int(seconds * 1000))], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=seconds + 30).stdout
    except subprocess.TimeoutExpired:
        return "timeout"
    return said.strip() or "refused"


def gpus_here(settings):
    """The GPUs the local Ray instance offers: none unless runs ask for a share of one."""
    if not settings.gpus:
        return 0
    import torch
    return torch.cuda.device_count()
