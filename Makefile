# Two commands on a fresh machine with Python 3 and make:
#   make train    # builds .venv from requirements.txt when it is missing or stale, then trains LeNet-5 for 10 epochs
#   make test     # the same environment, then the tests
# Every target runs in the same .venv. Flags reach the program through ARGS, e.g. make train ARGS="--model all".
VENV := .venv
PYTHON := $(VENV)/bin/python
# Written last, a copy of the requirements the environment was built from: without it .venv is not ready.
READY := $(VENV)/requirements.txt
ARGS ?=
# Runs at once for the report's and the tuning's sweeps (sweep.py --jobs); 1 runs them one after another.
JOBS ?= 1

.PHONY: train test tune tune-fast report readme bench bench-time bench-sweep venv

venv: $(READY)  ## build .venv from requirements.txt, unless it is built from these requirements already

$(READY): requirements.txt
	@if cmp -s requirements.txt $(READY) 2>/dev/null; then touch $(READY); exit 0; fi; \
	echo "make: building $(VENV) from requirements.txt (a few minutes the first time)"; \
	rm -rf $(VENV) && python3 -m venv $(VENV) && $(PYTHON) -m pip install --quiet -r requirements.txt \
	  && cp requirements.txt $(READY) \
	  || { rm -rf $(VENV); echo "make: could not build $(VENV) from requirements.txt (pip's output above says why); fix that and run make again" >&2; exit 1; }

train: $(READY)  ## python main.py --model lenet5 --epochs 10, or the flags in ARGS
	$(PYTHON) main.py $(if $(ARGS),$(ARGS),--model lenet5 --epochs 10)

test: $(READY)  ## the tests, CPU only, a few minutes
	$(PYTHON) -m pytest $(ARGS)

tune: $(READY)  ## choose each model's recipe on the validation split (~55 min on 2 CPU cores); reruns only what is missing
	$(PYTHON) -m scripts.tune --jobs $(JOBS) $(ARGS)

tune-fast: $(READY)  ## choose the fast recipe on the validation split; reruns only what is missing
	$(PYTHON) -m scripts.tune --fast --jobs $(JOBS) $(ARGS)

report: $(READY)  ## rerun every experiment and the benchmarks, then rebuild results/, plots/ and the README (~35 min on 2 CPU cores)
	$(PYTHON) -m scripts.report --rerun --jobs $(JOBS) $(ARGS)

readme: $(READY)  ## rebuild the README's generated sections and the report figures from the committed results/
	$(PYTHON) -m scripts.report

bench: $(READY)  ## time our data pipeline against the plain torchvision one
	$(PYTHON) -m benchmarks.bench_pipeline $(ARGS)

bench-time: $(READY)  ## time to 99% and whole processes: the fast and default recipes against the torchvision script
	$(PYTHON) -m benchmarks.bench_time_to_accuracy $(ARGS)

bench-sweep: $(READY)  ## runs per minute: one run at a time through main.py against sweep.py's runs at once
	$(PYTHON) -m benchmarks.bench_sweep $(ARGS)
