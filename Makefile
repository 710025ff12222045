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

# The headline: start the stack, run every broker x the three flows x a baseline and a fault
# scenario, write the HTML report, print where it is and the comparison, stop the stack (also on
# failure or Ctrl-C). Under 10 minutes on 2 cores once the downloads are cached.
DEMO_RUNS ?= runs/demo

demo: setup
	@trap '$(BB) down' EXIT; started=$$(date +%s); \
	$(BB) up && \
	$(BB) run workloads/suites/demo.yaml --output $(DEMO_RUNS) && \
	latest=$$(ls -td $(DEMO_RUNS)/demo-* | head -1) && \
	$(BB) report "$$latest" --html "$$latest/report.html" --md "$$latest/report.md" && \
	echo "demo: report at $$(cd "$$latest" && pwd)/report.html ($$(( $$(date +%s) - started )) s)"

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
