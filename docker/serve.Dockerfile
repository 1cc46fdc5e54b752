# The serving image: `python -m serve` with ONNX Runtime and LiteRT only (no torch, no
# TensorFlow), for the ONNX and TFLite variants of a model repository mounted at /models.
#
#   docker build -f docker/serve.Dockerfile -t tandem-serve .
#   docker run --rm -p 8000:8000 -v $PWD/artifacts/model_repository:/models:ro tandem-serve
#   ... -p 8001:8001 ... tandem-serve --grpc-port 8001     # KServe V2 gRPC as well
#
# BASE_IMAGE: any Debian-based image whose python3 (>= 3.11) has the venv module. Where the
# network needs its own TLS roots, hand pip a CA bundle as the build secret `ca`:
#   DOCKER_BUILDKIT=1 docker build --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt ...
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
WORKDIR /src
# The project's runtime dependencies (`pip install .`: ONNX Runtime, LiteRT, the HTTP and gRPC
# servers), exactly as locked, every file checked against its hash.
COPY requirements/serve-image.txt requirements/
RUN --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export PIP_CERT=/run/secrets/ca; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --require-hashes \
        --no-deps -r requirements/serve-image.txt
# The packages `python -m serve` and the entrypoint import, and no others
# (tests/test_images.py walks their imports and fails when one is missing here).
COPY pyproject.toml README.md ./
COPY contract/ contract/
COPY export/ export/
COPY harness/ harness/
COPY serve/ serve/
# The project itself (its backend, setuptools, is locked above), then no pip at all.
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps \
        --no-build-isolation . \
    && /opt/venv/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    MODEL_REPOSITORY=/models \
    GOLDEN=/reports/golden.npz \
    FORMATS="onnx onnx-tf onnx-fp16 onnx-int8 tflite tflite-fp16 tflite-int8"
COPY --from=build /opt/venv /opt/venv
COPY docker/serve_entrypoint.py docker/healthcheck.py /opt/tandem/
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin tandem
USER 10001
WORKDIR /tmp
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/tandem/healthcheck.py"]
ENTRYPOINT ["python", "/opt/tandem/serve_entrypoint.py"]
