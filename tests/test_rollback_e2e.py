"""The release cycle end to end, through the commands a user runs: train, export, parity
(`make demo`), train again with another seed, export (version 2 of every variant), a server
serving version 2, `make rollback` (python -m export.rollback) bringing version 1 back while
the server polls the repository.

One trainer and two formats keep it short; every step is the real command.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import tritonclient.http
from serve_live import Live, infer, seeded

from contract import datasets
from export import repository
from export.__main__ import main as export_main
from harness import parity
from train.__main__ import run
from train.config import TrainConfig

pytestmark = pytest.mark.slow
VARIANTS = ("torch.onnx", "torch.tflite")


def train(out: Path, seed: int) -> None:
    cfg = TrainConfig(out=out, seed=seed, quiet=True)
    run(cfg, "torch", datasets.load(cfg.data, cfg.image_size, cfg.channels, cfg.seed))


def export(checkpoints: Path, repo: Path) -> None:
    argv = ["--trainers", "torch", "--formats", "onnx", "tflite"]
    assert export_main([*argv, "--checkpoints", str(checkpoints), "--out", str(repo)]) == 0


def test_retrain_export_serve_and_roll_back(tmp_path):
    checkpoints, repo, reports = tmp_path / "checkpoints", tmp_path / "repo", tmp_path / "reports"
    train(checkpoints, seed=0)  # make demo: train, export, parity
    export(checkpoints, repo)
    assert parity.run(repo, checkpoints, reports)["passed"]
    train(checkpoints, seed=1)  # a new model: another seed
    export(checkpoints, repo)
    for name in VARIANTS:
        manifest = repository.verify(repo / name)
        assert manifest["version"] == "2" and list(manifest["model_versions"]) == ["1", "2"]
        seeds = {v: r["run"]["seed"] for v, r in manifest["model_versions"].items()}
        assert seeds == {"1": 0, "2": 1}
    flags = ["--golden", str(reports / "golden.npz"), "--model-control", "poll"]
    with Live(repo, *flags, "--poll-interval-s", "0.2", log=tmp_path / "serve.log") as live:
        client = tritonclient.http.InferenceServerClient(f"127.0.0.1:{live.port}")
        for name in VARIANTS:
            assert infer(client, name, seeded(2)).get_response()["model_version"] == "2"
            meta = live.get(f"/v2/models/{name}")[1]
            # golden.npz holds seed 0's reference: version 2 is checked, not yet proven
            assert meta["parity"]["verdict"] == "inconclusive", meta["parity"]
            assert "another training run" in meta["parity"]["reason"]
        rollback = [sys.executable, "-m", "export.rollback", "torch.onnx", "--repository"]
        done = subprocess.run([*rollback, str(repo)], capture_output=True, text=True)
        assert done.returncode == 0 and "version 1 is live (was 2)" in done.stdout, done.stderr
        deadline = time.monotonic() + 60
        while live.get("/v2/models/torch.onnx")[1]["live_version"] != "1":
            assert time.monotonic() < deadline, live.log.read_text()[-2000:]
            time.sleep(0.1)
        assert infer(client, "torch.onnx", seeded(2)).get_response()["model_version"] == "1"
        meta = live.get("/v2/models/torch.onnx")[1]
        assert meta["parity"]["verdict"] == "pass"  # seed 0's own reference: proven again
        assert live.get("/v2/models/torch.tflite")[1]["live_version"] == "2"
