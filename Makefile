# iklab: every target bootstraps .venv first, so on a fresh machine `make test` alone installs and tests.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# MLflow's stores live in the repo folder (SQLite + ./mlruns); see docs/mlflow.md.
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
# `mlflow run --env-manager local` runs `python` from PATH: make it the venv's.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# TensorFlow's C++ logging, read when its libraries load. 3 (fatal only): without a GPU, TF logs
# "failed call to cuInit" as an ERROR at its first operation; failures that stop a run reach
# Python as exceptions. The INFO lines the libraries print while loading (oneDNN, "Could not find cuda
# drivers", absl's "before absl::InitializeLog()") ignore every level: absl writes them first.
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: help venv lint format test test-fast bench generate search search-long mixture-long ablations cases ui serve serve-fast clean postgresql services workers services-down

help: ## this list
	@awk -F ':.*## ' '/^[a-z-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(STAMP) ## install everything into .venv (TensorFlow, MLflow, Optuna, tests)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,test,postgres]'
	touch $(STAMP)

# ruff: lint rules and formatting (pyproject.toml [tool.ruff]); `make format` rewrites in place.
lint: venv ## ruff: lint rules and formatting check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv ## ruff: fix and format in place
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: venv postgresql ## the whole test suite, 2 processes (what CI runs after lint)
	$(BIN)/python -m pytest -n 2 --dist loadfile

test-fast: venv ## the tests not marked slow
	$(BIN)/python -m pytest -m "not slow"

bench: venv ## speed and memory benchmarks (ratios against a reference)
	$(BIN)/python bench/bench_fk.py
	$(BIN)/python bench/bench_rotations.py
	$(BIN)/python bench/bench_generate.py
	$(BIN)/python bench/bench_ambiguity.py
	$(BIN)/python bench/bench_train.py
	$(BIN)/python bench/bench_task_loss.py
	$(BIN)/python bench/bench_stream.py
	$(BIN)/python bench/bench_diagnostics.py
	$(BIN)/python bench/bench_refine.py
	$(BIN)/python bench/bench_solver.py

# The main job: Optuna search, nested MLflow runs, registered champion (~12 min here).
search: venv ## the main job: Optuna search, nested MLflow runs, registered champion
	$(BIN)/mlflow run . -e search --env-manager local --experiment-name ik-jaco-search

# What more compute buys: 5M training rows, the best configuration retrained for LONG_MINUTES
# (error against time in its run); rerun the same command to resume an interrupted one.
LONG_MINUTES ?= 120
LONG_STUDY ?= ik-jaco-search-long
search-long: venv ## the best configuration retrained for LONG_MINUTES on 5M rows
	$(BIN)/mlflow run . -e search --env-manager local --experiment-name ik-jaco-search \
	  -P experiment=experiments/search_jaco_long.yaml -P study_name=$(LONG_STUDY) \
	  -P final_overrides="training.time_budget_minutes=$(LONG_MINUTES)"

# Every branch at the anchors' raw accuracy: a full-range mixture (Jaco's by default) on 2M rows
# for MIXTURE_MINUTES, in the MLflow experiment ik-<robot>-train (docs/every-branch.md has what
# 60 minutes on 2 cores gave).
MIXTURE ?= experiments/jaco_full_mixture.yaml
MIXTURE_MINUTES ?= 60
mixture-long: venv ## a full-range mixture (MIXTURE) on 2M rows for MIXTURE_MINUTES
	$(BIN)/python -m iklab.train --experiment $(MIXTURE) --overrides \
	  "training.time_budget_minutes=$(MIXTURE_MINUTES) data.rows=2000000 evaluation.solution_set_poses=200"

# The four diagnosis cases, broken and fixed, in the MLflow experiment diagnosis-cases (about 7 min here, case 1 with two fixes).
cases: venv ## the four diagnosis cases, broken and fixed
	$(BIN)/mlflow run . -e cases --env-manager local --experiment-name diagnosis-cases

# One change at a time against a fixed baseline, 2.5 min of training each, in the MLflow
# experiment ik-jaco-ablations (about 55 min here). ONLY="baseline,batch 256" runs some rows.
ONLY ?=
ablations: venv ## one change at a time against a fixed baseline (ONLY=rows)
	$(BIN)/python -m iklab.ablations --file experiments/ablations_jaco.yaml --only "$(ONLY)"

UI_PORT ?= 5000
# Links straight to each experiment's runs (the "Model training" view), then the MLflow UI.
ui: venv ## links to each experiment's runs, then the MLflow UI (UI_PORT)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m iklab.ui --port $(UI_PORT)

# The registered champion over HTTP: POST pose rows to /invocations (docs/robot-code.md, "Serving over HTTP").
SERVE_PORT ?= 5001
MODEL ?= models:/ik-jaco@champion
serve: venv ## the registered champion over HTTP (MODEL, SERVE_PORT)
	$(BIN)/mlflow models serve -m $(MODEL) --env-manager local -h 127.0.0.1 -p $(SERVE_PORT)

# The same requests and answers without MLflow's pandas layer (docs/robot-code.md, "Serving over HTTP").
serve-fast: venv ## the champion over HTTP with iklab's lean server (MODEL, SERVE_PORT)
	$(BIN)/python -m iklab.serve --model $(MODEL) --port $(SERVE_PORT)

# The default dataset (docs/datasets.md) (about 10 s, 530 MB).
generate: venv ## the default 5M-row Jaco dataset
	$(BIN)/python -m data_gen generate --robot jaco --n 5000000 --out data/jaco-5M

# PostgreSQL (Debian's package) for `make services` and its test: installed if missing, as root.
postgresql: ## install PostgreSQL with apt-get if missing
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] || { echo "PostgreSQL is not installed: run apt-get install postgresql as root"; exit 2; }; \
	    echo "installing PostgreSQL (apt-get install postgresql) ..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }

# Many workers on real services (docs/many-workers.md): PostgreSQL for Optuna and an MLflow
# tracking server on 127.0.0.1, under .services/; stopped by their recorded process ids.
N ?= 3
services: venv postgresql ## PostgreSQL and an MLflow server for many workers
	$(BIN)/python -m iklab.services up

workers: venv ## N search workers on those services
	$(BIN)/python -m iklab.services workers $(N)

services-down: venv ## stop the services by their process ids
	$(BIN)/python -m iklab.services down

clean: ## remove .venv and build files
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
