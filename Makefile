# brokerbench: `make demo` and `make test` are the two commands a new user needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
BB := $(BIN)/brokerbench
TARGETS := kafka elasticmq moto pubsub

.PHONY: demo test lint bench setup install clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: brokerbench needs Python 3.11 or newer: set PYTHON=python3.11 (or newer)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	@touch $@

install: $(BIN)/.installed

setup: install
	$(BB) setup

# Until the flows, chaos scenarios and the HTML report land (see docs/architecture.md), the
# demo starts the stack, round-trips a message through every broker directly and through
# toxiproxy, runs the quick comparison suite (its table is printed, results under runs/), and
# stops the stack.
demo: setup
	@trap '$(BB) down' EXIT; \
	$(BB) up && \
	for target in $(TARGETS); do \
		$(BB) check $$target && $(BB) check $$target --via-proxy || exit 1; \
	done && \
	$(BB) run workloads/suites/quick.yaml --output runs

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest

# Benchmarks (figures, not pass/fail): pytest-benchmark, see tests/benchmarks/*.py docstrings.
bench: setup
	BROKERBENCH_BENCHMARKS=1 $(BIN)/python -m pytest tests/benchmarks --benchmark-only \
		--benchmark-columns=min,mean,max,rounds -s

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache
