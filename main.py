"""Train and compare MNIST classifiers, or evaluate a trained one.

    python main.py --model lenet5 --epochs 10
    python main.py --model lenet5 --evaluate
    python main.py --dataset fashion-mnist --model all

A run writes results/<run>.json, plots/<run>_curves.png and checkpoints/<run>.pt under --out-dir (runs/ by
default), where <run> is the model's name, then _<recipe> for a named recipe (fast), then _<tag> when --tag is
given, then _seed<seed>; a run on Fashion-MNIST has fashion-mnist_ in front.
"""
import contextlib
import os
import shlex
import shutil
import sys
from pathlib import Path

from mnistlab.cli import (RECIPE_FLAGS, OneLineErrorParser, add_data_flags, add_recipe_flags, command_again, emit,
                          exit_now, parse_tag, run, setting)
from mnistlab.errors import Interrupted, UsageError
from mnistlab.paths import relative
from mnistlab.recipes import (MODEL_NAMES, RECIPE_NAMES, check_run_name, evaluated_on, format_recipe, resolve_recipe,
                              run_name)


def get_args_parser():
    p = OneLineErrorParser(description="Train LeNet-5, a same-size MLP and a regularized LeNet-5 on MNIST (or "
                                       "Fashion-MNIST), or evaluate a trained one.")
    p.add_argument("--model", default="lenet5", choices=[*MODEL_NAMES, "all"], help="model to train; all trains each in turn")
    p.add_argument("--recipe", choices=RECIPE_NAMES, nargs="?", const="default", default="default",
                   help="default: each model's recipe, as the report trains it; fast: LeNet5 to 99%% test accuracy "
                        "in as little time as it can (lenet5 only)")
    add_recipe_flags(p)
    p.add_argument("--seed", type=setting("seed"), default=0,
                   help="random seed for weights, batch order, dropout and augmentation")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps", "xpu"],
                   help="auto picks the accelerator that torch.accelerator finds (CUDA, MPS, XPU, ...), else the CPU")
    p.add_argument("--compile", action="store_true", help="torch.compile the model; default: off")
    add_data_flags(p)
    p.add_argument("--train-size", type=setting("train_size"),
                   help="train on a class-stratified subset of N training images, repeated to fill each epoch so "
                        "the number of steps stays the same; the test set stays whole; default: all")
    p.add_argument("--data-dir", type=Path,
                   help="where the data lives (MNIST/ or FashionMNIST/, as torchvision lays them out), or an empty "
                        "folder to extract it into; default: data/ beside main.py")
    p.add_argument("--out-dir", type=Path,
                   help="where results/, plots/ and checkpoints/ go; default: runs/ beside main.py (git ignores it)")
    p.add_argument("--tag", type=parse_tag,
                   help="name the run <model>[_<recipe>]_<tag>_seed<seed>, e.g. --tag wd; default: none")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run from its checkpoint, with the same settings; with --model all, skip the "
                            "finished models; default: off")
    again.add_argument("--overwrite", action="store_true",
                       help="replace the run of the same name, unfinished or finished; default: off")
    p.add_argument("--evaluate", action="store_true",
                   help="train nothing: evaluate the run's checkpoint on the test set (--validation: the validation "
                        "split) and print per-class accuracy and frequent confusions; with --out-dir, also draw "
                        "its confusion matrix; default: off")
    p.add_argument("--checkpoint", type=Path, help="the checkpoint --evaluate reads; default: the run's own")
    return p


# The settings of a model's recipe that the command line may override, each by its flag.
RECIPE_KEYS = tuple(key for key, _ in RECIPE_FLAGS)
# The flags that only training reads: --evaluate reads the recipe from the checkpoint, and trains nothing.
TRAINING_FLAGS = (*RECIPE_KEYS, "train_size", "amp", "compile", "resume", "overwrite")


def check_verb(args):
    """UsageError for a flag that the verb would ignore: a user who passes one means something that would not
    happen."""
    if args.checkpoint and not args.evaluate:
        raise UsageError("--checkpoint names the checkpoint --evaluate reads; add --evaluate, or drop --checkpoint "
                         "to train")
    if args.evaluate:
        defaults = get_args_parser()
        given = [key for key in TRAINING_FLAGS if getattr(args, key) != defaults.get_default(key)]
        if given:
            flag = "--no-batch-norm" if args.batch_norm is False else "--" + given[0].replace("_", "-")
            raise UsageError(f"{flag} sets how to train, and --evaluate trains nothing (it reads the checkpoint's "
                             f"recipe); drop {flag}, or drop --evaluate to train")


def recipes_of(args):
    """Each model's recipe with the command line's explicit settings on top; UsageError on a mismatch."""
    names = list(MODEL_NAMES) if args.model == "all" else [args.model]
    overrides = {key: getattr(args, key) for key in RECIPE_KEYS}
    run = dict(seed=args.seed, limit=args.limit, train_size=args.train_size, validation=args.validation, amp=args.amp,
               dataset=args.dataset)
    if args.tag:
        for name in names:
            check_run_name(name, args.tag, args.recipe)
    return [resolve_recipe(name, overrides, args.recipe, **run) for name in names]


