# The two commands: `make run` and `make test`. Both set up .venv on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export PYTHONDONTWRITEBYTECODE ?= 1

.PHONY: setup run test bench bench-setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# A fresh run directory each time; continue one with: selfplay train run.dir=DIR run.resume=true
RUN_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
run: setup
	$(BIN)/selfplay train env=tictactoe run.dir=$(RUN_DIR)

test: setup
	$(BIN)/python -m pytest

bench-setup: setup
	$(BIN)/python -m pip install -q -e '.[dev,bench]'

bench: bench-setup
	@for b in benchmarks/[a-z]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache
