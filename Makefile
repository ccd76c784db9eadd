# poolsync developer commands. `make test` and `make run` work on a fresh machine with
# only Python 3.11+, Node and npm: they create .venv and node_modules themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: deps test run demo bench lint clean

$(PY_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .  # .venv/bin/poolsync
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(PY_STAMP) $(NODE_STAMP)

# The suite runs on pytest-xdist workers, each with its own Azurite and ARM emulator (session fixtures).
# Most tests wait on those, so more workers than cores pay; TEST_WORKERS=0 runs in one process.
# --maxschedchunk 1: one test at a time to whichever worker is free, so the long scenarios that
# tests/conftest.py puts first spread over the workers.
TEST_WORKERS ?= 6

test: deps
	$(PY) -m pytest -n $(TEST_WORKERS) --maxschedchunk 1

run: deps
	$(PY) -m devstack

demo: deps
	$(PY) -m devstack.demo

bench: deps
	$(PY) -m bench

# Fast, so CI runs it before the tests: style, types (strict on the pure core), layer contracts.
lint: deps
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m mypy --strict shared/core
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .mypy_cache .hypothesis .devstack
