# ragtune: `make demo` and `make test` work on a fresh machine (Python 3.11+, no GPU, no internet
# beyond the package index). Everything installs into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export HF_HUB_OFFLINE := 1

.DEFAULT_GOAL := help
.PHONY: help install install-test demo test test-all lint typecheck clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first: the CPU wheel on disk. Letting the resolver pick torch pulls GBs of CUDA packages.
$(VENV)/.torch: | $(BIN)/python
	$(PIP) torch==2.13.0
	@touch $@

$(VENV)/.installed: pyproject.toml constraints.txt $(VENV)/.torch
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt $(VENV)/.installed
	$(PIP) -e '.[test]'
	@touch $@

install: $(VENV)/.installed ## create .venv and install ragtune
install-test: $(VENV)/.installed-test ## install ragtune with the test tools

demo: install ## install, then play the demo nights on the embedded defaults
	$(BIN)/ragtune demo

test: install-test ## install, lint, type-check and run the tests (slow ones excluded)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -m "not slow"

test-all: install-test ## every test, the slow ones too
	$(BIN)/pytest

lint: install-test ## ruff
	$(BIN)/ruff check .

typecheck: install-test ## mypy on pipeline/, flows/, infra/ and ragtune/
	$(BIN)/mypy

clean: ## remove .venv, caches and the local .ragtune home (stop its database first)
	-[ -x $(BIN)/ragtune ] && $(BIN)/ragtune db stop
	rm -rf $(VENV) .ragtune .mypy_cache .pytest_cache .ruff_cache
