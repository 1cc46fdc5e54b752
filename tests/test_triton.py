"""The model repository in the real Triton server: every folder loads, or fails only for a
backend that server lacks, never for its configuration, versioned folders included (two
versions under `latest`, two with one pinned by a rollback).

The server is Triton 2.51's own `tritonserver` binary as nvidia-pytriton 0.7 bundles it (CPU
only; its one backend is Python's). PyTriton needs numpy < 2, so it lives in a venv of its
own, `.cache/peers-venv`, shared with the bench (benchmarks/peers.py makes it on first
use). A control folder without config.pbtxt (the layout TFLite variants once had) proves the
check can fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from serve_live import free_port

from benchmarks import peers
from contract import checkpoint
from export import repository, versions
from export.matrix import export_variant
from export.source import Source

pytestmark = pytest.mark.slow  # installs PyTriton, exports a repository

# The backends this server build lacks: failing for one of them is no fault of the config.
MISSING_BACKENDS = {"onnxruntime", "tensorflow", "pytorch", "armnn_tflite"}
NO_BACKEND = re.compile(r"unable to find backend library for backend '([^']+)'")
POLL_FAILED = re.compile(r"Poll failed for model directory '([^']+)': (.*?)\"?$", re.M)
# The pt2 config is the one Triton's PyTorch backend documents for PT2 packages, platform
# "torch_aoti", which arrived after 2.51: this build refuses the pair as unknown. Only that
# refusal, for a pt2 folder only, counts as a server too old, not as a config error.
TOO_OLD = "unexpected 'platform' and 'backend' pair, got:torch_aoti, pytorch"
CONTROL = "control.tflite"
VERSIONED = ("torch.onnx", "torch.tflite")  # folders holding versions 1 and 2


def tritonserver() -> Path:
    """The bundled binary, from the peers' venv (benchmarks/peers.py), made when missing."""
    try:
        peers.peers_python()
        return peers.tritonserver()
    except peers.VenvError as e:
        pytest.fail(str(e)) if os.environ.get("CI") == "true" else pytest.skip(str(e))


def classify(index: list[dict], log: str, folders: list[str]) -> dict[str, str]:
    """{folder: "loaded" | "lacks <backend>" | "config error: <why>"} from Triton's
    repository index and log. A folder whose config Triton refused is in the index without
    a state, or missing; its reason is in the log."""
    polled = dict(POLL_FAILED.findall(log))
    rows = {row["name"]: row for row in index}
    verdicts = {}
    for folder in folders:
        row = rows.get(folder, {})
        missing = NO_BACKEND.search(row.get("reason", ""))
        if row.get("state") == "READY":
            verdicts[folder] = "loaded"
        elif missing and missing.group(1) in MISSING_BACKENDS:
            verdicts[folder] = f"lacks {missing.group(1)}"
        elif folder.endswith(".pt2") and TOO_OLD in polled.get(folder, ""):
            verdicts[folder] = "lacks torch_aoti (Triton 26.03 and later)"
        else:
            verdicts[folder] = f"config error: {row.get('reason') or polled.get(folder, row)}"
    return verdicts


def wait_live(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/v2/health/live", timeout=2):
                return
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.3)
    raise TimeoutError(f"tritonserver not live:\n{log.read_text()[-3000:]}")


def several_versions(checkpoints: Path, models: Path) -> None:
    """VERSIONED's variants get a second version, as a second `make export` publishes it;
    the TFLite one is then rolled back: version_policy `specific` on version 1."""
    source = Source(checkpoint.find("torch", checkpoints), models / ".tmp-source")
    try:
        for name in VERSIONED:
            export_variant(source, name.partition(".")[2], models)
    finally:
        source.close()
    versions.rollback(models, "torch.tflite", "1")


@pytest.fixture(scope="module")
def verdicts(digits_repo, tmp_path_factory) -> dict[str, str]:
    """Triton's verdict on every folder of the digits repository plus the control."""
    binary = tritonserver()
    checkpoints, source = digits_repo
    tmp_path = tmp_path_factory.mktemp("triton")
    models = tmp_path / "models"
    shutil.copytree(source, models, ignore=shutil.ignore_patterns(".*"))
    several_versions(checkpoints, models)
    shutil.copytree(source / "torch.tflite", models / CONTROL)
    (models / CONTROL / repository.CONFIG_FILE).unlink()
    http, grpc, metrics = free_port(), free_port(), free_port()
    cmd = [
        str(binary),
        f"--model-repository={models}",
        "--exit-on-error=false",  # report every folder, not just the first bad one
        f"--backend-directory={binary.parents[1] / 'backends'}",
        "--http-address=127.0.0.1",
        f"--http-port={http}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics}",
        "--allow-gpu-metrics=false",
    ]
    env = os.environ | peers.library_env()
    log = tmp_path / "tritonserver.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{http}"
        wait_live(url, proc, log)
        request = urllib.request.Request(url + "/v2/repository/index", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            index = json.loads(response.read())
    finally:
        proc.terminate()
        proc.wait(30)
    folders = sorted(p.name for p in models.iterdir() if p.is_dir())
    return classify(index, log.read_text(), folders)


def test_every_variant_loads_or_lacks_only_a_backend(verdicts, digits_repo, capsys):
    variants = {name: v for name, v in verdicts.items() if name != CONTROL}
    with capsys.disabled():
        print("\n[triton] " + ", ".join(f"{n}: {v}" for n, v in sorted(variants.items())))
    assert set(variants) == set(repository.variants(digits_repo[1]))
    bad = {name: v for name, v in variants.items() if v.startswith("config error")}
    assert not bad, bad


def test_folders_of_several_versions_and_a_pinned_one_are_no_config_error(verdicts):
    for name in VERSIONED:
        assert not verdicts[name].startswith("config error"), verdicts[name]


def test_a_folder_without_config_is_a_config_error(verdicts):
    assert verdicts[CONTROL].startswith("config error"), verdicts[CONTROL]
    assert "tflite" in verdicts[CONTROL]
