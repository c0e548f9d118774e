# `make submit`: from nothing to a validated submission (set-up included). `make test`: the test suite
# (`make test-fast`: without its slow end-to-end layer).
#   make submit                                   the embedded demo: two recipes, Caruana ensemble, subject-averaged
#                                                 ensemble, tuned decisions;
#                                                 submits the best honest candidate to submissions/<contest>.csv
#   make submit DATA=<contest>                    another contest: a fine-tuned ImageNet MobileNetV2, logistic
#                                                 regression on its features, knn and label spreading (the
#                                                 weights from ../shared/weights); submit picks by honest CV
#   make submit DATA=<contest> RECIPES="a.yaml b.yaml"   your recipes (RECIPE=<one.yaml> for a single run)
#                                                 METHOD=mean: a mean ensemble instead of Caruana's
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= demo-data
RUNS ?= runs
TF_EXTRA ?= cpu
# The demo's recipes on the demo; on any other contest, one of each family: a pretrained network fine-tuned, a
# linear model on its frozen features, and the two pixel floors (knn, and label spreading, transductive), so that
# the validation like the test (cv.scheme auto) chooses the method, not the default.
DEMO_RECIPES := recipes/demo.yaml recipes/demo-wide.yaml recipes/baseline-knn.yaml recipes/baseline-spreading.yaml
CONTEST_RECIPES := recipes/finetune-mobilenetv2.yaml recipes/baseline-features.yaml recipes/baseline-knn.yaml \
	recipes/baseline-spreading.yaml
RECIPES ?= $(if $(filter demo-data,$(DATA)),$(DEMO_RECIPES),$(CONTEST_RECIPES))
ifdef RECIPE
RECIPES := $(RECIPE)
endif
ENSEMBLE ?= ensemble
METHOD ?= caruana
NAMES := $(basename $(notdir $(RECIPES)))
# The candidates `submit` chooses from by honest (nested-CV) OOF macro F1, those whose estimate the folds cannot
# vouch for on this test (marked ⚠) last: the runs, their ensemble if any, and each of these averaged per subject
# (`competition aggregate`: near-duplicate groups, within folds for the OOF).
BASES := $(NAMES) $(if $(word 2,$(NAMES)),$(ENSEMBLE))
CANDIDATES := $(strip $(BASES) $(addsuffix -subjects,$(BASES)))
SUBMISSION ?= submissions/$(notdir $(abspath $(DATA))).csv
MESSAGE ?= make submit: $(CANDIDATES)
COMPETITION := $(BIN)/competition

.PHONY: setup submit test test-fast bench clean

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
	$(if $(word 2,$(NAMES)),$(COMPETITION) ensemble $(NAMES) --method $(METHOD) --name $(ENSEMBLE) --runs $(RUNS))
	$(foreach b,$(BASES),$(COMPETITION) aggregate $(b) --name $(b)-subjects --runs $(RUNS) &&) true
	$(COMPETITION) submit $(CANDIDATES) --runs $(RUNS) --tune --out $(SUBMISSION) --message "$(MESSAGE)"
	$(COMPETITION) validate $(SUBMISSION) --run $(firstword $(NAMES)) --runs $(RUNS)
	$(COMPETITION) leaderboard --runs $(RUNS)

# Two pytest-xdist workers (TEST_WORKERS=1: one process), a test module per worker (its fixtures train once).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -p no:warnings -rs --durations=15 -n $(TEST_WORKERS) --dist loadscope

test: $(COMPETITION)
	$(PYTEST)

# The suite without its slow end-to-end layer (tests marked `slow`: process kills, Ray, the real contest), for
# quick iteration; `make test` (what CI runs) runs everything.
test-fast: $(COMPETITION)
	$(PYTEST) -m "not slow"

bench: $(COMPETITION)
	$(BIN)/python benchmarks/run.py --out benchmarks

clean:
	rm -rf $(RUNS) demo-data submissions/*.csv
