"""A real model repository and live `python -m serve` processes for the serve tests.

The repository (torch trained briefly on digits, exported to all 7 formats, plus the
parity stage's golden.npz) is built once per test session and shared by the serve test
modules through a module-level cache; each module starts its own server on a free port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from train import data
from train.__main__ import run
from train.config import FORMATS, TrainConfig

TRAINER = "torch"
VARIANTS = [f"{TRAINER}.{fmt}" for fmt in FORMATS]
_built: dict[str, Path] = {}


def repository(tmp_path_factory) -> Path:
    """<root>/repo with every format of one trainer, and <root>/golden.npz."""
    if "root" not in _built:
        from serve import parity

        root = tmp_path_factory.mktemp("serve")
        # Two full epochs: confident enough that int8 keeps its parity profile (>= 98% top-1).
        cfg = TrainConfig(out=root / "checkpoints", epochs=2, quiet=True)
        splits = data.load(cfg.data, cfg.image_size, cfg.channels, cfg.seed)
        run(TrainConfig(**vars(cfg)), TRAINER, splits)
        export = [sys.executable, "-m", "export", "--checkpoints", str(root / "checkpoints")]
        export += ["--out", str(root / "repo"), "--trainers", TRAINER]
        subprocess.run(export, check=True, capture_output=True, timeout=300)
        parity.load_or_build((TRAINER,), root / "checkpoints", root / "golden.npz", replay=False)
        _built["root"] = root
    return _built["root"]


def rgb_repository(tmp_path_factory) -> Path:
    """A 3-channel repository (16x16 RGB synthetic data, where layout bugs show):
    torch quick-trained, exported to onnx and tflite."""
    if "rgb" not in _built:
        root = tmp_path_factory.mktemp("serve-rgb")
        cfg = TrainConfig(
            out=root / "checkpoints", data="synthetic", image_size=16, channels=3,
            synthetic_samples=400, epochs=1, max_steps=4, quiet=True,
        )  # fmt: skip
        splits = data.load(
            cfg.data, cfg.image_size, cfg.channels, cfg.seed, n=cfg.synthetic_samples
        )
        run(TrainConfig(**vars(cfg)), TRAINER, splits)
        export = [sys.executable, "-m", "export", "--checkpoints", str(root / "checkpoints")]
        export += [
            "--out",
            str(root / "repo"),
            "--trainers",
            TRAINER,
            "--formats",
            "onnx",
            "tflite",
        ]
        subprocess.run(export, check=True, capture_output=True, timeout=300)
        _built["rgb"] = root / "repo"
    return _built["rgb"]


def subset(root: Path, dest: Path, names: list[str]) -> Path:
    """A repository holding copies of some variants (copies: tests may tamper with them)."""
    for name in names:
        shutil.copytree(root / "repo" / name, dest / name)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Live:
    """`python -m serve` in a subprocess; `url` once /v2/health/live answers."""

    def __init__(self, repository: Path, *flags: str, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "serve", "--repository", str(repository)]
        cmd += ["--port", str(self.port), *flags]
        env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "2"}
        self.log = log
        self.proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)

    def wait(self, path: str = "/v2/health/ready", timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=5):
                    return
            except (OSError, urllib.error.HTTPError):
                time.sleep(0.2)
        raise TimeoutError(f"{self.url}{path} not answering:\n{self.log.read_text()[-3000:]}")

    def get(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
