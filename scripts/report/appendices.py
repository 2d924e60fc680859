"""The generated sections of docs/: the statistics behind the verdicts, the tuning, the speed and sweep benchmarks,
predict.py's and the demo's measurements, reproducing the report, the ablation on Fashion-MNIST, the data's
checksums, and the table of defences."""
import statistics

import numpy as np

import dataset
from . import experiments
from .committed import (comparison, correct, fast_sweep, final, from_benchmark, gaps, load, sweeps, test_size,
                        tuning_runs, validation_images)
from .experiments import (ABLATION_LABELS, EXPERIMENTS, FASHION_ABLATION_LABELS, LECUN_1998_ERROR, on_fashion,
                          sample_efficiency_labels)
from .formatting import comparison_verdict, interval_verdict, mean_std, p_value, show, span
from mnistlab import significance
from mnistlab.recipes import EPOCHS, LABELS, MODEL_NAMES, NAMED_RECIPES
from scripts import tune
from scripts.tune import FAST_TUNING_SEEDS, SEARCH_SPACE, TARGET_ACCURACY, TUNING_SEEDS


def section_significance():
    images, seeds = test_size(), len(experiments.SEEDS)
    lenet = statistics.mean(final(load("LeNet5"), "eval_acc"))
    error = significance.standard_error(lenet, images)
    groups = significance_groups()
    pairs = [(first, second) for _, _, rows, _ in groups for _, first, second in rows]
    repeated = np.sum([significance.repeated_discordance(correct(a), correct(b)) for a, b in pairs], axis=0)
    parts = [
        f"On {images:,} test images, 0.1 points is {images * 0.001:.0f} images. At LeNet5's {lenet:.2f}%, the binomial "
        f"standard error of one run's test accuracy is {error:.3f} points: the test set is a sample of the digits a "
        "model will meet, and moves a score by about that much whatever the seed. Two models scored on different "
        f"image sets of this size would have to differ by about {significance.Z * np.sqrt(2) * error:.2f} points to "
        "be told apart at 95%. Scored on the same images, they are compared far more sharply in pairs, since only "
        "the images where they disagree carry information.",
        f"Each comparison pairs the runs by seed, seed s of the first experiment against seed s of the second, over "
        f"seeds {', '.join(map(str, experiments.SEEDS))}:",
        "\n".join([
            "- **difference**: test accuracy at the final epoch, first minus second, in points, the mean over seeds;",
            f"- **95% interval**: a paired bootstrap of {significance.REPLICATES:,} replicates, each redrawing the "
            f"{images:,} test images with replacement (one draw for both experiments and every seed) and the {seeds} "
            "seed pairs with replacement; the interval holds the middle 95% of the replicates' differences. Redrawing "
            f"images brings in the test set's noise, redrawing seeds the training noise, which {seeds} seeds only "
            f"roughly sample. The ends are multiples of {100 / (seeds * images):.4f} points (one image in one seed) "
            "and move by a step or two with the bootstrap's own seed;",
            "- **per seed**: the images only the first run got right and those only the second got right, and "
            "McNemar's exact test, the two-sided binomial p-value of that split (`scipy.stats.binomtest`) were each of "
            "those images as likely to go either way;",
            "- **pooled**: each image counts once, for the experiment that got it right on more seeds (ties left "
            "out), with McNemar's exact test on those counts. Summing the seeds' counts instead would count an image "
            "that one model finds hard once per seed, as if it were several images: of the images discordant in some "
            f"seed pair in these tables, {repeated[1] / repeated[0]:.0%} are discordant in more than one;",
            f"- **verdict**: real where the pooled p is below {significance.ALPHA} and the interval leaves out zero. "
            "McNemar's test asks whether these trained networks differ on digits like the test set's; the interval "
            "also asks whether other seeds would. Otherwise not measurable, with the smallest difference that would "
            "have passed both here: the larger of the lead McNemar's pooled test needed with this many images in "
            "play (each image worth their mean margin over seeds), and half the interval's width."]),
        f"The tables hold {len(pairs)} comparisons. At p < {significance.ALPHA}, about one in "
        f"{1 / significance.ALPHA:.0f} would pass by chance where there is no difference, so a p-value near "
        f"{significance.ALPHA} is weak evidence on its own."]
    for title, header, rows, after in groups:
        parts += [f"**{title}**", significance_table(header, rows), *([after()] if after else [])]
    parts.append(published_lenet())
    return "\n\n".join(parts)


