"""The report's command line, get_args_parser and main; `python -m scripts.report` runs it (__main__.py)."""
import subprocess
import sys

import scripts.report
from . import committed, pages, plots, staging
from .experiments import EXPERIMENTS
from mnistlab import files, runner
from mnistlab.cli import OneLineErrorParser, add_runner_flags, emit, run
from mnistlab.errors import RunFailed, UsageError


def get_args_parser():
    # prog: the name its other lines bear (report: ...), not __main__.py's
    parser = OneLineErrorParser(prog="report", description=scripts.report.__doc__.split("\n")[0])
    parser.add_argument("--rerun", nargs="*", metavar="EXPERIMENT", choices=list(EXPERIMENTS),
                        help="first rerun these experiments, or with no names every experiment and the benchmark; "
                             "default: rerun nothing. The experiments, each a quoted name: "
                             + "; ".join(f"'{label}'" if "'" not in label else f'"{label}"' for label in EXPERIMENTS))
    add_runner_flags(parser)
    return parser


def main(args):
    def body():
        folders = {(committed.PAGES / name).parent for name in pages.DOCUMENTS}
        for folder in (*folders, committed.PLOTS):  # checked before any work
            try:
                files.make_writable(folder)
            except OSError as e:
                raise UsageError(f"{folder} cannot be written ({e.strerror or e}), and the report writes there; fix "
                                 f"its permissions") from None
        if args.rerun is not None:
            staging.PROGRESS["rerun"] = True
            staging.rerun(args.rerun or list(EXPERIMENTS), runner.settings_of(args))
        if args.rerun == []:
            if subprocess.run([sys.executable, "-m", "benchmarks.bench_pipeline"], cwd=committed.ROOT).returncode:
                raise RunFailed("benchmarks.bench_pipeline failed (above); rerun it with make bench")
        committed.check_all()  # slots.BadResults is a UsageError: one line, exit 2
        texts = {name: pages.render_document(name, pages.read_document(name)) for name in pages.DOCUMENTS}
        # Only now, with every file checked and all the text rendered, is anything drawn or written.
        plots.build_figures()
        for name, text in texts.items():  # each whole or not at all
            files.atomic_write(committed.PAGES / name, lambda f: f.write(text.encode()))
        emit(f"wrote README.md, docs/ and the figures in {committed.PLOTS}")
        return 0
    return run("report", body, interrupted=staging.stopped_line,
               stopped=lambda e: f"report: {e}; the committed results are as they were, and the same command "
                                 f"continues from {staging.STAGING}")