def train(args, recipes, device):
    import torch  # here, not at the top: see main

    import dataset
    from mnistlab import engine, figures, files, runs
    from model import count_parameters, parameter_table
    out_dir = args.out_dir or files.DEFAULT_OUT_DIR
    if out_dir.resolve() == files.ROOT:  # what it wrote there would mix with what the README reports
        raise UsageError(f"--out-dir {relative(out_dir)} is the repository, whose results/ and plots/ are the report's "
                         f"(make report writes them); pass another --out-dir")
    paths = [files.RunPaths.of(out_dir, run_name(r["model"], args.tag, args.seed, args.recipe, args.dataset))
             for r in recipes]
    decisions = [runs.decide(p, r, args.resume, args.overwrite, skip_finished=len(recipes) > 1,
                             threads=torch.get_num_threads(), set_threads=set_threads)
                 for p, r in zip(paths, recipes)]
    comparison = (out_dir / "plots" / f"{run_name('comparison', args.tag, args.seed, dataset=args.dataset)}.png"
                  if len(recipes) > 1 else None)
    data = dataset.load_splits(args.data_dir or dataset.DEFAULT_DATA_DIR, device, args.validation, args.limit,
                               args.dataset)
    outputs = [output for path in paths for output in path.outputs] + ([comparison] if comparison else [])
    files.prepare_out_dir(out_dir, outputs)
    scored_on = evaluated_on(recipes[0])  # the same for every model of the command
    emit(f"device {device} ({engine.describe_device(device)}), torch {torch.__version__}")
    histories, done = {}, []
    with contextlib.ExitStack() as locks:
        for path in paths:
            locks.enter_context(files.RunLock(path))
        for recipe, path, decision in zip(recipes, paths, decisions):
            if decision.action == "done":
                emit(f"\n{recipe['model']}: finished already, in {relative(path.results)}")
                histories[recipe["model"]] = [decision.results["history"]]
                done.append(recipe["model"])
                continue
            model = engine.build_model(recipe, "cpu")
            emit(f"\n{recipe['model']}: {count_parameters(model):,} parameters\n{parameter_table(model)}\n"
                 f"{format_recipe(recipe)}")
            if decision.checkpoint:
                emit(f"resuming from {path.checkpoint} after epoch {decision.checkpoint['epoch']}")
            try:
                results = runs.train_run(
                    recipe, data, device, path, decision.checkpoint, eval_batch_size=args.eval_batch_size,
                    compile=args.compile, progress=sys.stderr.isatty(),
                    on_epoch=lambda r: emit(runs.format_epoch(r, recipe["epochs"], scored_on)))
            except Interrupted as e:
                raise Interrupted(e.epochs_saved, e.by, e.results_written, done) from None
            histories[recipe["model"]] = [results["history"]]
            done.append(recipe["model"])
            emit(f"wrote {relative(path.results)}, {relative(path.curves)} and {relative(path.checkpoint)}")
    if comparison:
        # Every run is finished by now, and --resume redraws this from their results.
        files.save(comparison, files.save_figure,
                   figures.comparison(histories, f"{dataset.DATASETS[args.dataset].title} {scored_on} curves, seed {args.seed}"),
                   resumable=True)
        emit(f"wrote {relative(comparison)}")
    return 0


def evaluate(args, names, device):
    """The --evaluate verb: each model's checkpoint scored on the test set or the validation split."""
    import dataset  # here, not at the top: see main
    from mnistlab import checkpoints, engine, figures, files
    if args.checkpoint and len(names) > 1:
        raise UsageError("--checkpoint names one model's checkpoint; pass --model too, not --model all")
    out_dir = args.out_dir or files.DEFAULT_OUT_DIR
    paths = [args.checkpoint or files.RunPaths.of(out_dir, run_name(name, args.tag, args.seed, args.recipe,
                                                                     args.dataset)).checkpoint for name in names]
    # Each figure is named after the checkpoint it scores, so that it never takes another run's name.
    confusions = [args.out_dir / "plots" / f"{Path(path).stem}_confusion.png" if args.out_dir else None
                  for path in paths]
    if args.out_dir:
        files.prepare_out_dir(args.out_dir, confusions)
    _, _, images, labels = dataset.load_splits(args.data_dir or dataset.DEFAULT_DATA_DIR, device, args.validation,
                                               args.limit, args.dataset)
    classes = dataset.DATASETS[args.dataset].classes
    # Named where it is not MNIST, whose runs print as before datasets were a setting.
    split = (f"{dataset.DATASETS[args.dataset].title} " if args.dataset != "mnist" else "") + (
        "validation split" if args.validation else "test set")
    for name, path, confusion in zip(names, paths, confusions):
        if not args.checkpoint and not path.exists():
            raise UsageError(f"--evaluate: no checkpoint at {path}; train it first: {training_command(args, name)}")
        flag = "--checkpoint" if args.checkpoint else "--evaluate"
        model, checkpoint = checkpoints.load_model(path, device, name, flag, args.dataset)
        if args.validation and not checkpoint["recipe"]["validation"]:
            raise UsageError(f"--validation: {path} was trained without --validation, on training images that include "
                             f"the validation split; evaluate it on the test set (drop --validation)")
        result = engine.evaluate(model, dataset.TensorLoader(images, labels, args.eval_batch_size))
        matrix = engine.confusion_matrix(labels.cpu(), result.predictions.cpu())
        emit(f"{name} from {path} (epoch {checkpoint['epoch']}), on the {split}, {len(labels):,} images:\n"
              f"loss {result.loss:.4f}  accuracy {result.acc:.2f}%  errors {len(labels) - int(matrix.trace()):,}\n\n"
              f"{per_class_table(matrix, classes)}\n\n"
              f"most frequent confusions: {frequent_confusions(matrix, 5, classes)}\n")
        if confusion:
            files.save(confusion, files.save_figure,
                       figures.confusion(matrix, f"{name}: confusion matrix on the {split}", classes))
            emit(f"wrote {relative(confusion)}")
    return 0


