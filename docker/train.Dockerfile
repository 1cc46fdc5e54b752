# The training image: the project on a CUDA PyTorch base, training on the GPU.
#
#   docker build -f docker/train.Dockerfile -t tandem-train .
#   docker run --rm --gpus all -v $PWD/artifacts:/workspace/artifacts tandem-train
#
# Entrypoint `python -m train --device cuda`; the default arguments train the torch loop.
# TensorFlow here is pyproject.toml's `gpu` extra (its CUDA wheels, README "Keras on the
# GPU"), so `--trainer keras-fit` and `keras-tape` train on the GPU too. BASE_IMAGE must hold a CUDA build of torch at pyproject.toml's pin: the
# build checks it. A network that needs its own TLS roots: see serve.Dockerfile (secret `ca`).
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime

# Every other dependency, exactly as locked (requirements/train-image.txt: the `train` and `gpu`
# extras without torch, checked against their hashes), in a venv that sees the base's torch.
FROM ${BASE_IMAGE} AS deps
WORKDIR /opt/tandem
COPY requirements/train-image.txt requirements/
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv --system-site-packages /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes \
        --no-deps -r requirements/train-image.txt
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

FROM deps
# The build context (what .dockerignore leaves: no venv, artifacts or caches), every package.
COPY . .
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation .
# The base's torch: the pinned release, built with CUDA.
RUN python docker/pins.py pyproject.toml torch \
    && python -c "import sys, torch; sys.exit(None if torch.version.cuda else \
        'BASE_IMAGE: its torch ' + torch.__version__ + ' has no CUDA')"
# Checkpoints, repository and reports go under /workspace/artifacts: mount it to keep them.
WORKDIR /workspace
ENTRYPOINT ["python", "-m", "train", "--device", "cuda"]
CMD ["--trainer", "torch"]
