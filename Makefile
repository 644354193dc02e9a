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

.PHONY: run test test-server check bench install install-dev debs clean lock

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first, as a CPU build, so that sentence-transformers does not pull the CUDA build (several
# GB). A torch wheel that pip finds without an index (its find-links) is taken as it is; otherwise
# the CPU build comes from PyTorch's own CPU index (TORCH_INDEX), its dependencies from PyPI.
TORCH_VERSION := $(shell sed -n 's/^torch==\([0-9.]*\).*/\1/p' constraints.txt)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
# PyTorch's CPU index labels its x86_64 builds +cpu; elsewhere PyPI's own build is the CPU one.
TORCH_LOCAL := $(if $(filter x86_64,$(shell uname -m)),+cpu,)
# Every install is held to the versions in constraints.txt (`make lock` renews it).
CONSTRAINTS := -c constraints.txt

$(VENV)/.torch: constraints.txt | $(VENV)/bin/python
	@if $(PIP) install -q --dry-run --ignore-installed --no-deps --no-index 'torch==$(TORCH_VERSION)' >/dev/null 2>&1; then \
	  $(PIP) install -q $(CONSTRAINTS) 'torch==$(TORCH_VERSION)'; \
	else \
	  $(PIP) install -q $(CONSTRAINTS) --extra-index-url $(TORCH_INDEX) 'torch==$(TORCH_VERSION)$(TORCH_LOCAL)'; \
	fi
	touch $@

$(STAMP): pyproject.toml constraints.txt $(VENV)/.torch
	$(PIP) install -q $(CONSTRAINTS) -e '.[local]'
	touch $@

$(DEV_STAMP): $(STAMP)
	$(PIP) install -q $(CONSTRAINTS) -e '.[local,dev]'
	touch $@

# Renew constraints.txt: install the newest releases that pyproject.toml admits into a scratch
# venv and freeze them (torch stays at TORCH_VERSION, the CPU build). Review the diff.
lock:
	rm -rf .lock-venv
	$(MAKE) VENV=.lock-venv CONSTRAINTS= .lock-venv/.torch
	.lock-venv/bin/pip install -q '.[local,dev]'
	{ echo "# Versions every install is held to (pip -c). Made by 'make lock'; torch is the CPU build."; \
	  .lock-venv/bin/pip freeze --exclude newsstream | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf .lock-venv

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

# The suite runs on TEST_WORKERS processes (pytest-xdist), one test file per process at a time:
# most of its time is spent waiting on servers, restarts and kills, not on the CPU.
TEST_WORKERS ?= 2

test: $(DEV_STAMP) debs check
	$(PY) -m pytest -q -ra --durations=25 -n $(TEST_WORKERS) --dist loadfile

# The integration and fault layers against the PyPI `milvus` 2.3 server (the default of `up`)
# instead of Milvus Lite; `make test` runs them on Lite and the e2e layer on the server.
test-server: $(DEV_STAMP) debs
	NEWSSTREAM_TEST_MILVUS=server $(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile \
	  tests/integration tests/faults

bench: $(DEV_STAMP)
	$(VENV)/bin/newsstream bench all

clean:
	rm -rf $(VENV) .newsstream .pytest_cache .mypy_cache .ruff_cache test-artifacts
