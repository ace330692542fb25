# Two commands on a fresh machine: `make demo` and `make test`. Both set up everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | md5sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8050
EXPERIMENT ?= digits-compression

.PHONY: demo test install chromium postgres lint team

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned: a CPU build on local disk; an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0" -e ".[torch,dev]"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# PostgreSQL runs on these machines before a session starts; start it if it stopped.
postgres:
	@pg_isready -h 127.0.0.1 -p 5432 -q || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start

demo: install
	$(VENV)/bin/mlflow-cc demo
	$(VENV)/bin/mlflow-cc ui --experiment $(EXPERIMENT) --host $(HOST) --port $(PORT)

test: install chromium postgres
	$(PY) -m pytest -q -p no:cacheprovider tests

lint: install
	$(VENV)/bin/ruff check mlflow_cc dash_app tests examples benchmarks

# The team stack on 127.0.0.1: mlflow server on PostgreSQL (served artifacts, basic-auth) + the app
# under gunicorn. TEAM_AUTH=none for no sign-in; see deploy/team.sh and README "Team deployment".
team: install postgres
	bash deploy/team.sh
