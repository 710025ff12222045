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

# Every test, in two passes: first those that share the stack peacefully, on TEST_WORKERS
# pytest-xdist workers (grouped by module, and by class for the driver contracts: most of their
# time is spent waiting on brokers), then the `alone` ones by themselves (they fault the shared
# stack, or their verdicts need a quiet machine). Both passes run; either failing fails. Each
# prints its 15 slowest tests: where CI time goes (keep a full run well under 30 minutes).
TEST_WORKERS ?= 3

test: setup lint
	@status=0; \
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope -m "not alone" --durations=15 || status=$$?; \
	$(BIN)/python -m pytest -m alone --durations=15 || status=$$?; \
	exit $$status

# Benchmarks (figures, not pass/fail): pytest-benchmark, see tests/benchmarks/*.py docstrings.
bench: setup
	BROKERBENCH_BENCHMARKS=1 $(BIN)/python -m pytest tests/benchmarks --benchmark-only \
		--benchmark-columns=min,mean,max,rounds -s

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache
