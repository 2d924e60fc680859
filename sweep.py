"""Train a grid of main.py runs, many at once where there are cores, GPUs or a Ray cluster, and say which of the
settings is really better.

    python sweep.py --model lenet5 custom_mlp --lr 0.05 0.1 --seed 0 1 2 --validation
    python sweep.py --model lenet5 --batch-size 64 128 --epochs 3 --seed 0 1 2 --jobs 4
    python sweep.py ... --address HEAD:6379 --cpus-per-run 2         # a running Ray cluster (or RAY_ADDRESS)
    python sweep.py ... --gpus-per-run 0.1                             # ten runs share one GPU

Every training flag of main.py takes one or more values; the grid is their product. Each run is named as main.py
names it, with a tag made of the settings that vary (lenet5_lr0.05_seed0), and its files are main.py's, under
--out-dir, so that --evaluate, predict.py and demo.py find them. Finished runs are skipped and unfinished ones
resume from their checkpoints, so the same command continues an interrupted sweep; a finished run with other
settings is refused. The table at the end compares each setting with the best one on the stored predictions,
seed against seed (significance.py).
"""
import itertools
import statistics
import sys
from pathlib import Path

from mnistlab.cli import (RECIPE_FLAGS, OneLineErrorParser, add_data_flags, add_recipe_flags, add_runner_flags,
                          command_again, emit, exit_now, parse_tag, run, setting, signal_status)
from mnistlab.errors import Interrupted, UsageError
from mnistlab.paths import relative
from mnistlab.recipes import (MODEL_NAMES, RECIPE_NAMES, check_run_name, check_tag, evaluated_on, resolve_recipe,
                              run_name, setting_tag)

# The most runs one sweep takes: each holds its lock file open while the sweep runs, and a grid past this is more
# likely a typo than a plan.
MAX_RUNS = 1000
# The grid's axes besides the model, the named recipe and the seed: every recipe flag, and the training-set size.
AXES = [key for key, _ in RECIPE_FLAGS] + ["train_size"]


def get_args_parser():
    p = OneLineErrorParser(description="Train a grid of main.py runs, many at once, and say which settings are "
                                       "really better.")
    p.add_argument("--model", nargs="+", default=["lenet5"], choices=MODEL_NAMES, help="one or more models")
    p.add_argument("--recipe", nargs="+", default=["default"], choices=RECIPE_NAMES,
                   help="one or more recipes each model starts from, as main.py's --recipe")
    add_recipe_flags(p, many=True)
    p.add_argument("--train-size", nargs="+", type=setting("train_size"),
                   help="one or more sizes of a class-stratified training subset, as main.py's; default: all")
    p.add_argument("--seed", nargs="+", type=setting("seed"), default=[0],
                   help="one or more seeds; each setting's runs are compared seed against seed")
    add_data_flags(p)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps", "xpu"],
                   help="with --jobs 1, as main.py's --device; on Ray, runs with --gpus-per-run use a GPU, others the "
                        "CPU")
    p.add_argument("--out-dir", type=Path,
                   help="where results/, plots/ and checkpoints/ go; default: runs/ beside sweep.py, as main.py's")
    p.add_argument("--tag", type=parse_tag, help="put TAG before the settings in every run's name; default: none")
    add_runner_flags(p)
    return p


