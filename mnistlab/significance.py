"""Which differences in test accuracy are real: paired tests on the same test images, and intervals.

Arrays in, figures and verdicts out: no torch and no files, so that the statistics stand apart from the report and
the sweep that render them, and both say a verdict in the same words. A comparison pairs the runs of two experiments
by seed: correct_a[s, i] says whether seed s's run of the first experiment got test image i right, correct_b[s, i]
the same for the second. Accuracies and differences are in points (percent).
"""
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
Z = float(stats.norm.ppf(1 - ALPHA / 2))
REPLICATES = 10_000
BOOTSTRAP_SEED = 0


def mcnemar(first_only, second_only):
    """McNemar's exact test: the two-sided p-value of first_only against second_only discordant images, were each
    discordant image as likely to fall to either model. No discordant image is no evidence: p = 1."""
    discordant = first_only + second_only
    return stats.binomtest(first_only, discordant).pvalue if discordant else 1.0


def detectable_lead(discordant):
    """The fewest images of `discordant` that one model must win for McNemar's test to tell (p < ALPHA); None where
    even winning them all would not."""
    return next((k for k in range(discordant // 2 + 1, discordant + 1) if mcnemar(k, discordant - k) < ALPHA), None)


def resampled_means(per_image, replicates=REPLICATES, seed=BOOTSTRAP_SEED):
    """Bootstrap replicates of the mean of each of Q per-image quantities, redrawing both test images and seeds.

    per_image is (Q, S, N): quantity q of seed s's runs on test image i. Every seed was scored on the same images, so
    one draw of N images serves all seeds and quantities; runs are paired by seed, so one draw of S seeds serves all
    quantities. Returns (replicates, Q): each replicate's mean over its drawn seeds of each seed's mean over its
    drawn images.
    """
    quantities, seeds, images = per_image.shape
    # Redrawing images only matters through how often each distinct row of values (an image's values over seeds
    # and quantities) is drawn; the rows are few, so draw their counts instead of N image indices per replicate.
    rows, counts = np.unique(per_image.reshape(quantities * seeds, images).T, axis=0, return_counts=True)
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(images, counts / images, size=replicates)
    per_seed = (drawn @ rows.astype(np.int64)).reshape(replicates, quantities, seeds) / images
    chosen = np.broadcast_to(rng.integers(seeds, size=(replicates, 1, seeds)), per_seed.shape)
    return np.take_along_axis(per_seed, chosen, axis=2).mean(axis=2)


def interval(replicates):
    """The central 1 - ALPHA share of bootstrap replicates, as (low, high)."""
    low, high = np.quantile(replicates, [ALPHA / 2, 1 - ALPHA / 2])
    return float(low), float(high)


def paired_difference(correct_a, correct_b):
    """Per seed and image: 1 where only the first run got the image right, -1 where only the second did."""
    return correct_a.astype(np.int8) - correct_b.astype(np.int8)


def mean_interval(per_image):
    """The mean, in points, of a per-image quantity (seeds, images), and its 95% bootstrap interval."""
    return 100 * float(per_image.mean()), interval(100 * resampled_means(per_image[None])[:, 0])


def error_ratio(correct_a, correct_b):
    """How many errors the second experiment makes per error of the first, and its 95% bootstrap interval."""
    errors = resampled_means(np.stack([~correct_a, ~correct_b]))
    return float((~correct_b).mean() / (~correct_a).mean()), interval(errors[:, 1] / errors[:, 0])


def excludes_zero(bounds):
    return bounds[0] > 0 or bounds[1] < 0


@dataclass(frozen=True)
class Comparison:
    """Two experiments' runs, paired by seed, on the same test images; the first minus the second."""
    difference: float            # points, mean over seeds
    interval: tuple              # its 95% paired bootstrap interval, points
    discordant: tuple            # per seed: (images only the first got right, images only the second got right)
    seed_p: tuple                # per seed: McNemar's exact p-value
    ahead: tuple                 # pooled: (images the first got right on more seeds, images the second did)
    p: float                     # pooled: McNemar's exact p-value on `ahead`
    detectable: float | None     # points: the smallest difference that would have been real here

    @property
    def real(self):
        return self.p < ALPHA and excludes_zero(self.interval)


# A verdict's words, wherever one is given: the sweep's table, the README and docs/, which may dress them (the report
# sets real in bold) but never reword them.
REAL = "real"
NOT_MEASURABLE = "not measurable"


def verdict(real, needed=None):
    """A difference's verdict: real, or not measurable, with the smallest difference (points) that would have been
    real where one is known."""
    return REAL if real else NOT_MEASURABLE + (f" ({needed:.2f} needed)" if needed is not None else "")


def interval_verdict(bounds):
    """The verdict of an interval alone: real where it leaves out zero; else half its width would have been."""
    return verdict(excludes_zero(bounds), (bounds[1] - bounds[0]) / 2)


def comparison_verdict(comparison, too_few_seeds="one seed"):
    """The verdict on a Comparison: real where both tests say so (Comparison.real), from two seed pairs or more.
    One seed pair says nothing of how much runs vary from seed to seed, which McNemar's test over images cannot see:
    with one, it is not measurable, for the reason too_few_seeds gives in words."""
    if len(comparison.discordant) < 2:
        return f"{NOT_MEASURABLE} ({too_few_seeds})"
    return verdict(comparison.real, comparison.detectable)


def compare(correct_a, correct_b):
    """Compare two experiments from their runs' per-image correctness, (seeds, images) booleans each.

    Pooled over seeds, each image counts once, for the model that got it right on more seeds, and images with a tie
    not at all: the seeds were scored on the same images, so an image that one model finds hard tends to be
    discordant in several seeds, and summing the seeds' counts would count it as several independent images.
    """
    seeds, images = correct_a.shape
    first_only = (correct_a & ~correct_b).sum(axis=1)
    second_only = (~correct_a & correct_b).sum(axis=1)
    margins = correct_a.sum(axis=0, dtype=np.int64) - correct_b.sum(axis=0, dtype=np.int64)
    ahead = int((margins > 0).sum()), int((margins < 0).sum())
    _, bounds = mean_interval(paired_difference(correct_a, correct_b))
    return Comparison(
        difference=100 * float((first_only - second_only).sum()) / (seeds * images), interval=bounds,
        discordant=tuple(zip(first_only.tolist(), second_only.tolist())),
        seed_p=tuple(mcnemar(a, b) for a, b in zip(first_only.tolist(), second_only.tolist())),
        ahead=ahead, p=mcnemar(*ahead), detectable=detectable_difference(margins, seeds, bounds))


def repeated_discordance(correct_a, correct_b):
    """How many images are discordant in some seed pair, and how many of them in more than one."""
    pairs = (correct_a != correct_b).sum(axis=0)
    return int((pairs > 0).sum()), int((pairs > 1).sum())


def detectable_difference(margins, seeds, bounds):
    """The smallest difference, in points, that would have passed both tests with these images and seeds in play.

    For McNemar's pooled test: its detectable lead in images, each worth the images' mean margin over seeds. For the
    interval: half its width, the distance it must move to clear zero. None where no image is discordant.
    """
    moved = margins[margins != 0]
    if not moved.size:
        return None
    lead = detectable_lead(moved.size)
    half_width = (bounds[1] - bounds[0]) / 2
    if lead is None:
        return half_width
    return max(100 * (2 * lead - moved.size) * np.abs(moved).mean() / seeds / margins.size, half_width)


def standard_error(accuracy, images):
    """The binomial standard error, in points, of an accuracy (points) measured on `images` images."""
    share = accuracy / 100
    return 100 * float(np.sqrt(share * (1 - share) / images))


def unpaired_interval(accuracies_a, images_a, accuracies_b, images_b):
    """The difference of two experiments' mean accuracies (points) and its 95% normal interval, without predictions.

    Each mean carries the binomial noise of its image set and, where there are several runs, their spread over
    seeds divided by their number. Where both were scored on the same images this overstates the noise, since their
    errors fall largely on the same images: the interval is then conservative.
    """
    def variance(accuracies, images):
        spread = np.var(accuracies, ddof=1) / len(accuracies) if len(accuracies) > 1 else 0.0
        return standard_error(np.mean(accuracies), images) ** 2 + spread

    difference = float(np.mean(accuracies_a) - np.mean(accuracies_b))
    half_width = Z * np.sqrt(variance(accuracies_a, images_a) + variance(accuracies_b, images_b))
    return difference, (difference - half_width, difference + half_width)


def against_best(correct):
    """Each setting compared with the best one. correct: {setting: {seed: (images,) booleans}}, every run scored on
    the same images. Returns the best setting, by mean accuracy over its seeds, and {setting: Comparison of it minus
    the best, paired on the seeds both have (None where they share none)} for every other setting with runs."""
    means = {setting: np.mean([c.mean() for c in runs.values()]) for setting, runs in correct.items() if runs}
    best = max(means, key=means.get)
    compared = {}
    for setting in means:
        if setting != best:
            seeds = sorted(set(correct[setting]) & set(correct[best]))
            compared[setting] = compare(np.stack([correct[setting][s] for s in seeds]),
                                        np.stack([correct[best][s] for s in seeds])) if seeds else None
    return best, compared
