# The two commands a newcomer runs: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# A second PostgreSQL the suite also runs against when one answers (CI has PostgreSQL 15 here).
PG15_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

.PHONY: install install-dev run test lint typecheck check-both-servers bench soak clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $@

install-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.lock scripts/ensure-system-packages.sh
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.lock
	@scripts/ensure-system-packages.sh chromium pgbouncer
	@touch $@

run: install
	$(BIN)/astra serve

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: install-dev
	$(BIN)/mypy

# Each run's temporary files (and the embedded PostgreSQL data dirs in them) under the
# checkout: /tmp/pytest-of-<user> is shared with any other pytest run on the machine,
# which may prune it or tighten its permissions mid-run.
test: lint typecheck
	@mkdir -p .pytest-tmp
	$(BIN)/pytest --basetemp=.pytest-tmp/embedded
	@$(MAKE) --no-print-directory check-both-servers

# The suite must hold on the embedded server (above) and on a plain PostgreSQL. The outage
# and load tests start and stop their own embedded server, so they run once, above; the
# store clients' tests and the API fuzzing touch no SQL of their own, so once is enough.
check-both-servers:
	@if [ -z "$$DATABASE_URL" ] && pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
	  echo "Again on PostgreSQL at 127.0.0.1:5432 (all but the browser, outage, store-client and fuzz tests):"; \
	  DATABASE_URL=$(PG15_URL) $(BIN)/pytest -m "not ui and not reliability" -q --basetemp=.pytest-tmp/pg15 \
	    --ignore=tests/stores --ignore=tests/test_openapi_fuzz.py; \
	else echo "No second PostgreSQL at 127.0.0.1:5432; the embedded run above is the one that counts."; fi

# Benchmarks (BENCHMARKS.md): seeds 100,000 stores and 1,000,000 orders, drives the app and
# a raw-stack reference with wrk side by side. Uses DATABASE_URL when set, else embedded.
bench: install-dev
	@scripts/ensure-system-packages.sh wrk
	$(BIN)/python -m benchmarks.run

# Five minutes of mixed load on a two-worker server (SOAK_ARGS="--seconds 60" for less).
soak: install-dev
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .astra .pytest_cache .pytest-tmp .mypy_cache .ruff_cache