def significance_groups():
    """The comparisons the prose makes, a table each: (title, first column's header, [(row, first, second)], what
    follows the table or None), each row's difference being the first experiment minus the second."""
    all_four, singles = "all four at LeNet5's learning rate", ABLATION_LABELS[1:5]
    sizes, labels = sample_efficiency_labels()
    return [
        ("LeNet5 against CustomMLP", "first − second", [
            ("LeNet5 − CustomMLP (its recipe)", "LeNet5", "CustomMLP"),
            ("LeNet5 − CustomMLP, neither augmented", "LeNet5", "CustomMLP without augmentation"),
            ("LeNet5 − CustomMLP, both augmented", "augmentation only", "CustomMLP")], None),
        ("Augmentation against none", "with − without augmentation", [
            ("LeNet5", "augmentation only", "LeNet5"),
            ("CustomMLP", "CustomMLP", "CustomMLP without augmentation")], augmentation_gain),
        ("Each technique against LeNet5", "first − second",
         [(f"{label} − LeNet5", label, "LeNet5") for label in ABLATION_LABELS[1:]], None),
        ("All four against each one alone", "first − second",
         [(f"{all_four} − {label}", all_four, label) for label in singles], None),
        ("The learning rate", "first − second",
         [(f"LeNet5_Regularized − {all_four}", "LeNet5_Regularized", all_four)], None),
        ("Fewer training images", "LeNet5 − CustomMLP without augmentation, training images",
         [(f"{size:,}", lenet, mlp) for size, lenet, mlp in zip(sizes, *labels.values())],
         sample_efficiency_significance),
    ]


def generalization_rows(labels, names=None):
    """Table rows of final test and clean-train figures, mean ± std over seeds; names renames labels."""
    rows = []
    for label in labels:
        loaded = load(label)
        recipe = loaded[0]["recipe"]
        acc_gaps, loss_gaps = gaps(loaded)
        rows.append(f"| {(names or {}).get(label, label)} | {'yes' if recipe.get('batch_norm') else '-'} | "
                    f"{recipe.get('dropout') or '-'} | {'yes' if recipe['augment'] else '-'} | "
                    f"{recipe['weight_decay'] or '-'} | {mean_std(final(loaded, 'eval_acc'))} | "
                    f"{mean_std(final(loaded, 'eval_loss'), 4)} | "
                    f"{mean_std([run['final_train_eval']['acc'] for run in loaded])} | {mean_std(acc_gaps)} | "
                    f"{mean_std(loss_gaps, 4)} |")
    return rows


GENERALIZATION_HEADER = ["| run | batch norm | dropout | augmentation | weight decay | test accuracy % | test loss | "
                         "clean train accuracy % | accuracy gap, points | loss gap |",
                         "|---|:-:|:-:|:-:|:-:|---:|---:|---:|---:|---:|"]
GENERALIZATION_NOTE = (
    f"Mean ± std over seeds {', '.join(map(str, experiments.SEEDS))}, final epoch of {EPOCHS}. The clean train "
    "figures come from one pass over the training images after the last epoch, in eval mode and without "
    "augmentation; the gaps are clean train accuracy minus test accuracy, and test loss minus clean train loss.")


def section_fashion_ablation():
    """The ablation again on Fashion-MNIST: the table, and each technique against LeNet5 and all four against each
    alone, paired."""
    names = {on_fashion(label): label for label in ABLATION_LABELS}
    all_four, singles = "all four at LeNet5's learning rate", ABLATION_LABELS[1:5]
    return "\n".join(
        GENERALIZATION_HEADER + generalization_rows(FASHION_ABLATION_LABELS, names)) + (
        f"\n\n{GENERALIZATION_NOTE}\n\n![Fashion-MNIST ablation](plots/fashion_ablation.png)\n\n"
        "**Each technique against LeNet5, on Fashion-MNIST**\n\n" + significance_table(
            "first − second", [(f"{label} − LeNet5", on_fashion(label), on_fashion("LeNet5"))
                               for label in ABLATION_LABELS[1:]]) +
        "\n\n**All four against each one alone, on Fashion-MNIST**\n\n" + significance_table(
            "first − second", [(f"{all_four} − {label}", on_fashion(all_four), on_fashion(label)) for label in singles]))


