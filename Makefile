# The two commands of the README: `make run` and `make test`. CI runs `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test setup system-packages lint format typecheck unit acceptance bench clean

run: setup
	$(BIN)/opennimble serve --demo

test: setup lint
	$(BIN)/pytest

setup: system-packages $(STAMP)

# The local provider needs TigerVNC's Xvnc; installed from Debian's packages when run as root.
system-packages:
	@if ! command -v Xvnc >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      tigervnc-standalone-server >/dev/null; \
	  else \
	    echo "Xvnc not found: install Debian's tigervnc-standalone-server (as root)"; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

unit: setup
	$(BIN)/pytest tests/unit

acceptance: setup
	$(BIN)/pytest tests/acceptance

# Benchmarks need wrk (Debian's wrk package, installed here when run as root).
bench: setup
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m bench.api_latency

clean:
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache
