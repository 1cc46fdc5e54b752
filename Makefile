# Every target is a thin `python -m ...` call; `setup` makes .venv on its own.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: setup train train-dist export parity serve demo bench lockstep test lint format clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tandem needs Python >= 3.11 (set PYTHON=python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

train: setup
	$(PY) -m train $(ARGS)

# The three trainers on NPROC processes or devices, each under its framework's engine (README,
# "Training on several devices"): torch under torchrun (DDP), keras-fit under MirroredStrategy
# on NPROC devices of this host, keras-tape under MultiWorkerMirroredStrategy (NPROC workers).
NPROC ?= 2
train-dist: setup
	$(PY) -m torch.distributed.run --standalone --nproc-per-node $(NPROC) -m train --trainer torch $(ARGS)
	$(PY) -m train --trainer keras-fit --replicas $(NPROC) $(ARGS)
	$(PY) -m train.multiworker --workers $(NPROC) -- --trainer keras-tape $(ARGS)

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
