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
PYTEST_ARGS ?=

.PHONY: run test lint bench drills chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(MANAGE) migrate --noinput
	$(MANAGE) seed_demo
	@echo "Serving on http://$(HOST):$(PORT)/ with a Celery worker and beat. Ctrl-C stops all."
	@$(BIN)/celery -A portal worker --beat -Q sync,notify,bulk,celery --loglevel=INFO --concurrency=2 & worker=$$!; \
	trap 'kill -TERM $$worker 2>/dev/null; wait $$worker' EXIT INT TERM; \
	$(MANAGE) runserver $(HOST):$(PORT)

# Pages are tested in Debian's Chromium; no tool downloads a browser of its own.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Debian's chromium package for the browser tests." >&2; exit 1; fi; }

test: $(VENV)/.dev chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Benchmarks on PostgreSQL (see docs/benchmarks.md); not part of `make test`.
bench: $(VENV)/.dev
	$(BIN)/python -m bench $(BENCH_ARGS)

# Fault drills only (they also run in `make test` when PostgreSQL and Redis are configured).
drills: $(VENV)/.dev
	$(BIN)/python -m pytest -m drill $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) var
