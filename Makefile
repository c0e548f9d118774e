# `make submit`: from nothing to a validated submission (set-up included). `make test`: the test suite.
#   make submit                                   the embedded demo: two recipes, Caruana ensemble, tuned decisions
#   make submit DATA=<contest> RECIPES="a.yaml b.yaml"   another contest (RECIPE=<one.yaml> for a single run)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= demo-data
RUNS ?= runs
TF_EXTRA ?= cpu
RECIPES ?= recipes/demo.yaml recipes/demo-wide.yaml
ifdef RECIPE
RECIPES := $(RECIPE)
endif
ENSEMBLE ?= ensemble
NAMES := $(basename $(notdir $(RECIPES)))
FINAL := $(if $(word 2,$(NAMES)),$(ENSEMBLE),$(NAMES))
COMPETITION := $(BIN)/competition

.PHONY: setup submit test bench clean

$(COMPETITION): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(TF_EXTRA),dev]"
	touch $@

setup: $(COMPETITION)

demo-data/sample_submission.csv: | $(COMPETITION)
	$(COMPETITION) demo demo-data --overwrite

# The demo contest is built only when DATA is the demo folder; any other DATA is used as it is.
submit: $(COMPETITION) $(if $(filter demo-data,$(DATA)),demo-data/sample_submission.csv)
	$(foreach r,$(RECIPES),$(COMPETITION) train $(r) --data $(DATA) --runs $(RUNS) --name $(basename $(notdir $(r))) &&) true
	$(if $(word 2,$(NAMES)),$(COMPETITION) ensemble $(NAMES) --method caruana --name $(ENSEMBLE) --runs $(RUNS))
	$(COMPETITION) leaderboard --runs $(RUNS)
	$(COMPETITION) submit $(FINAL) --runs $(RUNS) --tune --out submissions/$(FINAL).csv
	$(COMPETITION) validate submissions/$(FINAL).csv --sample $(DATA)/sample_submission.csv

test: $(COMPETITION)
	$(BIN)/python -m pytest -q -p no:warnings -rs --durations=15

bench: $(COMPETITION)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(RUNS) demo-data submissions/*.csv
