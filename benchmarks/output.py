"""Where a benchmark writes: its committed results/NAME for a run with the report's settings, runs/NAME for a quick
one, and its figure beside its JSON; never over a file of the repository's that is not its own."""
from pathlib import Path

from mnistlab import files, paths
from mnistlab.errors import UsageError


def results_file(given, name, quick, flag="--out", owner="this benchmark's"):
    """A benchmark's output file, checked (files.check_output): the one given, unless it is a file of the
    repository's (files.tracked) other than the benchmark's own results/NAME; else, for a run with the report's
    settings, the committed results/NAME, and for a quick run (quick: any setting changed) runs/NAME, so that a quick
    run never replaces the figures that the README reports unless --out names them."""
    default = (files.DEFAULT_OUT_DIR if quick else files.ROOT / "results") / name
    if given and Path(given).resolve() != files.ROOT / "results" / name and files.tracked(given):
        raise UsageError(f"{flag} {paths.printable(given)} is a file of the repository's, not {owner} "
                         f"results/{name}; pass another {flag}")
    return files.check_output(given or default, flag)


def figure_beside(out, given, committed_json, committed_figure, beside, flag, what="figure"):
    """The figure that goes with the JSON at out, checked as files.check_output does: the one given; else the
    committed figure where out is the committed JSON, so that the README's figure and its numbers come from the same
    run; else beside, next to out. UsageError where it would be out itself."""
    figure = files.check_output(given or (committed_figure if out.resolve() == committed_json else beside), flag)
    if figure.resolve() == out.resolve():
        raise UsageError(f"{flag} and --out both name {out}; give the {what} and the JSON different paths")
    return figure
