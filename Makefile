# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# WAREHOUSE=postgres: the demo, the UI and the bench on a local PostgreSQL server kept in
# PG_DIR (started by `make pg-start` or the demo, stopped by `make pg-stop`), listening on
# 127.0.0.1:PG_PORT. Its demo keeps everything of its own under PG_DIR (sync scratch files,
# mock destinations on port 8766, the Dagster log); see README "The demo on PostgreSQL".
WAREHOUSE ?= duckdb
PG_DIR    ?= $(CURDIR)/.data/postgres
PG_PORT   ?= 55432
PG_ENV    := ACTIVATION_CONFIG=$(PG_DIR)/activation.yaml ACTIVATION_CATALOG=$(CURDIR)/catalog.json \
	ACTIVATION_DEMO_PG_PASSWORD="$$(cat $(PG_DIR)/password)"
ifeq ($(WAREHOUSE),postgres)
export ACTIVATION_STATE_DIR ?= $(PG_DIR)/state
MOCK_PORT      ?= 8766
MOCK_STATE_DIR ?= $(PG_DIR)/mock
DEMO_ARGS      := --warehouse postgres --postgres-dir $(PG_DIR) --postgres-port $(PG_PORT)
WITH_PG        := $(PG_ENV)
else ifneq ($(WAREHOUSE),duckdb)
$(error WAREHOUSE must be duckdb or postgres, not $(WAREHOUSE))
endif

export ACTIVATION_PROJECT_DIR ?= $(CURDIR)
export DAGSTER_HOME         ?= $(CURDIR)/.dagster_home
export ACTIVATION_WAREHOUSE ?= $(CURDIR)/.data/warehouse.duckdb
export ACTIVATION_STATE_DIR ?= $(CURDIR)/.data/state
MOCK_PORT      ?= 8765
MOCK_STATE_DIR ?= $(CURDIR)/.data/mock
export META_BASE_URL        ?= http://127.0.0.1:$(MOCK_PORT)/meta
export META_ACCESS_TOKEN    ?= mock-meta-token
export MAILCHIMP_BASE_URL   ?= http://127.0.0.1:$(MOCK_PORT)/mailchimp/3.0
export MAILCHIMP_API_KEY    ?= mock-mailchimp-token
export GOOGLE_BASE_URL      ?= http://127.0.0.1:$(MOCK_PORT)/google
export GOOGLE_ACCESS_TOKEN  ?= mock-google-token

.PHONY: venv demo test lint format ui mock mock-stop clean-demo bench browser-deps server-deps \
	pg-start pg-stop

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,demo,deploy]'
	@touch $(STAMP)

venv: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: orchestrator/dagster_home/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp orchestrator/dagster_home/dagster.yaml $@

## Build the demo warehouse (if missing), start the mock destinations, materialize every
## segment through Dagster and print a summary. WAREHOUSE=postgres: the same on a local
## PostgreSQL server (started if needed; `make pg-stop` stops it).
demo: venv $(DAGSTER_HOME)/dagster.yaml $(if $(DEMO_ARGS),pg-start)
	$(BIN)/python -m orchestrator.demo --mock-port $(MOCK_PORT) --mock-state-dir $(MOCK_STATE_DIR) $(DEMO_ARGS)

## The local PostgreSQL server of WAREHOUSE=postgres (Debian's postgresql, installed when
## missing and we are root): initdb + pg_ctl into $(PG_DIR)/server, a generated password in
## $(PG_DIR)/password (0600), 127.0.0.1:$(PG_PORT) only. Its data survives pg-stop.
pg-start: venv server-deps
	$(BIN)/python -m orchestrator.warehouse.local_postgres start --folder $(PG_DIR) --port $(PG_PORT)
pg-stop: venv
	$(BIN)/python -m orchestrator.warehouse.local_postgres stop --folder $(PG_DIR) --port $(PG_PORT)

## The whole test suite (lint included), on both cores.
test: venv browser-deps server-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

## Chromium for the browser test of the Dagster UI (tests/ui): Debian's package, installed
## only when missing and we are root (never a browser download by playwright).
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

## PostgreSQL and Redis for tests/deploy (a real Dagster instance on Postgres with Celery
## workers): Debian's packages, installed only when missing and we are root.
server-deps:
	@if [ "$$(id -u)" = 0 ] && { ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server postgresql; \
	fi

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

## The Dagster UI on http://127.0.0.1:$(PORT) (default 3000) with the same environment as
## `make demo` (instance in .dagster_home, warehouse, mock destinations on MOCK_PORT). A watcher
## beside it reloads the code location when a file in segments/ or activation.yaml changes.
PORT ?= 3000
ui: venv $(DAGSTER_HOME)/dagster.yaml $(if $(DEMO_ARGS),pg-start)
	@$(BIN)/python -m orchestrator.reload --port $(PORT) & watcher=$$!; \
	trap 'kill $$watcher 2>/dev/null' EXIT INT TERM; \
	$(WITH_PG) $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p $(PORT)

## Benchmark at BENCH_CUSTOMERS customers (try 1000000): full, incremental and no-change syncs
## against the mock destinations; results in bench/results/ (see bench/README.md).
## WAREHOUSE=postgres: the same on a PostgreSQL server the bench starts in its work folder.
BENCH_CUSTOMERS ?= 100000
bench: venv $(if $(DEMO_ARGS),server-deps)
	$(BIN)/python -m bench run --customers $(BENCH_CUSTOMERS) $(if $(DEMO_ARGS),--warehouse postgres)

## Start / stop the mock destinations in the background.
mock: venv
	$(BIN)/python -m orchestrator.demo --mock-port $(MOCK_PORT) --mock-state-dir $(MOCK_STATE_DIR) --only-mock
mock-stop:
	$(BIN)/python -m orchestrator.demo --mock-port $(MOCK_PORT) --mock-state-dir $(MOCK_STATE_DIR) --stop-mock

## Forget the demo: warehouse, sync state, mock audiences and the Dagster instance (the
## PostgreSQL server of WAREHOUSE=postgres is stopped first, its data removed with .data).
clean-demo: mock-stop
	@if [ -d $(PG_DIR)/server ]; then $(MAKE) --no-print-directory pg-stop; fi
	@if [ -f $(PG_DIR)/mock/server.pid ]; then \
		$(BIN)/python -m orchestrator.demo --mock-state-dir $(PG_DIR)/mock --stop-mock; fi
	rm -rf .data .dagster_home