def training_command(args, model):
    """The main.py command that trains the run that --evaluate looks for."""
    options = {"--dataset": args.dataset if args.dataset != "mnist" else None,
               "--recipe": args.recipe if args.recipe != "default" else None, "--tag": args.tag,
               "--seed": args.seed or None, "--out-dir": args.out_dir}
    return shlex.join(["python", "main.py", "--model", model,
                       *[str(v) for flag, value in options.items() if value is not None for v in (flag, value)]])


def per_class_table(matrix, classes):
    """Each class's images, errors and accuracy; MNIST's classes are digits, and the column says so."""
    width = max(map(len, classes))
    rows = [f"{'digit' if width == 1 else 'class':>{max(width, 5)}}  images  errors  accuracy"]
    for label, (name, row) in enumerate(zip(classes, matrix.tolist())):
        rows.append(f"{name:>{max(width, 5)}}  {sum(row):6d}  {sum(row) - row[label]:6d}  "
                    f"{100 * row[label] / max(sum(row), 1):7.2f}%")
    return "\n".join(rows)


def frequent_confusions(matrix, count, classes):
    errors = matrix.clone().fill_diagonal_(0).flatten()
    top = errors.topk(count)
    n = len(classes)
    return ", ".join(f"{classes[i // n]} read as {classes[i % n]} ({k}x)"
                     for k, i in zip(top.values.tolist(), top.indices.tolist()) if k)


def interrupted(e, args):
    """The message for a run stopped by a signal: what was saved, and how to go on."""
    if not (e.epochs_saved or e.done):
        return f"{e}; nothing saved"
    saved = (f"{e} of the next model, which saved nothing" if not e.epochs_saved else
             f"{e}; its checkpoint, results and curves so far are saved" if e.results_written else
             f"{e}; its results could not be written, but the checkpoint of the last full epoch is kept")
    command = command_again([a for a in sys.argv if a != "--overwrite"] + ([] if args.resume else ["--resume"]))
    return "".join(f"{model} finished; " for model in e.done) + f"{saved}.\nresume with: {command}"


# What torch.compile's inductor calls to build CPU kernels: $CXX where set, else the usual names.
COMPILERS = tuple(dict.fromkeys([*filter(None, [os.environ.get("CXX")]), "g++", "c++", "clang++"]))


def set_threads(count):
    """How to resume at count threads: main.py trains with torch's default, which OMP_NUM_THREADS sets, but never
    past this machine's cores, where torch stops it."""
    if count <= (os.cpu_count() or 1):
        return f"set OMP_NUM_THREADS={count} in the environment to continue it"
    return (f"OMP_NUM_THREADS cannot go past this machine's {os.cpu_count()} cores, so continue it where there are "
            f"{count}, or train it again with --overwrite instead of --resume")


def main(args):
    """Run what the command line asks for; returns the exit status.

    The modules that import torch are imported only once the arguments are checked, inside train and evaluate:
    torch alone takes seconds to import, and --help or a bad flag should answer at once.
    """
    def body():
        check_verb(args)
        recipes = recipes_of(args)
        if args.compile and not any(map(shutil.which, COMPILERS)):
            raise UsageError("--compile: torch.compile builds its kernels with a C++ compiler, and none is on PATH "
                             f"({', '.join(COMPILERS)}); install one (apt-get install g++), or drop --compile")
        from mnistlab import engine
        device = engine.resolve_device(args.device)
        if args.evaluate:
            return evaluate(args, [r["model"] for r in recipes], device)
        return train(args, recipes, device)
    return run("main.py", body, interrupted="interrupted; nothing saved", stopped=lambda e: interrupted(e, args))


if __name__ == "__main__":
    exit_now(main(get_args_parser().parse_args()))
