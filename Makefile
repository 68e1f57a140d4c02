# Two commands do everything on a fresh machine:
#   make run   - create .venv if missing, then run the workflow on the embedded default config
#   make test  - create .venv if missing, then run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: run test report lint bench clean-results

$(BIN)/activate: requirements.txt requirements-test.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-test.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(BIN)/activate

run: $(BIN)/activate
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report report.html

test: $(BIN)/activate
	$(BIN)/python -m pytest -q

report: $(BIN)/activate
	$(BIN)/snakemake --report report.html

lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakemake --lint

bench: $(BIN)/activate
	$(BIN)/python benchmarks/engine.py

clean-results:
	rm -rf results .snakemake/metadata
