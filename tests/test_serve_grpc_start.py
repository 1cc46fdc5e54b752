"""gRPC at start-up, each case on a server of its own: a variant that cannot serve is listed
and refused with its reason, and a taken port stops the server rather than sharing it."""

from __future__ import annotations

import socket
import subprocess
import time

import grpc
import pytest
import tritonclient.grpc as triton
from serve_live import Live, infer, seeded, subset, tamper
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow  # needs the exported repository and live servers
MODEL = "torch.onnx"


def test_a_tampered_variant_is_refused_with_its_reason(serve_root, tmp_path):
    repo = subset(serve_root / "repo", tmp_path / "repo", [MODEL, "torch.tflite"])
    tamper(repo / "torch.tflite")
    server = Live(repo, "--golden", "none", log=tmp_path / "server.log", grpc=True)
    target = server.target
    try:
        server.wait("/v2/health/live")
        client = triton.InferenceServerClient(target)
        for _ in range(300):  # loading runs after start-up; bounded at about a minute
            states = {m.name: m for m in client.get_model_repository_index().models}
            if "LOADING" not in {m.state for m in states.values()}:
                break
            time.sleep(0.2)
        assert states["torch.tflite"].state == "UNAVAILABLE"
        assert "sha256" in states["torch.tflite"].reason
        assert not client.is_server_ready() and not client.is_model_ready("torch.tflite")
        with pytest.raises(triton.InferenceServerException, match=r"not ready.*sha256") as e:
            infer(client, "torch.tflite", seeded(1))
        assert e.value.status() == "StatusCode.UNAVAILABLE"
        with grpc.insecure_channel(target) as channel:  # tritonclient cannot ask ready-only
            index = pb_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
                pb.RepositoryIndexRequest(ready=True)
            )
        assert [m.name for m in index.models] == [MODEL]
        assert infer(client, MODEL, seeded(1)).as_numpy("logits").shape == (1, 10)
    finally:
        server.stop()


def test_taken_port_fails_start_up(serve_root, tmp_path):
    """A second server on a taken gRPC port exits with the reason, rather than starting
    and sharing the port (grpc's SO_REUSEPORT default would allow it)."""
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as another gRPC server
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        repo = subset(serve_root / "repo", tmp_path / "repo", [MODEL])
        log = tmp_path / "server.log"
        server = Live(repo, "--grpc-port", str(port), "--golden", "none", log=log)
        try:
            assert server.proc.wait(120) != 0
        except subprocess.TimeoutExpired:
            server.stop()
            raise
    assert f"127.0.0.1:{port}" in log.read_text()
