# One command for the demo, one for the tests; each sets up what it needs.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint lint-infra bench clean

$(VENV)/.stamp: requirements.txt requirements-dev.txt
	$(PY) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.stamp node_modules/.stamp

demo: setup
	$(BIN)/python -m pipeline demo

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# checkov pins packages that clash with pytest's: it gets a virtualenv of its own.
.venv-checkov/.stamp:
	$(PY) -m venv .venv-checkov
	.venv-checkov/bin/pip install --quiet --disable-pip-version-check checkov==3.3.30
	touch $@

lint-infra: setup .venv-checkov/.stamp
	$(BIN)/python infra/validate.py

test: lint lint-infra
	$(BIN)/python -m pytest -q

# Prints the table of docs/performance.md; `$(BIN)/python -m bench.run --docs` also writes it there.
bench: setup
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .venv-checkov node_modules .pytest_cache .ruff_cache
