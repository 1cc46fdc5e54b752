"""Live `python -m serve` processes for the serve tests, over the session's real model
repository (tests/conftest.py: serve_root, rgb_repo); each module starts its own server
on a free port. With what those tests share: seeded images, a tampered variant, the
memory a server holds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.grpc
import tritonclient.http

from contract.formats import EDGE_FORMATS, FORMAT_NAMES
from contract.names import TRAINERS, variant_name

# Two variants of different runtimes, copied for the servers tests abuse (conftest: `pair`).
PAIR = ("torch.tflite", "torch.onnx")
# What the server holds: the model repository, not the edge formats beside it.
VARIANTS = [variant_name(t, f) for t in TRAINERS for f in FORMAT_NAMES if f not in EDGE_FORMATS]


def subset(repo: Path, dest: Path, names: list[str]) -> Path:
    """A repository holding copies of some variants (copies: tests may tamper with them)."""
    for name in names:
        shutil.copytree(repo / name, dest / name)
    return dest


def seeded(n: int = 7, seed: int = 0, shape: tuple[int, ...] = (8, 8, 1)) -> np.ndarray:
    """n seeded images of the digits' shape (or `shape`), raw pixels."""
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype(np.float32)


def infer(client, model: str, x: np.ndarray, binary: bool = True, k: int = 0, **kw):
    """One KServe V2 inference through tritonclient, over HTTP (`binary` tensors, else
    JSON) or gRPC (always raw bytes); `k`: the classification extension's top-k."""
    if isinstance(client, tritonclient.grpc.InferenceServerClient):
        tensor = tritonclient.grpc.InferInput("images", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        out = tritonclient.grpc.InferRequestedOutput("logits", class_count=k)
    else:
        tensor = tritonclient.http.InferInput("images", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        out = tritonclient.http.InferRequestedOutput("logits", binary_data=binary, class_count=k)
    return client.infer(model, [tensor], outputs=[out], **kw)


def tamper(variant: Path, artifact: str = "1/model.tflite") -> None:
    """Change a variant's file after export: its sha256 no longer matches the manifest."""
    with (variant / artifact).open("ab") as f:
        f.write(b"\0")


def children(pid: int) -> list[int]:
    """A process's child processes (a server's JSON codec workers)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(c) for task in tasks for c in (task / "children").read_text().split()]


def rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB: what a pod's memory
    limit counts, shared pages counted once per process."""
    pids, total = [pid], 0.0
    while pids:
        p = pids.pop()
        status = Path(f"/proc/{p}/status").read_text()
        total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
        pids += children(p)
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Live:
    """`python -m serve` in a subprocess; `url` once /v2/health/live answers. With `grpc`,
    KServe V2 gRPC on another free port as well, at `target`."""

    def __init__(self, repository: Path, *flags: str, log: Path, grpc: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "serve", "--repository", str(repository)]
        cmd += ["--port", str(self.port), *flags]
        if grpc:
            grpc_port = free_port()
            self.target = f"127.0.0.1:{grpc_port}"
            cmd += ["--grpc-port", str(grpc_port)]
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

    def __enter__(self) -> Live:
        self.wait()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
