"""The container images (docker/), built and run by a real Docker engine.

The engine is private to this module (tests/docker_engine.py): Debian's dockerd on its own
paths, a base image made by mmdebstrap from Debian's packages (no registry is reachable),
each Dockerfile built with `--build-arg BASE_IMAGE=` that base. The serving image runs on
the session's digits repository and answers tritonclient (HTTP binary and JSON, and gRPC)
with the logits the harness computes in this process. Every container and image made here
is removed by id.
The training image needs a CUDA PyTorch base that cannot be had here: it is built on the
Debian base up to the check for that base (its locked dependencies and the project install).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from docker_engine import Engine, debian_base, install_tools
from scripts import lock
from serve_live import free_port, subset

import harness
from export import repository

pytestmark = pytest.mark.slow  # installs, bootstraps Debian, builds images, trains a model

REPO = Path(__file__).resolve().parents[1]
SERVE_DOCKERFILE = REPO / "docker" / "serve.Dockerfile"
TRAIN_DOCKERFILE = REPO / "docker" / "train.Dockerfile"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
SERVE_IMAGE_MAX_MB = 600
BATCH = 7


class Made:
    """The containers and images this module made, removed by id at the end."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.containers, self.images = engine, [], []

    def build(self, dockerfile: Path, base: str, *flags: str, check: bool = True):
        iidfile = self.engine.root / f"{dockerfile.stem}.iid"
        cmd = ["build", "--network=host", f"--file={dockerfile}", f"--iidfile={iidfile}"]
        cmd += [f"--build-arg=BASE_IMAGE={base}", "--progress=plain", *flags]
        if CA_BUNDLE.is_file():  # pip's TLS roots where the network needs its own
            cmd.append(f"--secret=id=ca,src={CA_BUNDLE}")
        result = self.engine.docker(*cmd, str(REPO), check=check)
        if iidfile.is_file():
            self.images.append(iidfile.read_text().strip())
            iidfile.unlink()
        return result

    def remove(self) -> None:
        docker = self.engine.docker
        for container in self.containers:
            docker("rm", "--force", "--volumes", container, check=False)
        for image in reversed(self.images):
            docker("rmi", "--force", image, check=False)
        left = docker("ps", "-aq").stdout.split() + docker("images", "-aq").stdout.split()
        assert not left, f"containers or images left behind: {left}"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    install_tools()
    engine = Engine().start()
    made = Made(engine)
    try:
        made.images.append(debian_base(engine, tmp_path_factory.mktemp("rootfs"), "tandem-base"))
        yield made
        made.remove()
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def serve_image(made) -> dict:
    """The serving image's id, config and size, built on the Debian base."""
    started = time.monotonic()
    made.build(SERVE_DOCKERFILE, "tandem-base")
    image = made.images[-1]
    info = json.loads(made.engine.docker("image", "inspect", image).stdout)[0]
    return {"id": image, "info": info, "seconds": time.monotonic() - started}


def image_env(info: dict) -> dict[str, str]:
    return dict(line.split("=", 1) for line in info["Config"]["Env"])


def test_serve_image_is_slim(made, serve_image, capsys):
    info = serve_image["info"]
    size_mb = info["Size"] / 1e6
    with capsys.disabled():
        built = f"built in {serve_image['seconds']:.0f} s, {made.engine.driver} storage"
        print(f"\n[docker] serve image: {size_mb:.0f} MB, {built}")
    assert size_mb < SERVE_IMAGE_MAX_MB, f"serve image is {size_mb:.0f} MB"
    assert info["Config"]["User"] not in ("", "0", "root")
    assert info["Config"]["Healthcheck"]["Test"][0] == "CMD"
    probe = (
        "import importlib.util as u, sys; "
        "sys.exit(sum(u.find_spec(m) is not None for m in ('torch', 'tensorflow', 'keras')))"
    )
    run = made.engine.docker("run", "--rm", "--entrypoint=python", serve_image["id"], "-c", probe)
    assert run.returncode == 0


# {name: version} of the distributions an image's venv holds (the base's own left out)
LIST_VENV = (
    "import importlib.metadata as m, json, sysconfig; print(json.dumps({d.metadata['Name']: "
    "d.version for d in m.distributions(path=[sysconfig.get_path('purelib')])}))"
)


def image_distributions(made, image: str) -> dict[str, str]:
    """What an image's venv holds, but pip (the venv's own, never a locked package)."""
    run = made.engine.docker("run", "--rm", "--entrypoint=python", image, "-c", LIST_VENV)
    found = {lock.canonical(name): v for name, v in json.loads(run.stdout).items()}
    found.pop("pip", None)
    return found


def test_serve_image_holds_exactly_its_lock(made, serve_image):
    """Every locked package at its version, the project itself, and nothing else (pip and
    setuptools, which built the project, are gone)."""
    have = image_distributions(made, serve_image["id"])
    want = {n: v for n, v in lock.locked("serve-image").items() if n != "setuptools"}
    assert have == {**want, "tandem": "0.1.0"}


