"""Rebuild the report, the generated sections of README.md and docs/ and the figures, from results/*.json.

    python -m scripts.report           # from the committed results, in seconds
    python -m scripts.report --rerun   # first rerun every experiment and the benchmark (about 35 min on 2 CPU cores)
    python -m scripts.report --rerun "batch norm only"   # first rerun just the named experiments

Generated sections sit in the documents (DOCUMENTS) between <!-- report:NAME --> and <!-- /report:NAME -->. The
runs go through runner.py, as sweep.py's do (--jobs, --address, --cpus-per-run, --gpus-per-run run many at once),
into a staging folder, checkpoints/report/; nothing committed changes until every run asked for is finished, and
then each run's checkpoint, curves and results are moved into checkpoints/, plots/ and results/, the results last,
all or none: a move that fails puts back every one made. An interrupted --rerun leaves the committed files as they
were, and the same command continues it. The runs' measurements (the clean pass, the robustness sweep) are
measurements.py's, a library module, since they run where the run trains.

    experiments.py  what is run: the experiments, SEEDS, and the groups of them that tables and figures show
    staging.py      --rerun: the runs trained into STAGING, then moved into place all or none
    committed.py    the committed files read and checked: runs, tuning sweeps, benchmark JSON; ROOT, RESULTS, ...
    formatting.py   how figures are written: mean ± std, intervals, p-values, verdicts
    readme.py       README.md's generated sections
    appendices.py   the generated sections of docs/
    pages.py        DOCUMENTS, SECTIONS, and rendering each document's sections in place
    plots.py        the figures in plots/
    command.py      get_args_parser and main; __main__.py runs them, Ctrl-C one line while torch imports

A name that tests replace (a folder, SEEDS, experiment_recipe, check_all, rerun, ...) has one owner module, and
every other module reads it through that module at call time (committed.RESULTS), never imports it by name.
This file imports nothing, so that __main__.py's Ctrl-C guard is in place before torch starts to import.
"""
