# newsstream: `make run` starts the embedded stack, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Debian packages the tests need: redis-server (shared dedup index), chromium (dashboard e2e),
# docker-compose and prometheus (validators of the deployment files).
DEBS := redis-server chromium docker-compose prometheus

.PHONY: run test test-server check bench install install-dev debs clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, pinned to the CPU build on this disk, so sentence-transformers does not pull CUDA.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[local]'
	touch $@

$(DEV_STAMP): $(STAMP)
	$(PIP) install -q -e '.[local,dev]'
	touch $@

install: $(STAMP)
install-dev: $(DEV_STAMP)

run: $(STAMP)
	$(VENV)/bin/newsstream up

debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

check: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: $(DEV_STAMP) debs check
	$(PY) -m pytest -q -ra

# The integration and fault layers against the PyPI `milvus` 2.3 server (the default of `up`)
# instead of Milvus Lite; `make test` runs them on Lite and the e2e layer on the server.
test-server: $(DEV_STAMP) debs
	NEWSSTREAM_TEST_MILVUS=server $(PY) -m pytest -q -ra tests/integration tests/faults

bench: $(DEV_STAMP)
	$(VENV)/bin/newsstream bench all

clean:
	rm -rf $(VENV) .newsstream .pytest_cache .mypy_cache .ruff_cache test-artifacts
