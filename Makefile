# Every target is a thin `python -m ...` call; `setup` makes .venv on its own.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: setup train export demo test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tandem needs Python >= 3.11 (set PYTHON=python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

train: setup
	$(PY) -m train $(ARGS)

# One checkpoint per trainer (train.config.TRAINERS); `export` trains only those missing.
TRAINED := $(foreach t,torch keras-fit keras-tape,artifacts/checkpoints/$(t)/metrics.json)

$(TRAINED): artifacts/checkpoints/%/metrics.json: | setup
	$(PY) -m train --trainer $*

export: setup $(TRAINED)
	$(PY) -m export $(ARGS)

demo: setup
	$(PY) -m train $(ARGS)
	$(PY) -m export

test: setup
	$(PY) -m pytest $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf artifacts
