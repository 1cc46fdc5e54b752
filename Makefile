# Every target is a thin `python -m ...` call; `setup` makes .venv on its own.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: setup train export parity serve demo bench lockstep test lint format clean docker \
	docker-test

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tandem needs Python >= 3.11 (set PYTHON=python3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
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

# The container tests: a private dockerd builds and runs the images (Debian's docker.io and
# mmdebstrap are installed when missing), and the real Triton loads the model repository.
# Here, not in `make test`: the training image's dependency layers (minutes, 2.4 GB).
docker-test: setup
	TANDEM_TRAIN_IMAGE=1 $(PY) -m pytest tests/test_docker.py tests/test_triton.py $(ARGS)

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf artifacts
