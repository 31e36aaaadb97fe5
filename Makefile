# The two set-up commands are `make up` and `make test`; everything they need
# is installed into .venv from pinned requirements (pip caches downloads in
# the user's cache folder, so repeat runs are quick).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := $(VENV)/bin/buf
INSTALLED := $(VENV)/.installed
PROTO_DEPS := build/proto-deps

.PHONY: up test check contracts proto-deps lint-proto check-contracts lint-python unit clean

up:
	@echo "make up: no service exists yet; the contract (proto/, contracts-py/) is all there is."
	@echo "The embedded default that runs every service in one process comes with the task service."
	@exit 2

test: check unit

check: lint-proto check-contracts lint-python

$(INSTALLED): requirements/dev.txt contracts-py/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements/dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -e contracts-py
	touch $@

proto-deps: $(INSTALLED)
	$(PY) contracts-py/generate.py deps --deps-dir $(PROTO_DEPS)

# Regenerates contracts-py from proto/ (the generated code is committed).
contracts: proto-deps
	$(BUF) format -w proto
	$(BUF) lint
	$(PY) contracts-py/generate.py code

lint-proto: proto-deps
	$(BUF) format --diff --exit-code proto
	$(BUF) lint
	BUF=$(BUF) scripts/check-breaking.sh

check-contracts: $(INSTALLED)
	$(PY) contracts-py/generate.py check

lint-python: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy contracts-py/src contracts-py/generate.py

unit: $(INSTALLED)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build
