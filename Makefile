# NebulaHub: two commands a newcomer needs.
#   make demo   set everything up and start the hub on http://127.0.0.1:8000 (embedded default, no cloud)
#   make test   set everything up and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nebulahub-installed
CHP := node_modules/.bin/configurable-http-proxy
PYTEST_ARGS ?=

.PHONY: demo test setup sysdeps-demo sysdeps-test bench clean

setup: $(STAMP) $(CHP)

sysdeps-demo:
	@scripts/install-sysdeps.sh demo

sysdeps-test:
	@scripts/install-sysdeps.sh test

$(STAMP): setup.cfg pyproject.toml | sysdeps-demo
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

$(CHP): package.json | sysdeps-demo
	npm install --no-audit --no-fund --loglevel=error
	touch $@

demo: setup
	$(BIN)/nebulahub demo

test: sysdeps-test setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup
	@# every benchmark runs; the exit status says whether one missed a target or failed
	@status=0; for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || status=1; done; exit $$status

clean:
	@# the demo's Unix accounts (only those it created), before their registry goes with var/
	-@[ "$$(id -u)" != 0 ] || [ ! -x $(BIN)/nebulahub ] || $(BIN)/nebulahub accounts remove
	rm -rf $(VENV) node_modules var .pytest_cache