def grid(args):
    """[(setting's name, run's name, recipe)] for every point of the grid and seed; UsageError where a setting does
    not apply to a model, or the names would collide."""
    axes = {key: getattr(args, key) for key in AXES if getattr(args, key)}
    varied = [key for key, values in axes.items() if len(values) > 1]
    runs = []
    for model, recipe_name, values in itertools.product(args.model, args.recipe, itertools.product(*axes.values())):
        overrides = dict(zip(axes, values))
        tag = "_".join(part for part in (args.tag, setting_tag({key: overrides[key] for key in varied})) if part)
        if tag:
            try:
                check_tag(tag)
            except ValueError:
                raise UsageError(f"the runs' names would hold {len(tag)} characters of tag ({tag[:40]}...); vary "
                                 f"fewer settings at once, or shorten --tag") from None
            check_run_name(model, tag)
        for seed in args.seed:
            recipe = resolve_recipe(model, overrides, recipe_name, seed=seed, limit=args.limit, train_size=None,
                                    validation=args.validation, amp=args.amp, dataset=args.dataset)
            name = run_name(model, tag or None, seed, recipe_name, args.dataset)
            runs.append((name.removesuffix(f"_seed{seed}"), name, recipe))
    names = [name for _, name, _ in runs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        clash = [recipe for _, name, recipe in runs if name == repeated[0]]
        differ = [key for key in axes if len({str(recipe[key]) for recipe in clash}) > 1]
        if differ:  # values apart only past the 6 significant digits that a name keeps
            flag, values = f"--{differ[0].replace('_', '-')}", " and ".join(str(r[differ[0]]) for r in clash)
            raise UsageError(f"{flag} {values} would both name the run {repeated[0]}: the runs' names collide, since a "
                             f"name keeps 6 significant digits; give values that differ in those")
        raise UsageError(f"the grid names {repeated[0]} more than once: a value is given twice; give each once")
    return runs


def table(args, grid_runs, out_dir, failed=()):
    """The comparison of every setting with the best one, as lines of text; failed names the runs that failed now."""
    from mnistlab import files, runner, significance, slots
    labels = runner.true_labels(grid_runs[0][2])  # every run of a sweep is scored on the same images
    correct, accuracy, missing = {}, {}, {}
    for label, name, recipe in grid_runs:
        correct.setdefault(label, {})
        accuracy.setdefault(label, [])
        try:
            results = slots.load(files.RunPaths.of(out_dir, name).results, "train it again with this command",
                                 recipe=recipe, labels=labels)
        except slots.BadResults as e:
            missing.setdefault(label, []).append(f"seed {recipe['seed']} ({'failed' if name in failed else e.problem})")
            continue
        correct[label][recipe["seed"]] = slots.decode_predictions(results["predictions"]) == labels
        accuracy[label].append(results["history"][-1]["eval_acc"])
    not_counted = [f"not counted: {label}, {', '.join(problems)}" for label, problems in missing.items()]
    if not any(correct.values()):
        return ["no setting has a finished run to compare", *not_counted]
    best, compared = significance.against_best(correct)
    scored_on = evaluated_on(grid_runs[0][2])
    rows = [("setting", "seeds", f"{scored_on} accuracy %", "minus the best, points", "95% interval", "p", "verdict")]
    for label in correct:
        accs = accuracy[label]
        spread = f"{statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f}" if len(accs) > 1 else \
            f"{accs[0]:.2f}" if accs else "-"
        if not accs:
            rows.append((label, "0", spread, "", "", "", "no finished run"))
        elif label == best:
            rows.append((label, str(len(accs)), spread, "", "", "", "best"))
        elif compared[label] is None:
            rows.append((label, str(len(accs)), spread, "", "", "", "no seed in common with the best"))
        else:
            c = compared[label]
            rows.append((label, str(len(accs)), spread, f"{c.difference:+.2f}",
                         f"{c.interval[0]:+.2f} to {c.interval[1]:+.2f}", f"{c.p:.3g}", verdict(c, len(args.seed))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.append(f"Final epoch, mean ± std over seeds. Each setting against the best, paired seed against seed on "
                 f"the same {len(labels):,} images: real where McNemar's exact test gives p < "
                 f"{significance.ALPHA} and the paired bootstrap interval leaves out zero, with two seeds or more.")
    return lines + not_counted


def verdict(comparison, seeds=1):
    """significance.py's verdict on a difference; where one seed pair is all it has, what mends that: seeds says
    how many the command gave."""
    from mnistlab import significance
    return significance.comparison_verdict(
        comparison, "one seed; give --seed two values or more" if seeds < 2 else
        "one seed in common with the best; the same command trains the runs not counted")


def main(args):
    def body():
        from mnistlab import files, runner
        settings = runner.settings_of(args)
        grid_runs = grid(args)
        if len(grid_runs) > MAX_RUNS:
            raise UsageError(f"the grid holds {len(grid_runs):,} runs, more than the {MAX_RUNS:,} one sweep takes; "
                             f"split it into several sweeps")
        out_dir = args.out_dir or files.DEFAULT_OUT_DIR
        diverged = {}  # finished where training diverged: failed runs, which the same command does not train again
        jobs, finished = runner.jobs_to_train([(name, recipe) for _, name, recipe in grid_runs],
                                              lambda name: files.RunPaths.of(out_dir, name), out_dir,
                                              settings=settings, diverged=diverged)
        emit(f"{len(grid_runs)} runs: {len(finished)} finished already"
             + (f" ({len(diverged)} diverged)" if diverged else "") + f", {len(jobs)} to train"
             + (f", {args.jobs} at once" if args.jobs > 1 and not settings.address else "")
             + (f", on the Ray cluster at {settings.address}" if settings.address else ""))
        try:
            failed = {**diverged, **(runner.train_and_report(jobs, settings, line=runner.describe) if jobs else {})}
        except (KeyboardInterrupt, Interrupted) as e:
            by = e.by if isinstance(e, Interrupted) else e
            print(f"\nsweep.py: interrupted; the finished runs are written whole.\ncontinue with: "
                  f"{command_again(sys.argv)}", file=sys.stderr)
            return signal_status(by)
        emit("\n" + "\n".join(table(args, grid_runs, out_dir, failed)))
        if failed:
            print(f"sweep.py: {len(failed)} of {len(grid_runs)} runs failed: " +
                  "; ".join(f"{name} ({error})" for name, error in failed.items()), file=sys.stderr)
            return 1
        emit(f"the runs are in {relative(out_dir)}")
        return 0
    return run("sweep.py", body)


if __name__ == "__main__":
    exit_now(main(get_args_parser().parse_args()))
