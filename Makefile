# The two commands of the README: `make run` and `make test`. CI runs `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NOVNC := node_modules/.package-lock.json

.PHONY: run test check-minimums setup aws4-suite system-packages test-packages lint format typecheck unit acceptance test-slurm-sessions bench clean

run: setup
	$(BIN)/opennimble serve --demo

# The suite runs on SQLite, then again (all but the unit tests, which touch no database) on
# PostgreSQL when TEST_DATABASE_URL reaches a server: each test database is created there
# under a unique name and dropped at the end (tests/support/databases.py).
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
TEST_LOGS := .test-logs
# The two runs are independent (own servers, ports, data directories, accounts, control groups
# and Slurm clusters), and mostly wait on desktops and sockets: they run side by side, each
# into its own log, printed whole when both have ended. The tests marked host_wide take
# something of the whole host for a while (every X display name, squatted; the squatters
# evicted): they run alone afterwards, on SQLite, so that neither run disturbs them.
test: setup test-packages lint check-minimums
	@mkdir -p $(TEST_LOGS); rm -f $(TEST_LOGS)/*.log
	@if $(BIN)/python -c "import psycopg, sys; psycopg.connect(sys.argv[1], connect_timeout=3).close()" \
	    '$(TEST_DATABASE_URL)' 2>/dev/null; then \
	  echo "== the suite on SQLite and, at the same time, on PostgreSQL ($(TEST_DATABASE_URL))"; \
	  OPENNIMBLE_TEST_DATABASE_URL='$(TEST_DATABASE_URL)' $(BIN)/pytest --ignore=tests/unit \
	    -m 'not host_wide' > $(TEST_LOGS)/postgresql.log 2>&1 & pg=$$!; \
	else \
	  echo "== no PostgreSQL at $(TEST_DATABASE_URL): its run of the suite is skipped"; pg=""; \
	fi; \
	$(BIN)/pytest -m 'not host_wide' > $(TEST_LOGS)/sqlite.log 2>&1; sqlite=$$?; \
	status=0; [ -z "$$pg" ] || { wait $$pg || status=$$?; }; \
	echo "== the suite on SQLite"; cat $(TEST_LOGS)/sqlite.log; \
	if [ -n "$$pg" ]; then echo "== the suite on PostgreSQL"; cat $(TEST_LOGS)/postgresql.log; fi; \
	echo "== the tests that take something of the whole host (host_wide), alone, on SQLite"; \
	$(BIN)/pytest -m host_wide; host=$$?; \
	[ $$sqlite -eq 0 ] && [ $$status -eq 0 ] && [ $$host -eq 0 ]

setup: system-packages $(STAMP) $(NOVNC) aws4-suite

# AWS's SigV4 test suite (from the installed botocore's sdist) for the unit tests, fetched once
# into .cache/ so that test runs need no network; without network, setup goes on and the tests
# that need it say what is missing.
aws4-suite: $(STAMP)
	@$(BIN)/python -m tests.support.aws4_suite || echo "(the SigV4 suite tests will fail until it is fetched)"

# The stream page's in-browser VNC client: noVNC from the npm registry, pinned by
# package.json and package-lock.json, served from node_modules by the stream gateway.
$(NOVNC): package.json package-lock.json
	@command -v npm >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NOVNC)

# What the tests need besides the server: Chromium (browser tests, driven by Playwright),
# vncpasswd (a password-protected Xvnc), xdotool (finds windows on a test desktop), Slurm and
# munge (the Slurm provider's tests start a single-node cluster of their own).
TEST_COMMANDS := chromium:chromium vncpasswd:tigervnc-tools xdotool:xdotool \
  slurmctld:slurm-wlm munged:munge nginx:nginx-light
test-packages:
	@missing=""; for pair in $(TEST_COMMANDS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      $$missing >/dev/null; \
	  else \
	    echo "missing for the tests: install Debian's$$missing (as root)"; exit 1; \
	  fi; \
	fi

# The local provider's desktops: TigerVNC's Xvnc, vncpasswd and vncconfig, and the built-in
# desktop (Openbox, xterm, xsetroot; xwininfo to look at a display; the X core fonts); nft
# for the desktops' network filter.
# pg_dump and pg_restore for `opennimble backup` and `restore` of PostgreSQL installations.
# Installed from Debian's packages when run as root.
DESKTOP_COMMANDS := Xvnc:tigervnc-standalone-server vncpasswd:tigervnc-tools \
  vncconfig:tigervnc-tools openbox:openbox xterm:xterm xsetroot:x11-xserver-utils \
  xwininfo:x11-utils nft:nftables pg_dump:postgresql-client pg_restore:postgresql-client
system-packages:
	@missing=""; for pair in $(DESKTOP_COMMANDS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends $$missing xfonts-base >/dev/null; \
	  else \
	    echo "missing for the desktops: install Debian's$$missing (as root)"; exit 1; \
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

# The dependency minimums of pyproject.toml: the unit tests in a virtual environment with every
# direct dependency at its lowest allowed version (uv's lowest-direct resolution, from PyPI;
# skipped, saying so, when PyPI cannot be reached). About a minute.
check-minimums: setup
	$(BIN)/python -m tests.support.minimums

acceptance: setup
	$(BIN)/pytest tests/acceptance

# The session acceptance tests, streams in Chromium included, with provider = "slurm" (as root).
test-slurm-sessions: setup test-packages
	OPENNIMBLE_TEST_PROVIDER=slurm $(BIN)/pytest tests/acceptance/test_sessions.py \
	  tests/acceptance/test_stream.py tests/acceptance/test_stop_start.py tests/browser/test_stream.py

# Benchmarks need wrk (Debian's wrk package, installed here when run as root).
bench: setup test-packages
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
	$(BIN)/python -m bench.api_latency
	$(BIN)/python -m bench.stream_first_frame
	$(BIN)/python -m bench.session_ready
	$(BIN)/python -m bench.backup

clean:
	rm -rf $(VENV) node_modules .cache .pytest_cache .mypy_cache .ruff_cache
