# `make submit`: from nothing to a validated submission (set-up included). `make test`: the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= demo-data
RECIPE ?= recipes/demo.yaml
RUNS ?= runs
RUN ?= $(basename $(notdir $(RECIPE)))
TF_EXTRA ?= cpu

.PHONY: setup submit demo test bench clean

$(BIN)/competition: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(TF_EXTRA),dev]"
	touch $@

setup: $(BIN)/competition

demo-data/sample_submission.csv: | $(BIN)/competition
	$(BIN)/competition demo demo-data --overwrite

# The demo contest is built only when DATA is the demo folder; any other DATA is used as it is.
submit: $(BIN)/competition $(if $(filter demo-data,$(DATA)),demo-data/sample_submission.csv)
	$(BIN)/competition train $(RECIPE) --data $(DATA) --runs $(RUNS) --name $(RUN)
	$(BIN)/competition leaderboard --runs $(RUNS)
	$(BIN)/competition submit $(RUN) --runs $(RUNS) --out submissions/$(RUN).csv

test: $(BIN)/competition
	$(BIN)/python -m pytest -q

bench: $(BIN)/competition
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(RUNS) demo-data submissions/*.csv
