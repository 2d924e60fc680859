"""How the documents write figures: mean ± std, intervals, p-values, verdicts and settings."""
import statistics

from mnistlab import significance


def mean_std(values, digits=2):
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def span(bounds, digits=3):
    return f"{bounds[0]:+.{digits}f} to {bounds[1]:+.{digits}f}"


def p_value(p):
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def verdict(words):
    """A verdict, in significance.py's words, as the documents write it: real in bold, to stand out of its column."""
    return f"**{words}**" if words == significance.REAL else words


def comparison_verdict(comparison):
    return verdict(significance.comparison_verdict(comparison))


def interval_verdict(bounds):
    return verdict(significance.interval_verdict(bounds))


def show(value):
    return "-".join(map(str, value)) if isinstance(value, list) else f"{value:g}" if isinstance(value, float) else str(value)