def significance_table(header, rows):
    seeds = " / ".join(map(str, experiments.SEEDS))
    lines = [f"| {header} | difference, points | 95% interval | only first right : only second right, seeds {seeds} | "
             f"p, seeds {seeds} | pooled: images first ahead : second ahead | pooled p | verdict |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for row, first, second in rows:
        c = comparison(first, second)
        lines.append(f"| {row} | {c.difference:+.3f} | {span(c.interval)} | "
                     f"{' / '.join(f'{a} : {b}' for a, b in c.discordant)} | {' / '.join(map(p_value, c.seed_p))} | "
                     f"{c.ahead[0]} : {c.ahead[1]} | {p_value(c.p)} | {comparison_verdict(c)} |")
    return "\n".join(lines)


def augmentation_gain():
    """Whether augmentation raises the MLP's accuracy more than LeNet5's: the bootstrap of the two gains' difference."""
    gain = (significance.paired_difference(correct("CustomMLP"), correct("CustomMLP without augmentation")) -
            significance.paired_difference(correct("augmentation only"), correct("LeNet5")))
    difference, bounds = significance.mean_interval(gain)
    return (f"Augmentation raises CustomMLP's accuracy by {difference:.3f} points more than LeNet5's, 95% interval "
            f"{span(bounds)}, the same bootstrap on the difference of the two differences: "
            f"{interval_verdict(bounds)}.")


def sample_efficiency_significance():
    sizes, labels = sample_efficiency_labels()
    lines = ["| training images | change in LeNet5's lead from the size before, points | 95% interval | verdict | "
             "MLP's errors per LeNet5 error | 95% interval |", "|---:|---:|---:|---|---:|---:|"]
    before = None
    for size, lenet, mlp in zip(sizes, *labels.values()):
        lead = significance.paired_difference(correct(lenet), correct(mlp))
        ratio, ratio_bounds = significance.error_ratio(correct(lenet), correct(mlp))
        change = "| - | - | -"
        if before is not None:
            difference, bounds = significance.mean_interval(lead - before)
            change = f"| {difference:+.3f} | {span(bounds)} | {interval_verdict(bounds)}"
        lines.append(f"| {size:,} {change} | {ratio:.2f} | {ratio_bounds[0]:.2f} to {ratio_bounds[1]:.2f} |")
        before = lead
    return ("How LeNet5's lead changes with the training set, and the ratio of the two models' errors, from the same "
            "bootstrap, the runs of each size paired by seed:\n\n" + "\n".join(lines))


def published_lenet():
    lenet = final(load("LeNet5"), "eval_acc")
    difference, bounds = significance.unpaired_interval(lenet, test_size(), [100 - LECUN_1998_ERROR], test_size())
    return (f"**Against the published LeNet-5.** LeCun et al. (1998) report {LECUN_1998_ERROR:.2f}% test errors "
            f"without distortions, on the same {test_size():,} images; our LeNet5's accuracy is {difference:+.2f} "
            f"points against theirs, {interval_verdict(bounds)}: unpaired 95% interval {span(bounds, 2)}, from both "
            "figures' binomial noise and our seeds' spread. Without the 1998 network's predictions the comparison "
            "cannot be paired, and unpaired on the same images the interval is conservative.")


def section_tuning_space():
    rows = ["| model | factor, in the order tried | values, in order of preference | starting value |",
            "|---|---|---|---|"]
    for model in MODEL_NAMES:
        space = SEARCH_SPACE[model]
        for i, (factor, values) in enumerate(space["factors"].items()):
            rows.append(f"| {LABELS[model] if i == 0 else ''} | {factor} | {', '.join(map(show, values))} | "
                        f"{show(space['start'][factor])} |")
    return "\n".join(rows)


def section_tuning():
    rows = ["| model | factor | value | validation accuracy % | seeds " + " / ".join(map(str, TUNING_SEEDS)) +
            " | chosen |", "|---|---|---|---:|---:|:-:|"]
    for model, (_, steps) in sweeps().items():
        for factor, scored, chosen in steps:
            for value, accs in scored:
                seeds = " / ".join("diverged" if a == 0 else f"{a:.2f}" for a in accs)
                rows.append(f"| {LABELS[model]} | {factor} | {show(value)} | {mean_std(accs)} | {seeds} | "
                            f"{'**yes**' if value == chosen else ''} |")
    stored = tuning_runs()
    runs_total, minutes = len(stored), sum(h["seconds"] for run in stored for h in run["history"]) / 60
    return "\n".join(rows) + (f"\n\n{runs_total} runs of {EPOCHS} epochs, {minutes:.0f} minutes of training in all. "
                              "A run that diverged counts as 0%.")


def section_selection():
    rows = ["| model | validation accuracy %, the sweep's seeds " + ", ".join(map(str, TUNING_SEEDS)) +
            " | test accuracy %, seeds " + ", ".join(map(str, experiments.SEEDS)) +
            " | test minus validation, points | 95% interval, unpaired | verdict |", "|---|---:|---:|---:|---:|---|"]
    held_out = validation_images()
    for model, (chosen, _) in sweeps().items():
        validation = [tune.stored_score(model, chosen, seed) for seed in TUNING_SEEDS]
        test = final(load(LABELS[model]), "eval_acc")
        difference, bounds = significance.unpaired_interval(test, test_size(), validation, held_out)
        rows.append(f"| {LABELS[model]} | {mean_std(validation)} | {mean_std(test)} | {difference:+.2f} | "
                    f"{span(bounds, 2)} | {interval_verdict(bounds)} |")
    compared = sweep_comparisons(held_out)
    measurable = [name for name, bounds in compared if significance.excludes_zero(bounds)]
    half_widths = [(bounds[1] - bounds[0]) / 2 for _, bounds in compared]
    return "\n".join(rows) + (
        "\n\nThe sweep's runs in `results/tuning/` keep their histories but not their predictions, so nothing scored "
        "on the validation split can be compared in pairs. These intervals are unpaired: each mean accuracy's binomial "
        f"noise on its images ({test_size():,} test, {held_out:,} validation) and its spread over seeds. That fits "
        "the test set against the validation split, which hold different images. Within the sweep, where every "
        "setting was scored on the same validation images, it overstates the noise, yet it is all the stored runs "
        f"allow: of the sweep's {len(compared)} comparisons of a factor's chosen value with another value it tried "
        "(settings where a seed diverged left out), " +
        (f"{len(measurable)} {'is' if len(measurable) == 1 else 'are'} measurable: {', '.join(measurable)}. "
         if measurable else "none is measurable. ") +
        f"Their half-widths, the smallest differences they could have shown, run from {min(half_widths):.2f} to "
        f"{max(half_widths):.2f} points.")


def sweep_comparisons(images):
    """Each factor's chosen value against each other value the sweep tried, as (what, unpaired 95% interval)."""
    compared = []
    for model, (_, steps) in sweeps().items():
        for factor, scored, chosen in steps:
            kept = next(accs for value, accs in scored if value == chosen)
            for value, accs in scored:
                if value != chosen and 0.0 not in accs + kept:
                    _, bounds = significance.unpaired_interval(kept, images, accs, images)
                    compared.append((f"{LABELS[model]}'s {factor} {show(chosen)} against {show(value)}", bounds))
    return compared


def section_tuning_fast():
    chosen, tried = fast_sweep()
    rows = ["| epochs | batch size | peak learning rate | label smoothing | validation accuracy % | seeds " +
            " / ".join(map(str, FAST_TUNING_SEEDS)) + " | chosen |", "|---:|---:|---:|---:|---:|---:|:-:|"]
    for schedule, scored in tried:
        for (lr, smoothing), accs in scored:
            seeds = " / ".join("diverged" if a == 0 else f"{a:.2f}" for a in accs)
            chosen_here = tune.fast_setting(schedule, lr, smoothing) == chosen
            rows.append(f"| {schedule[0]} | {schedule[1]} | {show(lr)} | {show(smoothing)} | {mean_std(accs)} | "
                        f"{seeds} | {'**yes**' if chosen_here else ''} |")
    recipe = NAMED_RECIPES["fast"]["lenet5"]
    runs_total = len(tuning_runs(fast=True))
    one_epoch = max(statistics.mean(accs) for schedule, scored in tried if schedule[0] == 1 for _, accs in scored)
    return "\n".join(rows) + (
        f"\n\n{runs_total} runs. The fast recipe: {recipe['epochs']} epochs in batches of {recipe['batch_size']}, a "
        f"one-cycle schedule peaking at {show(recipe['lr'])}, label smoothing {show(recipe['label_smoothing'])}. "
        f"The best one-epoch setting reached {one_epoch:.2f}% mean validation accuracy"
        + (f", short of {TARGET_ACCURACY:.1f}%." if one_epoch < TARGET_ACCURACY else "."))


@from_benchmark(("bench_time_to_accuracy.json", "make bench-time"))
def section_time_to_accuracy(bench):
    summary, target, imports = bench["summary"], bench["target"], bench["import_seconds"]
    reference = summary["reference"]["wall_seconds"]
    names = {"fast": "fast recipe", "default": "default recipe, 10 epochs", "reference": "torchvision reference, 10 epochs"}
    rows = [f"| run | command | seeds | whole process, s | of which outside the epochs | share of the reference's time | "
            f"final test accuracy % | seeds reaching {target:g}% | first epoch at {target:g}% | seconds to {target:g}% |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summary.items():
        to_target = (f"{s['epoch_to_target']:.1f} | {s['seconds_to_target']:.1f}" if s["reached"] else "- | -")
        rows.append(f"| {names[name]} | `{bench['commands'][name]}` | {s['seeds']} | {s['wall_seconds']:.1f} | "
                    f"{s['outside_epochs_seconds']:.1f} | {s['wall_seconds'] / reference:.1%} | {s['final_acc_mean']:.2f} ± {s['final_acc_std']:.2f} | "
                    f"{s['reached']} of {s['seeds']} | {to_target} |")
    return "\n".join(rows) + (
        f"\n\n`python -m benchmarks.bench_time_to_accuracy` on {bench['device_name']}, torch {bench['torch']}: every "
        f"run a fresh process, timed from launch to exit as a user waits for it, the three commands taking turns; the "
        f"figures are means over the seeds, 0 upwards. Seconds to {target:g}% run from launch to the moment the epoch "
        f"that first reached it printed its line, the first epoch is the mean over the seeds that reached it, and the "
        f"final accuracy is the mean ± std at the last epoch. The default run is "
        f"{bench['default_speedup']:.2f}x faster than the reference, whole process against whole process (the target "
        f"is 3x); the fast recipe takes {bench['fast_share']:.1%} of the reference's time (the target is at most 10%)."
        f"\n\nA process that only starts and exits takes {imports['python']:.2f} s here; one that imports torch "
        f"{imports['torch']:.2f} s, torch and torchvision {imports['torch and torchvision']:.2f} s, torch and "
        f"matplotlib's figure and PNG writer {imports['torch and matplotlib']:.2f} s (medians of 3).")


@from_benchmark(("bench_pipeline.json", "make bench"))
def section_speed(bench):
    median = bench["median"]
    rows = [f"`python -m benchmarks.bench_pipeline` on {bench['device_name']}, torch {bench['torch']}, LeNet5, batch "
            f"size {bench['batch_size']}, median of {bench['repeats']} epochs per variant, the variants taking turns:",
            "", "| training epoch, 60,000 images | seconds | share of the reference's time |", "|---|---:|---:|"]
    rows += [f"| {name} | {median[name]:.2f} | {median[name] / median['reference']:.1%} |"
             for name in median if not name.startswith("eval: ")]
    rows += ["", "| evaluation, 10,000 images | seconds | share of the reference's time |", "|---|---:|---:|"]
    rows += [f"| {name[len('eval: '):]} | {median[name]:.2f} | {median[name] / median['eval: reference']:.1%} |"
             for name in median if name.startswith("eval: ")]
    operators = ", ".join(f"`{name}` {share:.0f}%" for name, share in bench["profile"])
    return "\n".join(rows) + (
        f"\n\nOur training epoch takes {bench['train_ratio']:.1%} of the torchvision pipeline's time, the median; "
        f"the {bench['repeats']} repeats, each ours against the reference epoch just before it, range from "
        f"{min(bench['train_ratios']):.1%} to {max(bench['train_ratios']):.1%} on this shared machine. The target is "
        f"at most 33.3%. Loading the data takes {bench['setup_seconds']['ours']:.2f} s here and "
        f"{bench['setup_seconds']['reference']:.2f} s there. The torch.compile row leaves out its first epoch, "
        f"which also compiles. A bfloat16 autocast step (`--amp`) takes {bench['bf16_step_ratio']:.1f}x the time of a "
        f"float32 one here, over 30 steps: this CPU's capability is {bench['cpu_capability']}, without native "
        f"bfloat16. Where our training step spends its time, by the profiler's self CPU time: {operators}.")


@from_benchmark(("bench_sweep.json", "make bench-sweep"))
def section_sweep(bench):
    ways = bench["ways"]
    serial = ways["main.py, one run after another"]["seconds"]
    rows = [f"`python -m benchmarks.bench_sweep` on {bench['device_name'].rsplit(',', 1)[0]}, {bench['cores']} cores, "
            f"torch {bench['torch']}: the same {bench['runs']} LeNet5 runs of {bench['epochs']} epochs each way, "
            f"whole processes, wall clock, the ways taking turns {bench['repeats']} times:", "",
            "| how | seconds, median | range | runs a minute | speed-up over main.py's loop |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {label} | {way['seconds']:.1f} | {min(way['all_seconds']):.1f} to {max(way['all_seconds']):.1f} | "
             f"{way['runs_per_minute']:.1f} | {serial / way['seconds']:.2f}x |" for label, way in ways.items()]
    best = max(ways, key=lambda label: ways[label]["runs_per_minute"])
    one_process = ways["sweep.py --jobs 1"]
    at_once = ways[f"sweep.py --jobs {bench['cores']}"]
    overlap = max(one_process["all_seconds"]) >= min(at_once["all_seconds"]) and \
        max(at_once["all_seconds"]) >= min(one_process["all_seconds"])
    return "\n".join(rows) + (
        f"\n\nThe most runs a minute here: `{best}`, {serial / ways[best]['seconds']:.2f}x main.py's loop. Part of "
        f"any sweep's gain is start-up: `sweep.py --jobs 1` trains the same runs in one process, "
        f"{serial / one_process['seconds']:.2f}x, without paying a process's imports per run. The rest is runs at "
        f"once: `--jobs {bench['cores']}`, one core each, against `--jobs 1` on every core, "
        f"{one_process['seconds'] / at_once['seconds']:.2f}x, Ray's few seconds of start-up included"
        + (", within the spread of the repeats on this machine: not a gain to count on." if overlap else ".")
        + (" On a machine with C cores, from this measurement: `--jobs C` with one core each (`--cpus-per-run 1`, the "
           "default on Ray)" if ways[best] is at_once else f" From this measurement: `{best}`")
        + (", though this machine has too few cores to try two each against it." if bench["cores"] < 4 else "."))


def section_reproduce():
    loaded = [run for label in EXPERIMENTS for run in load(label)]
    minutes = sum(h["seconds"] for run in loaded for h in run["history"]) / 60
    hardware = ", ".join(sorted({run["device_name"] for run in loaded}))
    return (f"The {len(loaded)} runs behind this report trained for {minutes:.0f} minutes in all on {hardware}; "
            "`make report` adds start-up, a clean pass over the training set per run, the robustness pass of each "
            "full-data run, and the pipeline benchmark.")


@from_benchmark(("bench_predict.json", "python -m benchmarks.bench_predict"))
def section_predict(bench):
    return (f"`python -m benchmarks.bench_predict` renders the {bench['count']:,} MNIST test digits as photos, writes "
            f"them as JPEG files and reads them back through `predict.py`'s own path, with {LABELS[bench['model']]} "
            f"(`{bench['checkpoint']}`), on {bench['device_name']}:\n\n"
            "| the test digits as | accuracy % |\n|---|---:|\n"
            f"| MNIST's own 28x28 images, straight to the model | {bench['plain_test_acc']:.2f} |\n"
            f"| photos, read by `predict.py` | {bench['photo_acc']:.2f} |\n"
            f"| photos, naive: the whole image resized to 28x28 | {bench['naive_acc']:.2f} |\n\n"
            f"Reading a batch of {bench['batch']:,} photo files end to end, decoding included, runs at "
            f"{bench['images_per_second']:.0f} images per second.")


@from_benchmark(("demo_screenshot.json", "python -m scripts.demo_screenshot"),
                ("bench_demo.json", "python -m benchmarks.bench_demo"))
def section_demo(shot, bench):
    readings = ", ".join(f"{LABELS[model]} as a {digit}" for model, digit in shot["shifted"].items())
    centred = sorted(set(shot["centred"].values()))
    return (f"The screenshot, taken by `python -m scripts.demo_screenshot` with the report's seed-0 models: a "
            f"{shot['drawn']} drawn on the page, then moved {shot['shift'][0]} pixels right with the slider. Centred, "
            f"the models read it as {' and '.join(map(str, centred))}; moved, {readings}.\n\n"
            "![the demo page: a drawn 1 moved 3 pixels right, and how each model reads it](plots/demo.png)\n\n" +
            f"`python -m benchmarks.bench_demo` times `POST /predict` with the {len(bench['models'])} models loaded, "
            f"on {bench['device_name']}: one client at a time, {bench['single']['median_ms']:.1f} ms per request "
            f"(median; 95th percentile {bench['single']['p95_ms']:.1f} ms); {bench['clients']} clients at once, "
            f"{bench['requests']} requests in all, {bench['concurrent']['median_ms']:.1f} ms (95th percentile "
            f"{bench['concurrent']['p95_ms']:.1f} ms), {bench['concurrent_requests_per_second']:.0f} requests per "
            f"second, and {bench['mismatches']} answers that differed from the single client's.")


@from_benchmark(("defences.json", "make defences"))
def section_defences(table):
    measured = table["defences"]  # the counts are the rows', not the file's say
    red = sum(row["outcome"] == "red" for row in measured)
    unmeasured = (f"; the other {table['listed'] - len(measured)} are not measured on this version"
                  if len(measured) < table["listed"] else "")
    rows = ["| file | defence | its test | without the defence |", "|---|---|---|---|"]
    for row in table["defences"]:
        case = f" ({row['case']})" if "case" in row else ""  # one case of a parametrised test
        module, name = row["test"].removeprefix("tests/").split("::", 1)
        rows.append(f"| `{row['file']}` | {row['defence']} | `{module}`: `{name}`{case} | {row['outcome']} |")
    return (f"The tests declare {table['listed']} defences, the refusals, caps, timeouts and checks of the package, "
            f"the programs, scripts and benchmarks: each above the test that guards it (`@guards` in tests/), as its "
            f"code and that code with the defence deleted or loosened. `make defences` (`tests/mutants.py`) makes "
            f"each change in turn, in a scratch copy of the repository, and runs that test (`--update` measures "
            f"some again). As last measured (`results/defences.json`), {red} of {len(measured)} tests failed "
            f"without their defence{unmeasured}. `make test` fails where a declared defence no longer reads as "
            f"declared, or is not a red row of that table measured for its code and its test as they are.\n\n<details><summary>Each defence and its test, by test "
            f"module</summary>\n\n" + "\n".join(rows) + "\n\n</details>")


def section_data():
    rows = ["| dataset | file | SHA-256 (decompressed) |", "|---|---|---|"]
    rows += [f"| {data.title} | `{name}` | `{digest}` |" for data in dataset.DATASETS.values()
             for name, digest in data.sha256.items()]
    return "\n".join(rows)
