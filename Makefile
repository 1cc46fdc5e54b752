# Every target is a thin `python -m ...` call; `setup` makes .venv on its own.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# GPU=1: TensorFlow with its CUDA wheels (the `gpu` extra) in place of tensorflow-cpu
# (README, "Keras on the GPU"). A .venv set up with GPU=1 keeps it without repeating it.
GPU ?= $(if $(wildcard $(VENV)/.installed-gpu),1,0)
TENSORFLOW := $(if $(filter 1,$(GPU)),gpu,cpu)
# The other extra's TensorFlow distribution: both install the `tensorflow` package's files.
OTHER_TF := $(if $(filter 1,$(GPU)),tensorflow-cpu,tensorflow)
STAMP := $(VENV)/.installed-$(TENSORFLOW)
ARGS ?=

.PHONY: setup train export parity serve demo bench lockstep test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tandem needs Python >= 3.11 (set PYTHON=python3.11)"; exit 1; }
	@! $(PY) -c "import importlib.metadata as m; m.version('$(OTHER_TF)')" 2>/dev/null || \
		{ echo "$(VENV) holds $(OTHER_TF), whose files the $(TENSORFLOW) extra's TensorFlow" \
		"would overwrite: rm -rf $(VENV), then make setup GPU=$(GPU)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,$(TENSORFLOW)]'
	touch $(STAMP)

train: setup
	$(PY) -m train $(ARGS)

# Trains first the trainers without a finished run (a killed run does not count).
export: setup
	$(PY) -m train --skip-trained
	$(PY) -m export $(ARGS)

# Every variant against the eager model it came from: pass / inconclusive / fail per row;
# exits non-zero on any fail (ARGS=--strict: on inconclusive too).
parity: setup
	$(PY) -m harness.parity $(ARGS)

# One server for every variant in the repository: KServe V2, TF Serving, upload, page at /.
HOST ?= 127.0.0.1
PORT ?= 8000
serve: setup
	$(PY) -m serve --host $(HOST) --port $(PORT) $(ARGS)

# The main job on the embedded digits data: train, export, parity, report.
demo: setup
	$(PY) -m train $(ARGS)
	$(PY) -m export
	$(PY) -m harness.parity

# The three trainers step by step from one init, dropout off: how far apart they drift
# (artifacts/reports/lockstep.json, .md, .png). ARGS=--quick: 8 steps, for CI.
lockstep: setup
	$(PY) -m train.lockstep $(ARGS)

bench: setup
	$(PY) -m benchmarks.harness_overhead $(ARGS)
	$(PY) -m benchmarks.server

# The web page's test drives Debian's Chromium through playwright (never `playwright
# install`, which downloads a browser). Installed when missing and we may; else skipped.
browser:
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }
	@test -x /usr/bin/chromium || echo "note: no /usr/bin/chromium; the browser test will be skipped"

test: setup browser
	$(PY) -m pytest $(ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf artifacts
