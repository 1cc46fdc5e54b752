"""The server needs neither torch nor TensorFlow for ONNX and TFLite variants: the serving
image has neither. Here a subprocess in which importing them fails (a meta-path finder
refuses them) imports the serving stack and serves a repository of those variants.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from serve_live import free_port, subset

import harness
from export import repository

# What the serving image lacks of pyproject's dependencies, by import name.
BLOCKED = ("torch", "tensorflow", "keras", "onnx", "onnxscript", "tf2onnx", "sklearn", "h5py")
SLIM_FORMATS = ("onnx", "onnx-tf", "onnx-fp16", "onnx-int8", "tflite", "tflite-fp16", "tflite-int8")
PRELUDE = f"""
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED!r}:
            raise ImportError(f"{{name}} is blocked: the serving image does not have it")

sys.meta_path.insert(0, Blocked())
"""


def python(code: str, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PRELUDE + code, *args], **kw)


def test_blocker_blocks():
    result = python("import torch", capture_output=True, text=True)
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_serving_stack_imports_without_frameworks():
    code = f"""
import serve.__main__, serve.routes, harness.parity
from pathlib import Path
from serve.app import create_app
from serve.config import ServeConfig
create_app(ServeConfig(repository=Path("/nonexistent")))
leaked = sorted(m for m in sys.modules if m.partition(".")[0] in {BLOCKED!r})
assert not leaked, leaked
"""
    result = python(code, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_serves_onnx_and_tflite_without_frameworks(serve_root, tmp_path):
    source = serve_root / "repo"
    names = [n for n, p in repository.variants(source).items() if fmt_of(p) in SLIM_FORMATS]
    models = subset(source, tmp_path / "models", names)
    port = free_port()
    args = ["--repository", str(models), "--port", str(port)]
    args += ["--golden", str(serve_root / "golden.npz")]
    code = "import runpy; sys.argv[0] = 'serve'; runpy.run_module('serve', run_name='__main__')"
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", PRELUDE + code, *args], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_loaded(url, proc, log) == dict.fromkeys(names, "READY")
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        assert client.is_server_ready()
        images = np.random.default_rng(3).uniform(0, 255, (5, 8, 8, 1)).astype(np.float32)
        for name in names:
            tensor = triton.InferInput("images", list(images.shape), "FP32")
            tensor.set_data_from_numpy(images)
            logits = client.infer(name, [tensor]).as_numpy("logits")
            want = harness.load(models / name, threads=1).predict(images)
            np.testing.assert_array_equal(logits, want, err_msg=name)
    finally:
        proc.terminate()
        proc.wait(15)


def fmt_of(variant: Path) -> str:
    return repository.read_manifest(variant)["format"]


def wait_loaded(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> dict:
    """{variant: state} once no variant is still loading (its reason if unavailable)."""
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url + "/v2/repository/index", data=b"{}", method="POST")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                index = json.loads(response.read())
            if index and all(row["state"] != "LOADING" for row in index):
                return {row["name"]: row.get("reason") or row["state"] for row in index}
        except OSError:  # not listening yet
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url}: variants still loading:\n{log.read_text()[-3000:]}")
