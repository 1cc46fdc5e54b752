# Every target is a thin `python -m ...` call; `setup` makes .venv on its own.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# GPU=1: TensorFlow with its CUDA wheels (the `gpu` extra) in place of tensorflow-cpu
# (docs/training.md, "Keras on the GPU"). A .venv set up with GPU=1 keeps it without repeating it.
GPU ?= $(if $(wildcard $(VENV)/.installed-gpu),1,0)
TENSORFLOW := $(if $(filter 1,$(GPU)),gpu,cpu)
# The other extra's TensorFlow distribution: both install the `tensorflow` package's files.
OTHER_TF := $(if $(filter 1,$(GPU)),tensorflow-cpu,tensorflow)
STAMP := $(VENV)/.installed-$(TENSORFLOW)
ARGS ?=

.PHONY: setup train train-dist export rollback parity serve demo bench lockstep test lint format clean web \
	web-serve web-deps docker docker-test capacity manifests figures docs docs-serve lock gpu-check

setup: $(STAMP)

# Exactly the locked set (requirements/, `make lock`), every file checked against its hash, then
# the project itself without build isolation (its backend, setuptools, is locked too).
LOCK := requirements/dev-$(TENSORFLOW).txt
$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tandem needs Python >= 3.11 (set PYTHON=python3.11)"; exit 1; }
	@! $(PY) -c "import importlib.metadata as m; m.version('$(OTHER_TF)')" 2>/dev/null || \
		{ echo "$(VENV) holds $(OTHER_TF), whose files the $(TENSORFLOW) extra's TensorFlow" \
		"would overwrite: rm -rf $(VENV), then make setup GPU=$(GPU)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) requirements/lock.py --venv dev-$(TENSORFLOW)
	touch $(STAMP)

# Every lock file from pyproject.toml's pins (requirements/lock.py; uv resolves). Commit them.
lock: setup
	$(PY) requirements/lock.py --uv $(VENV)/bin/uv

train: setup
	$(PY) -m train $(ARGS)

# The three trainers on NPROC processes or devices, each under its framework's engine
# (docs/distributed.md): torch under torchrun (DDP), keras-fit under MirroredStrategy
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

# The previous version of one variant live again: make rollback VARIANT=torch.onnx
# (ARGS="--to 1", ARGS="--repository DIR"). A running server takes it up on its next poll
# (--model-control poll) or load request (explicit), after the same checks as an export.
rollback: setup
	@test -n "$(VARIANT)" || { echo "usage: make rollback VARIANT=<trainer>.<format> [ARGS=...]" >&2; exit 2; }
	$(PY) -m export.rollback $(VARIANT) $(ARGS)

# Every variant against the eager model it came from: pass / inconclusive / fail per row;
# exits non-zero on any fail (ARGS=--strict: on inconclusive too; ARGS=--browser: the
# site's in-browser runtimes too, after `make web`).
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

# The static site (artifacts/web): the npm packages from the committed lock file (npm ci),
# then the page, the runtime files it loads, and the repository's ONNX and TFLite variants
# (exported first when the repository is empty, as on a fresh clone).
WEB_DEPS := web/node_modules/.package-lock.json
WEB_PORT ?= 8001

$(WEB_DEPS): web/package-lock.json
	cd web && npm ci --ignore-scripts --no-audit --no-fund

# For the tests: npm (Debian's, when missing and we may), then the packages.
web-deps:
	@command -v npm >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends npm; }
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(WEB_DEPS); \
	else echo "note: no npm; the in-browser tests will be skipped"; fi

web: setup $(WEB_DEPS)
	@test -n "$$(ls artifacts/model_repository 2>/dev/null)" || $(MAKE) export
	$(PY) -m web build $(ARGS)

# Any static server works if it sends COOP/COEP (wasm threads); this one does.
web-serve: setup
	$(PY) -m web serve --host $(HOST) --port $(WEB_PORT)

# One report: runtimes, trainers, the data path, export, server vs peers
# (artifacts/reports/bench.json, .md, .png). Exports first when the repository is empty, as
# on a fresh clone. ARGS=--quick: the short CI version (no peers' venv made, no photos, no
# browser timing). The full run adds what the defaults give on a folder of photos
# (photos.json) and, after `make web`, the browser's figures (browser_bench.json).
bench: setup
	@test -n "$$(ls artifacts/model_repository 2>/dev/null)" || $(MAKE) export
	$(PY) -m benchmarks $(ARGS)
ifeq ($(findstring --quick,$(ARGS)),)
	$(PY) -m benchmarks.photos
	@test -f artifacts/web/index.html || echo "note: no artifacts/web (make web): no browser timing"
	@test ! -f artifacts/web/index.html || $(PY) -m benchmarks.browser
endif

# On a machine with one NVIDIA GPU: TensorFlow's CUDA wheels, then each trainer on the GPU
# for an epoch of a prepared folder and the bench's CUDA section, in one JSON
# (artifacts/reports/gpu_check.json). Nothing else needs a GPU.
gpu-check:
	$(MAKE) setup GPU=1
	$(PY) -m benchmarks.gpu_check $(ARGS)

# The capacity plan (docs/kubernetes.md) from the bench report: the snapshot in deploy/, the
# page's table and the manifests' maxReplicas. `make manifests` validates them.
capacity: setup
	$(PY) -m deploy.capacity --bench artifacts/reports/bench.json --write

manifests: setup
	$(PY) -m deploy.manifests

# The web page's test drives Debian's Chromium through playwright (never `playwright
# install`, which downloads a browser). Installed when missing and we may; else skipped.
browser:
	@test -x /usr/bin/chromium || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; }
	@test -x /usr/bin/chromium || echo "note: no /usr/bin/chromium; the browser test will be skipped"

test: setup browser web-deps
	$(PY) -m pytest $(ARGS)

# Every table of measured figures in README.md and docs/ from its snapshot in docs/figures/
# (docs/ci.md). ARGS=--refresh: take a real run's reports into the snapshots first;
# ARGS=--check: only say which differ.
figures: setup
	$(PY) -m docs.figures $(ARGS)

# The docs site (mkdocs.yml) in artifacts/site, after the figures' check; --strict fails on a
# broken link or anchor. Offline: nothing is fetched.
DOCS_PORT ?= 8002
docs: setup
	$(PY) -m docs.figures --check
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs serve --dev-addr $(HOST):$(DOCS_PORT)

lint: setup
	$(PY) requirements/lock.py --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint docker/*.Dockerfile

# The training image (CUDA PyTorch base) and the slim serving image (ONNX Runtime + LiteRT),
# with your Docker engine. DOCKER_ARGS: extra `docker build` flags, e.g.
# --build-arg BASE_IMAGE=... or --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt
DOCKER ?= docker
DOCKER_ARGS ?=
docker:
	$(DOCKER) build $(DOCKER_ARGS) -f docker/serve.Dockerfile -t tandem-serve .
	$(DOCKER) build $(DOCKER_ARGS) -f docker/train.Dockerfile -t tandem-train .
	@$(DOCKER) image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep '^tandem-'

# The container tests alone (also in `make test`): a private dockerd builds and runs the
# images (Debian's docker.io and mmdebstrap are installed when missing), and the real Triton
# loads the model repository.
docker-test: setup
	$(PY) -m pytest tests/test_docker.py tests/test_triton.py $(ARGS)

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf artifacts web/node_modules
