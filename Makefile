# Two commands on a fresh machine with Python 3 and make:
#   make train    # builds .venv from requirements.txt when it is missing or stale, then trains LeNet-5 for 10 epochs
#   make test     # the same environment, then the tests
# Every target runs in the same .venv. Flags reach the program through ARGS, e.g. make train ARGS="--model all".
VENV := .venv
PYTHON := $(VENV)/bin/python
# Written last, a copy of the requirements the environment was built from: without it .venv is not ready.
READY := $(VENV)/requirements.txt
# Written first, as soon as make has made the environment: a .venv without it is someone else's.
OWNED := $(VENV)/.made-by-make
ARGS ?=
# The flags reach each program as words, split at spaces by the shell (set -f: no wildcards) but never run by it.
export ARGS
# Runs at once for the report's and the tuning's sweeps (sweep.py --jobs); 1 runs them one after another.
JOBS ?= 1

.PHONY: train test defences tune tune-fast report readme bench bench-time bench-sweep venv

# Runs before every target: .venv is used only where it was built by make from these very requirements and its
# Python still runs; otherwise it is rebuilt. A .venv that make did not build is the user's: it is left alone.
# A failed build puts back the environment there was, or leaves none.
venv:
	@if cmp -s requirements.txt $(READY) 2>/dev/null && $(PYTHON) -c "" 2>/dev/null; then exit 0; fi; \
	if [ -e $(VENV) ] && [ ! -e $(OWNED) ] && [ ! -e $(READY) ]; then \
	  echo "make: $(VENV) was not built by make from requirements.txt; move it away (make builds its own there), or use it with the plain pip route in docs/usage.md" >&2; exit 1; fi; \
	echo "make: building $(VENV) from requirements.txt (a few minutes the first time)"; \
	if [ -e $(VENV).old ] && [ ! -e $(READY) ]; then rm -rf $(VENV); \
	else rm -rf $(VENV).old; if [ -e $(VENV) ]; then mv $(VENV) $(VENV).old; fi; fi; \
	restore() { rm -rf $(VENV); if [ -e $(VENV).old ]; then mv $(VENV).old $(VENV); fi; }; \
	stop() { kill $$pip 2>/dev/null; wait; restore; echo "make: interrupted; $(VENV) is as it was before" >&2; exit $$1; }; \
	trap 'stop 130' INT; trap 'stop 143' TERM; trap 'stop 129' HUP; \
	pip=; \
	if python3 -m venv $(VENV) && touch $(OWNED) && { $(PYTHON) -m pip install --quiet -r requirements.txt & pip=$$!; wait $$pip; }; then \
	  cp requirements.txt $(READY) && rm -rf $(VENV).old; \
	else \
	  restore; \
	  echo "make: could not build $(VENV) from requirements.txt (the output above says why); fix that and run make again" >&2; exit 1; fi

train: venv  ## python main.py --model lenet5 --epochs 10, or the flags in ARGS
	set -f; exec $(PYTHON) main.py $${ARGS:---model lenet5 --epochs 10}

test: venv  ## the tests, CPU only, a few minutes
	set -f; exec $(PYTHON) -m pytest $$ARGS

defences: venv  ## delete each defence in turn (in scratch copies) and check that its test fails (JOBS=2: ~40 min)
	set -f; exec $(PYTHON) -m tests.mutants --jobs $(JOBS) $$ARGS

tune: venv  ## choose each model's recipe on the validation split (~55 min on 2 CPU cores); reruns only what is missing
	set -f; exec $(PYTHON) -m scripts.tune --jobs $(JOBS) $$ARGS

tune-fast: venv  ## choose the fast recipe on the validation split; reruns only what is missing
	set -f; exec $(PYTHON) -m scripts.tune --fast --jobs $(JOBS) $$ARGS

report: venv  ## rerun every experiment and the pipeline benchmark, then rebuild results/, plots/, the README and docs/ (~35 min on 2 CPU cores)
	set -f; exec $(PYTHON) -m scripts.report --jobs $(JOBS) --rerun $$ARGS

readme: venv  ## rebuild the generated sections of the README and docs/, and the report figures, from the committed results/
	exec $(PYTHON) -m scripts.report

bench: venv  ## time our data pipeline against the plain torchvision one
	set -f; exec $(PYTHON) -m benchmarks.bench_pipeline $$ARGS

bench-time: venv  ## time to 99% and whole processes: the fast and default recipes against the torchvision script
	set -f; exec $(PYTHON) -m benchmarks.bench_time_to_accuracy $$ARGS

bench-sweep: venv  ## runs per minute: one run at a time through main.py against sweep.py's runs at once
	set -f; exec $(PYTHON) -m benchmarks.bench_sweep $$ARGS
