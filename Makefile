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

.PHONY: run lab lab-stop edge edge-debs test lint bench wrk drills screenshots chromium peers clean

# Debian's packages that are missing, installed as root or through sudo (else: which).
define debs
missing=$$(for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
if [ -n "$$missing" ]; then \
  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq $$missing >/dev/null; \
  else echo "Install Debian's packages: $$missing" >&2; exit 1; fi; fi
endef

# The SIP edge (docs/architecture.md, "The SIP edge") is Debian's Kamailio with these modules.
# app_python3 asks the STI service about each INVITE within a budget of milliseconds
# (http_client counts its timeouts in whole seconds).
EDGE_DEBS := kamailio kamailio-utils-modules kamailio-extra-modules kamailio-python3-modules

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
# SIP_EDGE=1 also runs the SIP edge (docs/architecture.md, "The SIP edge") with the demo S-CSCF's credential.
SIP_EDGE ?= 0
EDGE_DIR := var/sipedge
EDGE_ON := $(filter 1,$(SIP_EDGE))

run: $(VENV)/.runtime $(if $(EDGE_ON),edge-debs)
	@mkdir -p "$$PROMETHEUS_MULTIPROC_DIR" && rm -f "$$PROMETHEUS_MULTIPROC_DIR"/*.db
	$(MANAGE) migrate --noinput
	$(MANAGE) seed_demo
	$(if $(EDGE_ON),$(MANAGE) sipedge_config --demo-token --out $(EDGE_DIR))
	@echo "Serving on http://$(HOST):$(PORT)/ with a Celery worker and beat$(if $(EDGE_ON), and the SIP edge). Ctrl-C stops all."
	@# The worker runs in its own process group, so that Ctrl-C reaches it once, as a TERM
	@# to its main process (a signal to each pool process too can hang its shutdown);
	@# whatever is left of the group after ten seconds is killed. The edge likewise.
	@setsid $(BIN)/celery -A portal worker --beat -Q sync,notify,bulk,imports,celery --loglevel=INFO --concurrency=2 & worker=$$!; \
	edge=; $(if $(EDGE_ON),setsid kamailio -f $(EDGE_DIR)/kamailio.cfg -DD -E & edge=$$!;) \
	trap 'for pid in $$worker $$edge; do kill -TERM $$pid 2>/dev/null; done; \
	      for _ in $$(seq 20); do alive=; for pid in $$worker $$edge; do kill -0 $$pid 2>/dev/null && alive=1; done; \
	        [ -n "$$alive" ] || break; sleep 0.5; done; \
	      for pid in $$worker $$edge; do kill -KILL -- -$$pid 2>/dev/null; done; wait' EXIT INT TERM; \
	$(MANAGE) runserver $(HOST):$(PORT)

edge-debs:
	@$(call debs,$(EDGE_DEBS))

# The SIP edge alone, in the foreground, for a portal that runs elsewhere: its settings
# from the environment (SIP_EDGE_*; docs/architecture.md, "The SIP edge"), SIP_EDGE_TOKEN its credential.
edge: $(VENV)/.runtime edge-debs
	$(MANAGE) sipedge_config --out $(EDGE_DIR)
	exec kamailio -f $(EDGE_DIR)/kamailio.cfg -DD -E

# The whole chain on loopback (README, "Try the whole chain"): the real PyHSS 2.0 (from
# ../shared/peers), Kamailio's IMS S-CSCF (lab/scscf.cfg), the SIP edge, and the portal with
# its worker on PyHSS, in a state of its own under var/lab/. Ctrl-C stops all; lab-stop
# stops a leftover by its pid files.
# The lab's ports are its own (portal LAB_PORT, the rest 8101-8106: portal/management/
# commands/lab.py), so that `SIP_EDGE=1 make run` can run beside it.
LAB_PORT ?= 8100
lab: export DJANGO_DEBUG := true
lab: export LOG_FORMAT ?= plain
lab: export PORTAL_VAR_DIR := var/lab/portal
lab: export PROMETHEUS_MULTIPROC_DIR := var/lab/portal/prometheus
lab: export PORTAL_BASE_URL := http://$(HOST):$(LAB_PORT)
lab: $(VENV)/.runtime peers
	@mkdir -p "$$PROMETHEUS_MULTIPROC_DIR"
	$(MANAGE) lab --address $(HOST):$(LAB_PORT)

lab-stop: export DJANGO_DEBUG := true
lab-stop: $(VENV)/.runtime
	$(MANAGE) lab --stop

# Pages are tested in Debian's Chromium; no tool downloads a browser of its own.
chromium:
	@$(call debs,chromium)

# Real peers the tests run against (../shared/peers/README.md): Debian's packages, and
# PyHSS 2.0 in a virtual environment of its own (its pins differ from ours), built from
# ../shared/peers when that folder is there (CI has it; a user's clone skips those tests).
# zbar-tools reads the 2FA enrolment QR code back from a browser screenshot.
# Kamailio's presence modules make a registrar play the S-CSCF for the edge's tests, its
# IMS modules the lab's real S-CSCF (lab/scscf.cfg, on Diameter Cx to PyHSS); sipp
# (sip-tester) and baresip are the UEs.
PEER_DEBS := secsipidx redis-server zbar-tools kamailio-presence-modules kamailio-ims-modules \
	sip-tester baresip
PEERS_DIR := $(abspath ..)/shared/peers
PYHSS_VENV := var/peers/pyhss-venv

peers:
	@$(call debs,$(PEER_DEBS) $(EDGE_DEBS))
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
	@$(call debs,wrk)

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
