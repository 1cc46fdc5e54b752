"""Live `python -m serve` processes for the serve tests, over the session's real model
repository (tests/conftest.py: serve_root, rgb_repo); each module starts its own server
on a free port.
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

from contract.formats import EDGE_FORMATS, FORMAT_NAMES
from contract.names import TRAINERS, variant_name

# What the server holds: the model repository, not the edge formats beside it.
VARIANTS = [variant_name(t, f) for t in TRAINERS for f in FORMAT_NAMES if f not in EDGE_FORMATS]


def subset(repo: Path, dest: Path, names: list[str]) -> Path:
    """A repository holding copies of some variants (copies: tests may tamper with them)."""
    for name in names:
        shutil.copytree(repo / name, dest / name)
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
