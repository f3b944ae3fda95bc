# streamq: `make run` brings the stack up, `make test` installs what it needs and runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# test files run in parallel processes (pytest-xdist), each file whole in one process (its module fixtures
# start once), each process with its own Redis on free ports; the tests mostly wait on processes and sockets
XDIST ?= -n 4 --dist loadfile
CLUSTER_XDIST ?= -n 2 --dist loadfile
# the second pass of `make test`: the end-to-end and integration tests against a real 3-master Redis Cluster
# the cluster pass: every end-to-end test and the integration tests whose code talks to Redis in ways a cluster
# could refuse (scripts, pipelines over partitions, blocking reads); email, http, SSRF, health and the fast path
# run in the standalone pass only (docs/scaling-out.md: Redis Cluster)
CLUSTER_TESTS ?= tests/e2e $(filter-out $(addprefix tests/integration/,test_email.py test_http_task.py \
	test_ssrf.py test_health.py test_fastpath.py),$(wildcard tests/integration/test_*.py))

.PHONY: install run test test-fast test-compose lint format bench docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

run: install
	$(PY) deploy/ensure_deps.py --install
	$(PY) deploy/run_local.py

# the two passes run side by side (the tests mostly wait on processes and sockets: about a third of the wall
# time is CPU), each with its own servers on free ports; the cluster pass's output follows the standalone's
test: install
	$(PY) deploy/ensure_deps.py --install
	@rm -f .cluster-pass.log; \
	$(PY) -m pytest -q -p no:cacheprovider $(CLUSTER_XDIST) --redis-topology=cluster $(PYTEST_ARGS) $(CLUSTER_TESTS) \
		> .cluster-pass.log 2>&1 & cluster=$$!; \
	echo "$(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS)   (the cluster pass runs alongside: .cluster-pass.log)"; \
	$(PY) -m pytest -q $(XDIST) $(PYTEST_ARGS); standalone=$$?; \
	wait $$cluster; clustered=$$?; \
	echo "--- cluster pass: $(PY) -m pytest -q --redis-topology=cluster ... (exit $$clustered)"; \
	cat .cluster-pass.log; \
	test $$standalone -eq 0 && test $$clustered -eq 0

# the quick tier while changing code: unit, integration, client, deploy and security tests on plain
# redis-servers, without the end-to-end tests (marked e2e: real service processes), the browser tests and
# the cluster pass; run `make test` before a commit lands
test-fast: install
	$(PY) -m pytest -q -p no:cacheprovider $(XDIST) -m "not e2e" --ignore=tests/e2e --ignore=tests/browser $(PYTEST_ARGS)

# docker-compose.yml brought up for real on Debian's podman (tests/compose/run.py; docs/operations.md: Run with Docker);
# prints why and passes where no container engine can be installed
test-compose: install
	$(PY) tests/compose/run.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# the docs site (mkdocs.yml, docs/) into site/; --strict: a broken link, anchor or nav entry fails the build
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: install
	$(PY) deploy/ensure_deps.py --install
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .run .pytest_cache .mypy_cache .ruff_cache site
