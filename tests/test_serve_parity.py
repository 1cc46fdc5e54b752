"""The server's start-up replay judges each variant with the parity gate's own verdict: a
fail is not served, an inconclusive variant serves and says so."""

from __future__ import annotations

import time

import pytest
import tritonclient.http as triton
from serve_live import Live, subset
from test_parity import perturbed_copy

from contract.names import TRAINERS
from harness import golden

pytestmark = pytest.mark.slow


def test_replay_verdicts(rgb_repo, tmp_path):
    checkpoints, source = rgb_repo
    repo = subset(source, tmp_path / "repo", ["torch.tflite", "torch.tflite-int8"])
    perturbed_copy(source, "torch.onnx", repo)  # correctly signed, one kernel 5% off
    saved = tmp_path / "golden.npz"
    golden.load_or_build(list(TRAINERS), checkpoints, saved, replay=False)
    server = Live(repo, "--golden", str(saved), log=tmp_path / "server.log")
    try:
        server.wait("/v2/health/live")
        status, body = wait_loaded(server)
        # The failing variant keeps the server unready (Triton's strict readiness) and
        # says why; the inconclusive one is no reason to be unready.
        assert status == 503 and "torch.onnx" in body["error"], body
        assert "torch.tflite-int8" not in body["error"]
        status, body = server.get("/v2/models/torch.onnx/ready")
        assert status == 503 and "golden replay (fp32 profile)" in body["error"], body
        assert "max abs diff" in body["error"]

        status, body = server.get("/v2/models/torch.tflite-int8/ready")
        assert status == 200 and body["ready"] is True, body
        assert body["parity"] == "inconclusive" and "too few labelled images" in body["reason"]
        status, body = server.get("/v2/models/torch.tflite-int8")
        assert body["parity"]["verdict"] == "inconclusive", body
        status, body = server.get("/v2/models/torch.tflite")
        assert body["parity"] == {"verdict": "pass", "reason": ""}, body

        client = triton.InferenceServerClient(server.url.removeprefix("http://"))
        assert client.is_model_ready("torch.tflite-int8")
        assert not client.is_model_ready("torch.onnx")
    finally:
        server.stop()


def wait_loaded(server: Live) -> tuple[int, dict]:
    for _ in range(300):  # loading runs after start-up; bounded at about a minute
        status, body = server.get("/v2/health/ready")
        if "loading" not in body.get("error", ""):
            return status, body
        time.sleep(0.2)
    raise TimeoutError("variants still loading")


def test_inconclusive_variants_are_named_by_server_readiness(rgb_repo, tmp_path):
    checkpoints, source = rgb_repo
    repo = subset(source, tmp_path / "repo", ["torch.tflite", "torch.tflite-int8"])
    saved = tmp_path / "golden.npz"
    golden.load_or_build(list(TRAINERS), checkpoints, saved, replay=False)
    with Live(repo, "--golden", str(saved), log=tmp_path / "server.log") as server:
        status, body = server.get("/v2/health/ready")
        assert status == 200 and body["ready"] is True, body
        assert list(body["parity_inconclusive"]) == ["torch.tflite-int8"], body
