# streamq: `make run` brings the stack up, `make test` installs what it needs and runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# the second pass of `make test`: the end-to-end and integration tests against a real 3-master Redis Cluster
CLUSTER_TESTS ?= tests/e2e tests/integration

.PHONY: install run test lint format bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

run: install
	$(PY) deploy/ensure_deps.py --install
	$(PY) deploy/run_local.py

test: install
	$(PY) deploy/ensure_deps.py --install
	$(PY) -m pytest -q $(PYTEST_ARGS)
	$(PY) -m pytest -q --redis-topology=cluster $(PYTEST_ARGS) $(CLUSTER_TESTS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) deploy/ensure_deps.py --install
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache
