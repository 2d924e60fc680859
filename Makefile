PYTHON ?= python

.PHONY: test report readme bench

test:    ## the tests, CPU only, a few minutes
	$(PYTHON) -m pytest

report:  ## rerun every experiment and the benchmark, then rebuild results/, plots/ and the README (~45 min, 2 CPU cores)
	$(PYTHON) scripts/report.py --rerun

readme:  ## rebuild the README's generated sections and the report figures from the committed results/
	$(PYTHON) scripts/report.py

bench:   ## time our data pipeline against the plain torchvision one
	$(PYTHON) benchmarks/bench_pipeline.py
