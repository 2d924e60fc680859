"""How the documents write figures: mean ± std, intervals, p-values, verdicts and settings."""
import statistics

from mnistlab import significance


def mean_std(values, digits=2):
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def span(bounds, digits=3):
    return f"{bounds[0]:+.{digits}f} to {bounds[1]:+.{digits}f}"


def p_value(p):
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def verdict(real, needed):
    """A difference's verdict; where it is not real, the smallest difference (points) that would have been."""
    return "**real**" if real else "not measurable" + (f" ({needed:.2f} needed)" if needed is not None else "")


def interval_verdict(bounds):
    """The verdict of an interval alone: real where it leaves out zero."""
    return verdict(significance.excludes_zero(bounds), (bounds[1] - bounds[0]) / 2)


def show(value):
    return "-".join(map(str, value)) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else str(value)
