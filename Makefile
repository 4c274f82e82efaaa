# Two commands set everything up on a fresh machine with Python 3.11+:
#   make run   - environment, migrations, demo data; serves the portal with worker and beat
#   make test  - the whole suite (PostgreSQL/Redis when DATABASE_URL/CELERY_BROKER_URL are set)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py
HOST ?= 127.0.0.1
PORT ?= 8000
# The portal's public URL, the one source of every link it prints or sends (invitation
# emails, SCIM base URL and OIDC issuer under Settings, OIDC discovery, x5u, seed_demo):
# the address `make run` serves on, unless set in the environment.
PORTAL_BASE_URL ?= http://$(HOST):$(PORT)
PYTEST_ARGS ?=

.PHONY: run test lint bench wrk drills screenshots chromium peers clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: export PORTAL_BASE_URL := $(PORTAL_BASE_URL)
# Development mode: the settings default to production, which refuses development secrets.
run: export DJANGO_DEBUG := true
# Log lines for a person at a terminal (production writes JSON lines).
run: export LOG_FORMAT ?= plain
# The web process and the worker write their metrics there; /metrics shows both.
run: export PROMETHEUS_MULTIPROC_DIR ?= $(or $(PORTAL_VAR_DIR),var)/prometheus
run: $(VENV)/.runtime
	@mkdir -p "$$PROMETHEUS_MULTIPROC_DIR" && rm -f "$$PROMETHEUS_MULTIPROC_DIR"/*.db
	$(MANAGE) migrate --noinput
	$(MANAGE) seed_demo
	@echo "Serving on http://$(HOST):$(PORT)/ with a Celery worker and beat. Ctrl-C stops all."
	@# The worker runs in its own process group, so that Ctrl-C reaches it once, as a TERM
	@# to its main process (a signal to each pool process too can hang its shutdown);
	@# whatever is left of the group after ten seconds is killed.
	@setsid $(BIN)/celery -A portal worker --beat -Q sync,notify,bulk,celery --loglevel=INFO --concurrency=2 & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; \
	      for _ in $$(seq 20); do kill -0 $$worker 2>/dev/null || break; sleep 0.5; done; \
	      kill -KILL -- -$$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(MANAGE) runserver $(HOST):$(PORT)

# Pages are tested in Debian's Chromium; no tool downloads a browser of its own.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Debian's chromium package for the browser tests." >&2; exit 1; fi; }

# Real peers the tests run against (../shared/peers/README.md): Debian's packages, and
# PyHSS 2.0 in a virtual environment of its own (its pins differ from ours), built from
# ../shared/peers when that folder is there (CI has it; a user's clone skips those tests).
# zbar-tools reads the 2FA enrolment QR code back from a browser screenshot.
PEER_DEBS := secsipidx redis-server zbar-tools kamailio sip-tester
PEERS_DIR := $(abspath ..)/shared/peers
PYHSS_VENV := var/peers/pyhss-venv

peers:
	@missing=$$(for p in $(PEER_DEBS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq $$missing >/dev/null; \
	  else echo "Install Debian's packages for the peer tests: $$missing" >&2; exit 1; fi; fi
	@if [ -d $(PEERS_DIR)/pyhss-2.0.0 ] && [ ! -f $(PYHSS_VENV)/.installed ]; then \
	  echo "Building PyHSS 2.0's own environment under $(PYHSS_VENV)"; \
	  $(PYTHON) -m venv $(PYHSS_VENV) && \
	  $(PYHSS_VENV)/bin/pip install --quiet -r $(PEERS_DIR)/pyhss-2.0.0/requirements.txt && \
	  touch $(PYHSS_VENV)/.installed; fi

test: $(VENV)/.dev chromium peers
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks (see docs/benchmarks.md), not part of `make test`: their own database
# portal_bench and Redis DB 3 on the local servers (BENCH_DATABASE_URL, BENCH_BROKER_URL
# to change them), a gunicorn and Celery workers they start and stop. About 15 minutes;
# a quick try: make bench BENCH_ARGS="--scale small --only pages --no-doc".
BENCH_ARGS ?=

$(VENV)/.bench: bench/requirements.txt $(VENV)/.dev
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $@

# The load tool is Debian's wrk.
wrk:
	@command -v wrk >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk >/dev/null; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null; \
	  else echo "Install Debian's wrk package for the benchmarks." >&2; exit 1; fi; }

bench: $(VENV)/.bench wrk
	$(BIN)/python -m bench $(BENCH_ARGS)

# Fault drills only (they also run in `make test` when PostgreSQL and Redis are configured).
drills: $(VENV)/.dev
	$(BIN)/python -m pytest -m drill $(PYTEST_ARGS)

# The README's screenshots (docs/screenshots/), from the demo data of a throwaway portal
# under var/screenshots/; the database of `make run` is not touched.
screenshots: $(VENV)/.dev chromium
	$(BIN)/python scripts/screenshots.py

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var
