# The two commands of the README's quick start:
#   make up    bring the platform up in embedded mode (installs into .venv on first use)
#   make test  run the whole test suite: lint, unit, component, browser layers
# `.ci/run` calls `make test`.

# As root, mlhub runs multi-user mode: every user's server and models run from this venv as
# their own system account, so its Python must be one every account can run (Debian's), not
# one under /root such as pyenv's.
PYTHON ?= $(if $(filter 0,$(shell id -u)),$(or $(wildcard /usr/bin/python3),python3),python3)
PYTHON_REAL := $(realpath $(shell command -v $(PYTHON)))
VENV ?= .venv
BIN := $(VENV)/bin
# one stamp per interpreter: another PYTHON makes the venv again
STAMP := $(VENV)/.mlhub-installed$(subst /,-,$(PYTHON_REAL))
PYTEST_ARGS ?=

.PHONY: up test lint install labextension

$(STAMP): pyproject.toml images/proxy/package-lock.json
	if [ -x $(BIN)/python ] && [ "$$(readlink -f $(BIN)/python)" != "$(PYTHON_REAL)" ]; then \
		echo "$(VENV) was made with $$(readlink -f $(BIN)/python); making it with $(PYTHON_REAL)"; \
		rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# the embedded mode's proxy: configurable-http-proxy and its Node.js, from npm
	scripts/install-proxy $(VENV)
	# An editable install skips the package's data-files: put the file that enables the notebook
	# server extension into the venv's Jupyter config so every user server gets /mlhub/api.
	# (`jupyter server extension enable` refuses an extension no config lists yet.)
	install -D -m 644 extension/jupyter-config/jupyter_server_config.d/mlhub.json \
		$(VENV)/etc/jupyter/jupyter_server_config.d/mlhub.json
	touch $(STAMP)

# The JupyterLab extension, built from TypeScript (a no-op when its build is current). An
# editable install skips data-files too: link the build where JupyterLab looks for extensions.
labextension: $(STAMP)
	scripts/build-labextension $(BIN)/python
	mkdir -p $(VENV)/share/jupyter/labextensions/@mlhub
	ln -sfn $(CURDIR)/extension/jupyterlab/labextension $(VENV)/share/jupyter/labextensions/@mlhub/jupyterlab

install: $(STAMP) labextension

up: install
	$(BIN)/mlhub up $(UP_ARGS)

# the pre-commit hooks (ruff check and format, pinned) over every tracked file, scripts included
lint: $(STAMP)
	$(BIN)/pre-commit run --all-files --show-diff-on-failure

test: install
	scripts/system-deps
	scripts/open-checkout
	$(MAKE) lint
	$(BIN)/pytest -ra $(PYTEST_ARGS)
