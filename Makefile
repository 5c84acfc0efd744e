# The two commands of the README's quick start:
#   make up    bring the platform up in embedded mode (installs into .venv on first use)
#   make test  run the whole test suite: lint, unit, component, browser layers
# `.ci/run` calls `make test`.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlhub-installed
PYTEST_ARGS ?=

.PHONY: up test lint install

$(STAMP): setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	# An editable install skips setup.py's data_files: put the file that enables the notebook
	# server extension into the venv's Jupyter config so every user server gets /mlhub/api.
	# (`jupyter server extension enable` refuses an extension no config lists yet.)
	install -D -m 644 extension/jupyter-config/jupyter_server_config.d/mlhub.json \
		$(VENV)/etc/jupyter/jupyter_server_config.d/mlhub.json
	touch $(STAMP)

install: $(STAMP)

up: $(STAMP)
	$(BIN)/mlhub up $(UP_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP)
	scripts/system-deps
	$(MAKE) lint
	$(BIN)/pytest -ra $(PYTEST_ARGS)