@pytest.fixture(scope="module")
def served(made, serve_image, serve_root, tmp_path_factory):
    """The serving image running on a copy of the digits repository (every format: the
    image serves those its runtimes load) with the golden batch, on a free loopback port."""
    formats = image_env(serve_image["info"])["FORMATS"].split()
    source = serve_root / "repo"
    models = subset(source, tmp_path_factory.mktemp("models"), list(repository.variants(source)))
    # pytest's temporary folders are 0700; the image's user is not root.
    for path in [models, *models.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    port, grpc_port = free_port(), free_port()
    container = made.engine.docker(
        "run", "--detach", "--network=host", "--health-interval=1s",
        # as deploy/'s manifests run it: root filesystem read-only, /tmp writable (the
        # entrypoint's copy of the servable variants), no capabilities, no privilege gain
        "--read-only", "--tmpfs=/tmp", "--cap-drop=ALL", "--security-opt=no-new-privileges",
        "--env=HOST=127.0.0.1", f"--env=PORT={port}",
        f"--volume={models}:/models:ro",
        f"--volume={serve_root / 'golden.npz'}:/reports/golden.npz:ro",
        serve_image["id"], f"--grpc-port={grpc_port}",
    ).stdout.strip()  # fmt: skip
    made.containers.append(container)
    health = wait_healthy(made.engine, container)
    yield {
        "container": container,
        "url": f"127.0.0.1:{port}",
        "grpc_url": f"127.0.0.1:{grpc_port}",
        "health": health,
        "models": models,
        "served": [n for n, p in repository.variants(models).items() if fmt_of(p) in formats],
    }


def fmt_of(variant: Path) -> str:
    return repository.read_manifest(variant)["format"]


def wait_healthy(engine: Engine, container: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        state = json.loads(engine.docker("inspect", container).stdout)[0]["State"]
        status = state.get("Health", {}).get("Status", "none")
        if status == "healthy" or not state["Running"]:
            break
        time.sleep(0.5)
    if status != "healthy":
        logs = engine.docker("logs", container, check=False)
        raise AssertionError(f"container {status}:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
    return status


def test_serving_container_is_healthy_and_not_root(made, served):
    assert served["health"] == "healthy"
    uid = made.engine.docker("exec", served["container"], "id", "-u").stdout.strip()
    assert uid != "0", "the server runs as root"
    # The server process itself (pid 1 after the entrypoint's exec).
    status = made.engine.docker("exec", served["container"], "cat", "/proc/1/status").stdout
    assert re.search(r"^Uid:\s+(\d+)", status, re.M).group(1) == uid


def test_serving_container_serves_every_onnx_and_tflite_variant(served):
    client = triton.InferenceServerClient(served["url"])
    index = {row["name"]: row.get("state") for row in client.get_model_repository_index()}
    assert served["served"] and index == dict.fromkeys(served["served"], "READY")
    assert {fmt_of(served["models"] / n) for n in index} == {
        "onnx", "onnx-tf", "onnx-fp16", "onnx-int8", "tflite", "tflite-fp16", "tflite-int8"
    }  # fmt: skip


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_serving_container_logits_equal_harness(served, binary):
    client = triton.InferenceServerClient(served["url"])
    images = np.random.default_rng(7).integers(0, 256, (BATCH, 8, 8, 1)).astype(np.float32)
    for name in served["served"]:
        tensor = triton.InferInput("images", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images, binary_data=binary)
        wanted = triton.InferRequestedOutput("logits", binary_data=binary)
        logits = client.infer(name, [tensor], outputs=[wanted]).as_numpy("logits")
        local = harness.load(served["models"] / name, threads=1).predict(images)
        np.testing.assert_array_equal(logits, local, err_msg=name)


def test_serving_container_answers_grpc_with_harness_logits(served):
    import tritonclient.grpc as triton_grpc

    client = triton_grpc.InferenceServerClient(served["grpc_url"])
    assert client.is_server_ready()
    images = np.random.default_rng(8).integers(0, 256, (BATCH, 8, 8, 1)).astype(np.float32)
    for name in served["served"]:
        tensor = triton_grpc.InferInput("images", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images)
        logits = client.infer(name, [tensor]).as_numpy("logits")
        local = harness.load(served["models"] / name, threads=1).predict(images)
        np.testing.assert_array_equal(logits, local, err_msg=name)


def test_train_image_builds_up_to_the_cuda_base(made, capsys):
    """Here its dependency layers build on the Debian base; the next step insists on the
    CUDA build of torch that only the real base (pytorch/pytorch) provides."""
    started = time.monotonic()
    made.build(TRAIN_DOCKERFILE, "tandem-base", "--target=deps")
    assert image_distributions(made, made.images[-1]) == lock.locked("train-image")
    full = made.build(TRAIN_DOCKERFILE, "tandem-base", check=False)
    log = full.stdout + full.stderr
    assert full.returncode != 0, "the train image built without a CUDA torch"
    # the project installed (every package it lists reached the image), then the base check
    assert re.search(r"Successfully installed tandem-\S+", log), log[-3000:]
    assert "torch is not installed; pyproject.toml pins torch==" in log, log[-3000:]
    with capsys.disabled():
        print(f"\n[docker] train image up to its CUDA base: {time.monotonic() - started:.0f} s")
