PYTHON ?= python

.PHONY: test tune tune-fast report readme bench bench-time

test:    ## the tests, CPU only, a few minutes
	$(PYTHON) -m pytest

tune:    ## choose each model's recipe on the validation split (~55 min on 2 CPU cores); reruns only what is missing
	$(PYTHON) -m scripts.tune

tune-fast: ## choose the fast recipe on the validation split; reruns only what is missing
	$(PYTHON) -m scripts.tune --fast

report:  ## rerun every experiment and the benchmarks, then rebuild results/, plots/ and the README (~35 min on 2 CPU cores)
	$(PYTHON) -m scripts.report --rerun

readme:  ## rebuild the README's generated sections and the report figures from the committed results/
	$(PYTHON) -m scripts.report

bench:   ## time our data pipeline against the plain torchvision one
	$(PYTHON) -m benchmarks.bench_pipeline

bench-time: ## time to 99% and whole processes: the fast and default recipes against the torchvision script
	$(PYTHON) -m benchmarks.bench_time_to_accuracy
